//! B6-B8 of BENCH.md against a local hyper server, side by side with hyper-util's legacy
//! client and reqwest.
//!
//! ```text
//! cargo run --release -p benches --bin http_bench -- [throughput|unread|bursts|all] [--quick]
//!     [--rounds N] [--secs S] [--requests N] [--bursts N] [--only WHO,...] [--cell 64k/1 ...]
//!     [--no-pin] [--server ADDR] [--workers N] [--caller main|worker|both] [--read status|100]
//! cargo run --release -p benches --bin http_bench -- serve [--port P]
//! ```
//!
//! - `throughput` (B6): GET of a 1 KiB and a 64 KiB body, read to the end, by 1 and by 64
//!   tasks for a fixed time per round; contenders in rotating order; medians and ratios to
//!   the best peer.
//! - `unread` (B7): sequential GETs whose body is dropped after the status (and after 100
//!   bytes; `--read` picks one); new connections per 1,000 requests, counted by the server's
//!   accepts. The loop runs on the main thread in `block_on` (`--caller main`, the default:
//!   a `#[tokio::main]` program's own loop, on a thread of its own beside the runtime's
//!   worker, unpinned), or in a task spawned on the runtime's pinned worker (`--caller
//!   worker`, as B6's callers and a server's handlers run), or both, one table each. Every
//!   contender runs the same loop in the same place.
//! - `bursts` (B8): bursts of 64 concurrent GETs to one host, 100 ms apart, default knobs
//!   (2 idle connections per host); new connections per 1,000 requests after the first
//!   burst, and TIME_WAIT sockets left.
//!
//! Contenders: ours with defaults, ours in Go mode (`idle_grace = 0`, no drain: what Go's
//! `http.Transport` does), hyper-util's legacy `Client` and reqwest, both with defaults, and
//! in B6 a bare hyper connection (no pool, one connection: what the pool adds is the
//! difference). The server runs on its own thread and runtime; the clients share a 2-worker
//! runtime. B6 also reports how many connections each contender opened.
//!
//! Placement: with two CPUs or more, the server's thread is pinned to the last CPU and the
//! clients' workers to the others, one worker per CPU (`--no-pin`: the OS places them and
//! the clients get 2 workers; `--workers N` overrides). Unpinned, one run in a few the OS puts
//! a client on the server's CPU, where a request costs a fraction of a cross-CPU wake-up:
//! the same client then measures 2-7x faster by luck of placement (BENCHMARKS.md shows it),
//! and the cell says nothing about the client. More workers than CPUs make the workers take
//! turns on one CPU, which measures the OS's scheduling of them more than the client.
//!
//! `serve` runs the server alone (it answers `/accepts` with the connections it accepted,
//! itself not counted); `--server ADDR` points the clients at it, so a client process holds
//! nothing else (`scripts/http-instructions.sh` counts its instructions that way).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use benches::{cpu_time, median, number, thread_cpu_time, time_wait};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client as LegacyClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

const USAGE: &str = "usage: http_bench [throughput|unread|bursts|all] [--quick] [--rounds N] \
                     [--secs S] [--requests N] [--bursts N] [--only ours,plain,go,hyper-util,reqwest,hyper] \
                     [--cell 1k/1|1k/64|64k/1|64k/64 ...] [--no-pin] [--server ADDR] [--workers N] \
                     [--caller main|worker|both] [--read status|100]\n       \
                     http_bench serve [--port P]";

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
    /// B6 cells to run (`--cell 64k/1`: body and tasks; B7 runs the bodies named); empty: all.
    cells: Vec<(&'static str, usize)>,
    /// Pin the server and the clients to CPUs of their own (`--no-pin`: off).
    pin: bool,
    /// Run only the server, on this port (`serve`, `--port`).
    serve: Option<u16>,
    /// A server started by `serve` elsewhere (`--server`).
    server: Option<SocketAddr>,
    /// The clients' runtime worker threads (`--workers`; default: one per client CPU when
    /// pinned, else 2).
    workers: Option<usize>,
    /// Where B7's loop runs (`--caller`; default: the main thread).
    callers: Vec<Caller>,
    /// B7's reads to run (`--read`; default: both).
    reads: Vec<Read>,
}

/// Where B7's sequential loop runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Caller {
    /// The main thread, in the runtime's `block_on`.
    Main,
    /// A task spawned on the runtime's worker.
    Worker,
}

