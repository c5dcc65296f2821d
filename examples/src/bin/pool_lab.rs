//! pool-lab: how to set `max_idle` against `max_open` for your traffic, measured.
//!
//! - `pool-lab` (no arguments): the showcase. A private PostgreSQL and a local HTTP server,
//!   the field's bursty workload, Go's behaviour against ours on the same knobs, side by side.
//! - `pool-lab sql --url postgres://...` and `pool-lab http --url http://...`: a sweep of
//!   `max_idle` (with and without `idle_grace`) at a fixed `max_open` against your server,
//!   and a recommendation.
//!
//! - `pool-lab replay --trace FILE`: a trace of calls with each idle-retention setting,
//!   simulated (or against your server with `--url`), and the cheapest under a cost model.
//!
//! `--report DIR` writes an HTML report with charts. Ctrl-C stops after the burst in flight
//! and still prints what was measured. Bad input or an unusable server: a message and exit
//! code 2; a sweep in which calls failed: exit code 3 (see `EXIT_STATUS`).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use examples::http_server::Server;
use examples::lab::budget::Budget;
use examples::lab::http::HttpTarget;
use examples::lab::replay_cli;
use examples::lab::report::Section;
use examples::lab::sql::SqlTarget;
use examples::lab::sweep;
use examples::lab::{LabError, Run, Setting, Stop, Target, Workload, report, table};
use indicatif::{ProgressBar, ProgressStyle};

/// The exit status of a sweep that measured, but in which calls failed.
const CALLS_FAILED: u8 = 3;

const EXIT_STATUS: &str = "Exit status:\n  \
    0    measured, no call failed\n  \
    2    bad input or an unusable server: nothing measured (the message says which)\n  \
    3    measured, but calls failed (the table counts them); when the server refused \
    connections for its max_connections, pool-lab prints the budget and what fits\n  \
    130  a second Ctrl-C (the first stops after the burst in flight and prints the table)";

#[derive(Parser)]
#[command(
    name = "pool-lab",
    about = "Measures what max_idle, max_open and idle_grace cost under bursty traffic: \
             physical connections opened, latency, TIME_WAIT sockets.",
    long_about = None,
    after_help = EXIT_STATUS
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    common: Common,
}

#[derive(Subcommand)]
enum Command {
    /// Sweep max_idle against your PostgreSQL (read-only statements only).
    #[command(after_help = EXIT_STATUS)]
    Sql {
        /// postgres://user:password@host:port/database
        #[arg(long)]
        url: String,
        /// The statement each call runs.
        #[arg(long, default_value = "SELECT 1")]
        query: String,
        /// Copies of your application, each with its own pool: pool-lab warns before the
        /// sweep when instances x max_open is more than the server's max_connections allow.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
        instances: u32,
        #[command(flatten)]
        sweep: SweepArgs,
    },
    /// Sweep max_idle_conns_per_host against your HTTP server (GETs of one URL).
    #[command(after_help = EXIT_STATUS)]
    Http {
        /// http://host:port/path or https://host/path
        #[arg(long)]
        url: String,
        /// Drop each body unread (the Go pitfall) instead of reading it to its end.
        #[arg(long)]
        drop_body: bool,
        #[command(flatten)]
        sweep: SweepArgs,
    },
    /// Replay a trace (CSV or access log) with each idle setting: simulated, or --url.
    #[command(long_about = replay_cli::HELP)]
    Replay(replay_cli::ReplayArgs),
}

#[derive(Args)]
struct SweepArgs {
    /// max_open (max_conns_per_host for HTTP); 0 = unlimited.
    #[arg(long, default_value_t = 16)]
    max_open: usize,
    /// The max_idle values to sweep, comma-separated [default: 0, 2, max_open/4, max_open/2,
    /// max_open].
    #[arg(long, value_delimiter = ',')]
    idle: Option<Vec<usize>>,
    /// The idle_grace measured beside Go's behaviour (no grace).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    grace: Duration,
}

