//! pool-lab's measurement core: replay a bursty workload against a pool built with one
//! setting, record what it cost (physical connections opened and closed, latency, TIME_WAIT
//! sockets, open connections over time), sweep settings, recommend one, and draw the report.
//!
//! The `pool-lab` binary (`src/bin/pool_lab.rs`) is a thin command line over this module;
//! `tests/lab.rs` runs a short sweep against a throw-away PostgreSQL and a local HTTP server.

pub mod budget;
pub mod charts;
pub mod http;
pub mod quantile;
pub mod report;
pub mod sockets;
pub mod sql;
pub mod sweep;
// Trace replay (issue 22): traces, their shapes, the simulator, the frontier and `replay`.
pub mod frontier;
pub mod frontier_chart;
pub mod out;
pub mod replay;
pub mod replay_cli;
pub mod replay_real;
pub mod shapes;
pub mod sim;
mod table;
pub mod trace;

pub use table::{ROUGH, table};

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pool_core::Stats;

/// The field's traffic: `bursts` bursts of `burst` concurrent calls, one every `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Workload {
    /// How many bursts.
    pub bursts: usize,
    /// Concurrent calls per burst.
    pub burst: usize,
    /// From the start of one burst to the start of the next (a burst that takes longer is
    /// followed at once by the next).
    pub period: Duration,
}

impl Workload {
    /// Calls in all.
    pub fn calls(&self) -> usize {
        self.bursts * self.burst
    }
}

/// The knobs one run uses. `go` marks Go's behaviour (no grace, no drain): the same knobs,
/// database/sql's or http.Transport's way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// How the tables and charts name it.
    pub label: String,
    /// `max_open` (`max_conns_per_host` for HTTP; 0 = unlimited).
    pub max_open: usize,
    /// `max_idle` (`max_idle_conns_per_host` for HTTP).
    pub max_idle: usize,
    /// `idle_grace`: how long connections above `max_idle` stay for the next burst.
    pub idle_grace: Duration,
    /// Go's behaviour: `idle_grace = 0` and, for HTTP, no drain of unread bodies.
    pub go: bool,
}

/// Why one call failed, as a run records it: its text, and whether the server refused the
/// connection for its connection limit (PostgreSQL's `max_connections`, SQLSTATE 53300).
/// Any error that prints converts into one that was not refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The error, as text.
    pub message: String,
    /// The server refused the connection: it had no free slot.
    pub refused: bool,
}

impl<E: fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure {
            message: e.to_string(),
            refused: false,
        }
    }
}

/// One point of the open-connections timeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Seconds since the run started.
    pub at: f64,
    /// Connections open then.
    pub open: usize,
    /// Connections opened so far.
    pub created: u64,
}

/// What one setting cost under the workload.
#[derive(Debug, Clone)]
pub struct Run {
    /// The setting measured.
    pub setting: Setting,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed.
    pub errors: u64,
    /// Of the failed calls, those the server refused for its connection limit.
    pub refused: u64,
    /// The first failure, as text.
    pub first_error: Option<String>,
    /// Latency of every call (failed ones included), sorted.
    pub latencies: Vec<Duration>,
    /// The pool's open and created counts every 10 ms, and once more at the end. `open`
    /// misses connections shorter than that; `created` is a counter and misses none.
    pub timeline: Vec<Sample>,
    /// TIME_WAIT sockets to or from the server's port when the run ended, of connections
    /// that were not on the machine when it started (see [`sockets`]).
    pub time_wait: usize,
    /// The pool's stats at the end (before it was closed).
    pub stats: Stats,
    /// How long the run took.
    pub elapsed: Duration,
    /// Stopped early (Ctrl-C): fewer bursts than asked.
    pub stopped: bool,
}

impl Run {
    /// Physical connections opened.
    pub fn opened(&self) -> u64 {
        self.stats.created
    }

    /// Physical connections closed during the run.
    pub fn closed(&self) -> u64 {
        self.stats.closed()
    }

