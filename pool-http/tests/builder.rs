//! The request builder and the response helpers as a new user reaches for them, each proved
//! on the wire: a loopback hyper server records what it received. Mistakes in the chain fail
//! `send` (never panic), limits close the connection, and a client made outside any runtime
//! works in one made later.

mod support;

use std::collections::BTreeMap;
use std::future::{Future, IntoFuture};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, HeaderMap, HeaderValue};
use http::{Method, StatusCode, Version};
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use pool_http::redirect::Policy;
use pool_http::{Client, Error, Phase, RequestBody};
use serde::{Deserialize, Serialize};
use support::{ResBody, Server, chunked, full};
use tokio::sync::mpsc;

const SECRET: &str = "tok3n-S3CRET";

/// What the server received.
#[derive(Debug)]
struct Seen {
    method: Method,
    target: String,
    version: Version,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    fn one(&self, name: &str) -> &str {
        match self.all(name).as_slice() {
            [one] => one,
            other => panic!("expected one `{name}`, got {other:?}"),
        }
    }
}

/// A recording server: every request is read whole and recorded, then answered as its path
/// says (see [`answer`]).
struct Wire {
    server: Server,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Wire {
    async fn start() -> Wire {
        let (tx, seen) = mpsc::unbounded_channel();
        let server = Server::start(move |req: hyper::Request<hyper::body::Incoming>| {
            let tx = tx.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                let target = parts.uri.path_and_query().unwrap().as_str().to_owned();
                let path = parts.uri.path().to_owned();
                let _ = tx.send(Seen {
                    method: parts.method,
                    target,
                    version: parts.version,
                    headers: parts.headers,
                    body,
                });
                answer(&path).await
            }
        })
        .await;
        Wire { server, seen }
    }

    fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    /// The next request the server received.
    async fn next(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(10), self.seen.recv())
            .await
            .expect("the server received no request within 10 s")
            .unwrap()
    }

    fn nothing_more(&mut self) {
        assert!(
            self.seen.try_recv().is_err(),
            "the server received a request"
        );
    }
}

fn reply(status: u16, body: ResBody) -> hyper::Response<ResBody> {
    hyper::Response::builder()
        .status(status)
        .body(body)
        .unwrap()
}

fn bytes_body(b: &'static [u8]) -> ResBody {
    Full::new(Bytes::from_static(b)).boxed()
}

