//! Transparent response decompression, as Go's Transport: asked for only when the caller did
//! not set `Accept-Encoding`, decoded as the body streams, connections pooled at the end of
//! the compressed body, memory bounded against a gzip bomb, corrupt or truncated streams an
//! error.

mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::{Method, Response};
use pool_http::{Client, Drain};
use support::{Raw, ResBody, Server, eventually};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// The largest decoded chunk a body yields (`decompress::CHUNK`).
const CHUNK: usize = 64 * 1024;

/// A decoded body stays a `pool_http::Body`, which callers rely on being `Send + Sync`.
const _: fn() = || {
    fn send_sync<T: Send + Sync>() {}
    send_sync::<pool_http::Body>();
    send_sync::<pool_http::Response>();
};

#[derive(Clone, Copy, Debug)]
enum Coding {
    Gzip,
    Br,
    Zstd,
}

/// `data` compressed with `coding`.
async fn compress(coding: Coding, data: &[u8]) -> Vec<u8> {
    use async_compression::tokio::bufread::{BrotliEncoder, GzipEncoder, ZstdEncoder};
    let mut reader: Box<dyn AsyncRead + Unpin + Send + '_> = match coding {
        Coding::Gzip => Box::new(GzipEncoder::new(data)),
        Coding::Br => Box::new(BrotliEncoder::new(data)),
        Coding::Zstd => Box::new(ZstdEncoder::new(data)),
    };
    let mut out = Vec::new();
    reader.read_to_end(&mut out).await.unwrap();
    out
}

/// Text that compresses well, `n` bytes.
fn text(n: usize) -> Vec<u8> {
    b"the quick brown fox jumps over the lazy dog. "
        .iter()
        .copied()
        .cycle()
        .take(n)
        .collect()
}

/// Bytes that hardly compress (seeded), `n` of them.
fn noise(n: usize) -> Vec<u8> {
    let mut rng = fastrand::Rng::with_seed(7);
    (0..n).map(|_| rng.u8(..)).collect()
}

/// A response with `body` (its Content-Length set by hyper) and `Content-Encoding: coding`.
fn encoded(body: impl Into<Bytes>, coding: &str) -> Response<ResBody> {
    let mut response = Response::new(Full::new(body.into()).boxed());
    response
        .headers_mut()
        .insert("content-encoding", coding.parse().unwrap());
    response
}