impl Caller {
    fn key(self) -> &'static str {
        match self {
            Caller::Main => "main",
            Caller::Worker => "worker",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Caller::Main => "the loop on the main thread, in `block_on`",
            Caller::Worker => "the loop in a task on the runtime's worker",
        }
    }
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
        cells: Vec::new(),
        pin: true,
        serve: None,
        server: None,
        workers: None,
        callers: vec![Caller::Main],
        reads: vec![Read::Nothing, Read::Hundred],
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
            "serve" => opts.serve = Some(opts.serve.unwrap_or(0)),
            "--port" => opts.serve = Some(number("--port", &value("--port")?, 0)?),
            "--no-pin" => opts.pin = false,
            "--workers" => opts.workers = Some(number("--workers", &value("--workers")?, 1)?),
            "--caller" => {
                opts.callers = match value("--caller")?.as_str() {
                    "main" => vec![Caller::Main],
                    "worker" => vec![Caller::Worker],
                    "both" => vec![Caller::Main, Caller::Worker],
                    other => return Err(format!("--caller: main, worker or both, not {other:?}")),
                }
            }
            "--read" => {
                opts.reads = match value("--read")?.as_str() {
                    "status" => vec![Read::Nothing],
                    "100" => vec![Read::Hundred],
                    other => return Err(format!("--read: status or 100, not {other:?}")),
                }
            }
            "--server" => {
                let addr = value("--server")?;
                opts.server = Some(addr.parse().map_err(|_| {
                    format!("--server takes an address like 127.0.0.1:8080, not {addr:?}")
                })?);
            }
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
                    let who = Who::NAMED.into_iter().find(|w| w.key() == key);
                    opts.only
                        .push(who.ok_or_else(|| format!("--only: no contender {key:?}"))?);
                }
            }
            "--cell" => {
                let cell = value("--cell")?;
                let parsed = match cell.split_once('/') {
                    Some(("1k", t)) => t.parse().ok().map(|t| ("/1k", t)),
                    Some(("64k", t)) => t.parse().ok().map(|t| ("/64k", t)),
                    _ => None,
                };
                opts.cells
                    .push(parsed.ok_or_else(|| format!("--cell: {cell:?} is not 1k/N or 64k/N"))?);
            }
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(opts)
}

fn main() -> ExitCode {
    benches::main_on(
        "http_bench",
        USAGE,
        parse_args,
        |opts| (workers(opts), placement(opts).0),
        run,
    )
}

/// The clients' worker threads: as asked, else one per client CPU when pinned (more workers
/// than CPUs would make them take turns on one CPU), else 2.
fn workers(opts: &Opts) -> usize {
    opts.workers
        .unwrap_or_else(|| match placement(opts).0.len() {
            0 => 2,
            n => n,
        })
}

/// The CPUs of the clients' workers and of the server's thread: with two CPUs or more and a
/// server in this process, the server gets the last and the clients the others.
fn placement(opts: &Opts) -> (Vec<core_affinity::CoreId>, Option<core_affinity::CoreId>) {
    let mut cores = core_affinity::get_core_ids().unwrap_or_default();
    if !opts.pin || opts.server.is_some() || cores.len() < 2 {
        return (Vec::new(), None);
    }
    let server = cores.pop();
    (cores, server)
}

