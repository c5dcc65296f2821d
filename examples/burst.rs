//! The demo: a bursty workload on a custom resource, run twice on the same knobs
//! (`max_open 100`, `max_idle 20`): once with Go database/sql's behaviour (`idle_grace = 0`)
//! and once with the default grace period. Prints creates, closes and checkout latency side
//! by side.
//!
//! Run: `cargo run --release -p examples --example burst` (add `-- --bursts 10` for a short run).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pool_core::{Manager, Pool, async_trait};

/// A connection whose handshake costs `HANDSHAKE`, like TCP + TLS + auth to a database.
struct Session;

const HANDSHAKE: Duration = Duration::from_millis(3);
const QUERY: Duration = Duration::from_millis(2);

#[derive(Default)]
struct Counts {
    opened: AtomicU64,
    closed: AtomicU64,
}

struct Dialer(Arc<Counts>);

#[async_trait]
impl Manager for Dialer {
    type Resource = Session;
    type Error = std::io::Error;

    async fn create(&self) -> Result<Session, std::io::Error> {
        tokio::time::sleep(HANDSHAKE).await;
        self.0.opened.fetch_add(1, Ordering::Relaxed);
        Ok(Session)
    }

    async fn close(&self, _session: Session) {
        self.0.closed.fetch_add(1, Ordering::Relaxed);
    }
}

struct Run {
    opened: u64,
    closed: u64,
    queries: usize,
    p50: Duration,
    p99: Duration,
    stats: pool_core::Stats,
}

async fn run(grace: Duration, bursts: usize, per_burst: usize) -> Run {
    let counts = Arc::new(Counts::default());
    let mut builder = Pool::builder(Dialer(counts.clone()));
    if grace.is_zero() {
        // database/sql exactly: no grace, a create belongs to its caller.
        builder = builder.go_mode();
    }
    let pool = builder
        .max_open(100)
        .max_idle(20)
        .idle_grace(grace)
        .build()
        .expect("valid knobs");
    let mut waits = Vec::with_capacity(bursts * per_burst);
    for _ in 0..bursts {
        let started = Instant::now();
        let queries: Vec<_> = (0..per_burst)
            .map(|_| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    let t = Instant::now();
                    let conn = pool.get().await.expect("checkout");
                    let waited = t.elapsed();
                    tokio::time::sleep(QUERY).await; // the query
                    drop(conn);
                    waited
                })
            })
            .collect();
        for q in queries {
            waits.push(q.await.expect("query task"));
        }
        tokio::time::sleep(Duration::from_millis(150).saturating_sub(started.elapsed())).await;
    }
    waits.sort();
    let at = |q: f64| waits[((waits.len() as f64 * q) as usize).min(waits.len() - 1)];
    let stats = pool.stats();
    Run {
        opened: counts.opened.load(Ordering::Relaxed),
        closed: counts.closed.load(Ordering::Relaxed),
        queries: waits.len(),
        p50: at(0.50),
        p99: at(0.99),
        stats,
    }
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let mut bursts = 30;
    while let Some(a) = args.next() {
        match (a.as_str(), args.next().and_then(|v| v.parse().ok())) {
            ("--bursts", Some(n)) if n > 0 => bursts = n,
            _ => {
                eprintln!("usage: burst [--bursts N]   (N > 0, default 30)");
                std::process::exit(2);
            }
        }
    }
    let per_burst = 200;
    println!(
        "{bursts} bursts of {per_burst} concurrent queries, 150 ms apart; max_open 100, max_idle 20;"
    );
    println!("handshake {HANDSHAKE:?} per new connection, query {QUERY:?}.\n");
    let go = run(Duration::ZERO, bursts, per_burst).await;
    let ours = run(Duration::from_secs(30), bursts, per_burst).await;
    println!(
        "| mode | opens | closes | opens per 1,000 queries | checkout p50 | checkout p99 | max_idle_closed | grace_reused |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (name, r) in [
        ("database/sql (idle_grace = 0)", &go),
        ("pool-core (idle_grace = 30 s)", &ours),
    ] {
        println!(
            "| {name} | {} | {} | {:.1} | {:.2?} | {:.2?} | {} | {} |",
            r.opened,
            r.closed,
            r.opened as f64 * 1000.0 / r.queries as f64,
            r.p50,
            r.p99,
            r.stats.max_idle_closed,
            r.stats.grace_reused
        );
    }
    println!(
        "\nWith idle_grace = 0 every burst closes what max_idle cannot hold and opens it again (Go's\nmax_idle + bursts x (max_open - max_idle) = {}). With the grace period the surplus waits\nfor the next burst, and the reaper closes it only after 30 s without one.",
        20 + bursts * 80
    );
}
