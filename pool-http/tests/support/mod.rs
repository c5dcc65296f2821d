//! Test servers on loopback: a real hyper server that counts the connections it accepts and
//! holds, a raw TCP server that writes exact bytes, and [`Hostile`] (in [`hostile`]), a raw
//! keep-alive server that answers streamed uploads before reading them and closes idle
//! connections at random; and the laws checked at the end of the chaos and soak runs. In
//! submodules, the servers of the request builder tests ([`wire`]) and of the redirect tests
//! ([`site`]), and the proxy of the proxy tests ([`test_proxy`]).
#![allow(dead_code)]

mod hostile;
pub mod site;
pub mod test_proxy;
pub mod wire;

#[allow(unused_imports)]
pub use hostile::{
    Hostile, Hostility, hostile_call, hostile_run_ends_clean, idle_matches_live_connections,
};

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use pool_core::testing::load::Tally;
use pool_core::testing::proxy::FaultProxy;
use pool_http::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

pub type ResBody = BoxBody<Bytes, Infallible>;

/// The per-host cap of the clients under chaos and soak.
pub const CAP: usize = 8;
type Handler = Arc<
    dyn Fn(Request<Incoming>) -> Pin<Box<dyn Future<Output = Response<ResBody>> + Send>>
        + Send
        + Sync,
>;

/// A body of `n` bytes with a Content-Length.
pub fn full(n: usize) -> ResBody {
    Full::new(Bytes::from(vec![b'x'; n])).boxed()
}

