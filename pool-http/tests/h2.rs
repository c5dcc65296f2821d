//! HTTP/2 with prior knowledge (h2c): one connection carries concurrent requests as streams,
//! counts once against the per-host limit, and a GOAWAY'd connection takes no new streams.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper::Response;
use pool_http::{Client, Origin};
use support::{Server, eventually, full};

fn h2_client() -> pool_http::ClientBuilder {
    Client::builder().http2_prior_knowledge(true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_share_one_connection_counted_once() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (open_gate, gate) = tokio::sync::watch::channel(false);
    let seen = in_flight.clone();
    let server = Server::start_h2(move |req| {
        let (seen, mut gate) = (seen.clone(), gate.clone());
        async move {
            assert_eq!(req.version(), hyper::Version::HTTP_2);
            seen.fetch_add(1, Ordering::SeqCst);
            let _ = gate.wait_for(|open| *open).await;
            seen.fetch_sub(1, Ordering::SeqCst);
            Response::new(full(100))
        }
    })
    .await;
    // A per-host limit of one: with HTTP/1.1 these 64 requests would take turns.
    let client = h2_client().max_conns_per_host(1).build().unwrap();
    let url = server.url("/");
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move {
                let body = client.get(&url).await.unwrap().into_body();
                body.bytes().await.unwrap().len()
            })
        })
        .collect();
    eventually("64 requests on the server at once", || {
        in_flight.load(Ordering::SeqCst) == 64
    })
    .await;
    let stats = client.stats();
    assert_eq!(stats.streams, 64, "{stats:?}");
    assert_eq!((stats.pool.open, stats.pool.in_use), (1, 1), "{stats:?}");
    let origin = Origin::from_url(&url).unwrap();
    assert_eq!(client.host_streams(&origin), 64);
    open_gate.send(true).unwrap();
    for t in tasks {
        assert_eq!(t.await.unwrap(), 100);
    }
    assert_eq!(server.accepts(), 1);
    let stats = client.stats();
    assert_eq!(stats.streams, 0, "{stats:?}");
    assert_eq!(
        (stats.pool.idle, stats.pool.in_use),
        (1, 0),
        "idle once the last stream ended"
    );
}

#[tokio::test]
async fn sequential_requests_and_dropped_bodies_keep_the_connection() {
    let server = Server::start_h2(|_| async { Response::new(full(64 * 1024)) }).await;
    let client = h2_client().build().unwrap();
    for i in 0..20 {
        let response = client.get(&server.url("/")).await.unwrap();
        if i % 2 == 0 {
            assert_eq!(response.into_body().bytes().await.unwrap().len(), 64 * 1024);
        } else {
            drop(response); // costs only the stream (reset), never the connection
        }
    }
    assert_eq!(server.accepts(), 1);
    assert_eq!(client.stats().pool.created, 1);
}

#[tokio::test]
async fn a_connection_that_got_goaway_takes_no_new_requests() {
    let server = Server::start_h2(|_| async { Response::new(full(10)) }).await;
    let client = h2_client().build().unwrap();
    let url = server.url("/");
    support::bytes(&client, &url).await;
    server.goaway();
    eventually("the client saw the GOAWAY", || server.live() == 0).await;
    for _ in 0..3 {
        let body = client.get(&url).await.unwrap().into_body();
        assert_eq!(body.bytes().await.unwrap().len(), 10);
    }
    assert_eq!(server.accepts(), 2, "one new connection after the GOAWAY");
}

#[tokio::test]
async fn an_h2_dial_failure_reaches_every_waiter_and_the_next_request_dials_again() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let client = h2_client().build().unwrap();
    let url = format!("http://{addr}/");
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, url) = (client.clone(), url.clone());
            tokio::spawn(async move { client.get(&url).await.unwrap_err() })
        })
        .collect();
    for t in tasks {
        let err = t.await.unwrap();
        assert!(err.is_connect(), "{err:?}");
    }
    assert_eq!(client.stats().streams, 0);
    assert_eq!(client.stats().pool.open, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goaway_with_a_stream_in_flight_sends_new_requests_elsewhere() {
    let (server, client, open_gate, slow) = one_slow_stream().await;
    server.goaway();
    // The GOAWAY arrives on its own time: until the client has it, a request may still go to
    // the old connection (served, or handed back unsent and sent again on a new one).
    for _ in 0..1000 {
        let body = client.get(&server.url("/fast")).await.unwrap().into_body();
        assert_eq!(body.bytes().await.unwrap().len(), 10);
        if server.accepts() == 2 {
            break;
        }
    }
    assert_eq!(
        server.accepts(),
        2,
        "a new connection once the GOAWAY arrived"
    );
    // From then on the old connection takes no new stream.
    let bounced = client.stats().retried;
    for _ in 0..5 {
        let body = client.get(&server.url("/fast")).await.unwrap().into_body();
        assert_eq!(body.bytes().await.unwrap().len(), 10);
    }
    assert_eq!(
        client.stats().retried,
        bounced,
        "no new stream offered to the old connection"
    );
    assert_eq!(server.accepts(), 2);
    assert_eq!(
        client.stats().streams,
        1,
        "the slow stream is still open on the old one"
    );
    open_gate.send(true).unwrap();
    assert_eq!(
        slow.await.unwrap().unwrap().len(),
        10,
        "the in-flight stream finished"
    );
    eventually("the old connection closed", || server.live() == 1).await;
}

/// What a hand-driven HTTP/2 server saw of one request: `:authority` and the headers.
type Seen = (Option<String>, http::HeaderMap);

/// An HTTP/2 server driven by hand with the `h2` crate (hyper's server would not show a bad
/// `:authority` as it came): reports what each request carried, answers 200 with no body.
async fn capturing_h2_server() -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Seen>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let Ok(mut conn) = h2::server::handshake(tcp).await else {
                    return;
                };
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    let authority = req.uri().authority().map(|a| a.to_string());
                    let _ = tx.send((authority, req.headers().clone()));
                    let _ = respond.send_response(http::Response::new(()), true);
                }
            });
        }
    });
    (addr, rx)
}

