//! Core micro benchmarks B1-B3 of BENCH.md: pool-core side by side with deadpool, bb8, mobc
//! and the floor (semaphore + mutex), in one process.
//!
//! Every benchmark runs in rounds; each round benchmarks all contenders in one criterion group,
//! in alternating order (ABCDE, EDCBA, ...). Criterion picks the iteration counts; the
//! recorder keeps each contender's measurement samples (not the warm-up) and reports, per
//! benchmark, the median over rounds of the per-round median ns per checkout, the spread
//! (min-max over rounds), and the throughput ratio to the floor. Results go to stdout and to
//! `target/bench-results/core.{md,jsonl}`.
//!
//! Full run: `cargo bench -p benches --bench core` (about 5 minutes).
//! Quick run (CI; proves it runs, asserts nothing): `cargo bench -p benches --bench core -- --quick`.

#[path = "support/mod.rs"]
mod support;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use criterion::Criterion;
use parking_lot::Mutex;
use support::{Bb8, Contender, Deadpool, Floor, Mobc, Ours};

#[derive(Clone, Copy)]
enum Work {
    /// One task: get, release.
    Uncontended,
    /// One task: get with an owned guard, release.
    UncontendedOwned,
    /// `tasks` tasks share the pool; each checkout is held across a `yield_now`.
    Contended { tasks: usize },
}

struct Bench {
    name: String,
    size: usize,
    work: Work,
}

/// Criterion calls `iter_custom` for warm-up and then `SAMPLES` times for measurement.
const SAMPLES: usize = 10;

/// (bench, contender, round): ns per checkout of each criterion call, in call order.
type Calls = BTreeMap<(String, &'static str, usize), Vec<f64>>;

#[derive(Default)]
struct Recorder {
    /// (bench, contender, round) -> ns per checkout of each call, in call order.
    calls: Mutex<Calls>,
}

fn measure<C: Contender>(
    rt: &tokio::runtime::Runtime,
    pool: &C,
    work: Work,
    iters: u64,
) -> Duration {
    match work {
        Work::Uncontended => rt.block_on(async {
            let start = Instant::now();
            for _ in 0..iters {
                pool.get_release().await;
            }
            start.elapsed()
        }),
        Work::UncontendedOwned => rt.block_on(async {
            let start = Instant::now();
            for _ in 0..iters {
                pool.get_owned_release().await;
            }
            start.elapsed()
        }),
        Work::Contended { tasks } => rt.block_on(async {
            let per_task = (iters as usize).div_ceil(tasks).max(1);
            let start = Instant::now();
            let handles: Vec<_> = (0..tasks)
                .map(|_| {
                    let pool = pool.clone();
                    tokio::spawn(async move {
                        for _ in 0..per_task {
                            pool.get_yield_release().await;
                        }
                    })
                })
                .collect();
            for h in handles {
                h.await.expect("bench task");
            }
            // Scale to `iters` checkouts (the tasks ran per_task * tasks >= iters).
            start
                .elapsed()
                .mul_f64(iters as f64 / (per_task * tasks) as f64)
        }),
    }
}

fn bench_one<C: Contender>(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rt: &tokio::runtime::Runtime,
    bench: &Bench,
    round: usize,
    rec: &Recorder,
) {
    let pool = rt.block_on(C::build(bench.size));
    group.bench_function(C::NAME, |b| {
        b.iter_custom(|iters| {
            let d = measure(rt, &pool, bench.work, iters);
            rec.calls
                .lock()
                .entry((bench.name.clone(), C::NAME, round))
                .or_default()
                .push(d.as_nanos() as f64 / iters as f64);
            d
        })
    });
}

const CONTENDERS: [&str; 5] = [
    Floor::NAME,
    Ours::NAME,
    Deadpool::NAME,
    Bb8::NAME,
    Mobc::NAME,
];

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let rounds = if quick { 1 } else { 5 };
    let mut c = Criterion::default()
        .configure_from_args()
        .sample_size(SAMPLES)
        .warm_up_time(Duration::from_millis(if quick { 20 } else { 200 }))
        .measurement_time(Duration::from_millis(if quick { 100 } else { 1000 }))
        .without_plots();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let mut benches = vec![
        Bench {
            name: "B1 uncontended".into(),
            size: 8,
            work: Work::Uncontended,
        },
        Bench {
            name: "B1 uncontended, owned guard".into(),
            size: 8,
            work: Work::UncontendedOwned,
        },
    ];
    let contended: &[(usize, usize)] = if quick {
        &[(64, 8)]
    } else {
        &[(64, 8), (1024, 8), (2, 16)]
    };
    for &(tasks, size) in contended {
        benches.push(Bench {
            name: format!("B2 {tasks} tasks on {size}"),
            size,
            work: Work::Contended { tasks },
        });
    }
    let waiters: &[usize] = if quick {
        &[1, 1000]
    } else {
        &[1, 10, 100, 1000, 10_000]
    };
    for &tasks in waiters {
        benches.push(Bench {
            name: format!("B3 {tasks} tasks on 8"),
            size: 8,
            work: Work::Contended { tasks },
        });
    }

    let rec = Recorder::default();
    for round in 0..rounds {
        for bench in &benches {
            let mut group = c.benchmark_group(format!("{} r{round}", bench.name));
            let mut order: Vec<usize> = (0..CONTENDERS.len()).collect();
            if round % 2 == 1 {
                order.reverse();
            }
            for i in order {
                match i {
                    0 => bench_one::<Floor>(&mut group, &rt, bench, round, &rec),
                    1 => bench_one::<Ours>(&mut group, &rt, bench, round, &rec),
                    2 => bench_one::<Deadpool>(&mut group, &rt, bench, round, &rec),
                    3 => bench_one::<Bb8>(&mut group, &rt, bench, round, &rec),
                    _ => bench_one::<Mobc>(&mut group, &rt, bench, round, &rec),
                }
            }
            group.finish();
        }
    }
    report(&benches, rounds, quick, &rec);
}

