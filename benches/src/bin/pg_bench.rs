//! B4 and B5 of BENCH.md against a real PostgreSQL, side by side with the peers.
//!
//! ```text
//! cargo run --release -p benches --bin pg_bench -- [throughput|churn|all] [--quick]
//!     [--rounds N] [--secs S] [--bursts N] [--only CONTENDER,...]
//! ```
//!
//! - `throughput` (B4): `SELECT 1`, prepared where the pool allows it, for a fixed time per
//!   round, at 16 tasks on 8 connections, 16 on 16 and 64 on 16. Contenders: dedicated
//!   connections (one client per task, where tasks <= connections), ours (`Db`),
//!   deadpool-postgres (`prepare_cached`), bb8-postgres as users get it (a test query at
//!   every checkout) and with that test off (`query_typed`: one round trip, no cache).
//!   The order of the contenders rotates every round; the report gives medians and ratios.
//! - `churn` (B5): bursts of 200 concurrent `SELECT pg_sleep(0.002)`, 150 ms apart, on
//!   `max_open 100`, `max_idle 20`: ours with the default grace, ours with `idle_grace = 0`
//!   (Go's database/sql), deadpool-postgres and bb8-postgres at 100. Physical opens are
//!   counted on both sides: by the client (pool stats, or a counting connector) and by the
//!   server (`pg_stat_database.sessions`); TIME_WAIT sockets are read from `/proc/net/tcp*`.
//!
//! It uses `DATABASE_URL` when set (the server needs `max_connections` >= 110), else starts a
//! private server from the system's binaries (`pool_sql::testing`).

use benches::{cpu_time, median, number, time_wait};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bb8_postgres::PostgresConnectionManager;
use pool_sql::Db;
use pool_sql::testing::TestPg;
use tokio_postgres::tls::{MakeTlsConnect, NoTls};

const USAGE: &str = "usage: pg_bench [throughput|churn|all] [--quick] [--rounds N] [--secs S] \
                     [--bursts N] [--only ours,traced,nograce,deadpool,bb8,bb8-notest,dedicated]";

use benches::BoxError;

#[derive(Debug, Clone)]
struct Opts {
    throughput: bool,
    churn: bool,
    rounds: usize,
    secs: f64,
    bursts: usize,
    /// Throughput contenders to run (`--only`); empty: all.
    only: Vec<String>,
}

fn parse_args(args: &[String]) -> Result<Opts, String> {
    let mut opts = Opts {
        throughput: true,
        churn: true,
        rounds: 5,
        secs: 2.0,
        bursts: 30,
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
            "throughput" => opts.churn = false,
            "churn" => opts.throughput = false,
            "all" => {}
            "--quick" => {
                opts.rounds = 1;
                opts.secs = 0.3;
                opts.bursts = 3;
            }
            "--rounds" => opts.rounds = number("--rounds", &value("--rounds")?, 1)?,
            "--secs" => opts.secs = number("--secs", &value("--secs")?, 0.05)?,
            "--bursts" => opts.bursts = number("--bursts", &value("--bursts")?, 2)?,
            "--only" => {
                for key in value("--only")?.split(',') {
                    if !Who::ALL.iter().any(|w| w.key() == key) {
                        return Err(format!("--only: no contender {key:?}"));
                    }
                    opts.only.push(key.to_owned());
                }
            }
            // cargo bench passes --bench to every target; nothing to do.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(opts)
}

/// Whether the subscriber records pool-sql's and pool-core's spans now.
static TRACED: AtomicBool = AtomicBool::new(false);

fn main() -> ExitCode {
    // A registry (what fmt, OpenTelemetry and other layers sit on) that records the
    // `pool_sql` and `pool_core` spans while `TRACED` is set: the cost of spans being on.
    use tracing_subscriber::layer::SubscriberExt;
    let subscriber = tracing_subscriber::registry().with(
        tracing_subscriber::filter::dynamic_filter_fn(|meta, _| {
            TRACED.load(Ordering::Relaxed)
                && (meta.target().starts_with("pool_sql") || meta.target().starts_with("pool_core"))
        }),
    );
    // Installed only when the traced contender runs (`--only` without `traced` measures
    // every contender with no subscriber at all, spans' off state).
    let args: Vec<String> = std::env::args().collect();
    let only = args.iter().position(|a| a == "--only");
    let traced = only.is_none_or(|i| args.get(i + 1).is_some_and(|v| v.contains("traced")));
    if traced && tracing::subscriber::set_global_default(subscriber).is_err() {
        eprintln!("pg_bench: a tracing subscriber was already set");
    }
    benches::main_with("pg_bench", USAGE, parse_args, run)
}

async fn run(opts: Opts) -> Result<(), BoxError> {
    let pg = match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => TestPg::from_env_or_start()?,
        _ => TestPg::builder().max_connections(130).start()?,
    };
    let url = pg.url();
    let admin = Db::builder(&url)
        .application_name("bench-admin")
        .max_open(1)
        .build()?;
    let version: String = admin.query_one("SHOW server_version", &[]).await?.get(0);
    println!("PostgreSQL {version}; client runtime: tokio, 2 worker threads\n");
    if opts.throughput {
        throughput(&opts, &url, &admin).await?;
    }
    if opts.churn {
        churn(&opts, &url, &admin, pg.port()).await?;
    }
    admin.close_and_wait(Duration::from_secs(5)).await?;
    Ok(())
}

