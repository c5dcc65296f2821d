//! The flags of `pool-lab replay` and what it does with them: read or generate the trace,
//! replay it with every setting (simulated, or against the user's server with `--url`),
//! print the table and the recommendation, write the report.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::LabError;
use super::frontier::{self, adaptive_setting, fixed_settings};
use super::replay::{self, measure_all_with};
use super::replay_real;
use super::shapes::{Length, Shape};
use super::sim::Backend;
use super::trace::Trace;

/// `pool-lab replay --help`.
pub const HELP: &str = "\
Replays a trace of calls with each idle-retention setting and prints what each costs:
physical opens (handshakes) and idle connection-seconds, and the cheapest setting under the
cost model  cost = idle connection-seconds + B x opens  (B: --break-even, the time an idle
connection costs as much as one handshake).

By default the backend is simulated under a virtual clock: each connect takes --handshake,
each call holds its connection for its duration (plus --service); a day of traffic replays
in seconds and every number is exact. With --url the trace is replayed in real time against
your server: postgres://... runs `SELECT pg_sleep(duration)` per call; http://... GETs the
URL, the server's own response time holding the connection.

Settings: Go's way (no grace) with max_idle 0, 2, max_open/4, max_open/2 and max_open,
ours with max_idle 2 and idle_grace 10s, 30s and 120s, and the adaptive retention
(`adaptive, max_idle 2`: Config::adaptive_idle with the same break-even B), all at
--max-open. --break-even takes 1s to 30m (the adaptive mode's range).

Trace files (--trace FILE):
  CSV with a header naming the columns and their units, seconds (_s) or milliseconds (_ms):
      start_s,duration_s
      0.000,0.050
      0.002,0.048
  The duration column may be left out; other columns are ignored; a line starting with `#`
  is a comment. A leading byte order mark (Excel's CSV UTF-8) and double quotes around
  cells are taken off.
  Starts are offsets (or epoch times): the trace starts at the earliest.
  Or an access log in the combined format with the request time as the last field: nginx
  `$request_time` (seconds, with a decimal point; the log time is the request's end) or
  Apache `%D` (microseconds, an integer; the log time is its start). Calls logged in the
  same second are spread evenly over it.
Generated traces (--generate NAME, --seed N): bursts-5s, bursts-45s, bursts-5min, diurnal
(a day compressed to 24 minutes), spike, poisson.
  A trace file may hold at most 256 MiB and 2,000,000 calls: cut a longer one with
  `head -n 1000000 FILE > part.csv`.

--bursts, --burst and --period do not apply: the trace is the traffic.";

/// The flags of `pool-lab replay`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("input")
        .args(["trace", "generate"])
        .required(true)
        .multiple(false)
))]
pub struct ReplayArgs {
    /// The trace: a CSV file or an access log (see above).
    #[arg(long)]
    pub trace: Option<PathBuf>,
    /// A generated trace instead: bursts-5s, bursts-45s, bursts-5min, diurnal, spike,
    /// poisson.
    #[arg(long)]
    pub generate: Option<String>,
    /// The generator's seed: the same seed gives the same trace.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Generate the short version of the trace (about a fifth).
    #[arg(long)]
    pub quick: bool,
    /// Also write the trace as CSV into this file (how examples/traces/ were made).
    #[arg(long)]
    pub save_trace: Option<PathBuf>,
    /// How long the simulated backend takes to open a connection.
    #[arg(long, default_value = "20ms", value_parser = humantime::parse_duration)]
    pub handshake: Duration,
    /// Added to each call's hold in the simulation.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub service: Duration,
    /// max_open of every setting.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_open: u32,
    /// B: how long holding an idle connection costs as much as one handshake.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub break_even: Duration,
    /// Replay against this server in real time instead of the simulation
    /// (postgres://... or http://...).
    #[arg(long)]
    pub url: Option<String>,
}

