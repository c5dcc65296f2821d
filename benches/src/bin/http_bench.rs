//! B6-B8 of BENCH.md against a local hyper server, side by side with hyper-util's legacy
//! client and reqwest.
//!
//! ```text
//! cargo run --release -p benches --bin http_bench -- [throughput|unread|bursts|all] [--quick]
//!     [--rounds N] [--secs S] [--requests N] [--bursts N]
//! ```
//!
//! - `throughput` (B6): GET of a 1 KiB and a 64 KiB body, read to the end, by 1 and by 64
//!   tasks for a fixed time per round; contenders in rotating order; medians and ratios to
//!   the best peer.
//! - `unread` (B7): sequential GETs whose body is dropped after the status (and after 100
//!   bytes); new connections per 1,000 requests, counted by the server's accepts.
//! - `bursts` (B8): bursts of 64 concurrent GETs to one host, 100 ms apart, default knobs
//!   (2 idle connections per host); new connections per 1,000 requests after the first
//!   burst, and TIME_WAIT sockets left.
//!
//! Contenders: ours with defaults, ours in Go mode (`idle_grace = 0`, no drain: what Go's
//! `http.Transport` does), hyper-util's legacy `Client` and reqwest, both with defaults, and
//! in B6 a bare hyper connection (no pool, one connection: what the pool adds is the
//! difference). The server runs on its own thread and runtime; the clients share a 2-worker
//! runtime. B6 also reports how many connections each contender opened.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use benches::{cpu_time, median, number, time_wait};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

const USAGE: &str = "usage: http_bench [throughput|unread|bursts|all] [--quick] [--rounds N] \
                     [--secs S] [--requests N] [--bursts N] [--only ours,go,hyper-util,reqwest,hyper]";

use benches::BoxError;

#[derive(Debug, Clone)]
struct Opts {
    throughput: bool,
    unread: bool,
    bursts: bool,
    rounds: usize,
    secs: f64,
    requests: usize,
    burst_count: usize,
    /// Contenders to run (`--only`); empty: all.
    only: Vec<Who>,
}