#[derive(Args)]
struct Common {
    /// Bursts per setting [default: 15 in the showcase, 20 in a sweep: 640 calls, enough
    /// for a p99 with a 95% interval].
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..))]
    bursts: Option<u32>,
    /// Concurrent calls per burst [default: 100 (SQL) and 50 (HTTP) in the showcase, 32 in a
    /// sweep].
    #[arg(long, global = true, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    burst: Option<u32>,
    /// From one burst to the next [default: 300ms in the showcase, 500ms in a sweep].
    #[arg(long, global = true, value_parser = humantime::parse_duration)]
    period: Option<Duration>,
    /// Write an HTML report with charts into this directory.
    #[arg(long, global = true)]
    report: Option<PathBuf>,
}

impl Common {
    fn workload(&self, bursts: u32, burst: u32, period: Duration) -> Workload {
        Workload {
            bursts: self.bursts.unwrap_or(bursts) as usize,
            burst: self.burst.unwrap_or(burst) as usize,
            period: self.period.unwrap_or(period),
        }
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => e.exit(), // 2 for a bad flag, 0 for --help
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("pool-lab: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let stop = Stop::new();
    match runtime.block_on(run(cli, stop)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("pool-lab: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: Cli, stop: Stop) -> Result<ExitCode, LabError> {
    tokio::spawn({
        let stop = stop.clone();
        async move {
            while tokio::signal::ctrl_c().await.is_ok() {
                if stop.is_stopped() {
                    std::process::exit(130);
                }
                stop.stop();
                eprintln!(
                    "\npool-lab: stopping after the burst in flight (Ctrl-C again to quit at once)"
                );
            }
        }
    });
    if let Some(dir) = &cli.common.report {
        report::check_dir(dir).map_err(|e| {
            LabError::BadInput(format!(
                "cannot write the report into {}: {e}",
                dir.display()
            ))
        })?;
    }
    let (target, shown, title, sweep, instances) = match cli.command {
        None => {
            return showcase(&cli.common, &stop)
                .await
                .map(|()| ExitCode::SUCCESS);
        }
        Some(Command::Replay(args)) => {
            let c = &cli.common;
            if c.bursts.is_some() || c.burst.is_some() || c.period.is_some() {
                return Err(LabError::BadInput(
                    "--bursts, --burst and --period do not apply to replay: the trace is the \
                     traffic"
                        .into(),
                ));
            }
            return replay_cli::run(args, c.report.as_deref())
                .await
                .map(|()| ExitCode::SUCCESS);
        }
        Some(Command::Sql {
            url,
            query,
            instances,
            sweep,
        }) => {
            let target = SqlTarget::new(&url, &query)?;
            let title = format!("pool-lab sql: `{}`", target.statement());
            (Target::Sql(target), redact(&url), title, sweep, instances)
        }
        Some(Command::Http {
            url,
            drop_body,
            sweep,
        }) => {
            let target = HttpTarget::new(&url, !drop_body)?;
            let title = format!(
                "pool-lab http: GET {url}, bodies {}",
                if drop_body { "dropped unread" } else { "read" }
            );
            (Target::Http(target), url, title, sweep, 1)
        }
    };
    let workload = cli.common.workload(20, 32, Duration::from_millis(500));
    let settings = sweep::settings(
        sweep.max_open,
        sweep.idle.as_deref(),
        sweep.grace,
        workload.burst,
    )?;
    eprintln!("pool-lab: checking {shown} ...");
    target.probe().await?;
    // What one instance opens at the peak: max_open, or the burst when it is unlimited.
    let per_instance = if sweep.max_open == 0 {
        workload.burst
    } else {
        sweep.max_open
    };
    let budget = match &target {
        Target::Sql(t) => server_budget(t, instances, per_instance, workload.burst).await,
        Target::Http(_) => None,
    };
    let runs = sweep_runs(&target, &settings, workload, &stop).await?;
    let limit = budget.map(|b| (b, instances, per_instance));
    conclude(&cli.common, &title, workload, &runs, settings.len(), limit)
}

/// Reads the server's connection budget and warns when `instances` pools of `per_instance`
/// need more; `None` (and a note) when the server cannot be asked.
async fn server_budget(
    target: &SqlTarget,
    instances: u32,
    per_instance: usize,
    burst: usize,
) -> Option<Budget> {
    match target.budget().await {
        Ok(budget) => {
            let sweep_peak = per_instance.min(burst);
            if let Some(warning) = budget.check(instances, per_instance, sweep_peak) {
                eprintln!("pool-lab: {warning}");
            }
            Some(budget)
        }
        Err(e) => {
            eprintln!("pool-lab: cannot read the server's max_connections ({e}); no budget check");
            None
        }
    }
}

/// Runs every setting in turn under one progress bar; stops early on Ctrl-C.
async fn sweep_runs(
    target: &Target,
    settings: &[Setting],
    workload: Workload,
    stop: &Stop,
) -> Result<Vec<Run>, LabError> {
    let bar = progress((settings.len() * workload.bursts) as u64);
    let mut runs = Vec::new();
    for s in settings {
        if stop.is_stopped() {
            break;
        }
        bar.set_message(s.label.clone());
        runs.push(target.run(workload, s, stop, &|| bar.inc(1)).await?);
    }
    bar.finish_and_clear();
    Ok(runs)
}

fn progress(len: u64) -> ProgressBar {
    let bar = ProgressBar::new(len);
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} bursts  {elapsed}  {msg}")
    {
        bar.set_style(style);
    }
    bar
}

/// Prints the table, the recommendation (or why there is none) and, when the server refused
/// connections, the cause and what fits; writes the report when asked. Exit status
/// [`CALLS_FAILED`] when calls failed.
fn conclude(
    common: &Common,
    title: &str,
    workload: Workload,
    runs: &[Run],
    planned: usize,
    limit: Option<(Budget, u32, usize)>,
) -> Result<ExitCode, LabError> {
    let context = describe(workload);
    examples::say!("\n{title}\n{context}\n\n{}", table(runs));
    for r in runs.iter().filter(|r| r.errors > 0) {
        examples::say!(
            "{}: {} calls failed; the first: {}",
            r.setting.label,
            r.errors,
            r.first_error.as_deref().unwrap_or("?")
        );
    }
    let recommendation = sweep::recommend(runs, planned, workload);
    match &recommendation {
        Ok(rec) => examples::say!("Recommended: {}\n{}", rec.setting.label, rec.why),
        Err(withheld) => examples::say!("{withheld}"),
    }
    let refused: u64 = runs.iter().map(|r| r.refused).sum();
    if refused > 0 {
        examples::say!(
            "\n{refused} calls failed because the server refused connections: it had no free \
             slot (too many clients, SQLSTATE 53300)."
        );
        match limit {
            Some((budget, instances, per_instance)) => examples::say!(
                "The server: {}.\n{}",
                budget.describe(),
                budget.hint(instances, per_instance)
            ),
            None => examples::say!(
                "Lower max_open below the server's max_connections (less its reserved slots \
                 and the sessions others hold), or put PgBouncer in front of it."
            ),
        }
    }
    let section = Section {
        heading: title,
        context: &context,
        runs,
        recommendation: recommendation.as_ref().ok(),
    };
    write_report(common, "pool-lab sweep", &[section])?;
    let failed = runs.iter().any(|r| r.errors > 0);
    Ok(if failed {
        ExitCode::from(CALLS_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

fn write_report(common: &Common, title: &str, sections: &[Section<'_>]) -> Result<(), LabError> {
    if let Some(dir) = &common.report {
        report::write(dir, title, sections).map_err(|e| {
            LabError::BadInput(format!(
                "cannot write the report into {}: {e}",
                dir.display()
            ))
        })?;
        examples::say!("\nReport: {}", dir.join("index.html").display());
    }
    Ok(())
}

fn describe(w: Workload) -> String {
    format!(
        "{} bursts of {} concurrent calls, one every {}.",
        w.bursts,
        w.burst,
        humantime::format_duration(w.period)
    )
}

/// The connection string without its passwords (the URL's, and `password=` in a URL's
/// query or in `key=value` form): pool-sql's own redaction, which follows its parser.
fn redact(url: &str) -> String {
    pool_sql::Db::builder(url).redacted_url()
}

/// One part of the showcase: its heading, its workload in words, its runs.
type Part = (String, String, Vec<Run>);

/// The showcase: Go's behaviour against ours on the same knobs, for PostgreSQL (when its
/// binaries are installed) and for HTTP with bodies dropped unread.
async fn showcase(common: &Common, stop: &Stop) -> Result<(), LabError> {
    examples::say!(
        "pool-lab showcase: the same knobs, Go's way (idle_grace = 0, no drain) and ours.\n\
         (`pool-lab sql --url ...` or `pool-lab http --url ...` sweep them against your server.)"
    );
    let mut parts = Vec::new();
    match pool_sql::testing::TestPg::start() {
        Ok(pg) => parts.push(showcase_sql(common, stop, &pg).await?),
        Err(e) => examples::say!(
            "\nPostgreSQL part skipped: {e}.\nInstall the server binaries to run it \
             (Debian/Ubuntu: `sudo apt-get install postgresql`); no server needs to run, \
             pool-lab starts a private one.\n"
        ),
    }
    if !stop.is_stopped() {
        parts.push(showcase_http(common, stop).await?);
    }
    let sections: Vec<Section<'_>> = parts
        .iter()
        .map(|(heading, context, runs)| Section {
            heading,
            context,
            runs,
            recommendation: None,
        })
        .collect();
    write_report(common, "pool-lab showcase: Go's way and ours", &sections)
}

/// Bursts of short queries against a private PostgreSQL, max_open 50 and max_idle 10.
async fn showcase_sql(
    common: &Common,
    stop: &Stop,
    pg: &pool_sql::testing::TestPg,
) -> Result<Part, LabError> {
    let workload = common.workload(15, 100, Duration::from_millis(300));
    let target = Target::Sql(SqlTarget::new(&pg.url(), "SELECT pg_sleep(0.002)")?);
    target.probe().await?;
    let runs = sweep_runs(&target, &pair(50, 10), workload, stop).await?;
    let heading = "PostgreSQL (a private server on this machine): SELECT pg_sleep(0.002), \
                   max_open 50, max_idle 10";
    examples::say!("\n{heading}\n{}\n\n{}", describe(workload), table(&runs));
    explain(&runs, "queries");
    Ok((heading.to_owned(), describe(workload), runs))
}

/// Bursts of GETs whose 64 KiB bodies are dropped unread, with Go's default per-host idle
/// limit of 2 and no per-host cap.
async fn showcase_http(common: &Common, stop: &Stop) -> Result<Part, LabError> {
    let workload = common.workload(15, 50, Duration::from_millis(300));
    let server = Server::start(|_| {
        (
            "application/octet-stream",
            Bytes::from(vec![b'x'; 64 * 1024]),
        )
    })
    .await
    .map_err(|e| LabError::Unreachable(format!("cannot start the local HTTP server: {e}")))?;
    let target = Target::Http(HttpTarget::new(&server.url("/report"), false)?);
    let runs = sweep_runs(&target, &pair(0, 2), workload, stop).await?;
    let heading = "HTTP (a local server): GET of 64 KiB with the body dropped unread, Go's \
                   defaults (max_idle_conns_per_host 2, no per-host cap)";
    examples::say!("\n{heading}\n{}\n\n{}", describe(workload), table(&runs));
    explain(&runs, "requests");
    Ok((heading.to_owned(), describe(workload), runs))
}

/// Go's behaviour and ours on the same `max_open` and `max_idle`.
fn pair(max_open: usize, max_idle: usize) -> [Setting; 2] {
    let go = Setting {
        label: "Go (no grace, no drain)".into(),
        max_open,
        max_idle,
        idle_grace: Duration::ZERO,
        go: true,
    };
    let ours = Setting {
        label: "ours (grace 30s, drain)".into(),
        idle_grace: Duration::from_secs(30),
        go: false,
        ..go.clone()
    };
    [go, ours]
}

fn explain(runs: &[Run], calls: &str) {
    if let [go, ours] = runs {
        examples::say!(
            "Go's way opened {} connections for {} {calls} ({:.0} per 1,000) and left {} \
             TIME_WAIT sockets; ours opened {} ({:.1} per 1,000) and left {}.",
            go.opened(),
            go.calls,
            go.opens_per_1000(),
            go.time_wait,
            ours.opened(),
            ours.opens_per_1000(),
            ours.time_wait
        );
    }
}