/// A chunked body of `chunks` chunks of `size` bytes (no Content-Length).
pub fn chunked(chunks: usize, size: usize) -> ResBody {
    let frames =
        (0..chunks).map(move |_| Ok::<_, Infallible>(Frame::data(Bytes::from(vec![b'y'; size]))));
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// A plain or TLS stream the server speaks HTTP on.
trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send> Io for T {}

/// A hyper HTTP/1.1 server on 127.0.0.1 that counts accepted and live connections.
pub struct Server {
    pub addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    live: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    goaway: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Serves every request with `handler` over HTTP/1.1.
    pub async fn start<F, Fut>(handler: F) -> Server
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<ResBody>> + Send + 'static,
    {
        Server::start_with_plain(false, handler).await
    }

    /// Serves every request with `handler` over HTTP/2 without TLS (h2c, prior knowledge).
    pub async fn start_h2<F, Fut>(handler: F) -> Server
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<ResBody>> + Send + 'static,
    {
        Server::start_with_plain(true, handler).await
    }

    /// As [`Server::start_h2`], with SETTINGS_MAX_CONCURRENT_STREAMS = `streams` on each
    /// connection.
    pub async fn start_h2_limited<F, Fut>(streams: u32, handler: F) -> Server
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<ResBody>> + Send + 'static,
    {
        Server::start_with(None, true, Some(streams), handler).await
    }

    /// Serves `handler` over TLS with a certificate for 127.0.0.1 made here, offering `alpn`
    /// (HTTP/2 when the client picks `h2`); returns the certificate to trust.
    pub async fn start_tls<F, Fut>(
        alpn: &[&[u8]],
        handler: F,
    ) -> (Server, rustls::pki_types::CertificateDer<'static>)
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<ResBody>> + Send + 'static,
    {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        let der = cert.der().clone();
        let key = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![der.clone()], key)
        .unwrap();
        config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        (
            Server::start_with(Some(acceptor), false, None, handler).await,
            der,
        )
    }

    async fn start_with_plain<F, Fut>(h2: bool, handler: F) -> Server
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<ResBody>> + Send + 'static,
    {
        Server::start_with(None, h2, None, handler).await
    }

    async fn start_with<F, Fut>(
        tls: Option<tokio_rustls::TlsAcceptor>,
        h2: bool,
        max_streams: Option<u32>,
        handler: F,
    ) -> Server
    where
        F: Fn(Request<Incoming>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response<ResBody>> + Send + 'static,
    {
        let (goaway, goaway_rx) = tokio::sync::watch::channel(false);
        let handler: Handler = Arc::new(move |req| Box::pin(handler(req)));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let live = Arc::new(AtomicUsize::new(0));
        let peak = Arc::new(AtomicUsize::new(0));
        let (a, l, p) = (accepts.clone(), live.clone(), peak.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                a.fetch_add(1, Ordering::SeqCst);
                let now = l.fetch_add(1, Ordering::SeqCst) + 1;
                p.fetch_max(now, Ordering::SeqCst);
                let (handler, l) = (handler.clone(), l.clone());
                let tls = tls.clone();
                let mut goaway = goaway_rx.clone();
                // Only connections open at `goaway()` get it; later ones serve normally.
                goaway.borrow_and_update();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let fut = handler(req);
                        async move { Ok::<_, Infallible>(fut.await) }
                    });
                    let (stream, h2): (Box<dyn Io>, bool) = match tls {
                        None => (Box::new(stream), h2),
                        Some(acceptor) => match acceptor.accept(stream).await {
                            Ok(s) => {
                                let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
                                (Box::new(s), h2)
                            }
                            Err(_) => {
                                l.fetch_sub(1, Ordering::SeqCst);
                                return;
                            }
                        },
                    };
                    if h2 {
                        let mut builder = hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        );
                        if let Some(streams) = max_streams {
                            builder.max_concurrent_streams(streams);
                        }
                        let conn = builder.serve_connection(TokioIo::new(stream), service);
                        tokio::pin!(conn);
                        tokio::select! {
                            _ = conn.as_mut() => {}
                            _ = goaway.changed() => {
                                conn.as_mut().graceful_shutdown();
                                let _ = conn.await;
                            }
                        }
                    } else {
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .with_upgrades()
                            .await;
                    }
                    l.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Server {
            addr,
            accepts,
            live,
            peak,
            goaway,
            task,
        }
    }

    /// HTTP/2: sends GOAWAY on every open connection (a graceful shutdown: streams in flight
    /// finish, no new ones are accepted, then the connection closes).
    pub fn goaway(&self) {
        let _ = self.goaway.send(true);
    }

    /// Answers every request with a body of `n` bytes.
    pub async fn sized(n: usize) -> Server {
        Server::start(move |_| async move { Response::new(full(n)) }).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Connections accepted so far.
    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// Connections open now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::SeqCst)
    }

    /// Most connections open at once.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::SeqCst)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A raw TCP server: each accepted connection runs `script` (which reads and writes exact
/// bytes); counts accepts.
pub struct Raw {
    pub addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    requests: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Raw {
    pub async fn start<F, Fut>(script: F) -> Raw
    where
        F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let a = accepts.clone();
        let script = Arc::new(script);
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let n = a.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(script(stream, n));
            }
        });
        Raw {
            addr,
            accepts,
            requests: Arc::default(),
            task,
        }
    }

    /// Answers every request on every connection with a keep-alive `body`, counting them.
    pub async fn answering(body: &'static str) -> Raw {
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let mut raw = Raw::start(move |mut s, _| {
            let counted = counted.clone();
            async move {
                while read_request(&mut s).await.is_some() {
                    counted.fetch_add(1, Ordering::SeqCst);
                    respond(&mut s, body).await;
                }
            }
        })
        .await;
        raw.requests = requests;
        raw
    }

    /// Requests read so far (servers made by [`Raw::answering`]).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }
}

impl Drop for Raw {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request head (up to the blank line) and its Content-Length body; `None` at EOF.
pub async fn read_request(stream: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte).await {
            Ok(1) => buf.push(byte[0]),
            _ => return None,
        }
    }
    let head = String::from_utf8_lossy(&buf).into_owned();
    let len = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    let mut body = vec![0u8; len];
    stream.read_exact(&mut body).await.ok()?;
    Some(head)
}

/// Writes a keep-alive response with `body`.
pub async fn respond(stream: &mut TcpStream, body: &str) {
    let msg = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = stream.write_all(msg.as_bytes()).await;
}

/// `GET url`, its body as text; panics on any error (tests only).
pub async fn text(client: &pool_http::Client, url: &str) -> String {
    client
        .get(url)
        .await
        .unwrap()
        .into_body()
        .text()
        .await
        .unwrap()
}