/// `/status/N`: status N with 10 KiB (Content-Length); `/status-chunked/N`: the same,
/// chunked; `/sized/N`: N bytes; `/chunked/C/S`: C chunks of S bytes; `/json`, `/not-json`,
/// `/wrong-shape`, `/bad-utf8`; `/slow` answers after 300 ms; `/never` never answers;
/// `/stall` sends its head and one chunk, then nothing; `/redirect` is a 302 to `/`;
/// `/cookie` sets a secret cookie. Anything else: `ok`.
async fn answer(path: &str) -> hyper::Response<ResBody> {
    let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let num = |i: usize| parts[i].parse::<usize>().unwrap();
    match parts[0] {
        "status" => reply(num(1) as u16, full(10 * 1024)),
        "status-chunked" => reply(num(1) as u16, chunked(10, 1024)),
        "sized" => reply(200, full(num(1))),
        "chunked" => reply(200, chunked(num(1), num(2))),
        "json" => reply(200, bytes_body(br#"{"name":"a","n":7}"#)),
        "not-json" => reply(200, bytes_body(br#"{"name": "a", "#)),
        "wrong-shape" => reply(200, bytes_body(br#"{"name": 7}"#)),
        "bad-utf8" => reply(200, bytes_body(b"ok \xff\xfe end")),
        "slow" => {
            // A slow server, not a synchronisation: it answers 300 ms late.
            tokio::time::sleep(Duration::from_millis(300)).await;
            reply(200, bytes_body(b"late"))
        }
        "never" => std::future::pending().await,
        "stall" => {
            let first = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(
                Frame::data(Bytes::from_static(b"a")),
            )]);
            let body = futures_util::StreamExt::chain(first, futures_util::stream::pending());
            reply(200, StreamBody::new(body).boxed())
        }
        "redirect" => hyper::Response::builder()
            .status(302)
            .header("location", "/")
            .body(bytes_body(b"moved"))
            .unwrap(),
        "cookie" => hyper::Response::builder()
            .header("set-cookie", format!("session={SECRET}"))
            .body(bytes_body(b"ok"))
            .unwrap(),
        _ => reply(200, bytes_body(b"ok")),
    }
}

#[tokio::test]
async fn every_method_reaches_the_wire_and_awaiting_the_builder_sends_it() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let url = wire.url("/m");
    let builders = [
        (Method::GET, client.get(&url)),
        (Method::POST, client.post(&url)),
        (Method::PUT, client.put(&url)),
        (Method::PATCH, client.patch(&url)),
        (Method::DELETE, client.delete(&url)),
        (Method::HEAD, client.head(&url)),
        (
            Method::OPTIONS,
            client.request_builder(Method::OPTIONS, &url),
        ),
    ];
    for (method, builder) in builders {
        // `IntoFuture`: no `send()`.
        let response = builder.await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.url().to_string(), url);
        response.bytes().await.unwrap();
        let seen = wire.next().await;
        assert_eq!(seen.method, method);
        assert_eq!(seen.target, "/m");
        assert_eq!(seen.version, Version::HTTP_11);
    }
    // The awaited builder is `Send`: it runs in a task of its own.
    let task = tokio::spawn(client.get(&url).into_future());
    assert_eq!(task.await.unwrap().unwrap().text().await.unwrap(), "ok");
    assert_eq!(wire.next().await.method, Method::GET);
    assert_eq!(wire.server.accepts(), 1, "one connection served them all");
}

#[tokio::test]
async fn header_appends_and_headers_replaces_those_of_its_names() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let mut map = HeaderMap::new();
    map.append("x-a", HeaderValue::from_static("3"));
    map.append("x-b", HeaderValue::from_static("4"));
    map.append("x-b", HeaderValue::from_static("5"));
    client
        .get(&wire.url("/"))
        .header("x-a", "1")
        .header("x-a", "2")
        .header("x-c", "kept")
        .headers(map)
        .header("x-b", "6")
        .send()
        .await
        .unwrap();
    let seen = wire.next().await;
    assert_eq!(seen.all("x-a"), ["3"], "replaced by headers()");
    assert_eq!(
        seen.all("x-b"),
        ["4", "5", "6"],
        "all of the map's, then appended"
    );
    assert_eq!(
        seen.all("x-c"),
        ["kept"],
        "a name the map lacks is untouched"
    );
    // Typed names and values go as well.
    client
        .get(&wire.url("/"))
        .header(http::header::ACCEPT, HeaderValue::from_static("text/plain"))
        .header(String::from("x-owned"), String::from("v"))
        .send()
        .await
        .unwrap();
    let seen = wire.next().await;
    assert_eq!(seen.one("accept"), "text/plain");
    assert_eq!(seen.one("x-owned"), "v");
}

#[tokio::test]
async fn query_is_appended_to_the_url_query_form_encoded() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let url = wire.url("/search?page=1");
    let response = client
        .get(&url)
        .query(&[("q", "a b&c=d"), ("é", "ü/?#")])
        .query(&[("n", "2")])
        .await
        .unwrap();
    let expected = "/search?page=1&q=a+b%26c%3Dd&%C3%A9=%C3%BC%2F%3F%23&n=2";
    assert_eq!(response.url().path_and_query().unwrap(), expected);
    assert_eq!(wire.next().await.target, expected);

    // No query yet, no path, a fragment (never sent), owned pairs.
    let cases = [
        ("/plain", "/plain?k=v"),
        ("", "/?k=v"),
        ("?x=1", "/?x=1&k=v"),
        ("/f?x=1#frag", "/f?x=1&k=v"),
    ];
    for (path, target) in cases {
        let pairs = vec![(String::from("k"), String::from("v"))];
        client
            .get(&format!("http://{}{path}", wire.server.addr))
            .query(&pairs)
            .await
            .unwrap();
        assert_eq!(wire.next().await.target, target, "for {path:?}");
    }
    // No pairs: the URL as it was.
    let none: [(&str, &str); 0] = [];
    client.get(&url).query(&none).await.unwrap();
    assert_eq!(wire.next().await.target, "/search?page=1");
}