async fn run(opts: Opts) -> Result<(), BoxError> {
    if let Some(port) = opts.serve {
        let server = Server::start(port, None)?;
        println!("serving on {} (/1k, /64k, /accepts)", server.addr);
        std::future::pending::<()>().await;
    }
    let workers = workers(&opts);
    let server = match opts.server {
        Some(addr) => {
            println!(
                "the server started by `http_bench serve` at {addr}; clients: tokio, {workers} \
                 worker threads\n"
            );
            Server::remote(addr)
        }
        None => {
            let (clients, core) = placement(&opts);
            let server = Server::start(0, core)?;
            // The main thread runs B7's loop with `--caller main`: it is a client too, and
            // goes where the clients' workers are (left to the OS, it ran on the server's CPU
            // for a while in some rounds and not in others).
            if let Some(&first) = clients.first() {
                core_affinity::set_for_current(first);
            }
            match core {
                Some(core) => println!(
                    "local hyper HTTP/1.1 server on its own thread, pinned to CPU {}; clients: \
                     tokio, {workers} worker threads pinned to CPU {:?}, the main thread to \
                     CPU {}\n",
                    core.id,
                    clients.iter().map(|c| c.id).collect::<Vec<_>>(),
                    clients.first().map_or(0, |c| c.id)
                ),
                None => println!(
                    "local hyper HTTP/1.1 server on its own thread; clients: tokio, {workers} \
                     worker threads (placed by the OS)\n"
                ),
            }
            server
        }
    };
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

/// A hyper server on a thread of its own that counts accepted connections, or one that
/// `http_bench serve` runs in another process.
#[derive(Clone)]
struct Server {
    addr: SocketAddr,
    /// The count of a server in this process; `None`: ask the remote one.
    accepts: Option<Arc<AtomicUsize>>,
    /// The kernel's id of the server's thread (0: none here, or unknown).
    tid: Arc<AtomicU32>,
}

impl Server {
    /// Starts the server on `port` (0: any), its thread pinned to `core`.
    fn start(port: u16, core: Option<core_affinity::CoreId>) -> Result<Server, BoxError> {
        let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let accepts = Arc::new(AtomicUsize::new(0));
        let tid = Arc::new(AtomicU32::new(0));
        let (counted, probes) = (accepts.clone(), Arc::new(AtomicUsize::new(0)));
        let own_tid = tid.clone();
        let small = Bytes::from(vec![b'a'; 1024]);
        let large = Bytes::from(vec![b'b'; 64 * 1024]);
        let thread = std::thread::Builder::new().name("http-server".into());
        thread.spawn(move || {
            if let Some(core) = core {
                core_affinity::set_for_current(core);
            }
            own_tid.store(benches::thread_id().unwrap_or(0), Ordering::Relaxed);
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("server runtime");
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
                while let Ok((stream, _)) = listener.accept().await {
                    counted.fetch_add(1, Ordering::Relaxed);
                    let (small, large) = (small.clone(), large.clone());
                    let (counted, probes) = (counted.clone(), probes.clone());
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req: hyper::Request<_>| {
                            let body = match req.uri().path() {
                                "/64k" => large.clone(),
                                // The connections accepted, this probe's own not counted.
                                "/accepts" => {
                                    let probe = probes.fetch_add(1, Ordering::Relaxed) + 1;
                                    let n = counted.load(Ordering::Relaxed) - probe;
                                    Bytes::from(n.to_string())
                                }
                                _ => small.clone(),
                            };
                            async move { Ok::<_, Infallible>(hyper::Response::new(Full::new(body))) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })?;
        Ok(Server {
            addr,
            accepts: Some(accepts),
            tid,
        })
    }

    /// A server that `http_bench serve` runs at `addr`.
    fn remote(addr: SocketAddr) -> Server {
        Server {
            addr,
            accepts: None,
            tid: Arc::new(AtomicU32::new(0)),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The connections the server accepted so far.
    async fn accepts(&self) -> Result<usize, BoxError> {
        if let Some(accepts) = &self.accepts {
            return Ok(accepts.load(Ordering::Relaxed));
        }
        let tcp = tokio::net::TcpStream::connect(self.addr).await?;
        let (mut tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(conn);
        let req = hyper::Request::builder()
            .uri("/accepts")
            .header("host", self.addr.to_string())
            .body(Empty::<Bytes>::new())?;
        let body = tx.send_request(req).await?.into_body().collect().await?;
        Ok(std::str::from_utf8(&body.to_bytes())?.parse()?)
    }

    /// The CPU time of this process without the server's thread, in seconds.
    fn client_cpu_time(&self) -> f64 {
        match self.tid.load(Ordering::Relaxed) {
            0 => cpu_time(),
            tid => cpu_time() - thread_cpu_time(tid),
        }
    }
}

// ---- the contenders ----

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Ours,
    /// Ours with the client layers off (no redirect policy, no `Accept-Encoding`): what
    /// redirects and decompression cost the pooled path. Only with `--only`.
    Plain,
    Go,
    HyperUtil,
    Reqwest,
    Raw,
}

impl Who {
    const ALL: [Who; 5] = [Who::Ours, Who::Go, Who::HyperUtil, Who::Reqwest, Who::Raw];
    /// Every contender `--only` can name.
    const NAMED: [Who; 6] = [
        Who::Ours,
        Who::Plain,
        Who::Go,
        Who::HyperUtil,
        Who::Reqwest,
        Who::Raw,
    ];

    fn name(self) -> &'static str {
        match self {
            Who::Ours => "pool-http",
            Who::Plain => "pool-http, no redirects or decompression",
            Who::Go => "pool-http, Go mode",
            Who::HyperUtil => "hyper-util legacy",
            Who::Reqwest => "reqwest",
            Who::Raw => "hyper, one connection, no pool",
        }
    }

    fn key(self) -> &'static str {
        match self {
            Who::Ours => "ours",
            Who::Plain => "plain",
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
            Who::Plain => Target::Ours(
                pool_http::Client::builder()
                    .redirect(pool_http::redirect::Policy::none())
                    .disable_compression(true)
                    .build()?,
            ),
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
        "| body | tasks | contender | requests/s | min-max | vs best peer | client CPU \
         µs/request | connections |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (path, label) in [("/1k", "1 KiB"), ("/64k", "64 KiB")] {
        for tasks in [1, 64] {
            if !opts.cells.is_empty() && !opts.cells.contains(&(path, tasks)) {
                continue;
            }
            let all = opts.who(true);
            let mut rates: Vec<Vec<f64>> = vec![Vec::new(); all.len()];
            let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); all.len()];
            let mut conns: Vec<Vec<f64>> = vec![Vec::new(); all.len()];
            let mut requests = vec![0u64; all.len()];
            for round in 0..opts.rounds {
                for i in 0..all.len() {
                    let k = (i + round) % all.len();
                    let before = server.accepts().await?;
                    let m = measure(all[k], server, path, tasks, opts.secs).await?;
                    conns[k].push((server.accepts().await? - before) as f64);
                    rates[k].push(m.rate);
                    cpus[k].push(m.cpu_us);
                    requests[k] += m.requests;
                }
            }
            let (medians, best_peer) = medians_and_best_peer(&all, &mut rates);
            for (k, who) in all.iter().enumerate() {
                // Sorted by `median`.
                let (min, max) = (rates[k][0], rates[k][rates[k].len() - 1]);
                let (cpu, opened) = (median(&mut cpus[k]), median(&mut conns[k]));
                println!(
                    "| {label} | {tasks} | {} | {:.0} | {min:.0}-{max:.0} | {:.2}x | {cpu:.1} | \
                     {opened:.0} |",
                    who.name(),
                    medians[k],
                    medians[k] / best_peer,
                );
                benches::record(
                    "http_bench",
                    &format!(
                        "{{\"bench\":\"B6\",\"body\":\"{label}\",\"tasks\":{tasks},\
                         \"contender\":\"{}\",\"rps_median\":{:.0},\"rps_min\":{min:.0},\
                         \"rps_max\":{max:.0},\"cpu_us_per_request\":{cpu:.1},\
                         \"connections\":{opened:.0},\"requests_all\":{}}}",
                        who.key(),
                        medians[k],
                        requests[k]
                    ),
                );
            }
        }
    }
    println!();
    Ok(())
}

/// Each contender's median rate (its rates sorted in place, so the first and last are the
/// spread) and the best of the peers' medians.
fn medians_and_best_peer(all: &[Who], rates: &mut [Vec<f64>]) -> (Vec<f64>, f64) {
    let medians: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
    let best_peer = all
        .iter()
        .zip(&medians)
        .filter(|(w, _)| w.is_peer())
        .map(|(_, &m)| m)
        .fold(f64::NAN, f64::max);
    (medians, best_peer)
}

/// One contender's run in one B6 cell.
struct Measured {
    /// Requests per second after the warm-up.
    rate: f64,
    /// Client CPU µs per request after the warm-up.
    cpu_us: f64,
    /// Requests made in all, the warm-up's included.
    requests: u64,
}

/// Requests per second and client CPU µs per request of `who`, after a warm-up.
async fn measure(
    who: Who,
    server: &Server,
    path: &str,
    tasks: usize,
    secs: f64,
) -> Result<Measured, BoxError> {
    let url = &server.url(path);
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
            let mut made = 0u64;
            while !stop.load(Ordering::Relaxed) {
                target.get(&url, Read::All).await?;
                made += 1;
                if counting.load(Ordering::Relaxed) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<u64, BoxError>(made)
        }));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    counting.store(true, Ordering::Relaxed);
    let (start, cpu_start) = (Instant::now(), server.client_cpu_time());
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let done = counted.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = server.client_cpu_time() - cpu_start;
    stop.store(true, Ordering::Relaxed);
    let mut requests = 0;
    for h in handles {
        requests += h.await??;
    }
    Ok(Measured {
        rate: done as f64 / elapsed,
        cpu_us: cpu * 1e6 / done.max(1) as f64,
        requests,
    })
}

// ---- B7: unread bodies ----

async fn unread(opts: &Opts, server: &Server) -> Result<(), BoxError> {
    for &caller in &opts.callers {
        unread_by(opts, server, caller).await?;
    }
    Ok(())
}

/// B7 with its loop run by `caller`.
async fn unread_by(opts: &Opts, server: &Server, caller: Caller) -> Result<(), BoxError> {
    println!(
        "## B7: bodies not read to the end ({} sequential GETs per contender and round, {} \
         rounds, {}): new connections per 1,000 requests, counted by the server, and \
         requests/s (medians)\n",
        opts.requests,
        opts.rounds,
        caller.describe()
    );
    println!(
        "| body | read | contender | new connections per 1,000 | requests/s | min-max | vs \
         best peer |"
    );
    println!("|---|---|---|---|---|---|---|");
    let all = opts.who(false);
    for (path, label) in [("/1k", "1 KiB"), ("/64k", "64 KiB")] {
        // `--cell` picks B7's bodies too (its task count is B6's alone).
        if !opts.cells.is_empty() && !opts.cells.iter().any(|(p, _)| *p == path) {
            continue;
        }
        for (read, how) in [(Read::Nothing, "status only"), (Read::Hundred, "100 bytes")] {
            if !opts.reads.contains(&read) {
                continue;
            }
            let mut rates: Vec<Vec<f64>> = vec![Vec::new(); all.len()];
            let mut opened: Vec<Vec<f64>> = vec![Vec::new(); all.len()];
            for round in 0..opts.rounds {
                for i in 0..all.len() {
                    let k = (i + round) % all.len();
                    let run = unread_round(all[k], server.clone(), path, read, opts.requests);
                    let (rate, new) = match caller {
                        Caller::Main => run.await?,
                        Caller::Worker => tokio::spawn(run).await??,
                    };
                    rates[k].push(rate);
                    opened[k].push(new as f64 * 1000.0 / opts.requests as f64);
                }
            }
            let (medians, best_peer) = medians_and_best_peer(&all, &mut rates);
            for (k, who) in all.iter().enumerate() {
                // Sorted by `median`.
                let (min, max) = (rates[k][0], rates[k][rates[k].len() - 1]);
                let new = median(&mut opened[k]);
                println!(
                    "| {label} | {how} | {} | {new:.0} | {:.0} | {min:.0}-{max:.0} | {:.2}x |",
                    who.name(),
                    medians[k],
                    medians[k] / best_peer
                );
                benches::record(
                    "http_bench",
                    &format!(
                        "{{\"bench\":\"B7\",\"body\":\"{label}\",\"read\":\"{how}\",\
                         \"caller\":\"{}\",\"contender\":\"{}\",\"new_per_1000\":{new:.1},\
                         \"rps_median\":{:.0},\"rps_min\":{min:.0},\"rps_max\":{max:.0}}}",
                        caller.key(),
                        who.key(),
                        medians[k]
                    ),
                );
            }
        }
    }
    println!();
    Ok(())
}

/// One contender's round of B7: a first request (its dial not counted), then `requests`
/// sequential GETs read as `read` says; their rate, and the connections the server accepted
/// meanwhile.
async fn unread_round(
    who: Who,
    server: Server,
    path: &'static str,
    read: Read,
    requests: usize,
) -> Result<(f64, usize), BoxError> {
    let target = Target::build(who)?;
    // The first request dials for every contender alike: not counted.
    target.get(&server.url(path), read).await?;
    let before = server.accepts().await?;
    let start = Instant::now();
    for _ in 0..requests {
        target.get(&server.url(path), read).await?;
    }
    let rate = requests as f64 / start.elapsed().as_secs_f64();
    Ok((rate, server.accepts().await? - before))
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
        let start_accepts = server.accepts().await?;
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
                first = server.accepts().await? - start_accepts;
            }
            tokio::time::sleep(GAP).await;
        }
        let after = server.accepts().await? - start_accepts - first;
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
        let o = parse_args(&args(&["unread", "--caller", "both", "--read", "100"])).unwrap();
        assert_eq!(o.callers, [Caller::Main, Caller::Worker]);
        assert_eq!(o.reads, [Read::Hundred]);
        assert!(parse_args(&args(&["--caller", "elsewhere"])).is_err());
    }
}
