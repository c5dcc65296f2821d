//! RELIABILITY.md's HTTP scenarios: idle connection closed by the server, reset mid-body, a
//! server that never answers, connect refused, connect timeout, bad URLs; and user code
//! panicking with a body in hand.

mod support;

use std::time::Duration;

use pool_http::redirect::Policy;
use pool_http::{Client, Phase};
use support::{Raw, Server, eventually, read_request, respond};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn an_idle_connection_the_server_closed_is_replaced_and_the_request_succeeds() {
    // Each connection answers one request with keep-alive, then the server closes it.
    let server = Raw::start(|mut s, _| async move {
        if read_request(&mut s).await.is_some() {
            respond(&mut s, "hello").await;
        }
    })
    .await;
    let client = Client::new().unwrap();
    for _ in 0..3 {
        let text = support::text(&client, &server.url("/")).await;
        assert_eq!(text, "hello");
    }
    assert_eq!(server.accepts(), 3, "each request on a new connection");
}

/// A raw server whose connection `n` answers one request "hello" with keep-alive; then each
/// connection waits for `close` to say so (connection 0 only, or all), and closes, first with
/// an unasked `408` when `unasked_408`. Connections told nothing go on serving.
async fn closing_when_told(
    close: tokio::sync::watch::Receiver<bool>,
    only_first: bool,
    unasked_408: bool,
    together: Option<std::sync::Arc<tokio::sync::Barrier>>,
) -> Raw {
    Raw::start(move |mut s, n| {
        let (mut close, together) = (close.clone(), together.clone());
        async move {
            if read_request(&mut s).await.is_none() {
                return;
            }
            if let Some(together) = together {
                together.wait().await;
            }
            respond(&mut s, "hello").await;
            if n == 0 || !only_first {
                let _ = close.wait_for(|c| *c).await;
                if unasked_408 {
                    let _ = s
                        .write_all(b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n\r\n")
                        .await;
                }
                return;
            }
            while read_request(&mut s).await.is_some() {
                respond(&mut s, "hello").await;
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_the_server_closes_leaves_the_pool_at_once() {
    for unasked_408 in [false, true] {
        let (close, told) = tokio::sync::watch::channel(false);
        let server = closing_when_told(told, false, unasked_408, None).await;
        let client = Client::new().unwrap();
        assert_eq!(support::text(&client, &server.url("/")).await, "hello");
        assert_eq!(client.stats().pool.idle, 1);
        assert_eq!(support::client_sockets(server.addr), 1);
        close.send(true).unwrap();
        eventually("the dead connection left the pool", || {
            let s = client.stats().pool;
            s.idle == 0 && s.open == 0
        })
        .await;
        eventually("its socket is closed", || {
            support::client_sockets(server.addr) == 0
        })
        .await;
        let s = client.stats();
        assert_eq!(
            s.pool.created, 1,
            "408 {unasked_408}: nothing dialled to replace it"
        );
        // The next request dials at once: no dead connection is tried first.
        assert_eq!(support::text(&client, &server.url("/")).await, "hello");
        let s = client.stats();
        assert_eq!(
            (s.retried, server.accepts()),
            (0, 2),
            "408 {unasked_408}: {s:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_idle_connection_leaves_and_the_live_ones_stay_in_order() {
    let (close, told) = tokio::sync::watch::channel(false);
    let together = std::sync::Arc::new(tokio::sync::Barrier::new(2));
    let server = closing_when_told(told, true, false, Some(together)).await;
    let client = Client::new().unwrap();
    let url = server.url("/");
    // Two requests at once: two connections, both idle after.
    let (a, b) = tokio::join!(support::text(&client, &url), support::text(&client, &url));
    assert_eq!((a.as_str(), b.as_str()), ("hello", "hello"));
    assert_eq!(client.stats().pool.idle, 2);
    close.send(true).unwrap();
    eventually("the dead connection left the pool", || {
        let s = client.stats().pool;
        s.idle == 1 && s.open == 1
    })
    .await;
    for _ in 0..3 {
        assert_eq!(support::text(&client, &url).await, "hello");
    }
    let s = client.stats();
    assert_eq!((s.pool.created, s.retried), (2, 0), "{s:?}");
    assert_eq!(server.accepts(), 2, "the live connection served on");
    assert_eq!(support::client_sockets(server.addr), 1);
}

#[tokio::test]
async fn a_reset_mid_body_is_a_body_error_and_the_connection_is_not_reused() {
    let server = Raw::start(|mut s, n| async move {
        read_request(&mut s).await;
        if n == 0 {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                .await;
            let _ = s.flush().await;
            // Zero linger: close sends a reset.
            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
            drop(s);
        } else {
            respond(&mut s, "fine").await;
            let _ = s.read(&mut [0u8; 1]).await;
        }
    })
    .await;
    let client = Client::new().unwrap();
    let body = client.get(&server.url("/")).await.unwrap().into_body();
    let err = body.bytes().await.unwrap_err();
    assert!(err.is_body(), "{err:?}");
    assert!(err.is_closed_before_response(), "{err:?}");
    let text = support::text(&client, &server.url("/")).await;
    assert_eq!(text, "fine");
    assert_eq!(server.accepts(), 2);
    let pool = client.stats().pool;
    assert_eq!(pool.open, 1, "the reset connection is gone: {pool:?}");
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_and_its_connection_is_closed() {
    let (closed_tx, mut closed_rx) = tokio::sync::mpsc::unbounded_channel();
    let server = Raw::start(move |mut s, _| {
        let closed_tx = closed_tx.clone();
        async move {
            read_request(&mut s).await;
            // Never answer; report when the client hangs up.
            let _ = s.read(&mut [0u8; 1]).await;
            let _ = closed_tx.send(());
        }
    })
    .await;
    let client = Client::builder()
        .response_header_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let err = client.get(&server.url("/")).await.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(Phase::ResponseHeader), "{err:?}");
    tokio::time::timeout(Duration::from_secs(10), closed_rx.recv())
        .await
        .expect("the client closed the connection")
        .unwrap();
    eventually("the pool let it go", || client.stats().pool.open == 0).await;
}

#[tokio::test]
async fn the_whole_request_timeout_covers_a_stalled_body() {
    let server = Raw::start(|mut s, _| async move {
        read_request(&mut s).await;
        let _ = s
            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly this")
            .await;
        let _ = s.read(&mut [0u8; 1]).await;
    })
    .await;
    let client = Client::builder()
        .timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let response = client.get(&server.url("/")).await.unwrap();
    let err = response.into_body().bytes().await.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(Phase::Request), "{err:?}");
    eventually("the stalled connection closed", || {
        client.stats().pool.open == 0
    })
    .await;
}

#[tokio::test]
async fn connect_refused_says_so() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let client = Client::new().unwrap();
    let err = client.get(&format!("http://{addr}/")).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(err.is_connect_refused(), "{err:?}");
    assert!(!err.is_timeout());
    // The cause is in the source chain (this level says what failed, as hyper's errors do).
    let chain: Vec<String> =
        std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
            .map(ToString::to_string)
            .collect();
    assert!(chain.join(": ").contains("refused"), "{chain:?}");
}

#[tokio::test]
async fn a_listener_with_a_full_backlog_is_a_connect_timeout() {
    // A listener that never accepts, with a backlog of one: once the queue holds a
    // connection, further handshakes are not completed.
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    socket
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    socket.listen(0).unwrap();
    let addr = socket.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    let client = Client::builder()
        .connect_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    // Fill the queue until a connect hangs.
    let err = loop {
        match tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        {
            Ok(Ok(s)) => fillers.push(s),
            _ => break client.get(&format!("http://{addr}/")).await.unwrap_err(),
        }
        assert!(fillers.len() < 64, "the backlog never filled");
    };
    assert_eq!(err.timeout_phase(), Some(Phase::Connect), "{err:?}");
    assert!(err.is_connect(), "{err:?}");
    drop(socket);
}

#[tokio::test]
async fn bad_urls_are_clear_errors() {
    let client = Client::new().unwrap();
    for url in [
        "not a url",
        "ftp://example.com/",
        "/relative/path",
        "http:///nohost",
        "http://h:0/",
    ] {
        let err = client.get(url).await.unwrap_err();
        assert!(err.is_invalid_url(), "{url}: {err:?}");
        assert!(!err.to_string().is_empty());
    }
    let unknown = client
        .get("http://does-not-exist.invalid/")
        .await
        .unwrap_err();
    assert!(unknown.is_dns(), "{unknown:?}");
}

#[tokio::test]
async fn url_userinfo_is_never_sent_over_http1_and_becomes_basic_auth() {
    let (tx, mut heads) = tokio::sync::mpsc::unbounded_channel();
    let server = Raw::start(move |mut s, _| {
        let tx = tx.clone();
        async move {
            while let Some(head) = read_request(&mut s).await {
                let _ = tx.send(head);
                respond(&mut s, "hi").await;
            }
        }
    })
    .await;
    let client = Client::new().unwrap();
    let url = format!("http://user:p%40ss@{}/private", server.addr);
    let response = client.get(&url).await.unwrap();
    assert_eq!(
        response.url().to_string(),
        format!("http://{}/private", server.addr),
        "the response's URL has no userinfo"
    );
    assert_eq!(response.into_body().text().await.unwrap(), "hi");
    let head = heads.recv().await.unwrap();
    assert!(!head.contains("user"), "{head}");
    assert!(!head.contains("p%40ss"), "{head}");
    // base64("user:p@ss")
    assert!(
        head.to_ascii_lowercase()
            .contains("authorization: basic dxnlcjpwqhnz"),
        "{head}"
    );
}

#[tokio::test]
async fn response_url_has_no_userinfo_with_or_without_redirects() {
    let site = support::site::Site::start().await;
    site.redirect("/a", 302, "/b");
    let url = format!("http://u:p@{}/a", site.server.addr);
    // Followed: `/b` resolved against a URL with userinfo must not inherit it.
    let followed = Client::new().unwrap().get(&url).await.unwrap();
    assert_eq!(followed.status(), 200);
    assert_eq!(followed.url().to_string(), site.url("/b"));
    let not_followed = Client::builder()
        .redirect(Policy::none())
        .build()
        .unwrap()
        .get(&url)
        .await
        .unwrap();
    assert_eq!(not_followed.status(), 302);
    assert_eq!(not_followed.url().to_string(), site.url("/a"));
    let seen = site.take();
    let targets: Vec<&str> = seen.iter().map(|s| s.target.as_str()).collect();
    assert_eq!(targets, ["/a", "/b", "/a"]);
    // base64("u:p"), on each first request only.
    let auth: Vec<_> = seen.iter().map(|s| s.header("authorization")).collect();
    assert_eq!(auth, [Some("Basic dTpw"), None, Some("Basic dTpw")]);
}

#[tokio::test]
async fn a_zero_connect_timeout_is_a_config_error() {
    let err = Client::builder()
        .connect_timeout(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(err.is_config());
    assert_eq!(err.knob(), Some("connect_timeout"));
}

#[tokio::test]
async fn ten_thousand_clients_dropped_with_idle_connections_leave_no_fd_behind() {
    let server = Server::sized(16).await;
    let url = server.url("/");
    // Warm up whatever the runtime opens once.
    Client::new()
        .unwrap()
        .get(&url)
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    eventually("warm-up connection closed", || server.live() == 0).await;
    let before = support::open_fds();
    for _ in 0..10_000 {
        let client = Client::new().unwrap();
        support::bytes(&client, &url).await;
        assert_eq!(client.stats().pool.idle, 1);
        drop(client);
    }
    assert_eq!(server.accepts(), 10_001);
    eventually("every connection closed on the server", || {
        server.live() == 0
    })
    .await;
    eventually("fds back to baseline", || support::open_fds() <= before).await;
}

#[tokio::test]
async fn a_close_delimited_http10_body_is_read_whole_and_its_connection_not_reused() {
    // HTTP/1.0 without Content-Length: the body ends when the server closes.
    let server = Raw::start(|mut s, _| async move {
        read_request(&mut s).await;
        let _ = s.write_all(b"HTTP/1.0 200 OK\r\n\r\nuntil the end").await;
    })
    .await;
    let client = Client::new().unwrap();
    for _ in 0..2 {
        let text = support::text(&client, &server.url("/")).await;
        assert_eq!(text, "until the end");
    }
    assert_eq!(server.accepts(), 2);
    assert_eq!(client.stats().not_reusable, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_holding_a_half_read_body_loses_nothing_and_the_client_serves_on() {
    let server = Server::sized(64 * 1024).await;
    let client = Client::new().unwrap();
    let url = server.url("/");
    for _ in 0..5 {
        let (c, u) = (client.clone(), url.clone());
        let t = tokio::spawn(async move {
            let mut body = c.get(&u).await.unwrap().into_body();
            body.chunk().await.unwrap();
            panic!("user code panics holding a half-read body");
        });
        assert!(t.await.unwrap_err().is_panic());
    }
    assert_eq!(support::bytes(&client, &url).await.len(), 64 * 1024);
    eventually("every connection back or closed", || {
        let s = client.stats().pool;
        s.in_use == 0 && s.open == s.idle
    })
    .await;
    let s = client.stats().pool;
    assert!(s.open <= 1 && s.peak_open <= 2, "{s:?}");
    drop(client);
    eventually("server connections closed", || server.live() == 0).await;
}

/// Go's `ResponseHeaderTimeout`: "the amount of time to wait for a server's response headers
/// after fully writing the request (including its body, if any)". An upload that takes longer
/// than the timeout to send, answered at once when it is in, is not a header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn response_header_timeout_starts_after_the_request_body_is_written() {
    let server = Raw::start(|mut s, _| async move {
        // Reads the chunked upload to its last chunk, then answers at once.
        let mut seen = Vec::new();
        let mut buf = [0u8; 4096];
        while !seen.ends_with(b"0\r\n\r\n") {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        respond(&mut s, "got it").await;
    })
    .await;
    let client = Client::builder()
        .response_header_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    // Ten chunks 100 ms apart (the upload's pace, not a synchronisation): a second to send.
    let frames = futures_util::stream::unfold(0u32, |i| async move {
        if i == 10 {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let chunk = hyper::body::Frame::data(bytes::Bytes::from_static(b"chunk"));
        Some((Ok::<_, std::convert::Infallible>(chunk), i + 1))
    });
    let upload = pool_http::RequestBody::stream(http_body_util::StreamBody::new(frames));
    let text = tokio::time::timeout(Duration::from_secs(5), async {
        client
            .post(&server.url("/upload"))
            .body(upload)
            .await?
            .text()
            .await
    })
    .await
    .expect("hung");
    assert_eq!(text.map_err(|e| e.to_string()).as_deref(), Ok("got it"));
}

/// The header timeout waits for the upload: a server that never reads it and never answers
/// ends at the whole-request `timeout`, and one that answers before reading it is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_server_never_reads_ends_at_the_timeout_or_at_its_early_answer() {
    for answers in [false, true] {
        let server = Raw::start(move |mut s, _| async move {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if s.read(&mut byte).await.unwrap_or(0) == 0 {
                    return;
                }
                head.push(byte[0]);
            }
            if answers {
                respond(&mut s, "early").await;
            }
            // The upload is never read.
            std::future::pending::<()>().await;
        })
        .await;
        let client = Client::builder()
            .response_header_timeout(Duration::from_millis(50))
            .timeout(Duration::from_millis(600))
            .build()
            .unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), async {
            let response = client
                .post(&server.url("/upload"))
                .body(support::endless_upload())
                .await?;
            response.text().await
        })
        .await
        .expect("a stalled upload hung past the timeout");
        if answers {
            assert_eq!(got.map_err(|e| e.to_string()).as_deref(), Ok("early"));
        } else {
            let err = got.unwrap_err();
            assert_eq!(err.timeout_phase(), Some(Phase::Request), "{err:?}");
        }
    }
}