#[tokio::test]
async fn auth_reaches_the_wire_and_no_debug_shows_it() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let basic = "Basic dXNlcjp0b2szbi1TM0NSRVQ="; // base64("user:tok3n-S3CRET")
    let shown = |builder: &pool_http::RequestBuilder| format!("{builder:?} {builder:#?}");

    let builder = client.get(&wire.url("/")).bearer_auth(SECRET);
    let debug = shown(&builder);
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(
        debug.contains("authorization"),
        "the names are shown: {debug}"
    );
    let request = client
        .get(&wire.url("/"))
        .bearer_auth(SECRET)
        .build()
        .unwrap();
    assert!(request.headers()[AUTHORIZATION].is_sensitive());
    let debug = format!("{request:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    builder.send().await.unwrap();
    assert_eq!(
        wire.next().await.one("authorization"),
        format!("Bearer {SECRET}")
    );

    let builder = client.get(&wire.url("/")).basic_auth("user", Some(SECRET));
    let debug = shown(&builder);
    assert!(
        !debug.contains(SECRET) && !debug.contains(&basic[6..]),
        "{debug}"
    );
    let request = client
        .get(&wire.url("/"))
        .basic_auth("user", Some(SECRET))
        .build()
        .unwrap();
    let debug = format!("{request:?}");
    assert!(!debug.contains(&basic[6..]), "{debug}");
    builder.send().await.unwrap();
    assert_eq!(wire.next().await.one("authorization"), basic);

    // No password: `user:`.
    client
        .get(&wire.url("/"))
        .basic_auth("user", None::<&str>)
        .await
        .unwrap();
    assert_eq!(wire.next().await.one("authorization"), "Basic dXNlcjo=");

    // The last credentials win, and they beat the URL's userinfo.
    let url = format!("http://u:p@{}/", wire.server.addr);
    client
        .get(&url)
        .basic_auth("user", Some("x"))
        .bearer_auth(SECRET)
        .await
        .unwrap();
    assert_eq!(
        wire.next().await.one("authorization"),
        format!("Bearer {SECRET}")
    );

    // A token that cannot be a header value fails `send`, and the error does not quote it.
    let err = client
        .get(&wire.url("/"))
        .bearer_auth(format!("{SECRET}\r\nx-injected: 1"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_builder(), "{err:?}");
    let report = format!("{err} {err:?} {}", shown_chain(&err));
    assert!(!report.contains(SECRET), "{report}");
    wire.nothing_more();
}

/// The error's causes, joined.
fn shown_chain(err: &Error) -> String {
    let mut out = String::new();
    let mut cause = std::error::Error::source(err);
    while let Some(e) = cause {
        out.push_str(&format!("{e}: {e:?}; "));
        cause = e.source();
    }
    out
}

#[tokio::test]
async fn bodies_of_every_kind_reach_the_wire() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let url = wire.url("/upload");
    let in_memory: [(RequestBody, &[u8]); 5] = [
        ("a &'static str".into(), b"a &'static str"),
        (String::from("a String").into(), b"a String"),
        (
            Bytes::from_static(b"\x00bytes\xff").into(),
            b"\x00bytes\xff",
        ),
        (vec![1u8, 2, 3].into(), &[1, 2, 3]),
        ((&b"a static slice"[..]).into(), b"a static slice"),
    ];
    for (body, expected) in in_memory {
        client.post(&url).body(body).await.unwrap();
        let seen = wire.next().await;
        assert_eq!(seen.body, expected);
        assert_eq!(seen.one("content-length"), expected.len().to_string());
    }
    // A non-'static string goes as a `String`.
    let owned = format!("made at {}", wire.server.addr);
    client.put(&url).body(owned.clone()).await.unwrap();
    assert_eq!(wire.next().await.body, owned);

    let frames = ["one,", "two,", "three"]
        .map(|s| Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(s.as_bytes()))));
    let stream = RequestBody::stream(StreamBody::new(futures_util::stream::iter(frames)));
    client.patch(&url).body(stream).await.unwrap();
    let seen = wire.next().await;
    assert_eq!(seen.body, "one,two,three");
    assert_eq!(seen.one("transfer-encoding"), "chunked");
    assert!(seen.headers.get(CONTENT_LENGTH).is_none());

    // `()` and the default: no body.
    client.post(&url).body(()).await.unwrap();
    assert!(wire.next().await.body.is_empty());
}

