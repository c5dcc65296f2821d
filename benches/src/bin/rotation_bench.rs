//! Lifetime rotation (issue 22, section 2): checkout latency and checkouts that waited on a
//! create, across a run where every connection expires many times, for ours with rotation,
//! ours without, Go mode and a HikariCP emulation.
//!
//! ```text
//! cargo run --release -p benches --bin rotation_bench -- [--quick] [--secs S]
//!     [--workers N] [--max-open N] [--create-ms MS] [--lifetime-secs S] [--think-ms LO-HI]
//! ```
//!
//! Everything runs under paused tokio time on one thread: the latencies are virtual time,
//! exact and free of the machine's noise (no warm-up, no scheduling by the OS), and five
//! minutes of traffic take a second or two. The pool draws each connection's lifetime
//! jitter at random, so the rows with jitter vary a little from run to run (a few waits,
//! a connection of peak); Go mode, with none, repeats exactly.
//!
//! - The manager's create takes `--create-ms` (30 ms); nothing else takes time.
//! - The load: `--workers` (16) callers, each holding a connection 2-6 ms, then thinking
//!   2-10 ms (`--think-ms LO-HI`; drawn from a per-worker generator with a fixed seed), for
//!   `--secs` (300) of
//!   virtual time; `max_lifetime` is `--lifetime-secs` (30 s, 10 % jitter where a row has
//!   jitter), so every connection expires about ten times. `--quick`: 60 s.
//! - Every row has `max_open = --max-open` (24, room above the 16 workers) and
//!   `max_idle = max_open` (no idle churn: only lifetimes make creates).
//!   - ours: the defaults (late binding, rotation on).
//!   - ours, no rotation: `rotate_lifetime(false)`.
//!   - Go mode: `Config::go()` (binding to the caller, no jitter, no grace, no rotation).
//!   - HikariCP: rotation off, `min_idle = max_open` (a fixed-size pool, HikariCP's default
//!     `minimumIdle = maximumPoolSize`): the reaper retires a connection at its lifetime
//!     (one that is out closes when returned) and then fills the pool back in the
//!     background, as HikariCP's house keeper does; lifetimes jittered by up to 2.5 %, as
//!     HikariCP's.
//! - Counted after the first second (the pools warm up differently): checkouts; those that
//!   waited (took any virtual time: nothing was idle, so below `max_open` a create was
//!   started for them); those that waited a whole create (with late binding a release may
//!   serve the waiter first; with Go's binding the caller waits for its own create); the
//!   latency percentiles; and over the whole run the creates, the most connections open at
//!   once and the replacements started by rotation.
//!
//! It prints a markdown table.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use pool_core::{Builder, Config, Manager, Pool, Stats, async_trait};
use tokio::time::Instant;

/// A manager whose create takes a fixed time (virtual, under paused time).
struct SlowCreate {
    create: Duration,
    next: AtomicU64,
}

#[async_trait]
impl Manager for SlowCreate {
    type Resource = u64;
    type Error = std::io::Error;

    async fn create(&self) -> Result<u64, std::io::Error> {
        tokio::time::sleep(self.create).await;
        Ok(self.next.fetch_add(1, Ordering::Relaxed))
    }
}

#[derive(Clone, Copy)]
struct Params {
    secs: u64,
    workers: u64,
    max_open: usize,
    create: Duration,
    lifetime: Duration,
    /// Think time between checkouts, in ms, drawn uniformly from this range.
    think: (u64, u64),
}

