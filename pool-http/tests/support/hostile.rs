//! [`Hostile`], a raw HTTP/1.1 keep-alive server that answers streamed uploads before reading
//! them and closes idle connections at random, and the calls and end-of-run laws of the chaos
//! and soak runs against it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper::Request;
use pool_http::Client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{CAP, client_sockets, endless_upload, eventually, get};

/// What a [`Hostile`] server does besides serving.
#[derive(Debug, Clone, Copy)]
pub struct Hostility {
    /// A streamed (chunked) POST is answered `413` with keep-alive right after its head, and
    /// nothing more is read on that connection, ever.
    pub early_answers: bool,
    /// After each response, the chance that the connection is closed if the next request does
    /// not start within a random 0-5 ms (half of them with an unasked `408` first).
    pub idle_close: f64,
}

/// A raw HTTP/1.1 keep-alive server with [`Hostility`]: `GET /echo/N` answers `N`, a POST
/// with a `Content-Length` body answers the body. Counts accepts and each way a connection
/// ended. Dropping it ends every connection it holds.
pub struct Hostile {
    pub addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    early: Arc<AtomicUsize>,
    idle_closed: Arc<AtomicUsize>,
    deciding: Arc<AtomicUsize>,
    /// Connections open.
    closable: Arc<AtomicUsize>,
    close_idle: tokio::sync::watch::Sender<bool>,
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Hostile {
    pub async fn start(hostility: Hostility) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stop_rx) = tokio::sync::watch::channel(false);
        let (close_idle, close_idle_rx) = tokio::sync::watch::channel(false);
        let accepts = Arc::new(AtomicUsize::new(0));
        let early = Arc::new(AtomicUsize::new(0));
        let idle_closed = Arc::new(AtomicUsize::new(0));
        let deciding = Arc::new(AtomicUsize::new(0));
        let closable = Arc::new(AtomicUsize::new(0));
        let (a, e, c, d, cl) = (
            accepts.clone(),
            early.clone(),
            idle_closed.clone(),
            deciding.clone(),
            closable.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let n = a.fetch_add(1, Ordering::SeqCst) as u64;
                let (e, c, d, mut stop) = (e.clone(), c.clone(), d.clone(), stop_rx.clone());
                let told = Some(close_idle_rx.clone());
                let counted = Deciding::new(&cl);
                tokio::spawn(async move {
                    let _counted = counted;
                    let rng = fastrand::Rng::with_seed(n);
                    let conn = hostile_conn(stream, hostility, rng, e, c, d, told);
                    tokio::select! {
                        _ = conn => {}
                        _ = stop.wait_for(|s| *s) => {}
                    }
                });
            }
        });
        Hostile {
            addr,
            accepts,
            early,
            idle_closed,
            deciding,
            closable,
            close_idle,
            stop,
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    /// Uploads answered before they were read.
    pub fn early_answers(&self) -> usize {
        self.early.load(Ordering::SeqCst)
    }

    /// Idle connections the server closed.
    pub fn idle_closed(&self) -> usize {
        self.idle_closed.load(Ordering::SeqCst)
    }

    /// Every connection closes as soon as it is idle (or holding an upload it answered
    /// early), half of them with an unasked `408`. Returns once they are closed.
    pub async fn close_idle_now(&self) {
        let _ = self.close_idle.send(true);
        eventually("the server closed every connection", || {
            self.closable.load(Ordering::SeqCst) == 0
        })
        .await;
    }

    /// Waits until no connection is deciding whether to close (each decides within 5 ms of
    /// its last response): from then on, at rest, the server closes nothing more.
    pub async fn quiet(&self) {
        eventually("the server decided every close", || {
            self.deciding.load(Ordering::SeqCst) == 0
        })
        .await;
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        self.task.abort();
    }
}