#[tokio::test]
async fn a_file_body_goes_from_its_position_with_its_length_and_a_grown_file_is_cut() {
    use tokio::io::{AsyncSeekExt as _, AsyncWriteExt as _};
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let path = std::env::temp_dir().join(format!("pool-http-file-body-{}", std::process::id()));
    let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
    tokio::fs::write(&path, &content).await.unwrap();

    let mut file = tokio::fs::File::open(&path).await.unwrap();
    file.seek(std::io::SeekFrom::Start(10)).await.unwrap();
    let body = RequestBody::file(file).await.unwrap();
    client.put(&wire.url("/f")).body(body).await.unwrap();
    let seen = wire.next().await;
    assert_eq!(
        seen.one("content-length"),
        "99990",
        "the length from the metadata"
    );
    assert!(seen.headers.get("transfer-encoding").is_none());
    assert_eq!(seen.body, &content[10..]);

    // The file grows after the body was made: the body ends at the length it announced.
    let body = RequestBody::file(tokio::fs::File::open(&path).await.unwrap())
        .await
        .unwrap();
    let mut appending = tokio::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .await
        .unwrap();
    appending.write_all(b"appended later").await.unwrap();
    appending.flush().await.unwrap();
    client.put(&wire.url("/f")).body(body).await.unwrap();
    let seen = wire.next().await;
    assert_eq!(seen.one("content-length"), "100000");
    assert_eq!(seen.body, &content[..]);
    let _ = std::fs::remove_file(&path);
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Item {
    name: String,
    n: u32,
}

#[derive(Serialize)]
struct Form {
    name: &'static str,
    tag: &'static str,
    city: &'static str,
}

/// Always fails to serialise.
struct Unserialisable;

impl Serialize for Unserialisable {
    fn serialize<S: serde::Serializer>(&self, _: S) -> Result<S::Ok, S::Error> {
        Err(serde::ser::Error::custom("refuses to serialise"))
    }
}

#[tokio::test]
async fn json_and_form_set_their_content_type_unless_one_is_set() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let url = wire.url("/data");
    let item = Item {
        name: "a \"q\" é".into(),
        n: 7,
    };
    client.post(&url).json(&item).await.unwrap();
    let seen = wire.next().await;
    assert_eq!(seen.one("content-type"), "application/json");
    assert_eq!(seen.body, "{\"name\":\"a \\\"q\\\" é\",\"n\":7}");

    client
        .post(&url)
        .header(CONTENT_TYPE, "application/vnd.item+json")
        .json(&item)
        .await
        .unwrap();
    assert_eq!(
        wire.next().await.one("content-type"),
        "application/vnd.item+json"
    );

    let form = Form {
        name: "a b",
        tag: "x&y=z",
        city: "Zürich",
    };
    client.post(&url).form(&form).await.unwrap();
    let seen = wire.next().await;
    assert_eq!(
        seen.one("content-type"),
        "application/x-www-form-urlencoded"
    );
    assert_eq!(seen.body, "name=a+b&tag=x%26y%3Dz&city=Z%C3%BCrich");

    client
        .post(&url)
        .header(
            CONTENT_TYPE,
            "application/x-www-form-urlencoded; charset=utf-8",
        )
        .form(&[("k", "v w")])
        .await
        .unwrap();
    let seen = wire.next().await;
    assert_eq!(
        seen.one("content-type"),
        "application/x-www-form-urlencoded; charset=utf-8"
    );
    assert_eq!(seen.body, "k=v+w");
    let map = BTreeMap::from([("b", "2"), ("a", "1")]);
    client.post(&url).form(&map).await.unwrap();
    assert_eq!(wire.next().await.body, "a=1&b=2");

    // What does not serialise fails `send`, before any connection.
    let json = client
        .post(&url)
        .json(&Unserialisable)
        .send()
        .await
        .unwrap_err();
    assert!(json.is_builder(), "{json:?}");
    assert!(json.to_string().contains("JSON"), "{json}");
    let nested = BTreeMap::from([("a", BTreeMap::from([("b", 1)]))]);
    let form = client.post(&url).form(&nested).send().await.unwrap_err();
    assert!(form.is_builder(), "{form:?}");
    assert!(
        std::error::Error::source(&form).is_some(),
        "the cause: {form:?}"
    );
    wire.nothing_more();
    assert_eq!(client.stats().requests, 5);
}