fn report(benches: &[Bench], rounds: usize, quick: bool, rec: &Recorder) {
    let calls = rec.calls.lock();
    let mut md = String::new();
    let mut json = String::new();
    let _ = writeln!(
        md,
        "rounds: {rounds}{}; ns per checkout (median of rounds, min-max); throughput ratio to the floor (higher is faster)\n",
        if quick {
            " (quick mode: not for quoting)"
        } else {
            ""
        }
    );
    for bench in benches {
        let per_round = |name: &'static str| -> Vec<f64> {
            (0..rounds)
                .filter_map(|r| calls.get(&(bench.name.clone(), name, r)))
                .map(|v| {
                    let mut last: Vec<f64> = v[v.len().saturating_sub(SAMPLES)..].to_vec();
                    median(&mut last)
                })
                .collect()
        };
        let mut floor_rounds = per_round(Floor::NAME);
        if floor_rounds.is_empty() {
            continue; // filtered out on the command line
        }
        let _ = writeln!(
            md,
            "### {}\n\n| contender | median ns | spread ns | x floor | pool-core / it |\n|---|---:|---:|---:|---:|",
            bench.name
        );
        let floor = median(&mut floor_rounds);
        let mut ours_rounds = per_round(Ours::NAME);
        let ours = median(&mut ours_rounds);
        for name in CONTENDERS {
            let mut v = per_round(name);
            if v.is_empty() {
                continue;
            }
            let m = median(&mut v);
            let (lo, hi) = (v[0], v[v.len() - 1]);
            let _ = writeln!(
                md,
                "| {name} | {m:.1} | {lo:.1}-{hi:.1} | {:.2} | {:.2} |",
                floor / m,
                m / ours
            );
            let _ = writeln!(
                json,
                r#"{{"bench":"{}","contender":"{name}","median_ns":{m:.2},"min_ns":{lo:.2},"max_ns":{hi:.2},"ratio_to_floor":{:.3},"rounds":{rounds},"quick":{quick}}}"#,
                bench.name,
                floor / m
            );
        }
        md.push('\n');
    }
    println!("\n{md}");
    print!("{json}");
    let dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.ancestors().nth(3).map(|t| t.join("bench-results")));
    if let Some(dir) = dir
        && std::fs::create_dir_all(&dir).is_ok()
    {
        let _ = std::fs::write(dir.join("core.md"), &md);
        let _ = std::fs::write(dir.join("core.jsonl"), &json);
        println!("written to {}", dir.display());
    }
}