// ---- the contenders ----

/// A `NoTls` that counts the connections made through it (the peers' physical opens).
#[derive(Clone, Default)]
struct Counting(Arc<AtomicU64>);

impl<S> MakeTlsConnect<S> for Counting
where
    NoTls: MakeTlsConnect<S>,
{
    type Stream = <NoTls as MakeTlsConnect<S>>::Stream;
    type TlsConnect = <NoTls as MakeTlsConnect<S>>::TlsConnect;
    type Error = <NoTls as MakeTlsConnect<S>>::Error;

    fn make_tls_connect(&mut self, domain: &str) -> Result<Self::TlsConnect, Self::Error> {
        self.0.fetch_add(1, Ordering::Relaxed);
        NoTls.make_tls_connect(domain)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Who {
    Dedicated,
    Ours,
    /// Ours with every `statement` and `checkout` span recorded by a subscriber.
    OursTraced,
    OursNoGrace,
    Deadpool,
    Bb8,
    Bb8NoTest,
}

impl Who {
    const ALL: [Who; 7] = [
        Who::Dedicated,
        Who::Ours,
        Who::OursTraced,
        Who::OursNoGrace,
        Who::Deadpool,
        Who::Bb8,
        Who::Bb8NoTest,
    ];

    /// The name `--only` takes.
    fn key(self) -> &'static str {
        self.app().trim_start_matches("bench-")
    }

    fn name(self) -> &'static str {
        match self {
            Who::Dedicated => "dedicated clients",
            Who::Ours => "pool-sql",
            Who::OursTraced => "pool-sql, spans recorded",
            Who::OursNoGrace => "pool-sql, Go mode",
            Who::Deadpool => "deadpool-postgres",
            Who::Bb8 => "bb8-postgres",
            Who::Bb8NoTest => "bb8-postgres, no checkout test",
        }
    }

    fn app(self) -> &'static str {
        match self {
            Who::Dedicated => "bench-dedicated",
            Who::Ours => "bench-ours",
            Who::OursTraced => "bench-traced",
            Who::OursNoGrace => "bench-nograce",
            Who::Deadpool => "bench-deadpool",
            Who::Bb8 => "bench-bb8",
            Who::Bb8NoTest => "bench-bb8-notest",
        }
    }
}

/// One pool (or set of clients) under test, with `max_open` connections.
enum Target {
    Dedicated(Vec<(tokio_postgres::Client, tokio_postgres::Statement)>),
    Ours(Db),
    Deadpool(deadpool_postgres::Pool),
    Bb8(bb8::Pool<PostgresConnectionManager<Counting>>),
}

struct Built {
    target: Target,
    opens: Counting,
}