#[tokio::test]
async fn invalid_header_names_and_values_fail_send_without_a_panic() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let url = wire.url("/");
    let builders = [
        client.get(&url).header("bad name", "v"),
        client.get(&url).header("", "v"),
        client.get(&url).header("x-ok", "a\r\nx-injected: 1"),
        client.get(&url).header("x-ok", String::from("nul\0")),
        client.get(&url).header(&b"x-\xff"[..], "v"),
        client.get(&url).header("x-ok", &b"v\n"[..]),
        // A later mistake after an earlier one: the first is kept.
        client
            .get(&url)
            .header("bad name", "v")
            .header("x-ok", "a\nb"),
    ];
    for builder in builders {
        let shown = format!("{builder:?}");
        let err = builder.send().await.unwrap_err();
        assert!(err.is_builder(), "{err:?} from {shown}");
        assert!(err.to_string().starts_with("invalid request: "), "{err}");
        assert!(
            !err.to_string().contains("injected"),
            "no value quoted: {err}"
        );
    }
    let err = client.get(&url).header("x-ok", "a\nb").build().unwrap_err();
    assert!(
        err.to_string().contains("`x-ok`"),
        "names the header: {err}"
    );
    assert_eq!(
        client
            .get(&url)
            .header("bad name", "v")
            .header("x", "\n")
            .build()
            .unwrap_err()
            .to_string(),
        "invalid request: invalid header name"
    );
    wire.nothing_more();
    assert_eq!(wire.server.accepts(), 0);
    assert_eq!(client.stats().requests, 0);
}

#[tokio::test]
async fn a_bad_url_is_an_invalid_url_error_whatever_follows() {
    let client = Client::new().unwrap();
    for url in [
        "not a url",
        "http://exa mple.com/",
        "",
        "http://",
        "/relative/only",
        "ftp://example.com/",
        "http://127.0.0.1:99999/",
    ] {
        let err = client.get(url).send().await.unwrap_err();
        assert!(err.is_invalid_url(), "{url:?}: {err:?}");
        // The rest of a chain does not hide it.
        let err = client
            .post(url)
            .query(&[("a", "b")])
            .timeout(Duration::from_secs(1))
            .body("x")
            .await
            .unwrap_err();
        assert!(err.is_invalid_url(), "{url:?}: {err:?}");
    }
    // A URL that does not parse is the first mistake: a later one does not replace it.
    for url in ["not a url", "http://exa mple.com/", ""] {
        let err = client.get(url).header("bad name", "v").await.unwrap_err();
        assert!(err.is_invalid_url(), "{url:?}: {err:?}");
    }
    let err = client
        .get(&format!("http://user:{SECRET}@exa mple.com/"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_invalid_url());
    let report = format!("{err} {err:?}");
    assert!(!report.contains(SECRET), "{report}");
    assert_eq!(client.stats().pool.created, 0);
}

#[tokio::test]
async fn a_per_request_timeout_overrides_the_clients() {
    let wire = Wire::start().await;
    // Shorter than the client's: a server that never answers fails after it.
    let client = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = client
        .get(&wire.url("/never"))
        .timeout(Duration::from_millis(100))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.timeout_phase(), Some(Phase::Request), "{err:?}");
    assert!(err.to_string().contains("after 100ms"), "{err}");
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(10),
        "{took:?}"
    );

    // Longer than the client's, and zero (none): a server 300 ms late is waited for.
    let client = Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let err = client.get(&wire.url("/slow")).await.unwrap_err();
    assert_eq!(
        err.timeout_phase(),
        Some(Phase::Request),
        "the control: {err:?}"
    );
    for timeout in [Duration::from_secs(30), Duration::ZERO] {
        let response = client
            .get(&wire.url("/slow"))
            .timeout(timeout)
            .await
            .unwrap_or_else(|e| panic!("with {timeout:?}: {e:?}"));
        assert_eq!(response.text().await.unwrap(), "late");
    }

    // The timeout covers the body too, and says which timeout it was.
    let client = Client::new().unwrap();
    let response = client
        .get(&wire.url("/stall"))
        .timeout(Duration::from_millis(100))
        .await
        .unwrap();
    let err = response.bytes().await.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(Phase::Request), "{err:?}");
    assert!(err.to_string().contains("after 100ms"), "{err}");

    // Above the longest accepted: a config error, nothing sent.
    let err = client
        .get(&wire.url("/"))
        .timeout(Duration::from_secs(366 * 24 * 3600))
        .await
        .unwrap_err();
    assert!(err.is_config(), "{err:?}");
    assert_eq!(err.knob(), Some("timeout"), "{err:?}");
}