impl Params {
    fn parse() -> Result<Params, String> {
        let mut p = Params {
            secs: 300,
            workers: 16,
            max_open: 24,
            create: Duration::from_millis(30),
            lifetime: Duration::from_secs(30),
            think: (2, 10),
        };
        let mut args = std::env::args().skip(1);
        while let Some(arg) = args.next() {
            let mut value = |name: &str| -> Result<u64, String> {
                let v = args.next().ok_or(format!("{name} needs a value"))?;
                v.parse()
                    .map_err(|_| format!("{name}: {v:?} is not a whole number"))
            };
            match arg.as_str() {
                "--quick" => p.secs = 60,
                "--secs" => p.secs = value("--secs")?,
                "--workers" => p.workers = value("--workers")?,
                "--max-open" => {
                    p.max_open = usize::try_from(value("--max-open")?).map_err(|e| e.to_string())?
                }
                "--create-ms" => p.create = Duration::from_millis(value("--create-ms")?),
                "--lifetime-secs" => p.lifetime = Duration::from_secs(value("--lifetime-secs")?),
                "--think-ms" => {
                    let v = args.next().ok_or("--think-ms needs LO-HI")?;
                    let (lo, hi) = v
                        .split_once('-')
                        .and_then(|(lo, hi)| Some((lo.parse().ok()?, hi.parse().ok()?)))
                        .filter(|(lo, hi)| lo <= hi)
                        .ok_or(format!("--think-ms: {v:?} is not LO-HI (ms, LO <= HI)"))?;
                    p.think = (lo, hi);
                }
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        if p.secs < 2 || p.workers == 0 || p.max_open == 0 || p.lifetime.is_zero() {
            return Err(
                "--secs must be at least 2; --workers, --max-open and --lifetime-secs above 0"
                    .into(),
            );
        }
        Ok(p)
    }
}

/// A row of the table.
struct Row {
    name: &'static str,
    latencies: Vec<Duration>,
    stats: Stats,
}

/// A small deterministic generator (xorshift64*), one per worker.
struct Draw(u64);

impl Draw {
    fn between_ms(&mut self, lo: u64, hi: u64) -> Duration {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        Duration::from_millis(lo + (x >> 33) % (hi - lo + 1))
    }
}

async fn run_load(pool: Pool<SlowCreate>, p: Params) -> (Vec<Duration>, Stats) {
    let start = Instant::now();
    let counted_from = start + Duration::from_secs(1);
    let end = start + Duration::from_secs(p.secs);
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for w in 0..p.workers {
        let pool = pool.clone();
        let latencies = latencies.clone();
        tasks.push(tokio::spawn(async move {
            let mut draw = Draw(0x9e37_79b9_7f4a_7c15 ^ (w + 1));
            let mut mine = Vec::new();
            while Instant::now() < end {
                let t = Instant::now();
                let c = pool.get().await.expect("no timeout is set");
                if t >= counted_from {
                    mine.push(t.elapsed());
                }
                tokio::time::sleep(draw.between_ms(2, 6)).await;
                drop(c);
                tokio::time::sleep(draw.between_ms(p.think.0, p.think.1)).await;
            }
            latencies.lock().extend(mine);
        }));
    }
    for t in tasks {
        t.await.expect("a worker panicked");
    }
    let stats = pool.stats();
    pool.close();
    let latencies = std::mem::take(&mut *latencies.lock());
    (latencies, stats)
}

fn manager(p: Params) -> SlowCreate {
    SlowCreate {
        create: p.create,
        next: AtomicU64::new(1),
    }
}

fn build(b: Builder<SlowCreate>, p: Params) -> Pool<SlowCreate> {
    b.max_open(p.max_open)
        .max_idle(p.max_open)
        .max_lifetime(p.lifetime)
        .build()
        .expect("valid knobs")
}

fn row(name: &'static str, p: Params, make: fn(SlowCreate, Params) -> Pool<SlowCreate>) -> Row {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .expect("a runtime");
    let (latencies, stats) = rt.block_on(async { run_load(make(manager(p), p), p).await });
    Row {
        name,
        latencies,
        stats,
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn pct(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn main() {
    let p = match Params::parse() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("rotation_bench: {e}");
            std::process::exit(2);
        }
    };
    let rows = [
        row("ours (rotation on)", p, |m, p| build(Pool::builder(m), p)),
        row("ours, no rotation", p, |m, p| {
            build(Pool::builder(m).rotate_lifetime(false), p)
        }),
        row("Go mode", p, |m, p| {
            build(Pool::builder(m).config(Config::go()), p)
        }),
        row("HikariCP (retire, then fill)", p, |m, p| {
            build(
                Pool::builder(m)
                    .rotate_lifetime(false)
                    .lifetime_jitter(p.lifetime / 40)
                    .min_idle(p.max_open),
                p,
            )
        }),
    ];
    println!(
        "{} workers (hold 2-6 ms, think {}-{} ms), create {} ms, max_lifetime {} s, max_open = max_idle = {}, {} s of paused time; counted after the first second.\n",
        p.workers,
        p.think.0,
        p.think.1,
        p.create.as_millis(),
        p.lifetime.as_secs(),
        p.max_open,
        p.secs
    );
    println!(
        "| pool | checkouts | waited | waited a whole create | p50 ms | p99 ms | p99.9 ms | p99.99 ms | max ms | creates | peak open | rotated |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for mut r in rows {
        r.latencies.sort_unstable();
        let l = &r.latencies;
        let waited = l.iter().filter(|d| !d.is_zero()).count();
        let whole = l.iter().filter(|d| **d >= p.create).count();
        println!(
            "| {} | {} | {} ({:.3} %) | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.name,
            l.len(),
            waited,
            100.0 * waited as f64 / l.len().max(1) as f64,
            whole,
            ms(pct(l, 0.50)),
            ms(pct(l, 0.99)),
            ms(pct(l, 0.999)),
            ms(pct(l, 0.9999)),
            ms(l.last().copied().unwrap_or_default()),
            r.stats.created,
            r.stats.peak_open,
            r.stats.rotated,
        );
    }
}
