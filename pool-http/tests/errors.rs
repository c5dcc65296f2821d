//! Error messages, one policy as hyper's `error.rs`: `Display` says this level's fact with
//! its context (the origin, never URL userinfo; the phase; the duration), `source()` gives
//! the cause, and the chain joined as anyhow's `{:#}` does prints nothing twice. The whole
//! rendered chain is checked for a refused connection, a TLS handshake failure and timeout,
//! the timeouts of a request, and an invalid URL with userinfo (the examples of `Error`'s
//! docs). Also: a port that is present but not 1 to 65535 is an invalid URL, never the
//! scheme's default port.

mod support;

use std::time::Duration;

use pool_http::{Client, Origin, Phase};
use support::{Raw, Server, full, read_request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const SECRET: &str = "S3cr3tPW";

/// The chain joined with ": " (anyhow's `{:#}`), after checking that no level is empty,
/// repeats another or contains another's whole text, and that no secret shows anywhere.
fn report(e: &pool_http::Error) -> String {
    let levels = support::levels(e);
    for (i, a) in levels.iter().enumerate() {
        assert!(!a.is_empty(), "empty level {i} in {levels:?}");
        for (j, b) in levels.iter().enumerate() {
            assert!(
                i == j || !a.contains(b.as_str()),
                "level {j} `{b}` printed again in level {i} `{a}`: {levels:?}"
            );
        }
    }
    let joined = levels.join(": ");
    for shown in [&joined, &format!("{e:?}")] {
        assert!(!shown.contains(SECRET), "secret printed: {shown}");
    }
    joined
}

/// A port on loopback where nothing listens.
async fn refused_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// A server that reads the request and writes `bytes` (then keeps the connection open).
async fn answering_with(bytes: Vec<u8>) -> Raw {
    let bytes = std::sync::Arc::new(bytes);
    Raw::start(move |mut s, _| {
        let bytes = bytes.clone();
        async move {
            read_request(&mut s).await;
            let _ = s.write_all(&bytes).await;
            let _ = s.flush().await;
            let _ = s.read(&mut [0u8; 1]).await;
        }
    })
    .await
}

#[tokio::test]
async fn a_port_out_of_range_is_an_invalid_url_never_the_default_port() {
    let client = Client::new().unwrap();
    for url in [
        "http://127.0.0.1:65536/",
        "https://127.0.0.1:70000/",
        "http://127.0.0.1:99999999999/",
        "http://127.0.0.1:-1/",
        "http://127.0.0.1:8a/",
        "http://127.0.0.1:+80/",
        "http://[::1]:65536/",
        "http://user:S3cr3tPW@127.0.0.1:65536/",
    ] {
        let err = Origin::from_url(url).unwrap_err();
        assert!(err.is_invalid_url(), "{url}: {err:?}");
        let text = report(&err);
        assert!(text.contains("port"), "{url}: {text}");
        // Through the client: an invalid URL, not a connection to port 80 or 443.
        let err = client.get(url).await.unwrap_err();
        assert!(err.is_invalid_url() && !err.is_connect(), "{url}: {err:?}");
        report(&err);
    }
    // Present but empty means the default (RFC 3986, as Go); digits with leading zeros are
    // the number they spell.
    for (url, port) in [
        ("http://h:/", 80),
        ("https://h:/", 443),
        ("http://[::1]:/", 80),
        ("http://h:0080/", 80),
        ("http://h:65535/", 65535),
    ] {
        assert_eq!(Origin::from_url(url).unwrap().port(), port, "{url}");
    }
    let server = Raw::answering("hello").await;
    let url = format!("http://127.0.0.1:0{}/", server.addr.port());
    let body = client.get(&url).await.unwrap().into_body().text().await;
    assert_eq!(body.unwrap(), "hello");
}

#[tokio::test]
async fn no_error_prints_url_userinfo() {
    let client = Client::new().unwrap();
    let refused = refused_port().await;
    for url in [
        "http://user:S3cr3tPW@h:65536/".to_owned(),
        "http://user:S3cr3tPW@h:99/a b".to_owned(),
        "ftp://user:S3cr3tPW@h/".to_owned(),
        "http://user:S3cr3tPW@/path".to_owned(),
        "user:S3cr3tPW@h/path".to_owned(),
        "http://:S3cr3tPW@h:0/".to_owned(),
    ] {
        let err = client.get(&url).await.unwrap_err();
        assert!(err.is_invalid_url(), "{url}: {err:?}");
        let text = report(&err);
        assert!(text.starts_with("invalid url `"), "{text}");
        assert!(Origin::from_url(&url).is_err());
    }
    // A valid URL with userinfo that fails later says where, without it.
    let url = format!("http://user:S3cr3tPW@127.0.0.1:{refused}/");
    let err = client.get(&url).await.unwrap_err();
    assert!(err.is_connect_refused(), "{err:?}");
    report(&err);
}

#[tokio::test]
async fn a_password_with_a_slash_question_mark_or_hash_is_never_printed() {
    // RFC 3986 ends the authority at the first `/`, `?` or `#`, so such a password looks
    // like a path to a parser: the URL fails, and its message must still cut the userinfo.
    let client = Client::new().unwrap();
    for password in ["S3cr3tPW/x", "ab/S3cr3tPW", "S3cr3tPW?q", "S3cr3tPW#f"] {
        let url = format!("http://u:{password}@h/");
        let err = client.get(&url).await.unwrap_err();
        assert!(err.is_invalid_url(), "{url}: {err:?}");
        let text = report(&err);
        assert!(text.starts_with("invalid url `http://"), "{text}");
        assert!(!text.contains("ab/") && !text.contains("?q"), "{text}");
        let err = Origin::from_url(&url).unwrap_err();
        report(&err);
    }
    for url in [
        format!("http://svc:ab/{SECRET}@proxy:3128"),
        format!("http://svc:{SECRET}/cd@proxy:3128"),
        format!("svc:{SECRET}?x@proxy:3128"),
        format!("http://svc:{SECRET}#x@proxy:3128"),
        format!("http://svc:1{SECRET}#@proxy:3128"),
    ] {
        let err = pool_http::Proxy::all(&url).unwrap_err();
        assert!(err.is_invalid_url(), "{url}: {err:?}");
        let text = report(&err);
        assert!(text.contains("proxy:3128"), "{text}");
        let err = pool_http::Proxy::https(&url).unwrap_err();
        report(&err);
    }
}

#[tokio::test]
async fn a_refused_port_says_could_not_connect_and_why_once() {
    let port = refused_port().await;
    let client = Client::new().unwrap();
    let err = client
        .get(&format!("http://127.0.0.1:{port}/x"))
        .await
        .unwrap_err();
    assert!(err.is_connect_refused(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!("could not connect to http://127.0.0.1:{port}")
    );
    // The socket's own words, as this platform says them.
    let os = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap_err()
        .to_string();
    assert_eq!(
        report(&err),
        format!(
            "could not connect to http://127.0.0.1:{port}: pool failed to create a connection: \
             connect to 127.0.0.1:{port} refused: {os}"
        )
    );
}

#[tokio::test]
async fn a_refused_port_behind_userinfo_renders_the_same_chain_without_it() {
    let port = refused_port().await;
    let err = Client::new()
        .unwrap()
        .get(&format!("http://user:{SECRET}@127.0.0.1:{port}/x"))
        .await
        .unwrap_err();
    assert!(err.is_connect_refused(), "{err:?}");
    let text = report(&err);
    assert!(
        text.starts_with(&format!(
            "could not connect to http://127.0.0.1:{port}: pool failed to create a connection: \
             connect to 127.0.0.1:{port} refused: "
        )),
        "{text}"
    );
}

#[tokio::test]
async fn an_invalid_url_with_userinfo_renders_one_level_without_it() {
    let url = format!("http://user:{SECRET}@example.com:99999/path?q=1");
    let expected = "invalid url `http://example.com:99999/path?q=1`: has the port `99999`: \
                    ports are 1 to 65535";
    let err = Origin::from_url(&url).unwrap_err();
    assert_eq!(report(&err), expected);
    let err = Client::new().unwrap().get(&url).await.unwrap_err();
    assert!(err.is_invalid_url(), "{err:?}");
    assert_eq!(report(&err), expected);
    assert_eq!(support::levels(&err).len(), 1, "nothing caused it");
}

#[tokio::test]
async fn a_tls_handshake_failure_renders_where_and_why_once() {
    let (server, _root) =
        Server::start_tls(&[b"http/1.1"], |_| async { hyper::Response::new(full(1)) }).await;
    let (_other, other_root) =
        Server::start_tls(&[b"http/1.1"], |_| async { hyper::Response::new(full(1)) }).await;
    let client = Client::builder()
        .tls(support::trusting(other_root))
        .build()
        .unwrap();
    let url = format!("https://user:{SECRET}@{}/", server.addr);
    let err = client.get(&url).await.unwrap_err();
    assert!(err.is_tls() && !err.is_timeout(), "{err:?}");
    let levels = support::levels(&err);
    let addr = server.addr;
    assert_eq!(
        levels[..3],
        [
            format!("could not connect to https://{addr}"),
            "pool failed to create a connection".to_owned(),
            format!("tls handshake with {addr} failed"),
        ],
        "{levels:?}"
    );
    // Then rustls says why (here `BadSignature`: the other root has the same name), once.
    report(&err);
    assert_eq!(levels.len(), 4, "{levels:?}");
    assert!(
        levels[3].starts_with("invalid peer certificate: "),
        "{levels:?}"
    );
}

#[tokio::test]
async fn a_tls_handshake_timeout_renders_where_and_after_how_long() {
    // Reads the ClientHello, never answers.
    let silent = Raw::start(|mut s, _| async move {
        let mut buf = [0u8; 1024];
        while s.read(&mut buf).await.is_ok_and(|n| n > 0) {}
    })
    .await;
    let (_unused, root) =
        Server::start_tls(&[b"http/1.1"], |_| async { hyper::Response::new(full(1)) }).await;
    let client = Client::builder()
        .tls(support::trusting(root))
        .tls_handshake_timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let err = client
        .get(&format!("https://{}/", silent.addr))
        .await
        .unwrap_err();
    assert_eq!(err.timeout_phase(), Some(Phase::TlsHandshake), "{err:?}");
    let addr = silent.addr;
    assert_eq!(
        report(&err),
        format!(
            "could not connect to https://{addr}: pool failed to create a connection: \
             tls handshake with {addr} timed out after 150ms"
        )
    );
}

#[tokio::test]
async fn a_response_header_too_large_says_so_at_this_level() {
    let mut head = b"HTTP/1.1 200 OK\r\nx-big: ".to_vec();
    head.resize(head.len() + 600 * 1024, b'a');
    head.extend_from_slice(b"\r\ncontent-length: 0\r\n\r\n");
    let server = answering_with(head).await;
    let err = Client::new()
        .unwrap()
        .get(&server.url("/"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("response header from http://{} too large", server.addr)
    );
    report(&err);
}

#[tokio::test]
async fn a_malformed_content_length_says_invalid_response_and_why() {
    let server =
        answering_with(b"HTTP/1.1 200 OK\r\ncontent-length: 12abc\r\n\r\nhello".to_vec()).await;
    let err = Client::new()
        .unwrap()
        .get(&server.url("/"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("invalid response from http://{}", server.addr)
    );
    let text = report(&err);
    assert!(
        text.to_ascii_lowercase().contains("content-length"),
        "{text}"
    );
}

#[tokio::test]
async fn timeouts_name_the_origin_the_phase_and_the_duration() {
    // The head is never sent.
    let silent = answering_with(Vec::new()).await;
    let client = Client::builder()
        .response_header_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let err = client.get(&silent.url("/")).await.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(Phase::ResponseHeader));
    assert_eq!(
        report(&err),
        format!(
            "request to http://{} timed out after 100ms waiting for the response header",
            silent.addr
        ),
        "one level: the timeout is the fact, nothing caused it"
    );

    let client = Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let err = client.get(&silent.url("/")).await.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(Phase::Request));
    let whole = format!(
        "request to http://{} timed out after 150ms over the whole request",
        silent.addr
    );
    assert_eq!(report(&err), whole);

    // The body stalls: the same timeout, met while reading it.
    let stalled =
        answering_with(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc".to_vec()).await;
    let mut body = client.get(&stalled.url("/")).await.unwrap().into_body();
    assert_eq!(&body.chunk().await.unwrap().unwrap()[..], b"abc");
    let err = body.chunk().await.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(Phase::Request));
    assert_eq!(
        err.to_string(),
        format!(
            "request to http://{} timed out after 150ms over the whole request",
            stalled.addr
        )
    );
    report(&err);
}

#[tokio::test]
async fn a_body_cut_short_says_where_and_why_once() {
    let server = Raw::start(|mut s, _| async move {
        read_request(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
            .await;
        let _ = s.flush().await;
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
    })
    .await;
    let client = Client::new().unwrap();
    let body = client.get(&server.url("/")).await.unwrap().into_body();
    let err = body.bytes().await.unwrap_err();
    assert!(err.is_body(), "{err:?}");
    assert_eq!(
        err.to_string(),
        format!(
            "reading the response body from http://{} failed",
            server.addr
        )
    );
    report(&err);
}

#[tokio::test]
async fn close_and_wait_past_its_deadline_says_so() {
    let server = Raw::answering("hello").await;
    let client = Client::new().unwrap();
    let held = client.get(&server.url("/")).await.unwrap();
    let err = client
        .close_and_wait(Duration::from_millis(50))
        .await
        .unwrap_err();
    assert_eq!(err.timeout_phase(), Some(Phase::Close));
    assert_eq!(
        err.to_string(),
        "closing the client timed out after 50ms: connections still in use"
    );
    report(&err);
    let err = client.get(&server.url("/")).await.unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    assert_eq!(err.to_string(), "the client is closed");
    report(&err);
    drop(held);
}

#[tokio::test]
async fn config_errors_name_the_knob_once() {
    let err = Client::builder()
        .connect_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(
        report(&err),
        "pool-http config error: `connect_timeout` must be above zero"
    );
}
