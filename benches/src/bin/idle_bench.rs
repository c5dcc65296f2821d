//! Idle retention on traces (issue 22): every generated trace through the simulated backend
//! of pool-lab (`examples::lab::sim`) with every fixed setting, a Markdown table per trace
//! and, with `--charts DIR`, one frontier chart per trace.
//!
//! ```text
//! cargo run --release -p benches --bin idle_bench -- [--quick] [--charts DIR] [--seed N]
//!     [--max-open N] [--handshake-ms MS] [--break-even-s S] [--only NAME,...]
//! ```
//!
//! The traces are those of `examples::lab::shapes` (bursts every 5 s, 45 s and 5 min, a
//! compressed day, a single spike, Poisson arrivals), seeded: the same seed gives the same
//! numbers on every machine, since the simulator runs on paused tokio time (a simulated
//! hour takes well under a second). `--quick` uses the short traces (about a fifth).
//!
//! Columns: opens (handshakes), idle connection-seconds, the cost at B (`idle conn-s + B x
//! opens`, B = `--break-even-s`, default 60), the cost over the cheapest fixed setting's
//! (vs best), whether the setting is on the frontier of the fixed settings (for a setting
//! that is not fixed: its gap to the frontier, see `examples::lab::frontier`), checkouts
//! that waited, the p99 checkout wait, and the peak of open connections.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use examples::lab::frontier::{self, adaptive_setting, fixed_settings};
use examples::lab::frontier_chart;
use examples::lab::replay::measure_all;
use examples::lab::shapes::{Length, Shape};
use examples::lab::sim::{Backend, PoolSetting};

const USAGE: &str = "usage: idle_bench [--quick] [--charts DIR] [--seed N] [--max-open N] \
                     [--handshake-ms MS] [--break-even-s S] [--only NAME,...]";

struct Opts {
    quick: bool,
    charts: Option<PathBuf>,
    seed: u64,
    max_open: usize,
    handshake: Duration,
    b: Duration,
    only: Option<Vec<String>>,
}

fn parse(args: &[String]) -> Result<Opts, String> {
    let mut o = Opts {
        quick: false,
        charts: None,
        seed: 1,
        max_open: 64,
        handshake: Duration::from_millis(20),
        b: Duration::from_secs(60),
        only: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or_else(|| format!("{a} needs a value"));
        let number = |v: &String| {
            v.parse::<u64>()
                .map_err(|_| format!("{a}: `{v}` is not a number"))
        };
        match a.as_str() {
            "--quick" => o.quick = true,
            "--charts" => o.charts = Some(PathBuf::from(value()?)),
            "--seed" => o.seed = number(value()?)?,
            "--max-open" => o.max_open = number(value()?)?.clamp(1, 10_000) as usize,
            "--handshake-ms" => o.handshake = Duration::from_millis(number(value()?)?.min(60_000)),
            "--break-even-s" => o.b = Duration::from_secs(number(value()?)?),
            "--only" => o.only = Some(value()?.split(',').map(str::to_owned).collect()),
            _ => return Err(format!("unknown argument `{a}`")),
        }
    }
    if let Some(only) = &o.only {
        for name in only {
            Shape::from_name(name)?;
        }
    }
    Ok(o)
}

/// Settings placed against the frontier besides the fixed ones: the adaptive mode, with
/// the break-even time of the cost model.
fn others(max_open: usize, b: Duration) -> Vec<PoolSetting> {
    vec![adaptive_setting(max_open, b)]
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let o = match parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("idle_bench: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&o) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("idle_bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(o: &Opts) -> Result<(), Box<dyn std::error::Error>> {
    let length = if o.quick { Length::Quick } else { Length::Full };
    let backend = Backend {
        handshake: o.handshake,
        service: Duration::ZERO,
    };
    let fixed = fixed_settings(o.max_open);
    let others = others(o.max_open, o.b);
    if let Some(dir) = &o.charts {
        std::fs::create_dir_all(dir)?;
    }
    println!(
        "# Idle retention on traces\n\nSimulated backend (paused time): handshake {}, max_open \
         {}, B = {}, seed {}, {} traces.\n",
        humantime::format_duration(o.handshake),
        o.max_open,
        humantime::format_duration(o.b),
        o.seed,
        if o.quick { "quick" } else { "full" }
    );
    let started = Instant::now();
    for shape in Shape::all() {
        let name = shape.name();
        if o.only.as_ref().is_some_and(|only| !only.contains(&name)) {
            continue;
        }
        let trace = shape.generate(o.seed, length);
        let t = Instant::now();
        let analysis = measure_all(&trace, &fixed, &others, backend, o.b)?;
        println!(
            "## {name}\n\n{} calls over {:.0} s, at most {} at once; simulated in {:.2} s.\n\n{}\n{}\n",
            trace.calls.len(),
            trace.end.as_secs_f64(),
            trace.peak_concurrency(),
            t.elapsed().as_secs_f64(),
            frontier::table(&analysis, true),
            frontier::recommend(&analysis).replace('\n', "\n\n"),
        );
        if let Some(dir) = &o.charts {
            let svg = frontier_chart::svg(
                &analysis,
                &format!("{name}: opens against idle connection-seconds"),
            )?;
            std::fs::write(dir.join(format!("idle-{name}.svg")), svg)?;
        }
    }
    eprintln!(
        "idle_bench: done in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