#[tokio::test]
async fn url_userinfo_never_reaches_the_wire_and_becomes_basic_auth() {
    let (addr, mut seen) = capturing_h2_server().await;
    let client = h2_client().build().unwrap();
    let port = addr.port();
    // "user:p@ss" percent-encoded in the URL, as URLs carry it.
    let url = format!("http://user:p%40ss@127.0.0.1:{port}/private");
    assert_eq!(client.get(&url).await.unwrap().status(), 200);
    let (authority, headers) = seen.recv().await.unwrap();
    assert_eq!(authority.as_deref(), Some(&*format!("127.0.0.1:{port}")));
    assert_eq!(
        headers.get("authorization").unwrap(),
        // base64("user:p@ss")
        "Basic dXNlcjpwQHNz"
    );
    assert!(
        !format!("{headers:?}").contains("user:"),
        "no userinfo in any header: {headers:?}"
    );
    // An Authorization of the caller's own is kept; the userinfo still goes nowhere.
    let req = http::Request::get(&url)
        .header("authorization", "Bearer token")
        .body(())
        .unwrap();
    assert_eq!(client.request(req).await.unwrap().status(), 200);
    let (authority, headers) = seen.recv().await.unwrap();
    assert_eq!(authority.as_deref(), Some(&*format!("127.0.0.1:{port}")));
    assert_eq!(headers.get("authorization").unwrap(), "Bearer token");
    // A user without a password, as Go: "user:".
    let url = format!("http://only%20me@127.0.0.1:{port}/");
    assert_eq!(client.get(&url).await.unwrap().status(), 200);
    let (authority, headers) = seen.recv().await.unwrap();
    assert_eq!(authority.as_deref(), Some(&*format!("127.0.0.1:{port}")));
    // base64("only me:")
    assert_eq!(headers.get("authorization").unwrap(), "Basic b25seSBtZTo=");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_stops_new_http2_requests_and_close_and_wait_returns_once_streams_finish() {
    let (server, client, open_gate, slow) = one_slow_stream().await;
    client.close();
    for _ in 0..3 {
        let err = client.get(&server.url("/fast")).await.unwrap_err();
        assert!(err.is_closed(), "{err:?}");
    }
    assert_eq!(client.stats().streams, 1, "nothing new went out");
    let waiting = {
        let client = client.clone();
        tokio::spawn(async move {
            client
                .close_and_wait(std::time::Duration::from_secs(10))
                .await
        })
    };
    open_gate.send(true).unwrap();
    assert_eq!(
        slow.await.unwrap().unwrap().len(),
        10,
        "the stream in flight finished"
    );
    waiting.await.unwrap().unwrap();
    assert_eq!(client.stats().pool.open, 0);
    eventually("the connection closed", || server.live() == 0).await;
    assert_eq!(server.accepts(), 1);
}

/// An h2 server whose `/slow` answers once the gate opens (10 bytes, as every path), a client,
/// and a request to `/slow` in flight: its stream is open when this returns.
async fn one_slow_stream() -> (
    Server,
    pool_http::Client,
    tokio::sync::watch::Sender<bool>,
    tokio::task::JoinHandle<Result<bytes::Bytes, pool_http::Error>>,
) {
    let (open_gate, gate) = tokio::sync::watch::channel(false);
    let server = Server::start_h2(move |req| {
        let mut gate = gate.clone();
        async move {
            if req.uri().path() == "/slow" {
                let _ = gate.wait_for(|open| *open).await;
            }
            Response::new(full(10))
        }
    })
    .await;
    let client = h2_client().build().unwrap();
    let slow = {
        let (client, url) = (client.clone(), server.url("/slow"));
        tokio::spawn(async move { client.get(&url).await.unwrap().into_body().bytes().await })
    };
    eventually("the slow stream is open", || client.stats().streams == 1).await;
    (server, client, open_gate, slow)
}