/// The longest simulated handshake: beyond it, surely a typo.
const LONGEST_HANDSHAKE: Duration = Duration::from_secs(60);
/// The longest service time added to each call.
const LONGEST_SERVICE: Duration = Duration::from_secs(3600);

/// The shortest `--break-even`: below a second every retention costs less than one
/// handshake, and the gaps printed become meaningless percentages.
const SHORTEST_BREAK_EVEN: Duration = Duration::from_secs(1);
/// The longest `--break-even`: the range of `Config::adaptive_idle`.
const LONGEST_BREAK_EVEN: Duration = Duration::from_secs(30 * 60);

/// Runs `pool-lab replay`; writes the report into `report` when given.
///
/// # Errors
/// [`LabError::BadInput`] for a trace that cannot be read (naming the line), a flag out of
/// range or a report directory that cannot be written; the target's errors with `--url`.
pub async fn run(args: ReplayArgs, report: Option<&Path>) -> Result<(), LabError> {
    if args.handshake > LONGEST_HANDSHAKE {
        return Err(LabError::BadInput(format!(
            "--handshake {} is longer than a minute",
            humantime::format_duration(args.handshake)
        )));
    }
    if args.service > LONGEST_SERVICE {
        return Err(LabError::BadInput(format!(
            "--service {} is longer than an hour",
            humantime::format_duration(args.service)
        )));
    }
    if !(SHORTEST_BREAK_EVEN..=LONGEST_BREAK_EVEN).contains(&args.break_even) {
        return Err(LabError::BadInput(format!(
            "--break-even {} is out of range: give 1s to 30m (the adaptive mode's range; below \
             a second the cost is all handshakes)",
            humantime::format_duration(args.break_even)
        )));
    }
    if let (Some(save), Some(trace)) = (&args.save_trace, &args.trace)
        && same_file(save, trace)
    {
        return Err(LabError::BadInput(format!(
            "--save-trace {} is the --trace file itself: it would be overwritten; give \
             another path",
            save.display()
        )));
    }
    let (trace, name) = load(&args)?;
    if let Some(path) = &args.save_trace {
        std::fs::write(path, trace.to_csv()).map_err(|e| {
            LabError::BadInput(format!("cannot write the trace to {}: {e}", path.display()))
        })?;
    }
    if let Some(dir) = report {
        check_writable(dir)?;
    }
    let max_open = args.max_open as usize;
    let fixed = fixed_settings(max_open);
    let b = args.break_even;
    let others = vec![adaptive_setting(max_open, b)];
    let backend = Backend {
        handshake: args.handshake,
        service: args.service,
    };
    let (analysis, context) = match &args.url {
        Some(url) => {
            let analysis = replay_real::replay(url, &trace, &fixed, &others, b).await?;
            let context = format!(
                "{} over {:.0} s replayed in real time against {}; max_open {max_open}.",
                replay::calls(trace.calls.len()),
                trace.end.as_secs_f64(),
                replay_real::shown(url)
            );
            (analysis, context)
        }
        None => {
            let context = replay::describe(&trace, backend, max_open);
            let job = tokio::task::spawn_blocking(move || {
                let total = fixed.len() + others.len();
                measure_all_with(&trace, &fixed, &others, backend, b, |i, label| {
                    eprintln!("pool-lab: simulating {i}/{total}: {label} ...");
                })
            });
            let analysis = job
                .await
                .map_err(|e| LabError::BadInput(format!("the simulation failed: {e}")))??;
            (analysis, context)
        }
    };
    let title = format!("pool-lab replay: {name}");
    crate::say!(
        "\n{}\n{}\n\n{}\n{}",
        wrap(&title, 100),
        wrap(&context, 100),
        frontier::table(&analysis, false),
        wrap(&frontier::recommend(&analysis), 100)
    );
    if let Some(dir) = report {
        replay::write_report(dir, &title, &context, &analysis)?;
        crate::say!("\nReport: {}", dir.join("index.html").display());
    }
    Ok(())
}