async fn build(
    who: Who,
    url: &str,
    sql: &'static str,
    max_open: usize,
    max_idle: usize,
) -> Result<Built, BoxError> {
    let mut config: tokio_postgres::Config = url.parse()?;
    config.application_name(who.app());
    let opens = Counting::default();
    let target = match who {
        Who::Dedicated => {
            let mut clients = Vec::with_capacity(max_open);
            for _ in 0..max_open {
                let (client, conn) = config.connect(opens.clone()).await?;
                tokio::spawn(conn);
                let stmt = client.prepare(sql).await?;
                clients.push((client, stmt));
            }
            Target::Dedicated(clients)
        }
        Who::Ours | Who::OursTraced | Who::OursNoGrace => {
            let mut b = Db::builder(url);
            if who == Who::OursNoGrace {
                // database/sql exactly (no grace, its binding, no jitter or breaker).
                b = b.go_mode();
            }
            let b = b
                .application_name(who.app())
                .max_open(max_open)
                .max_idle(max_idle);
            Target::Ours(b.build()?)
        }
        Who::Deadpool => {
            let manager = deadpool_postgres::Manager::from_config(
                config,
                opens.clone(),
                deadpool_postgres::ManagerConfig {
                    recycling_method: deadpool_postgres::RecyclingMethod::Fast,
                },
            );
            Target::Deadpool(
                deadpool_postgres::Pool::builder(manager)
                    .max_size(max_open)
                    .build()?,
            )
        }
        Who::Bb8 | Who::Bb8NoTest => {
            let manager = PostgresConnectionManager::new(config, opens.clone());
            Target::Bb8(
                bb8::Pool::builder()
                    .max_size(u32::try_from(max_open)?)
                    .test_on_check_out(who == Who::Bb8)
                    .build(manager)
                    .await?,
            )
        }
    };
    Ok(Built { target, opens })
}

impl Target {
    /// One statement; `task` picks a dedicated client.
    async fn query(&self, task: usize, sql: &'static str) -> Result<(), BoxError> {
        match self {
            Target::Dedicated(clients) => {
                let (client, stmt) = &clients[task % clients.len()];
                client.query_one(stmt, &[]).await?;
            }
            Target::Ours(db) => {
                db.query_one(sql, &[]).await?;
            }
            Target::Deadpool(pool) => {
                let client = pool.get().await?;
                let stmt = client.prepare_cached(sql).await?;
                client.query_one(&stmt, &[]).await?;
            }
            Target::Bb8(pool) => {
                let client = pool.get().await?;
                client.query_typed(sql, &[]).await?;
            }
        }
        Ok(())
    }

    /// Physical opens as the client saw them.
    fn opens(&self, counted: &Counting) -> u64 {
        match self {
            Target::Ours(db) => db.stats().created,
            _ => counted.0.load(Ordering::Relaxed),
        }
    }

    async fn close(self) -> Result<(), BoxError> {
        match self {
            Target::Dedicated(clients) => drop(clients),
            Target::Ours(db) => db.close_and_wait(Duration::from_secs(10)).await?,
            Target::Deadpool(pool) => pool.close(),
            Target::Bb8(pool) => drop(pool),
        }
        Ok(())
    }
}

/// Server-side sessions of `app` right now.
async fn sessions(admin: &Db, app: &str) -> Result<i64, BoxError> {
    Ok(admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await?
        .get(0))
}