    /// Opens per 1,000 calls.
    pub fn opens_per_1000(&self) -> f64 {
        per_1000(self.opened(), self.calls)
    }

    /// The latency at quantile `q` (0.5 for p50); zero without calls.
    pub fn latency(&self, q: f64) -> Duration {
        if self.latencies.is_empty() {
            return Duration::ZERO;
        }
        let i = ((self.latencies.len() as f64 * q) as usize).min(self.latencies.len() - 1);
        self.latencies[i]
    }

    /// The 95 % confidence interval of the `q` quantile, from order statistics (see
    /// [`quantile`]): `None` for a side too few calls bound (p99's upper side below 368
    /// calls).
    pub fn latency_interval(&self, q: f64) -> (Option<Duration>, Option<Duration>) {
        let (l, u) = quantile::ranks(self.latencies.len(), q);
        let at = |rank: usize| self.latencies[rank - 1];
        (l.map(at), u.map(at))
    }

    /// The slowest call.
    pub fn max_latency(&self) -> Duration {
        self.latencies.last().copied().unwrap_or_default()
    }

    /// Connections held on average over the run (the time-weighted mean of the timeline):
    /// what a setting costs the server while traffic is quiet.
    pub fn mean_open(&self) -> f64 {
        let t = &self.timeline;
        if t.len() < 2 {
            return t.first().map_or(0.0, |s| s.open as f64);
        }
        let mut area = 0.0;
        for w in t.windows(2) {
            area += w[0].open as f64 * (w[1].at - w[0].at);
        }
        let span = t[t.len() - 1].at - t[0].at;
        if span > 0.0 { area / span } else { 0.0 }
    }
}

fn per_1000(n: u64, calls: u64) -> f64 {
    if calls == 0 {
        0.0
    } else {
        n as f64 * 1000.0 / calls as f64
    }
}

/// Why the lab cannot run: the user's input or the user's server. The binary exits 2 on
/// every one of these (and 3 when it measured, but calls failed: see its `--help`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabError {
    /// A URL, flag or statement that cannot work.
    BadInput(String),
    /// The server refused, timed out or does not exist.
    Unreachable(String),
    /// The server rejected the credentials.
    Credentials(String),
    /// The server answered, but not as a workload can use (an error for the statement, an
    /// HTTP error status).
    Rejected(String),
}

impl fmt::Display for LabError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabError::BadInput(m) => write!(f, "bad input: {m}"),
            LabError::Unreachable(m) => write!(f, "server unreachable: {m}"),
            LabError::Credentials(m) => write!(f, "credentials rejected: {m}"),
            LabError::Rejected(m) => write!(f, "server rejected the workload: {m}"),
        }
    }
}

impl std::error::Error for LabError {}

/// What a workload runs against.
#[derive(Debug, Clone)]
pub enum Target {
    /// A PostgreSQL server and a statement.
    Sql(sql::SqlTarget),
    /// An HTTP URL.
    Http(http::HttpTarget),
}

impl Target {
    /// Tries the target once: see [`sql::SqlTarget::probe`] and [`http::HttpTarget::probe`].
    ///
    /// # Errors
    /// The [`LabError`] that says what is wrong.
    pub async fn probe(&self) -> Result<(), LabError> {
        match self {
            Target::Sql(t) => t.probe().await,
            Target::Http(t) => t.probe().await,
        }
    }

    /// Runs `workload` with `setting`: see [`sql::SqlTarget::run`] and
    /// [`http::HttpTarget::run`].
    ///
    /// # Errors
    /// [`LabError::BadInput`] when the knobs are refused.
    pub async fn run(
        &self,
        workload: Workload,
        setting: &Setting,
        stop: &Stop,
        tick: &(dyn Fn() + Sync),
    ) -> Result<Run, LabError> {
        match self {
            Target::Sql(t) => t.run(workload, setting, stop, tick).await,
            Target::Http(t) => t.run(workload, setting, stop, tick).await,
        }
    }
}

