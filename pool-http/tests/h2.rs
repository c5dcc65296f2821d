//! HTTP/2 with prior knowledge (h2c): one connection carries concurrent requests as streams
//! up to the server's stream limit (another connection past it), counts once against the
//! per-host limit, and a GOAWAY'd connection takes no new streams.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hyper::Response;
use pool_http::{Client, ConnectError, Origin};
use support::{Raw, Server, eventually, full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
    let (server, open_gate) = gated_h2(None).await;
    let client = h2_client().build().unwrap();
    let slow = {
        let (client, url) = (client.clone(), server.url("/slow"));
        tokio::spawn(async move { client.get(&url).await.unwrap().into_body().bytes().await })
    };
    eventually("the slow stream is open", || client.stats().streams == 1).await;
    (server, client, open_gate, slow)
}

/// An h2c server (letting `streams` streams at a time open on each connection, its
/// SETTINGS_MAX_CONCURRENT_STREAMS, when given) where `/slow` answers once the gate opens and
/// any other path at once (10 bytes each).
async fn gated_h2(streams: Option<u32>) -> (Server, tokio::sync::watch::Sender<bool>) {
    let (open_gate, gate) = tokio::sync::watch::channel(false);
    let handler = move |req: hyper::Request<hyper::body::Incoming>| {
        let mut gate = gate.clone();
        async move {
            if req.uri().path() == "/slow" {
                let _ = gate.wait_for(|open| *open).await;
            }
            Response::new(full(10))
        }
    };
    let server = match streams {
        Some(n) => Server::start_h2_limited(n, handler).await,
        None => Server::start_h2(handler).await,
    };
    (server, open_gate)
}

/// Sends `GET /slow` in a task of its own and returns once its stream is open.
async fn stalled(
    client: &pool_http::Client,
    server: &Server,
) -> tokio::task::JoinHandle<Result<bytes::Bytes, pool_http::Error>> {
    let slow = {
        let (client, url) = (client.clone(), server.url("/slow"));
        tokio::spawn(async move { client.get(&url).await?.into_body().bytes().await })
    };
    eventually("the slow stream is open", || client.stats().streams == 1).await;
    slow
}

/// SPEC: "With no per-host limit, one h2 connection is shared until the server's stream
/// limit is reached." Past it a request gets a connection of its own (Go's Transport, with
/// `StrictMaxConcurrentStreams` false, its default), never queued behind a stalled stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_requests_past_the_servers_stream_limit_are_not_queued_behind_a_stalled_stream() {
    let (server, _gate) = gated_h2(Some(1)).await;
    let client = h2_client()
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .unwrap();
    let slow = stalled(&client, &server).await;
    let started = std::time::Instant::now();
    let fast = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        client.get(&server.url("/fast")).await?.bytes().await
    })
    .await
    .expect("hung");
    let waited = started.elapsed();
    assert_eq!(
        fast.map(|b| b.len()).map_err(|e| e.to_string()),
        Ok(10),
        "after {waited:?}, {} connection(s) accepted",
        server.accepts()
    );
    assert!(
        waited < std::time::Duration::from_secs(1),
        "queued {waited:?} behind the stalled stream"
    );
    assert_eq!(server.accepts(), 2, "a second connection past the limit");
    assert_eq!(client.stats().pool.in_use, 1, "the fast one went back idle");
    slow.abort();
}