async fn hostile_conn(
    stream: TcpStream,
    hostility: Hostility,
    mut rng: fastrand::Rng,
    early: Arc<AtomicUsize>,
    idle_closed: Arc<AtomicUsize>,
    deciding: Arc<AtomicUsize>,
    mut told: Option<tokio::sync::watch::Receiver<bool>>,
) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut s = BufReader::new(stream);
    let unasked_408 = rng.bool();
    let close = |mut s: BufReader<TcpStream>, unasked_408: bool| async move {
        if unasked_408 {
            let _ = s
                .get_mut()
                .write_all(
                    b"HTTP/1.1 408 Request Timeout\r\nconnection: close\r\n\
                      content-length: 0\r\n\r\n",
                )
                .await;
        }
    };
    // Whether to close if the next request is slow to come: decided (and counted) before the
    // response goes out, so a caller that has its answer sees the count.
    let mut may_close: Option<Deciding> = None;
    loop {
        if let Some(decision) = may_close.take() {
            let patience = Duration::from_millis(rng.u64(0..5));
            if tokio::time::timeout(patience, s.fill_buf()).await.is_err() {
                idle_closed.fetch_add(1, Ordering::SeqCst);
                close(s, rng.bool()).await;
                drop(decision);
                return;
            }
        }
        if let Some(told) = told.as_mut() {
            let idle = tokio::select! {
                next = s.fill_buf() => next.is_err(),
                _ = told.wait_for(|t| *t) => true,
            };
            if idle {
                idle_closed.fetch_add(1, Ordering::SeqCst);
                return close(s, unasked_408).await;
            }
        }
        let mut head = String::new();
        loop {
            let mut line = String::new();
            match s.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) if line == "\r\n" => break,
                Ok(_) => head.push_str(&line),
            }
        }
        let header = |name: &str| {
            head.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
            })
        };
        let target = head.split(' ').nth(1).unwrap_or("/").to_owned();
        let body = if head.starts_with("POST") {
            if header("transfer-encoding").is_some() {
                if hostility.early_answers {
                    early.fetch_add(1, Ordering::SeqCst);
                    let _ = s
                        .get_mut()
                        .write_all(
                            b"HTTP/1.1 413 Payload Too Large\r\nconnection: keep-alive\r\n\
                              content-length: 0\r\n\r\n",
                        )
                        .await;
                    // Reads nothing more, ever (until told, or the server is dropped).
                    match told.as_mut() {
                        Some(told) => drop(told.wait_for(|t| *t).await),
                        None => std::future::pending::<()>().await,
                    }
                }
                return;
            }
            let len = header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let mut body = vec![0u8; len];
            if s.read_exact(&mut body).await.is_err() {
                return;
            }
            String::from_utf8_lossy(&body).into_owned()
        } else {
            target.strip_prefix("/echo/").unwrap_or("ok").to_owned()
        };
        if rng.f64() < hostility.idle_close {
            may_close = Some(Deciding::new(&deciding));
        }
        let msg = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        if s.get_mut().write_all(msg.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// A connection of a [`Hostile`] server counted while it lives (one that may close when idle
/// until it decided, one that closes when told until it closed).
struct Deciding(Arc<AtomicUsize>);

impl Deciding {
    fn new(count: &Arc<AtomicUsize>) -> Deciding {
        count.fetch_add(1, Ordering::SeqCst);
        Deciding(count.clone())
    }
}

impl Drop for Deciding {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One call of the hostile mix against a [`Hostile`] server at `base`: 60 % GETs whose echoed
/// body is checked, 20 % POSTs of a body in memory (echoed), 20 % endless uploads the server
/// answers `413` before reading. A call may fail (a connection the server closed under a
/// request that cannot be retried, or an unasked `408` that crossed a request), but never by
/// a timeout: a request stuck on a poisoned or dead connection panics here.
pub async fn hostile_call(client: &Client, base: &str, seed: u64) -> Result<(), String> {
    let mut rng = fastrand::Rng::with_seed(seed);
    // A caller that thinks a little first now and then: connections sit idle, and the server
    // closes some of them.
    if rng.u32(..3) == 0 {
        tokio::time::sleep(Duration::from_millis(rng.u64(1..8))).await;
    }
    let outcome = async {
        match rng.u32(..100) {
            0..60 => {
                let n = rng.u64(..);
                let response = client.get(&format!("{base}/echo/{n}")).await?;
                let status = response.status();
                let got = response.into_body().bytes().await?;
                Ok(if status == 200 {
                    assert_eq!(got, n.to_string(), "a response answered another request");
                    None
                } else {
                    Some(status)
                })
            }
            60..80 => {
                let sent = format!("post {}", rng.u64(..));
                let req = Request::post(format!("{base}/post"))
                    .body(sent.clone())
                    .unwrap();
                let response = client.request(req).await?;
                let status = response.status();
                let got = response.into_body().bytes().await?;
                Ok(if status == 200 {
                    assert_eq!(got, sent, "a response answered another request");
                    None
                } else {
                    Some(status)
                })
            }
            _ => {
                let req = Request::post(format!("{base}/upload"))
                    .body(endless_upload())
                    .unwrap();
                let response = client.request(req).await?;
                let status = response.status();
                response.into_body().bytes().await?;
                Ok((status != 413).then_some(status))
            }
        }
    };
    match outcome.await {
        Ok(None) => Ok(()),
        // An unasked 408 the server sent as the request went out is the answer it got.
        Ok(Some(status)) => {
            assert_eq!(status, 408, "only the server's unasked 408");
            Err("408".to_owned())
        }
        Err::<_, pool_http::Error>(e) => {
            assert!(!e.is_timeout(), "a request stuck until its timeout: {e:?}");
            Err(e.to_string())
        }
    }
}

/// The end of a run against a hostile server: the pool never went past `CAP`, no failure
/// took a second, `idle` is what the kernel shows (see [`idle_matches_live_connections`]),
/// and dropping the client leaves no connection behind.
pub async fn hostile_run_ends_clean(client: Client, hostile: &Hostile, slowest_failure: Duration) {
    let s = client.stats();
    assert!(s.pool.peak_open <= CAP, "{s:?}");
    assert!(
        slowest_failure < Duration::from_secs(1),
        "{slowest_failure:?}"
    );
    idle_matches_live_connections(&client, hostile).await;
    drop(client);
    eventually("no connection left", || client_sockets(hostile.addr) == 0).await;
}

/// At rest: nothing in use, and the pool's `idle` is exactly the live connections to
/// `server` (the kernel's count): no dead connection counted, none uncounted.
/// Then a few requests at once (so connections are open), and the server closes every
/// connection while idle: they leave the pool at once, without a dial.
pub async fn idle_matches_live_connections(client: &Client, hostile: &Hostile) {
    hostile.quiet().await;
    idle_is_live(client, hostile.addr).await;
    let url = hostile.url("/echo/again");
    let gets = (0..4).map(|_| async { get(client, &url, false).await.is_ok() });
    let served = futures_util::future::join_all(gets).await;
    assert!(served.contains(&true), "served again: {served:?}");
    hostile.quiet().await;
    idle_is_live(client, hostile.addr).await;
    let live = client_sockets(hostile.addr);
    assert!(live > 0, "connections open at rest");
    let created = client.stats().pool.created;
    hostile.close_idle_now().await;
    idle_is_live(client, hostile.addr).await;
    assert_eq!(
        client.stats().pool.open,
        0,
        "every dead connection left the pool"
    );
    assert_eq!(
        client.stats().pool.created,
        created,
        "and none was dialled to replace it"
    );
    eprintln!("at rest: {live} live connections, idle and open 0 once the server closed them");
}

async fn idle_is_live(client: &Client, server: SocketAddr) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let s = client.stats().pool;
        let live = client_sockets(server);
        if s.in_use == 0 && s.open == s.idle && s.idle == live {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "at rest, idle {} but {live} live connections: {s:?}",
            s.idle
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}