/// `text` with each line broken at spaces to at most `width` characters (a longer word
/// stays whole).
pub fn wrap(text: &str, width: usize) -> String {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut current = String::new();
        for word in line.split(' ') {
            let len = current.chars().count();
            if len > 0 && len + 1 + word.chars().count() > width {
                out.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push(' ');
            }
            current.push_str(word);
        }
        out.push(current);
    }
    out.join("\n")
}

/// The trace the flags name, and its name for the title.
fn load(args: &ReplayArgs) -> Result<(Trace, String), LabError> {
    if let Some(name) = &args.generate {
        let shape = Shape::from_name(name).map_err(LabError::BadInput)?;
        let length = if args.quick {
            Length::Quick
        } else {
            Length::Full
        };
        let trace = shape.generate(args.seed, length);
        return Ok((trace, format!("{name} (seed {})", args.seed)));
    }
    let path = args.trace.as_ref().ok_or_else(|| {
        LabError::BadInput("give a trace: --trace FILE or --generate NAME".into())
    })?;
    let file = std::fs::File::open(path)
        .map_err(|e| LabError::BadInput(format!("cannot read {}: {e}", path.display())))?;
    let text = read_bounded(file, MAX_TRACE_BYTES)
        .map_err(|e| LabError::BadInput(format!("{}: {e}", path.display())))?;
    check_calls(&text, MAX_TRACE_CALLS)
        .map_err(|e| LabError::BadInput(format!("{}: {e}", path.display())))?;
    let trace =
        Trace::parse(&text).map_err(|e| LabError::BadInput(format!("{}: {e}", path.display())))?;
    Ok((trace, path.display().to_string()))
}

/// The largest trace file `pool-lab replay` reads: 256 MiB.
pub const MAX_TRACE_BYTES: u64 = 256 * 1024 * 1024;
/// The most calls a trace may hold: 2,000,000.
pub const MAX_TRACE_CALLS: usize = 2_000_000;

/// Reads at most `max_bytes` from `input` as UTF-8 text; refuses a longer input without
/// reading more than one byte past the limit (so `/dev/zero` stops there).
///
/// # Errors
/// A message naming the limit and how to cut the trace, or the read error.
pub fn read_bounded(input: impl Read, max_bytes: u64) -> Result<String, String> {
    let mut bytes = Vec::new();
    input
        .take(max_bytes.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!(
            "the trace is larger than the limit of {}: replay a part of it, e.g. \
             `head -n 1000000 FILE > part.csv` (a CSV keeps its header)",
            size(max_bytes)
        ));
    }
    String::from_utf8(bytes).map_err(|e| {
        format!(
            "the trace is not UTF-8 text (byte {}): save it as UTF-8",
            e.utf8_error().valid_up_to()
        )
    })
}

/// Refuses a trace of more than `max` calls before it is parsed: every line that is not
/// blank nor a `#` comment is a call, but for one (a CSV's header).
///
/// # Errors
/// A message naming the limit and how to cut the trace.
pub fn check_calls(text: &str, max: usize) -> Result<(), String> {
    let calls = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .count()
        .saturating_sub(1);
    if calls > max {
        return Err(format!(
            "the trace holds about {calls} calls, more than the limit of {max}: replay a part of it, \
             e.g. `head -n {} FILE > part.csv` (a CSV keeps its header)",
            max.min(1_000_000)
        ));
    }
    Ok(())
}

/// Bytes in MiB or KiB or bytes, whichever is whole.
fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// Whether `a` and `b` name the same existing file (compared by canonical path).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Fails before any replay when the report directory cannot be written.
fn check_writable(dir: &Path) -> Result<(), LabError> {
    let probe = dir.join(".pool-lab-write-test");
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b""))
        .and_then(|()| std::fs::remove_file(&probe))
        .map_err(|e| {
            LabError::BadInput(format!(
                "cannot write the report into {}: {e}",
                dir.display()
            ))
        })
}