impl Opts {
    /// The contenders to run; the bare hyper connection only where it makes sense
    /// (throughput: it cannot survive an unread body).
    fn who(&self, with_bare: bool) -> Vec<Who> {
        let mut who = if self.only.is_empty() {
            Who::ALL.to_vec()
        } else {
            self.only.clone()
        };
        who.retain(|&w| with_bare || w != Who::Raw);
        who
    }
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut opts = Opts {
        throughput: true,
        unread: true,
        bursts: true,
        rounds: 5,
        secs: 1.0,
        requests: 1000,
        burst_count: 30,
        only: Vec::new(),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| {
            it.next()
                .ok_or_else(|| format!("{name} needs a value"))
                .cloned()
        };
        match arg.as_str() {
            "throughput" => (opts.unread, opts.bursts) = (false, false),
            "unread" => (opts.throughput, opts.bursts) = (false, false),
            "bursts" => (opts.throughput, opts.unread) = (false, false),
            "all" => {}
            "--quick" => {
                opts.rounds = 1;
                opts.secs = 0.2;
                opts.requests = 100;
                opts.burst_count = 3;
            }
            "--rounds" => opts.rounds = number("--rounds", &value("--rounds")?, 1)?,
            "--secs" => opts.secs = number("--secs", &value("--secs")?, 0.05)?,
            "--requests" => opts.requests = number("--requests", &value("--requests")?, 10)?,
            "--bursts" => opts.burst_count = number("--bursts", &value("--bursts")?, 2)?,
            "--only" => {
                for key in value("--only")?.split(',') {
                    let who = Who::ALL.into_iter().find(|w| w.key() == key);
                    opts.only
                        .push(who.ok_or_else(|| format!("--only: no contender {key:?}"))?);
                }
            }
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(opts)
}

fn main() -> ExitCode {
    benches::main_with("http_bench", USAGE, parse_args, run)
}

async fn run(opts: Opts) -> Result<(), BoxError> {
    let server = Server::start()?;
    println!("local hyper HTTP/1.1 server on its own thread; clients: tokio, 2 worker threads\n");
    if opts.throughput {
        throughput(&opts, &server).await?;
    }
    if opts.unread {
        unread(&opts, &server).await?;
    }
    if opts.bursts {
        bursts(&opts, &server).await?;
    }
    Ok(())
}

// ---- the server ----

/// A hyper server on a thread of its own that counts accepted connections.
struct Server {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
}

impl Server {
    fn start() -> Result<Server, BoxError> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let accepts = Arc::new(AtomicUsize::new(0));
        let counted = accepts.clone();
        let small = Bytes::from(vec![b'a'; 1024]);
        let large = Bytes::from(vec![b'b'; 64 * 1024]);
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                while let Ok((stream, _)) = listener.accept().await {
                    counted.fetch_add(1, Ordering::Relaxed);
                    let (small, large) = (small.clone(), large.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                            let body = if req.uri().path() == "/64k" {
                                large.clone()
                            } else {
                                small.clone()
                            };
                            async move { Ok::<_, Infallible>(hyper::Response::new(Full::new(body))) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        Ok(Server { addr, accepts })
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::Relaxed)
    }
}

// ---- the contenders ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Ours,
    Go,
    HyperUtil,
    Reqwest,
    Raw,
}

impl Who {
    const ALL: [Who; 5] = [Who::Ours, Who::Go, Who::HyperUtil, Who::Reqwest, Who::Raw];

    fn name(self) -> &'static str {
        match self {
            Who::Ours => "pool-http",
            Who::Go => "pool-http, Go mode",
            Who::HyperUtil => "hyper-util legacy",
            Who::Reqwest => "reqwest",
            Who::Raw => "hyper, one connection, no pool",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Who::Ours => "ours",
            Who::Go => "go",
            Who::HyperUtil => "hyper-util",
            Who::Reqwest => "reqwest",
            Who::Raw => "hyper",
        }
    }

    fn is_peer(self) -> bool {
        matches!(self, Who::HyperUtil | Who::Reqwest)
    }
}

/// How much of each body the caller reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Read {
    All,
    /// Drop the body after the status.
    Nothing,
    /// Drop the body after its first 100 bytes (at least one chunk).
    Hundred,
}

enum Target {
    Ours(pool_http::Client),
    HyperUtil(LegacyClient<HttpConnector, Empty<Bytes>>),
    Reqwest(reqwest::Client),
    /// One hyper connection behind a lock, dialled on first use: no pool at all.
    Raw(tokio::sync::Mutex<Option<hyper::client::conn::http1::SendRequest<Empty<Bytes>>>>),
}

impl Target {
    fn build(who: Who) -> Result<Target, BoxError> {
        Ok(match who {
            Who::Ours => Target::Ours(pool_http::Client::new()?),
            Who::Go => Target::Ours(pool_http::Client::builder().go_mode().build()?),
            Who::HyperUtil => Target::HyperUtil(
                LegacyClient::builder(TokioExecutor::new()).build(HttpConnector::new()),
            ),
            Who::Reqwest => Target::Reqwest(reqwest::Client::new()),
            Who::Raw => Target::Raw(tokio::sync::Mutex::new(None)),
        })
    }