/// Closes `target` and waits until the server has no session of `who` left.
async fn shut(target: Target, who: Who, admin: &Db) -> Result<(), BoxError> {
    target.close().await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while sessions(admin, who.app()).await? > 0 {
        if Instant::now() > deadline {
            return Err(format!("{} sessions still open 10 s after close", who.name()).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

// ---- B4: throughput ----

const SELECT1: &str = "SELECT 1";

async fn throughput(opts: &Opts, url: &str, admin: &Db) -> Result<(), BoxError> {
    println!(
        "## B4: `SELECT 1` throughput ({} rounds of {} s per contender, medians)\n",
        opts.rounds, opts.secs
    );
    println!(
        "| tasks / conns | contender | queries/s | vs dedicated | vs best peer | client CPU \
         µs/query |"
    );
    println!("|---|---|---|---|---|---|");
    let peers = [Who::Deadpool, Who::Bb8, Who::Bb8NoTest];
    for (tasks, conns) in [(16, 8), (16, 16), (64, 16)] {
        let mut who = vec![Who::Ours, Who::OursTraced];
        who.extend(peers);
        if tasks <= conns {
            who.push(Who::Dedicated);
        }
        who.retain(|w| opts.only.is_empty() || opts.only.iter().any(|k| k == w.key()));
        let mut rates: Vec<Vec<f64>> = vec![Vec::new(); who.len()];
        let mut cpus: Vec<Vec<f64>> = vec![Vec::new(); who.len()];
        for round in 0..opts.rounds {
            for i in 0..who.len() {
                let k = (i + round) % who.len();
                let rate = measure(who[k], url, admin, tasks, conns, opts.secs).await?;
                rates[k].push(rate.per_sec);
                cpus[k].push(rate.cpu_us);
            }
        }
        let medians: Vec<f64> = rates.iter_mut().map(|r| median(r)).collect();
        let cpu: Vec<f64> = cpus.iter_mut().map(|r| median(r)).collect();
        let dedicated = who
            .iter()
            .position(|&w| w == Who::Dedicated)
            .map(|i| medians[i]);
        let best_peer = who
            .iter()
            .zip(&medians)
            .filter(|(w, _)| peers.contains(w))
            .map(|(_, &m)| m)
            .fold(f64::NAN, f64::max);
        for ((w, m), cpu) in who.iter().zip(&medians).zip(&cpu) {
            let vs_dedicated = dedicated.map_or("—".into(), |d| format!("{:.2}x", m / d));
            let vs_peer = if *w == Who::Dedicated {
                "—".into()
            } else {
                format!("{:.2}x", m / best_peer)
            };
            println!(
                "| {tasks} / {conns} | {} | {m:.0} | {vs_dedicated} | {vs_peer} | {cpu:.1} |",
                w.name()
            );
        }
    }
    println!();
    Ok(())
}

/// Queries per second of `who` over `secs`, after a short warm-up that opens the connections.
async fn measure(
    who: Who,
    url: &str,
    admin: &Db,
    tasks: usize,
    conns: usize,
    secs: f64,
) -> Result<Rate, BoxError> {
    // Spans on for this contender only (the subscriber is installed for the whole run:
    // the others pay its `enabled` check, as any process with a subscriber does).
    TRACED.store(who == Who::OursTraced, Ordering::Relaxed);
    let built = build(who, url, SELECT1, conns, conns).await?;
    let target = Arc::new(built.target);
    let stop = Arc::new(AtomicBool::new(false));
    let counted = Arc::new(AtomicU64::new(0));
    let counting = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::with_capacity(tasks);
    for task in 0..tasks {
        let (target, stop, counted, counting) = (
            target.clone(),
            stop.clone(),
            counted.clone(),
            counting.clone(),
        );
        handles.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                target.query(task, SELECT1).await?;
                if counting.load(Ordering::Relaxed) {
                    counted.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok::<(), BoxError>(())
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    let cpu_start = cpu_time();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    let done = counted.load(Ordering::Relaxed);
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_time() - cpu_start;
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.await??;
    }
    let target = Arc::try_unwrap(target).map_err(|_| "a task kept the pool")?;
    shut(target, who, admin).await?;
    Ok(Rate {
        per_sec: done as f64 / elapsed,
        cpu_us: cpu * 1e6 / done.max(1) as f64,
    })
}

/// What one throughput run measured.
struct Rate {
    per_sec: f64,
    /// This process's CPU time (all threads, user and system) per query.
    cpu_us: f64,
}

// ---- B5: burst churn ----

const SLEEP: &str = "SELECT pg_sleep(0.002)";
const BURST: usize = 200;
const GAP: Duration = Duration::from_millis(150);

struct ChurnResult {
    who: Who,
    queries: u64,
    client_opens: u64,
    warm_opens: u64,
    server_opens: i64,
    time_wait: usize,
    p50: Duration,
    p99: Duration,
    max: Duration,
}

async fn churn(opts: &Opts, url: &str, admin: &Db, port: Option<u16>) -> Result<(), BoxError> {
    println!(
        "## B5: burst churn ({} bursts of {BURST} x `{SLEEP}`, {} ms apart, max_open 100, \
         max_idle 20)\n",
        opts.bursts,
        GAP.as_millis()
    );
    let mut results = Vec::new();
    for who in [Who::Ours, Who::OursNoGrace, Who::Deadpool, Who::Bb8] {
        results.push(churn_one(who, url, admin, port, opts.bursts).await?);
    }
    println!(
        "| contender | opens (client) | opens (server) | per 1,000 queries | per 1,000 after \
         the first burst | TIME_WAIT | p50 | p99 | max |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    for r in &results {
        let later = r.queries - BURST as u64;
        println!(
            "| {} | {} | {} | {:.1} | {:.1} | {} | {:.1} ms | {:.1} ms | {:.1} ms |",
            r.who.name(),
            r.client_opens,
            r.server_opens,
            r.client_opens as f64 * 1000.0 / r.queries as f64,
            (r.client_opens - r.warm_opens) as f64 * 1000.0 / later as f64,
            r.time_wait,
            ms(r.p50),
            ms(r.p99),
            ms(r.max),
        );
    }
    println!(
        "\nGo's database/sql on this kind of machine (BENCH.md): MaxIdle 20 -> 2,420 opens \
         for 30 bursts (403 per 1,000), p50 24.8 ms."
    );
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn server_sessions_total(admin: &Db) -> Result<i64, BoxError> {
    Ok(admin
        .query_one(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()",
            &[],
        )
        .await?
        .get(0))
}

async fn churn_one(
    who: Who,
    url: &str,
    admin: &Db,
    port: Option<u16>,
    bursts: usize,
) -> Result<ChurnResult, BoxError> {
    let before_server = server_sessions_total(admin).await?;
    let before_tw = time_wait(port);
    let built = build(who, url, SLEEP, 100, 20).await?;
    let target = Arc::new(built.target);
    let mut latencies = Vec::with_capacity(bursts * BURST);
    let mut warm_opens = 0;
    for burst in 0..bursts {
        let start = Instant::now();
        let handles: Vec<_> = (0..BURST)
            .map(|task| {
                let target = target.clone();
                tokio::spawn(async move {
                    target.query(task, SLEEP).await?;
                    Ok::<Duration, BoxError>(start.elapsed())
                })
            })
            .collect();
        for h in handles {
            latencies.push(h.await??);
        }
        if burst == 0 {
            warm_opens = target.opens(&built.opens);
        }
        tokio::time::sleep(GAP).await;
    }
    let client_opens = target.opens(&built.opens);
    let after_tw = time_wait(port);
    let target = Arc::try_unwrap(target).map_err(|_| "a task kept the pool")?;
    shut(target, who, admin).await?;
    // Each backend reports its session to the statistics when it exits; wait until the count
    // reaches the client's (or give up after a few seconds and print what the server says).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut server_opens;
    loop {
        server_opens = server_sessions_total(admin).await? - before_server;
        if server_opens >= client_opens as i64 || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    latencies.sort();
    let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
    Ok(ChurnResult {
        who,
        queries: latencies.len() as u64,
        client_opens,
        warm_opens,
        server_opens,
        time_wait: after_tw.difference(&before_tw).count(),
        p50: pick(0.50),
        p99: pick(0.99),
        max: pick(1.0),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn flags_parse_and_bad_ones_are_refused() {
        let o = parse_args(&args(&["churn", "--quick", "--bursts", "5"])).unwrap();
        assert!(o.churn && !o.throughput);
        assert_eq!((o.rounds, o.bursts), (1, 5));
        assert!(parse_args(&args(&["--rounds", "0"])).is_err());
        assert!(parse_args(&args(&["--secs"])).is_err());
        assert!(parse_args(&args(&["sideways"])).is_err());
    }
}