/// Asked to stop (Ctrl-C): runs finish their burst in flight and report what they measured.
#[derive(Debug, Clone, Default)]
pub struct Stop(Arc<AtomicBool>);

impl Stop {
    /// A flag nobody raised yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Raises it.
    pub fn stop(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// Whether it was raised.
    pub fn is_stopped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Drives `workload` through `call` and records a [`Run`] for `setting`; `stats` reads the
/// pool, `port` is the server's (for TIME_WAIT), `tick` is called after each burst
/// (progress).
pub async fn measure<F, Fut, E>(
    workload: Workload,
    setting: &Setting,
    call: F,
    stats: impl Fn() -> Stats + Send + Sync + 'static,
    port: Option<u16>,
    stop: &Stop,
    tick: &(dyn Fn() + Sync),
) -> Run
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(), E>> + Send + 'static,
    E: Into<Failure> + Send + 'static,
{
    let stats = Arc::new(stats);
    let sockets_before = sockets::Snapshot::take(port);
    let started = Instant::now();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (stats, sampling) = (stats.clone(), sampling.clone());
        async move {
            let mut timeline = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            while sampling.load(Ordering::SeqCst) {
                tick.tick().await;
                let s = stats();
                timeline.push(Sample {
                    at: started.elapsed().as_secs_f64(),
                    open: s.open,
                    created: s.created,
                });
            }
            timeline
        }
    });
    let mut latencies = Vec::with_capacity(workload.calls());
    let (mut errors, mut refused, mut first_error) = (0, 0, None);
    let mut stopped = false;
    for b in 0..workload.bursts {
        if stop.is_stopped() {
            stopped = true;
            break;
        }
        let burst_started = Instant::now();
        let calls: Vec<_> = (0..workload.burst)
            .map(|_| {
                let fut = call();
                tokio::spawn(async move {
                    let t = Instant::now();
                    let r = fut.await;
                    (t.elapsed(), r)
                })
            })
            .collect();
        for c in calls {
            match c.await {
                Ok((took, r)) => {
                    latencies.push(took);
                    if let Err(e) = r {
                        let failure: Failure = e.into();
                        errors += 1;
                        refused += u64::from(failure.refused);
                        first_error.get_or_insert(failure.message);
                    }
                }
                Err(e) => {
                    errors += 1;
                    first_error.get_or_insert_with(|| format!("call panicked: {e}"));
                }
            }
        }
        tick();
        if b + 1 < workload.bursts {
            let rest = workload.period.saturating_sub(burst_started.elapsed());
            tokio::select! {
                () = tokio::time::sleep(rest) => {}
                () = wait_for(stop) => {}
            }
        }
    }
    let elapsed = started.elapsed();
    let end = stats();
    sampling.store(false, Ordering::SeqCst);
    let mut timeline = sampler.await.unwrap_or_default();
    // The counters at the end, so that the cumulative opens end where the table does.
    let last = timeline.last().map_or(0.0, |s| s.at);
    timeline.push(Sample {
        at: last.max(elapsed.as_secs_f64()),
        open: end.open,
        created: end.created,
    });
    let time_wait = sockets::Snapshot::take(port).new_time_wait(&sockets_before);
    latencies.sort();
    Run {
        setting: setting.clone(),
        calls: latencies.len() as u64,
        errors,
        refused,
        first_error,
        latencies,
        timeline,
        time_wait,
        stats: end,
        elapsed,
        stopped,
    }
}

/// Returns once `stop` is raised (polled every 20 ms).
async fn wait_for(stop: &Stop) {
    while !stop.is_stopped() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Formats a duration for tables: `850 µs`, `12.3 ms`, `1.20 s`.
pub fn short(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 1000.0 {
        format!("{us:.0} µs")
    } else if us < 1e6 {
        format!("{:.1} ms", us / 1000.0)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}