    /// One GET; returns the bytes read.
    async fn get(&self, url: &str, read: Read) -> Result<usize, BoxError> {
        match self {
            Target::Ours(client) => {
                let response = client.get(url).await?;
                if !response.status().is_success() {
                    return Err(format!("status {}", response.status()).into());
                }
                let mut body = response.into_body();
                match read {
                    Read::All => Ok(body.bytes().await?.len()),
                    Read::Nothing => Ok(0),
                    Read::Hundred => Ok(body.chunk().await?.map_or(0, |c| c.len())),
                }
            }
            Target::HyperUtil(client) => {
                let response = client.get(url.parse()?).await?;
                if !response.status().is_success() {
                    return Err(format!("status {}", response.status()).into());
                }
                read_incoming(response.into_body(), read).await
            }
            Target::Raw(conn) => {
                let uri: hyper::Uri = url.parse()?;
                let authority = uri.authority().ok_or("no host")?.as_str().to_owned();
                let mut conn = conn.lock().await;
                if conn.is_none() {
                    let tcp = tokio::net::TcpStream::connect(&authority).await?;
                    tcp.set_nodelay(true)?;
                    let (tx, task) =
                        hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
                    tokio::spawn(task);
                    *conn = Some(tx);
                }
                let tx = conn.as_mut().ok_or("no connection")?;
                tx.ready().await?;
                let req = hyper::Request::builder()
                    .uri(uri.path())
                    .header("host", authority)
                    .body(Empty::new())?;
                let response = tx.send_request(req).await?;
                // Sequential use only (one task): the lock is held until the head arrived.
                drop(conn);
                read_incoming(response.into_body(), read).await
            }
            Target::Reqwest(client) => {
                let mut response = client.get(url).send().await?;
                if !response.status().is_success() {
                    return Err(format!("status {}", response.status()).into());
                }
                match read {
                    Read::All => Ok(response.bytes().await?.len()),
                    Read::Nothing => Ok(0),
                    Read::Hundred => Ok(response.chunk().await?.map_or(0, |c| c.len())),
                }
            }
        }
    }
}

/// Reads a hyper body as `read` says; returns the bytes read.
async fn read_incoming(mut body: hyper::body::Incoming, read: Read) -> Result<usize, BoxError> {
    Ok(match read {
        Read::All => body.collect().await?.to_bytes().len(),
        Read::Nothing => 0,
        Read::Hundred => body
            .frame()
            .await
            .transpose()?
            .and_then(|f| f.into_data().ok())
            .map_or(0, |d| d.len()),
    })
}

// ---- B6: throughput ----

async fn throughput(opts: &Opts, server: &Server) -> Result<(), BoxError> {
    println!(
        "## B6: GET throughput, body read to the end ({} rounds of {} s per contender, medians)\n",
        opts.rounds, opts.secs
    );
    println!(
        "| body | tasks | contender | requests/s | vs best peer | client CPU µs/request | \
         connections |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (path, label) in [("/1k", "1 KiB"), ("/64k", "64 KiB")] {
        for tasks in [1, 64] {
            let all = opts.who(true);
            let mut rates: Vec<Vec<f64>> = vec![Vec::new(); all.len()];
            let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); all.len()];
            let mut conns: Vec<Vec<f64>> = vec![Vec::new(); all.len()];
            for round in 0..opts.rounds {
                for i in 0..all.len() {
                    let k = (i + round) % all.len();
                    let before = server.accepts();
                    let (rate, cpu) = measure(all[k], &server.url(path), tasks, opts.secs).await?;
                    conns[k].push((server.accepts() - before) as f64);
                    rates[k].push(rate);
                    cpus[k].push(cpu);
                }
            }
            let medians: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
            let best_peer = all
                .iter()
                .zip(&medians)
                .filter(|(w, _)| w.is_peer())
                .map(|(_, &m)| m)
                .fold(f64::NAN, f64::max);
            for (k, who) in all.iter().enumerate() {
                println!(
                    "| {label} | {tasks} | {} | {:.0} | {:.2}x | {:.1} | {:.0} |",
                    who.name(),
                    medians[k],
                    medians[k] / best_peer,
                    median(&mut cpus[k]),
                    median(&mut conns[k])
                );
            }
        }
    }
    println!();
    Ok(())
}

/// Requests per second and client CPU µs per request of `who`, after a warm-up.
async fn measure(who: Who, url: &str, tasks: usize, secs: f64) -> Result<(f64, f64), BoxError> {
    let target = Arc::new(Target::build(who)?);
    let stop = Arc::new(AtomicBool::new(false));
    let counting = Arc::new(AtomicBool::new(false));
    let counted = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let (target, stop, counting, counted) = (
            target.clone(),
            stop.clone(),
            counting.clone(),
            counted.clone(),
        );
        let url = url.to_owned();
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                target.get(&url, Read::All).await?;
                if counting.load(Ordering::Relaxed) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<(), BoxError>(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    counting.store(true, Ordering::Relaxed);
    let (start, cpu_start) = (Instant::now(), cpu_time());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let done = counted.load(Ordering::Relaxed);
    let (elapsed, cpu) = (start.elapsed().as_secs_f64(), cpu_time() - cpu_start);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await??;
    }
    Ok((done as f64 / elapsed, cpu * 1e6 / done.max(1) as f64))
}

