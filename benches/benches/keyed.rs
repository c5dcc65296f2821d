//! B3's keys dimension (BENCH.md): the cost of a checkout as the number of keys grows from 1
//! to 10,000, for our keyed pool, the plain pool (one key: the cost of keying), and what
//! users of the peers build by hand (a map of deadpool pools, one per key, behind a lock).
//!
//! Two workloads: one task cycling through the keys (get, drop), and 64 tasks doing the same
//! with a `yield_now` while holding. Every key has one warm connection before timing; per-key
//! `max_open` is 8 and the idle caps never evict. Contenders run interleaved (ABC, CBA, ...)
//! in each round; the report gives the median over rounds of ns per checkout and the ratio to
//! our plain pool. Results go to stdout and `target/bench-results/keyed.md`.
//!
//! Full run: `cargo bench -p benches --bench keyed` (about 2 minutes).
//! Quick run (CI): `cargo bench -p benches --bench keyed -- --quick`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Instant;

use pool_core::{KeyedPool, Pool};

#[path = "support/mod.rs"]
#[allow(dead_code)]
mod support;

use support::{DeadpoolManager as Dead, OursManager as Plain};

const PER_KEY: usize = 8;

struct Keyed;

#[pool_core::async_trait]
impl pool_core::KeyedManager for Keyed {
    type Key = u32;
    type Resource = u64;
    type Error = Infallible;
    async fn create(&self, _: &u32) -> Result<u64, Infallible> {
        Ok(0)
    }
}

/// A deadpool per key, made on first use: the hand-written keyed pool.
#[derive(Clone, Default)]
struct DeadpoolMap(Arc<parking_lot::RwLock<HashMap<u32, deadpool::managed::Pool<Dead>>>>);

impl DeadpoolMap {
    fn pool(&self, key: u32) -> deadpool::managed::Pool<Dead> {
        if let Some(p) = self.0.read().get(&key) {
            return p.clone();
        }
        self.0
            .write()
            .entry(key)
            .or_insert_with(|| {
                deadpool::managed::Pool::builder(Dead)
                    .max_size(PER_KEY)
                    .build()
                    .expect("valid knobs")
            })
            .clone()
    }
}

#[derive(Clone)]
enum Contender {
    Keyed(KeyedPool<Keyed>),
    Plain(Pool<Plain>),
    Deadpool(DeadpoolMap),
}

impl Contender {
    const NAMES: [&'static str; 3] = ["pool-core plain (1 key)", "pool-core keyed", "deadpool map"];

    fn build(i: usize, keys: usize) -> Self {
        match i {
            0 => Contender::Plain(
                Pool::builder(Plain)
                    .max_open(PER_KEY)
                    .max_idle(PER_KEY)
                    .build()
                    .expect("valid knobs"),
            ),
            1 => Contender::Keyed(
                KeyedPool::builder(Keyed)
                    .max_open_per_key(PER_KEY)
                    .max_idle_per_key(PER_KEY)
                    .max_idle(keys * PER_KEY)
                    .build()
                    .expect("valid knobs"),
            ),
            _ => Contender::Deadpool(DeadpoolMap::default()),
        }
    }

    async fn checkout(&self, key: u32, hold: bool) {
        async fn held<G>(g: G, hold: bool) {
            if hold {
                tokio::task::yield_now().await;
            }
            drop(g);
        }
        match self {
            Contender::Keyed(p) => held(p.get(&key).await.expect("get"), hold).await,
            Contender::Plain(p) => held(p.get().await.expect("get"), hold).await,
            Contender::Deadpool(m) => held(m.pool(key).get().await.expect("get"), hold).await,
        }
    }
}

/// ns per checkout of `n` checkouts over `keys` keys by `tasks` tasks.
async fn run(c: &Contender, keys: usize, tasks: usize, n: usize) -> f64 {
    let per_task = n.div_ceil(tasks);
    let start = Instant::now();
    let handles: Vec<_> = (0..tasks)
        .map(|t| {
            let c = c.clone();
            tokio::spawn(async move {
                for i in 0..per_task {
                    let key = ((t * 7919 + i) % keys) as u32;
                    c.checkout(key, tasks > 1).await;
                }
            })
        })
        .collect();
    for h in handles {
        h.await.expect("bench task");
    }
    start.elapsed().as_nanos() as f64 / (per_task * tasks) as f64
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 1 } else { 7 };
    let n = if quick { 20_000 } else { 200_000 };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut md = format!(
        "rounds: {rounds}{}; {n} checkouts per measurement; ns per checkout (median of rounds); ratio = plain pool's time / this one's (higher is faster)\n\n",
        if quick {
            " (quick mode: not for quoting)"
        } else {
            ""
        }
    );
    for tasks in [1usize, 64] {
        let _ = writeln!(
            md,
            "### {tasks} task{}\n\n| keys | {} |\n|---:|---:|---:|---:|",
            if tasks == 1 { "" } else { "s" },
            Contender::NAMES.join(" | ")
        );
        for keys in [1usize, 10, 100, 1_000, 10_000] {
            let pools: Vec<Contender> = {
                let _rt = rt.enter();
                (0..3).map(|i| Contender::build(i, keys)).collect()
            };
            let mut times = vec![Vec::new(); 3];
            rt.block_on(async {
                for p in &pools {
                    run(p, keys, 1, keys).await; // one warm connection per key
                }
                for round in 0..rounds {
                    let mut order = vec![0, 1, 2];
                    if round % 2 == 1 {
                        order.reverse();
                    }
                    for i in order {
                        times[i].push(run(&pools[i], keys, tasks, n).await);
                    }
                }
            });
            let meds: Vec<f64> = times.iter_mut().map(|t| median(t)).collect();
            let cells: Vec<String> = meds
                .iter()
                .map(|m| format!("{m:.0} ns ({:.2}x)", meds[0] / m))
                .collect();
            let _ = writeln!(md, "| {keys} | {} |", cells.join(" | "));
        }
        md.push('\n');
    }
    println!("{md}");
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.ancestors().nth(3).map(|t| t.join("bench-results")));
    if let Some(dir) = dir
        && std::fs::create_dir_all(&dir).is_ok()
    {
        let _ = std::fs::write(dir.join("keyed.md"), &md);
        println!("written to {}", dir.display());
    }
}