/// Past the server's stream limit with the per-host limit reached, a request waits for a
/// stream (or a connection) within its timeouts, and takes the stream that ends first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_stream_limit_at_the_per_host_limit_a_request_waits_for_a_stream() {
    let (server, open_gate) = gated_h2(Some(1)).await;
    let client = h2_client().max_conns_per_host(1).build().unwrap();
    let slow = stalled(&client, &server).await;
    // Bounded by its timeout while the stream stays taken.
    let started = std::time::Instant::now();
    let err = client
        .get(&server.url("/fast"))
        .timeout(std::time::Duration::from_millis(200))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // Served by the stream that ends.
    let fast = {
        let (client, url) = (client.clone(), server.url("/fast"));
        tokio::spawn(async move { client.get(&url).await?.into_body().bytes().await })
    };
    eventually("the second request waits for the connection", || {
        client.stats().pool.waiting == 1
    })
    .await;
    assert!(!fast.is_finished());
    open_gate.send(true).unwrap();
    assert_eq!(slow.await.unwrap().unwrap().len(), 10);
    let fast = tokio::time::timeout(std::time::Duration::from_secs(5), fast)
        .await
        .expect("the waiting request was never served");
    assert_eq!(fast.unwrap().unwrap().len(), 10);
    assert_eq!(server.accepts(), 1, "one connection throughout");
    let stats = client.stats();
    assert_eq!((stats.streams, stats.pool.in_use), (0, 0), "{stats:?}");
}

/// Wraps a task's waker: asks the client for its streams (which takes the lock of its shared
/// HTTP/2 connections), then wakes the task. A wake sent under that lock never returns.
struct AskingWaker {
    client: pool_http::Client,
    origin: Origin,
    task: std::task::Waker,
}

impl std::task::Wake for AskingWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let _ = self.client.host_streams(&self.origin);
        self.task.wake_by_ref();
    }
}

/// STYLE's lock discipline: a request waiting for a stream is handed one (and woken) after
/// the lock of the shared connections is released, so a waker that runs code of its own (here:
/// asking the client for its streams, which takes that lock) cannot deadlock the stream's end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waiting_request_is_woken_outside_the_lock_of_the_shared_connections() {
    let (server, open_gate) = gated_h2(Some(1)).await;
    let client = h2_client().max_conns_per_host(1).build().unwrap();
    let slow = stalled(&client, &server).await;
    let fast = {
        let (client, url) = (client.clone(), server.url("/fast"));
        let origin = Origin::from_url(&url).unwrap();
        tokio::spawn(async move {
            let request = client.get(&url);
            let mut request = std::pin::pin!(async { request.await?.bytes().await });
            std::future::poll_fn(|cx| {
                let waker = std::task::Waker::from(Arc::new(AskingWaker {
                    client: client.clone(),
                    origin: origin.clone(),
                    task: cx.waker().clone(),
                }));
                request
                    .as_mut()
                    .poll(&mut std::task::Context::from_waker(&waker))
            })
            .await
        })
    };
    eventually("the second request waits for the connection", || {
        client.stats().pool.waiting == 1
    })
    .await;
    open_gate.send(true).unwrap();
    let served = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        (slow.await, fast.await)
    })
    .await
    .expect("the stream's end deadlocked on the waiter's wake");
    assert_eq!(served.0.unwrap().unwrap().len(), 10);
    assert_eq!(served.1.unwrap().unwrap().len(), 10);
}

/// One HTTP/2 frame: `kind`, `flags`, stream `id`, `payload`.
fn frame(kind: u8, flags: u8, id: u32, payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u32).to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&id.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// A SETTINGS frame with SETTINGS_MAX_CONCURRENT_STREAMS = `streams`.
fn max_streams(streams: u32) -> Vec<u8> {
    let mut payload = 3u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&streams.to_be_bytes());
    frame(0x4, 0, 0, &payload)
}