// ---- B7: unread bodies ----

async fn unread(opts: &Opts, server: &Server) -> Result<(), BoxError> {
    println!(
        "## B7: bodies not read to the end ({} sequential GETs per cell): new connections per \
         1,000 requests, counted by the server\n",
        opts.requests
    );
    let all = opts.who(false);
    let names: Vec<&str> = all.iter().map(|w| w.name()).collect();
    println!("| body | read | {} |", names.join(" | "));
    println!("|---|---|{}", "---|".repeat(all.len()));
    for (path, label) in [("/1k", "1 KiB"), ("/64k", "64 KiB")] {
        for (read, how) in [(Read::Nothing, "status only"), (Read::Hundred, "100 bytes")] {
            let mut cells = Vec::new();
            for &who in &all {
                let target = Target::build(who)?;
                let before = server.accepts();
                for _ in 0..opts.requests {
                    target.get(&server.url(path), read).await?;
                }
                let opened = server.accepts() - before;
                cells.push(format!(
                    "{:.0}",
                    opened as f64 * 1000.0 / opts.requests as f64
                ));
            }
            println!("| {label} | {how} | {} |", cells.join(" | "));
        }
    }
    println!();
    Ok(())
}

// ---- B8: per-host bursts ----

const BURST: usize = 64;
const GAP: Duration = Duration::from_millis(100);

async fn bursts(opts: &Opts, server: &Server) -> Result<(), BoxError> {
    println!(
        "## B8: {} bursts of {BURST} concurrent GETs (1 KiB, read to the end) to one host, \
         {} ms apart, default knobs\n",
        opts.burst_count,
        GAP.as_millis()
    );
    println!(
        "| contender | connections in the first burst | new connections per 1,000 requests \
         after it | TIME_WAIT after the run | p50 ms | p99 ms |"
    );
    println!("|---|---|---|---|---|---|");
    for who in opts.who(false) {
        let target = Arc::new(Target::build(who)?);
        let url = server.url("/1k");
        let tw_before = time_wait(Some(server.addr.port()));
        let start_accepts = server.accepts();
        let mut first = 0;
        let mut latencies = Vec::new();
        for burst in 0..opts.burst_count {
            let tasks: Vec<_> = (0..BURST)
                .map(|_| {
                    let (target, url) = (target.clone(), url.clone());
                    tokio::spawn(async move {
                        let t = Instant::now();
                        target.get(&url, Read::All).await?;
                        Ok::<f64, BoxError>(t.elapsed().as_secs_f64() * 1e3)
                    })
                })
                .collect();
            for t in tasks {
                latencies.push(t.await??);
            }
            if burst == 0 {
                first = server.accepts() - start_accepts;
            }
            tokio::time::sleep(GAP).await;
        }
        let after = server.accepts() - start_accepts - first;
        let requests_after = (opts.burst_count - 1) * BURST;
        let tw = time_wait(Some(server.addr.port()))
            .difference(&tw_before)
            .count();
        latencies.sort_by(f64::total_cmp);
        let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
        println!(
            "| {} | {first} | {:.1} | {tw} | {:.2} | {:.2} |",
            who.name(),
            after as f64 * 1000.0 / requests_after as f64,
            pick(0.5),
            pick(0.99)
        );
    }
    println!();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_parse_and_bad_ones_are_refused() {
        let o = parse_args(&args(&["unread", "--quick", "--requests", "50"])).unwrap();
        assert!(o.unread && !o.throughput && !o.bursts);
        assert_eq!((o.rounds, o.requests), (1, 50));
        assert!(parse_args(&args(&["--requests", "1"])).is_err());
        assert!(parse_args(&args(&["--secs"])).is_err());
        assert!(parse_args(&args(&["sideways"])).is_err());
    }
}