/// `GET url`, its whole body; panics on any error (tests only).
pub async fn bytes(client: &pool_http::Client, url: &str) -> bytes::Bytes {
    client
        .get(url)
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap()
}

#[allow(unused_imports)]
pub use pool_core::testing::eventually;

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// A GET that reads the whole body, or (when `unread`) drops it unread: the pitfall, under
/// faults.
pub async fn get(client: &Client, url: &str, unread: bool) -> Result<(), pool_http::Error> {
    let response = client.get(url).await?;
    if unread {
        drop(response);
        Ok(())
    } else {
        response.into_body().bytes().await.map(drop)
    }
}

/// Serves again after the fault, within 10 s; returns how long it took.
pub async fn recovery(client: &Client, url: &str) -> Duration {
    let started = tokio::time::Instant::now();
    while get(client, url, false).await.is_err() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no recovery within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

/// The laws at the end: the cap held, no call failed past `bound`, every connection back in
/// the pool; once the client is dropped, no connection at the proxy or the server, and no fd
/// more than `fds_before`.
pub async fn settle(
    client: Client,
    tally: &Tally,
    bound: Duration,
    proxy: &FaultProxy,
    server: &Server,
    fds_before: usize,
) {
    let s = client.stats().pool;
    assert!(s.peak_open <= CAP, "open reached {} > {CAP}", s.peak_open);
    assert!(
        tally.slowest_failure < bound,
        "a call took {:?} to fail, past its bound {bound:?}",
        tally.slowest_failure
    );
    eventually("all connections back", || {
        let s = client.stats().pool;
        s.in_use == 0 && s.open == s.idle
    })
    .await;
    drop(client);
    eventually("proxy connections closed", || proxy.live() == 0).await;
    eventually("server connections closed", || server.live() == 0).await;
    eventually("fds back to baseline", || open_fds() <= fds_before).await;
}

/// A streamed request body that never ends (64 KiB chunks, made as they are asked for): the
/// upload a server answers before reading.
pub fn endless_upload() -> pool_http::RequestBody {
    let chunk = Bytes::from(vec![b'u'; 64 * 1024]);
    let frames =
        futures_util::stream::repeat_with(move || Ok::<_, Infallible>(Frame::data(chunk.clone())));
    pool_http::RequestBody::stream(StreamBody::new(frames))
}

/// Established TCP connections from this process's clients to `server` (the kernel's table,
/// `/proc/net/tcp`): what the pool's `open` must match at rest.
pub fn client_sockets(server: SocketAddr) -> usize {
    let SocketAddr::V4(v4) = server else {
        panic!("IPv4 only")
    };
    let remote = format!(
        "{:08X}:{:04X}",
        u32::from_le_bytes(v4.ip().octets()),
        v4.port()
    );
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap_or_default()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.len() > 3 && f[2] == remote && f[3] == "01"
        })
        .count()
}

/// A rustls client config that trusts `root` alone (`ring` provider, safe defaults).
pub fn trusting(root: rustls::pki_types::CertificateDer<'static>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(root).unwrap();
    rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Every level of an error's message, the error's own first, then each `source()`.
pub fn levels(e: &pool_http::Error) -> Vec<String> {
    let mut levels = vec![e.to_string()];
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        levels.push(cause.to_string());
        next = cause.source();
    }
    levels
}

/// The error and its whole source chain joined with ": ", as a report prints them.
pub fn chain(e: &pool_http::Error) -> String {
    levels(e).join(": ")
}

/// The span capture of this test binary: one global subscriber per binary (each test reads
/// the spans of its own thread: its current-thread runtime runs the client's tasks there).
pub fn span_capture() -> pool_core::testing::spans::Capture {
    static CAPTURE: std::sync::OnceLock<pool_core::testing::spans::Capture> =
        std::sync::OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = pool_core::testing::spans::Capture::new();
            tracing::subscriber::set_global_default(capture.clone())
                .expect("no other global subscriber in this binary");
            capture
        })
        .clone()
}