/// `body` sent chunked, in pieces of `piece` bytes, with `Content-Encoding: gzip`.
fn gzip_chunked(body: Vec<u8>, piece: usize) -> Response<ResBody> {
    let frames: Vec<_> = body
        .chunks(piece)
        .map(|c| Ok::<_, Infallible>(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let mut response = Response::new(StreamBody::new(futures_util::stream::iter(frames)).boxed());
    response
        .headers_mut()
        .insert("content-encoding", "gzip".parse().unwrap());
    response
}

/// A gzip stream of `n` zeros, compressed as it is sent (a gzip bomb with `n` of 1 GiB: about
/// 1 MiB on the wire), chunked.
fn gzip_zeros(n: u64) -> Response<ResBody> {
    let zeros = tokio::io::BufReader::with_capacity(CHUNK, tokio::io::repeat(0).take(n));
    let encoder = async_compression::tokio::bufread::GzipEncoder::new(zeros);
    let frames = futures_util::stream::unfold(encoder, |mut encoder| async move {
        let mut buf = vec![0; 16 * 1024];
        let n = encoder.read(&mut buf).await.unwrap();
        buf.truncate(n);
        (n > 0).then(|| (Ok::<_, Infallible>(Frame::data(Bytes::from(buf))), encoder))
    });
    let mut response = Response::new(StreamBody::new(frames).boxed());
    response
        .headers_mut()
        .insert("content-encoding", "gzip".parse().unwrap());
    response
}

/// The `Accept-Encoding` of each request a server saw.
#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Option<String>>>>);

impl Seen {
    fn record<B>(&self, req: &hyper::Request<B>) {
        let value = req
            .headers()
            .get("accept-encoding")
            .map(|v| v.to_str().unwrap().to_owned());
        self.0.lock().unwrap().push(value);
    }

    fn take(&self) -> Vec<Option<String>> {
        std::mem::take(&mut self.0.lock().unwrap())
    }
}

/// A server that records `Accept-Encoding` and answers every request with `plain` gzipped
/// (Content-Length), whatever was asked.
async fn gzip_server(plain: &[u8]) -> (Server, Seen, Vec<u8>) {
    let compressed = compress(Coding::Gzip, plain).await;
    let seen = Seen::default();
    let (body, record) = (compressed.clone(), seen.clone());
    let server = Server::start(move |req| {
        record.record(&req);
        let body = body.clone();
        async move { encoded(body, "gzip") }
    })
    .await;
    (server, seen, compressed)
}

#[tokio::test]
async fn gzip_is_asked_for_and_decoded_with_its_headers_removed() {
    let plain = text(10_000);
    let (server, seen, compressed) = gzip_server(&plain).await;
    let client = Client::new().unwrap();
    let response = client.get(&server.url("/")).await.unwrap();
    assert_eq!(seen.take(), [Some("gzip, br, zstd".to_owned())]);
    assert_eq!(response.headers().get("content-encoding"), None);
    assert_eq!(response.headers().get("content-length"), None);
    assert_eq!(response.content_length(), None);
    let body = response.bytes().await.unwrap();
    assert_eq!(body, plain);
    assert!(compressed.len() < plain.len() / 10, "the wire carried gzip");
}

#[tokio::test]
async fn a_caller_that_sets_accept_encoding_gets_the_body_as_sent() {
    let plain = text(10_000);
    let (server, seen, compressed) = gzip_server(&plain).await;
    let client = Client::new().unwrap();
    // Decoded when the client asked: the control.
    assert_eq!(support::bytes(&client, &server.url("/")).await, plain);
    let response = client
        .get(&server.url("/"))
        .header("accept-encoding", "gzip")
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(response.content_length(), Some(compressed.len() as u64));
    assert_eq!(response.bytes().await.unwrap(), compressed);
    assert_eq!(
        seen.take(),
        [Some("gzip, br, zstd".to_owned()), Some("gzip".to_owned())],
        "the caller's own value went out as it was"
    );
}

#[tokio::test]
async fn disable_compression_asks_for_nothing_and_decodes_nothing() {
    let plain = text(10_000);
    let (server, seen, compressed) = gzip_server(&plain).await;
    let on = Client::new().unwrap();
    assert_eq!(support::bytes(&on, &server.url("/")).await, plain);
    let off = Client::builder().disable_compression(true).build().unwrap();
    let response = off.get(&server.url("/")).await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(response.bytes().await.unwrap(), compressed);
    assert_eq!(seen.take(), [Some("gzip, br, zstd".to_owned()), None]);
}

#[tokio::test]
async fn a_range_request_is_not_asked_for_compression() {
    // A range of a compressed stream cannot be decoded alone (Go asks for none either).
    let plain = text(10_000);
    let (server, seen, _) = gzip_server(&plain).await;
    let client = Client::new().unwrap();
    assert_eq!(support::bytes(&client, &server.url("/")).await, plain);
    let response = client
        .get(&server.url("/"))
        .header("range", "bytes=0-99")
        .await
        .unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    drop(response);
    assert_eq!(seen.take(), [Some("gzip, br, zstd".to_owned()), None]);
}

#[tokio::test]
async fn br_and_zstd_are_decoded() {
    let plain = text(100_000);
    let br = compress(Coding::Br, &plain).await;
    let zstd = compress(Coding::Zstd, &plain).await;
    let server = Server::start(move |req| {
        let (br, zstd) = (br.clone(), zstd.clone());
        async move {
            match req.uri().path() {
                "/br" => encoded(br, "br"),
                _ => encoded(zstd, "zstd"),
            }
        }
    })
    .await;
    let client = Client::new().unwrap();
    for path in ["/br", "/zstd"] {
        let response = client.get(&server.url(path)).await.unwrap();
        assert_eq!(response.headers().get("content-encoding"), None, "{path}");
        assert_eq!(response.bytes().await.unwrap(), plain, "{path}");
    }
    assert_eq!(client.stats().pool.created, 1);
}

#[tokio::test]
async fn one_known_coding_is_decoded_whatever_its_case_stacked_or_unknown_ones_are_not() {
    let plain = text(5_000);
    let gzip = compress(Coding::Gzip, &plain).await;
    let server = Server::start(move |req| {
        let gzip = gzip.clone();
        async move {
            let coding = match req.uri().path() {
                "/upper" => " GZip ",
                "/x-gzip" => "x-gzip",
                "/stacked" => "gzip, br",
                _ => "compress",
            };
            encoded(gzip, coding)
        }
    })
    .await;
    let client = Client::new().unwrap();
    for path in ["/upper", "/x-gzip"] {
        let response = client.get(&server.url(path)).await.unwrap();
        assert_eq!(response.headers().get("content-encoding"), None, "{path}");
        assert_eq!(response.bytes().await.unwrap(), plain, "{path}");
    }
    for (path, coding) in [("/stacked", "gzip, br"), ("/unknown", "compress")] {
        let response = client.get(&server.url(path)).await.unwrap();
        assert_eq!(response.headers()["content-encoding"], coding);
        assert!(response.content_length().is_some(), "{path}");
        assert_ne!(response.bytes().await.unwrap(), plain, "{path}");
    }
}

/// Three requests for `path`, each read to its end; the connection comes back every time.
async fn three_on_one_connection(server: &Server, path: &str, plain: &[u8]) {
    let client = Client::new().unwrap();
    for _ in 0..3 {
        let response = client.get(&server.url(path)).await.unwrap();
        assert_eq!(response.headers().get("content-encoding"), None, "{path}");
        assert_eq!(response.bytes().await.unwrap(), plain, "{path}");
    }
    let stats = client.stats();
    assert_eq!(stats.pool.created, 1, "{path}: {stats:?}");
    assert_eq!(
        stats.body_eof, 3,
        "{path}: each at the end of its body: {stats:?}"
    );
    assert_eq!(stats.drained, 0, "{path}: {stats:?}");
    assert_eq!(stats.pool.idle, 1, "{path}: {stats:?}");
}

#[tokio::test]
async fn chunked_and_content_length_gzip_responses_give_their_connection_back() {
    let plain = noise(100_000);
    let gzip = compress(Coding::Gzip, &plain).await;
    let server = Server::start(move |req| {
        let gzip = gzip.clone();
        async move {
            match req.uri().path() {
                "/chunked" => gzip_chunked(gzip, 7_000),
                _ => encoded(gzip, "gzip"),
            }
        }
    })
    .await;
    three_on_one_connection(&server, "/chunked", &plain).await;
    three_on_one_connection(&server, "/length", &plain).await;
    assert_eq!(server.accepts(), 2, "one connection for each client");
}

#[tokio::test]
async fn gzip_over_http2_is_decoded_and_the_connection_kept() {
    let plain = text(50_000);
    let gzip = compress(Coding::Gzip, &plain).await;
    let server = Server::start_h2(move |_| {
        let gzip = gzip.clone();
        async move { gzip_chunked(gzip, 1_000) }
    })
    .await;
    let client = Client::builder()
        .http2_prior_knowledge(true)
        .build()
        .unwrap();
    for _ in 0..3 {
        assert_eq!(support::bytes(&client, &server.url("/")).await, plain);
    }
    let stats = client.stats();
    assert_eq!(stats.pool.created, 1, "{stats:?}");
    assert_eq!(stats.streams, 0, "every stream ended: {stats:?}");
}

#[tokio::test]
async fn a_decoded_body_dropped_early_is_drained_and_its_connection_kept() {
    // 200 KB that hardly compress: within the default 256 KiB drain budget, in many chunks.
    let plain = noise(200_000);
    let gzip = compress(Coding::Gzip, &plain).await;
    let server = Server::start(move |_| {
        let gzip = gzip.clone();
        async move { gzip_chunked(gzip, 8_000) }
    })
    .await;
    let url = server.url("/");
    // The subject is what is drained, not how fast: a time budget a loaded machine meets.
    let client = Client::builder()
        .drain(Drain::default().with_max_time(Duration::from_secs(5)))
        .build()
        .unwrap();
    for i in 1..=3 {
        let mut body = client.get(&url).await.unwrap().into_body();
        let first = body.chunk().await.unwrap().unwrap();
        assert!(first.len() <= CHUNK);
        assert_eq!(first, plain[..first.len()], "decoded");
        drop(body);
        eventually("drained and pooled", || client.stats().drained == i).await;
    }
    assert_eq!(support::bytes(&client, &url).await, plain);
    let stats = client.stats();
    assert_eq!(stats.pool.created, 1, "{stats:?}");
    assert_eq!(stats.drain_failed, 0, "{stats:?}");
}

#[tokio::test]
async fn a_gzip_bomb_past_the_body_limit_fails_and_closes_its_connection() {
    let server = Server::start(|_| async { gzip_zeros(1 << 30) }).await;
    let client = Client::builder().body_limit(1 << 20).build().unwrap();
    let response = client.get(&server.url("/")).await.unwrap();
    assert_eq!(response.headers().get("content-encoding"), None, "decoded");
    let e = response.bytes().await.unwrap_err();
    assert!(e.is_too_large(), "{e:?}");
    eventually("the connection closed", || {
        client.stats().pool.open == 0 && server.live() == 0
    })
    .await;
    // `text` is bounded the same way.
    let e = client.get(&server.url("/")).await.unwrap().text().await;
    assert!(e.unwrap_err().is_too_large());
    assert_eq!(server.accepts(), 2);
}

#[tokio::test]
async fn a_gzip_bomb_streams_in_bounded_chunks_to_its_end() {
    const N: usize = 64 << 20;
    let server = Server::start(|_| async { gzip_zeros(N as u64) }).await;
    let client = Client::new().unwrap();
    let mut body = client.get(&server.url("/")).await.unwrap().into_body();
    let (mut total, mut chunks, mut largest) = (0, 0, 0);
    while let Some(chunk) = body.chunk().await.unwrap() {
        assert!(chunk.iter().all(|&b| b == 0));
        largest = largest.max(chunk.len());
        total += chunk.len();
        chunks += 1;
    }
    assert_eq!(total, N);
    assert!(largest <= CHUNK, "a chunk of {largest} bytes");
    assert!(chunks >= N / CHUNK);
    drop(body);
    let stats = client.stats();
    assert_eq!(stats.body_eof, 1, "{stats:?}");
    assert_eq!(stats.pool.idle, 1, "{stats:?}");
}

#[tokio::test]
async fn a_corrupt_gzip_body_is_a_decode_error() {
    let plain = text(20_000);
    let good = compress(Coding::Gzip, &plain).await;
    let mut bad_crc = good.clone();
    let at = bad_crc.len() - 8;
    bad_crc[at] ^= 0xff;
    let mut bad_data = good.clone();
    let mid = bad_data.len() / 2;
    bad_data[mid..mid + 16].fill(0xff);
    let server = Server::start(move |req| {
        let body = match req.uri().path() {
            "/garbage" => b"this is not gzip at all".to_vec(),
            "/crc" => bad_crc.clone(),
            _ => bad_data.clone(),
        };
        async move { encoded(body, "gzip") }
    })
    .await;
    let client = Client::new().unwrap();
    for path in ["/garbage", "/crc", "/data"] {
        let e = client
            .get(&server.url(path))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap_err();
        assert!(e.is_decode(), "{path}: {e:?}");
        assert!(e.to_string().contains("as gzip"), "{path}: {e}");
    }
    // Streamed, the error comes from `chunk` (after any good chunks), and is final.
    let mut body = client
        .get(&server.url("/garbage"))
        .await
        .unwrap()
        .into_body();
    assert!(body.chunk().await.unwrap_err().is_decode());
    assert!(body.chunk().await.unwrap().is_none());
}

#[tokio::test]
async fn a_truncated_gzip_body_is_an_error_not_a_short_body() {
    let plain = text(50_000);
    let gzip = compress(Coding::Gzip, &plain).await;
    let half = gzip[..gzip.len() / 2].to_vec();
    // A close-delimited body: the server sends its head and half the stream, then closes.
    // As far as HTTP goes the body is whole; only gzip knows it is not.
    let cut = half.clone();
    let closing = Raw::start(move |mut s, _| {
        let cut = cut.clone();
        async move {
            support::read_request(&mut s).await;
            let head = "HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\nconnection: close\r\n\r\n";
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(&cut).await.unwrap();
            s.shutdown().await.unwrap();
        }
    })
    .await;
    // The same half stream with a Content-Length that matches it.
    let sized = Server::start(move |_| {
        let half = half.clone();
        async move { encoded(half, "gzip") }
    })
    .await;
    let client = Client::new().unwrap();
    for url in [closing.url("/"), sized.url("/")] {
        let response = client.get(&url).await.unwrap();
        assert_eq!(response.headers().get("content-encoding"), None, "decoded");
        let e = response.bytes().await.unwrap_err();
        assert!(e.is_decode(), "{url}: {e:?}");
    }
}

/// A chunked response with no chunks labelled with a coding (servers that set the header on
/// every response do this for empty bodies). Go's transport reads an empty gzip body as
/// empty (`gzip.NewReader` on nothing is `io.EOF`, a clean end); so do we, for each coding,
/// and the connection is reused. One compressed byte, cut there, stays an error.
#[tokio::test]
async fn an_empty_chunked_body_labelled_with_a_coding_reads_as_empty() {
    for coding in ["gzip", "br", "zstd"] {
        let server = Raw::start(move |mut s, _| async move {
            while let Some(head) = support::read_request(&mut s).await {
                let body = if head.starts_with("GET /cut") {
                    "1\r\n\x01\r\n0\r\n\r\n"
                } else {
                    "0\r\n\r\n"
                };
                let answer = format!(
                    "HTTP/1.1 200 OK\r\ncontent-encoding: {coding}\r\n\
                     transfer-encoding: chunked\r\n\r\n{body}"
                );
                let _ = s.write_all(answer.as_bytes()).await;
            }
        })
        .await;
        let client = Client::new().unwrap();
        for _ in 0..3 {
            let got = tokio::time::timeout(Duration::from_secs(5), async {
                client.get(&server.url("/empty")).await?.bytes().await
            })
            .await
            .expect("hung");
            assert_eq!(
                got.map_err(|e| e.to_string()).as_deref(),
                Ok(&b""[..]),
                "an empty {coding} body"
            );
        }
        let e = client.get(&server.url("/cut")).await.unwrap().bytes().await;
        assert!(e.unwrap_err().is_decode(), "one byte of {coding}");
        assert_eq!(server.accepts(), 1, "{coding}: the connection was reused");
    }
}

#[tokio::test]
async fn a_head_response_is_left_as_it_came_and_a_head_asks_for_no_encoding() {
    let plain = text(10_000);
    let (server, seen, compressed) = gzip_server(&plain).await;
    let client = Client::new().unwrap();
    let url = server.url("/");
    // The GET of the same resource is decoded: the control.
    assert_eq!(support::bytes(&client, &url).await, plain);
    let response = client.request_builder(Method::HEAD, &url).await.unwrap();
    assert_eq!(response.headers()["content-encoding"], "gzip");
    assert_eq!(response.content_length(), Some(compressed.len() as u64));
    assert!(response.bytes().await.unwrap().is_empty());
    assert_eq!(support::bytes(&client, &url).await, plain);
    assert_eq!(client.stats().pool.created, 1);
    let asked = Some("gzip, br, zstd".to_owned());
    assert_eq!(
        seen.take(),
        [asked.clone(), None, asked],
        "Go asks a HEAD for none"
    );
}

#[tokio::test]
async fn the_request_timeout_holds_until_the_decoded_body_ends() {
    // 8 MiB of zeros: a few KiB on the wire, all of it in long before it is all decoded.
    let gzip = compress(Coding::Gzip, &vec![0; 8 << 20]).await;
    let server = Server::start(move |_| {
        let gzip = gzip.clone();
        async move { encoded(gzip, "gzip") }
    })
    .await;
    let timeout = Duration::from_millis(500);
    let client = Client::builder().timeout(timeout).build().unwrap();
    let mut body = client.get(&server.url("/")).await.unwrap().into_body();
    let mut read = 0;
    while client.stats().pool.idle == 0 {
        read += body.chunk().await.unwrap().unwrap().len();
    }
    assert!(
        read < 8 << 20,
        "the compressed body ended before the decoded one"
    );
    // The timer runs out (not a synchronisation: the subject is the deadline itself). The
    // request's deadline was set before now, so a full `timeout` from now is past it.
    tokio::time::sleep(timeout).await;
    let e = body.chunk().await.unwrap_err();
    assert!(e.is_timeout(), "{e:?}");
}