/// Whether the next request of `client` dials (the last connection was closed).
async fn dials_again(client: &Client, wire: &mut Wire) -> bool {
    let before = wire.server.accepts();
    let response = client.get(&wire.url("/")).await.unwrap();
    assert_eq!(response.text().await.unwrap(), "ok");
    wire.next().await;
    wire.server.accepts() > before
}

#[tokio::test]
async fn a_body_past_the_limit_fails_and_its_connection_is_closed() {
    let mut wire = Wire::start().await;
    // 64 chunks of 1 KiB, far past the limit: the rest must never be read by a reuse.
    let big = wire.url("/chunked/64/1024");

    let client = Client::builder().body_limit(1024).build().unwrap();
    for how in ["bytes", "text", "json"] {
        let response = client.get(&big).await.unwrap();
        wire.next().await;
        let err = match how {
            "bytes" => response.bytes().await.map(drop),
            "text" => response.text().await.map(drop),
            _ => response.json::<Item>().await.map(drop),
        }
        .unwrap_err();
        assert!(err.is_too_large(), "{how}: {err:?}");
        assert!(err.to_string().contains("1024 bytes"), "{err}");
        assert!(
            err.to_string().contains(&wire.server.addr.to_string()),
            "{err}"
        );
        assert!(
            dials_again(&client, &mut wire).await,
            "{how}: the connection was reused"
        );
    }
    // The request's limit in place of the client's: lower, and higher.
    let response = client
        .get(&wire.url("/sized/1024"))
        .body_limit(100)
        .await
        .unwrap();
    wire.next().await;
    assert!(response.bytes().await.unwrap_err().is_too_large());
    let response = client.get(&big).body_limit(64 * 1024).await.unwrap();
    wire.next().await;
    assert_eq!(response.bytes().await.unwrap().len(), 64 * 1024);
    assert!(
        !dials_again(&client, &mut wire).await,
        "a body read whole is reused"
    );

    // Per request on a client without a limit; exactly the limit is fine.
    let client = Client::new().unwrap();
    let response = client.get(&big).body_limit(64 * 1024 - 1).await.unwrap();
    wire.next().await;
    assert!(response.text().await.unwrap_err().is_too_large());
    assert!(dials_again(&client, &mut wire).await);
    let response = client.get(&big).body_limit(64 * 1024).await.unwrap();
    wire.next().await;
    assert_eq!(response.text().await.unwrap().len(), 64 * 1024);
    // `bytes_limited` names its own limit, whatever the request's.
    let response = client.get(&big).body_limit(1).await.unwrap();
    wire.next().await;
    assert_eq!(
        response.bytes_limited(1 << 20).await.unwrap().len(),
        64 * 1024
    );
}

#[tokio::test]
async fn a_small_body_past_the_limit_fails_and_the_next_request_is_served() {
    let mut wire = Wire::start().await;
    let client = Client::builder().body_limit(100).build().unwrap();
    let response = client.get(&wire.url("/sized/2048")).await.unwrap();
    wire.next().await;
    assert!(response.bytes().await.unwrap_err().is_too_large());
    // The whole body was read before the limit was checked: reusing the connection is
    // harmless, and whichever happened, the next answer is the right one.
    let reused = !dials_again(&client, &mut wire).await;
    eprintln!("a one-chunk body past the limit: connection reused = {reused}");
}

#[tokio::test]
async fn json_decodes_and_invalid_json_is_a_decode_error_naming_the_origin() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let item: Item = client
        .get(&wire.url("/json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        item,
        Item {
            name: "a".into(),
            n: 7
        }
    );
    wire.next().await;
    for path in ["/not-json", "/wrong-shape", "/bad-utf8"] {
        let err = client
            .get(&wire.url(path))
            .await
            .unwrap()
            .json::<Item>()
            .await
            .unwrap_err();
        wire.next().await;
        assert!(err.is_decode(), "{path}: {err:?}");
        let origin = format!("http://{}", wire.server.addr);
        assert_eq!(
            err.to_string(),
            format!("decoding the response body from {origin} as json failed")
        );
        assert!(
            std::error::Error::source(&err).is_some(),
            "serde's cause: {err:?}"
        );
    }
    assert_eq!(
        wire.server.accepts(),
        1,
        "a body read whole keeps its connection"
    );
}