/// An h2c server written by hand (hyper's cannot change its SETTINGS): it allows 2 streams;
/// on its first connection it leaves the first stream unanswered and lowers its limit to 1 (a
/// second SETTINGS); it answers every other stream at once (`200`, no body). The counter is
/// how many of the first connection's SETTINGS the client acknowledged (h2 acknowledges a
/// SETTINGS once it applied it).
async fn lowering_h2() -> (Raw, Arc<AtomicUsize>) {
    let acks = Arc::new(AtomicUsize::new(0));
    let counted = acks.clone();
    let raw = Raw::start(move |mut s, n| {
        let counted = counted.clone();
        async move {
            let mut preface = [0u8; 24];
            if s.read_exact(&mut preface).await.is_err()
                || s.write_all(&max_streams(2)).await.is_err()
            {
                return;
            }
            let mut stalled = n > 0;
            loop {
                let mut head = [0u8; 9];
                if s.read_exact(&mut head).await.is_err() {
                    return;
                }
                let mut payload = vec![0u8; usize::from(head[1]) << 8 | usize::from(head[2])];
                if head[0] != 0 || s.read_exact(&mut payload).await.is_err() {
                    return;
                }
                let id = u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff;
                let reply = match (head[3], head[4]) {
                    // The client's SETTINGS: acknowledged.
                    (0x4, flags) if flags & 0x1 == 0 => frame(0x4, 0x1, 0, &[]),
                    (0x4, _) => {
                        if n == 0 {
                            counted.fetch_add(1, Ordering::SeqCst);
                        }
                        continue;
                    }
                    (0x1, _) if !stalled => {
                        stalled = true;
                        max_streams(1)
                    }
                    // HEADERS `:status: 200` (HPACK static index 8), END_STREAM | END_HEADERS.
                    (0x1, _) => frame(0x1, 0x5, id, &[0x88]),
                    _ => continue,
                };
                if s.write_all(&reply).await.is_err() {
                    return;
                }
            }
        }
    })
    .await;
    (raw, acks)
}

/// A server may lower its stream limit at any time (a later SETTINGS). With a stream open on
/// a connection whose limit fell to 1, the next request gets another connection: not a place
/// in hyper's queue behind the stalled stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_limit_the_server_lowers_later_sends_the_next_request_elsewhere() {
    let (raw, acks) = lowering_h2().await;
    let client = h2_client()
        .timeout(std::time::Duration::from_secs(3))
        .build()
        .unwrap();
    let slow = {
        let (client, url) = (client.clone(), raw.url("/slow"));
        tokio::spawn(async move { client.get(&url).send().await.map(drop) })
    };
    eventually("the client applied the lowered limit", || {
        acks.load(Ordering::SeqCst) == 2
    })
    .await;
    let fast = tokio::time::timeout(std::time::Duration::from_secs(5), async {
        client.get(&raw.url("/fast")).await
    })
    .await
    .expect("hung");
    assert_eq!(
        fast.map(|r| r.status().as_u16()).map_err(|e| e.to_string()),
        Ok(200)
    );
    assert_eq!(
        raw.accepts(),
        2,
        "a second connection past the lowered limit"
    );
    slow.abort();
}

/// A server whose SETTINGS allow no stream at all: a connection known to say so is closed and
/// its request fails with `ConnectError::NoStreams`; a request whose stream went out before
/// the SETTINGS came ends at its timeout. No request dials more than once, and nothing stays
/// in use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_allows_no_stream_fails_requests_without_a_dial_storm() {
    let (server, _gate) = gated_h2(Some(0)).await;
    let client = h2_client()
        .timeout(std::time::Duration::from_millis(300))
        .build()
        .unwrap();
    let mut refused = 0;
    for _ in 0..4 {
        let started = std::time::Instant::now();
        let err = client.get(&server.url("/fast")).await.unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        match err.connect_error() {
            Some(ConnectError::NoStreams { .. }) => refused += 1,
            // The stream went out before the SETTINGS; its connection, back in the pool once
            // the request gave up, is known to say 0: the next request fails at once.
            _ => assert!(err.is_timeout(), "{err:?}"),
        }
    }
    assert!(refused >= 2, "{refused} of 4 failed at once");
    assert!(server.accepts() <= 4, "{} dials", server.accepts());
    // A discarded connection's slot frees once its close completes.
    eventually("nothing in use", || {
        let stats = client.stats();
        (stats.streams, stats.pool.in_use) == (0, 0)
    })
    .await;
}