#[tokio::test]
async fn error_for_status_fails_on_4xx_and_5xx_and_the_connection_is_reused() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    for (path, status) in [
        ("/status/404", StatusCode::NOT_FOUND),
        ("/status-chunked/500", StatusCode::INTERNAL_SERVER_ERROR),
        ("/status/400", StatusCode::BAD_REQUEST),
        ("/status/503", StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let response = client.get(&wire.url(path)).await.unwrap();
        wire.next().await;
        assert!(response.error_for_status_ref().is_err());
        let err = response.error_for_status().unwrap_err();
        assert!(err.is_status(), "{err:?}");
        assert_eq!(err.status(), Some(status));
        assert_eq!(
            err.to_string(),
            format!("http status {status} from http://{}", wire.server.addr)
        );
        // The unread 10 KiB were drained: the connection serves the next request.
        assert!(
            !dials_again(&client, &mut wire).await,
            "{path}: the connection was closed"
        );
    }
    for path in ["/status/200", "/status/204", "/status/302", "/status/399"] {
        let response = client
            .get(&wire.url(path))
            .redirect(Policy::none())
            .await
            .unwrap();
        wire.next().await;
        let status = response.status();
        assert!(response.error_for_status_ref().is_ok(), "{path}");
        assert_eq!(response.error_for_status().unwrap().status(), status);
    }
    assert_eq!(wire.server.accepts(), 1);
    assert!(client.stats().drained >= 1, "{:?}", client.stats());
    // Only a status error has a status.
    assert_eq!(client.get("").await.unwrap_err().status(), None);
}

#[tokio::test]
async fn text_replaces_invalid_utf8() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let text = client
        .get(&wire.url("/bad-utf8"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "ok \u{FFFD}\u{FFFD} end");
    wire.next().await;
}

#[tokio::test]
async fn version_and_redirect_apply_to_one_request() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let response = client
        .get(&wire.url("/"))
        .version(Version::HTTP_10)
        .await
        .unwrap();
    response.bytes().await.unwrap();
    assert_eq!(wire.next().await.version, Version::HTTP_10);

    // The client follows (the default); one request does not, and the other way round.
    let response = client.get(&wire.url("/redirect")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().path(), "/");
    assert_eq!(wire.next().await.target, "/redirect");
    assert_eq!(wire.next().await.target, "/");
    let response = client
        .get(&wire.url("/redirect"))
        .redirect(Policy::none())
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(wire.next().await.target, "/redirect");
    let err = client
        .get(&wire.url("/redirect"))
        .redirect(Policy::limited(0))
        .await
        .unwrap_err();
    assert!(err.is_redirect(), "{err:?}");
    wire.next().await;
    let client = Client::builder().redirect(Policy::none()).build().unwrap();
    let response = client
        .get(&wire.url("/redirect"))
        .redirect(Policy::limited(1))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

#[tokio::test]
async fn response_debug_shows_header_names_never_values() {
    let wire = Wire::start().await;
    let client = Client::new().unwrap();
    let response = client.get(&wire.url("/cookie")).await.unwrap();
    assert!(
        response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains(SECRET)
    );
    let shown = format!("{response:?} {response:#?}");
    assert!(shown.contains("set-cookie"), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
}

/// Polls `fut` once, outside any runtime, catching a panic.
fn poll_once<F: Future>(fut: F) -> Result<Poll<F::Output>, String> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))).map_err(
        |panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        },
    )
}

/// A request polled outside any runtime fails at once with knob `runtime`.
fn fails_for_the_runtime(
    what: &str,
    fut: impl Future<Output = Result<pool_http::Response, Error>>,
) {
    match poll_once(fut) {
        Ok(Poll::Ready(Err(e))) => {
            assert!(e.is_config(), "{what}: {e:?}");
            assert_eq!(e.knob(), Some("runtime"), "{what}: {e:?}");
        }
        Ok(Poll::Ready(Ok(_))) => panic!("{what}: served outside a runtime"),
        Ok(Poll::Pending) => panic!("{what}: pending outside a runtime, where nothing wakes it"),
        Err(panic) => panic!("{what}: panicked instead of failing: {panic}"),
    }
}

#[test]
fn a_request_outside_any_runtime_fails_with_knob_runtime() {
    let client = Client::new().unwrap();
    let url = "http://127.0.0.1:9/";
    fails_for_the_runtime("send", client.get(url).send());
    fails_for_the_runtime("await", client.get(url).into_future());
    fails_for_the_runtime(
        "request",
        client.request(http::Request::get(url).body(()).unwrap()),
    );
}

#[test]
fn a_request_with_a_timeout_outside_any_runtime_fails_with_knob_runtime() {
    let url = "http://127.0.0.1:9/";
    let client = Client::new().unwrap();
    fails_for_the_runtime(
        "per-request timeout",
        client.get(url).timeout(Duration::from_secs(1)).send(),
    );
    let client = Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    fails_for_the_runtime("client timeout", client.get(url).send());
}

/// A server on a runtime of its own, on its own threads: it outlives the client's runtimes.
fn server_elsewhere() -> (tokio::runtime::Runtime, Server) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(Server::start(|req| async move {
        match req.uri().path() {
            "/big" => reply(200, chunked(64, 1024)),
            _ => reply(200, bytes_body(b"ok")),
        }
    }));
    (rt, server)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn clients_built_outside_a_runtime_work_in_one_made_later() {
    let (_server_rt, server) = server_elsewhere();
    let a = Client::new().unwrap();
    let b = Client::builder()
        .max_conns_per_host(2)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(a.stats().pool.created, 0);
    assert!(format!("{a:?}").contains("Client"));
    runtime().block_on(async {
        for client in [&a, &b] {
            let response = client.get(&server.url("/")).await.unwrap();
            assert_eq!(response.text().await.unwrap(), "ok");
            assert_eq!(client.stats().pool.created, 1);
        }
    });
    assert_eq!(server.accepts(), 2);
}

/// The pattern of a `static CLIENT: LazyLock<Client>` shared by `#[tokio::test]`s: each
/// test has a runtime of its own, and the pool started on the first one's.
#[test]
fn a_client_outlives_the_runtime_of_its_first_request() {
    let (_server_rt, server) = server_elsewhere();
    let client = Client::new().unwrap();
    let get = |client: &Client| {
        let url = server.url("/");
        let client = client.clone();
        async move {
            let outcome = tokio::time::timeout(Duration::from_secs(10), async {
                client.get(&url).await?.text().await
            })
            .await;
            outcome.unwrap_or_else(|_| panic!("stuck for 10 s"))
        }
    };
    assert_eq!(runtime().block_on(get(&client)).unwrap(), "ok");
    // That runtime is gone, and the pool's tasks with it.
    let second = runtime().block_on(get(&client));
    match second {
        Ok(text) => assert_eq!(text, "ok"),
        Err(e) => panic!("the second runtime's request failed: {e:?}"),
    }
}

#[test]
fn close_before_the_first_request_fails_later_requests_as_closed() {
    let (_server_rt, server) = server_elsewhere();
    let client = Client::new().unwrap();
    client.close();
    runtime().block_on(async {
        client.close_and_wait(Duration::from_secs(1)).await.unwrap();
        for _ in 0..2 {
            let err = client.get(&server.url("/")).await.unwrap_err();
            assert!(err.is_closed(), "{err:?}");
            assert_eq!(err.to_string(), "the client is closed");
        }
    });
    assert_eq!(server.accepts(), 0);
}

#[test]
fn a_response_dropped_outside_its_runtime_does_not_panic() {
    let (_server_rt, server) = server_elsewhere();
    let client = Client::new().unwrap();
    let rt = runtime();
    // Unread bodies, with a deadline (a timer) and without, dropped outside `block_on`.
    let with_deadline = rt
        .block_on(
            client
                .get(&server.url("/"))
                .timeout(Duration::from_secs(5))
                .send(),
        )
        .unwrap();
    let plain = rt.block_on(client.get(&server.url("/")).send()).unwrap();
    drop(with_deadline);
    drop(plain);
    let text = rt
        .block_on(async { client.get(&server.url("/")).await?.text().await })
        .unwrap();
    assert_eq!(text, "ok");
    let stats = client.stats();
    assert_eq!(stats.drained + stats.drain_failed, 2, "{stats:?}");
}
