//! Replays a [`Trace`] against a simulated backend under paused tokio time, and measures
//! exactly what one pool setting costs on it.
//!
//! The backend is a [`pool_core::Manager`] whose `create` takes [`Backend::handshake`]
//! (a TCP and TLS handshake, authentication); each call of the trace checks out a
//! connection at its start offset and holds it for its duration plus
//! [`Backend::service`]. Time is tokio's paused clock on a single-threaded runtime: it
//! jumps from one timer to the next, so an hour of traffic replays in a fraction of a
//! second, and every number is exact and the same on every run.
//!
//! # What is measured
//! - **opens**: physical connections created (each paid a handshake).
//! - **idle connection-seconds**: the time integral of the idle count (connections open
//!   and not checked out) from the start of the trace to its end ([`Trace::end`], or the
//!   last release if later). The open count changes when a create completes and when a
//!   connection is dropped by the pool; the in-use count when a checkout gets its
//!   connection and when the call releases it. A connection being created is neither.
//! - **waited**: checkouts that found no idle connection and waited (for a create, or for
//!   a release at `max_open`): under paused time any other checkout takes zero time.
//! - checkout latency (p50, p99, max) and the peak of open connections.
//!
//! # The cost model
//! `cost = opens x handshake cost + idle connection-seconds x holding cost`. Only the ratio
//! of the two costs matters: the break-even time `B = handshake cost / holding cost per
//! second`, how long holding an idle connection costs as much as opening one (the server's
//! memory and slots against its CPU for a handshake, the client's latency). In
//! connection-seconds, `cost = idle connection-seconds + B x opens` ([`Measured::cost`]).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use pool_core::{Config, Manager, Pool};
use tokio::time::Instant;

use super::LabError;
use super::trace::Trace;

/// A setting: what the tables and charts call it, and the pool's knobs.
#[derive(Debug, Clone)]
pub struct PoolSetting {
    /// How the tables and charts name it.
    pub label: String,
    /// The knobs.
    pub config: Config,
}

/// The simulated server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backend {
    /// How long a create takes.
    pub handshake: Duration,
    /// Added to every call's hold (zero: the trace's durations alone).
    pub service: Duration,
}

/// What one setting cost on one trace.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    /// The setting's label.
    pub label: String,
    /// Calls replayed.
    pub calls: u64,
    /// Calls whose checkout failed.
    pub errors: u64,
    /// Physical connections opened.
    pub opens: u64,
    /// Idle connection-seconds, up to [`Measured::span`].
    pub idle_conn_s: f64,
    /// Checkouts that waited for a create or a release.
    pub waited: u64,
    /// Checkout latencies, sorted.
    pub latencies: Vec<Duration>,
    /// Most connections open at once.
    pub peak_open: usize,
    /// The span measured: the trace's end, or the last release if later.
    pub span: Duration,
}

impl Measured {
    /// `idle_conn_s + b x opens`: the cost in connection-seconds at break-even time `b`
    /// (see the module docs).
    pub fn cost(&self, b: Duration) -> f64 {
        self.idle_conn_s + b.as_secs_f64() * self.opens as f64
    }

    /// The checkout latency at quantile `q` (0.5 for p50); zero without calls.
    pub fn latency(&self, q: f64) -> Duration {
        let n = self.latencies.len();
        if n == 0 {
            return Duration::ZERO;
        }
        self.latencies[((n as f64 * q) as usize).min(n - 1)]
    }
}

/// One change of the open or in-use count.
#[derive(Debug, Clone, Copy)]
struct Event {
    at: Instant,
    open: i32,
    in_use: i32,
}

/// What the replay records, shared by the manager, its connections and the calls.
#[derive(Debug, Default)]
struct Log {
    events: Vec<Event>,
    latencies: Vec<Duration>,
    errors: u64,
}

type Shared = Arc<Mutex<Log>>;

fn record(log: &Shared, f: impl FnOnce(&mut Log)) {
    // A poisoned lock only means a call panicked; its records are still good.
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    f(&mut log);
}

/// The simulated backend's manager: each create sleeps for the handshake.
struct SimManager {
    handshake: Duration,
    log: Shared,
}

/// A simulated connection: records its close when the pool drops it.
struct SimConn {
    log: Shared,
}

impl Drop for SimConn {
    fn drop(&mut self) {
        let at = Instant::now();
        record(&self.log, |l| {
            l.events.push(Event {
                at,
                open: -1,
                in_use: 0,
            });
        });
    }
}

#[pool_core::async_trait]
impl Manager for SimManager {
    type Resource = SimConn;
    type Error = std::io::Error;

    async fn create(&self) -> Result<SimConn, std::io::Error> {
        tokio::time::sleep(self.handshake).await;
        let at = Instant::now();
        record(&self.log, |l| {
            l.events.push(Event {
                at,
                open: 1,
                in_use: 0,
            });
        });
        Ok(SimConn {
            log: self.log.clone(),
        })
    }
}

/// Replays `trace` with `setting` against `backend` on a runtime of its own (one thread,
/// paused time) and returns what it cost. Blocks; call it outside any tokio runtime (or in
/// `spawn_blocking`). When `setting.config.create_timeout` is unset, it is set to the
/// handshake plus 30 s, so that a long simulated handshake never times out.
///
/// # Errors
/// [`LabError::BadInput`] when the pool refuses the setting's knobs.
pub fn simulate(
    trace: &Trace,
    setting: &PoolSetting,
    backend: Backend,
) -> Result<Measured, LabError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| LabError::BadInput(format!("cannot start a runtime: {e}")))?;
    runtime.block_on(replay(trace, setting, backend))
}

async fn replay(
    trace: &Trace,
    setting: &PoolSetting,
    backend: Backend,
) -> Result<Measured, LabError> {
    let log = Shared::default();
    let mut config = setting.config.clone();
    config
        .create_timeout
        .get_or_insert(backend.handshake + Duration::from_secs(30));
    let manager = SimManager {
        handshake: backend.handshake,
        log: log.clone(),
    };
    let pool = Pool::new(manager, config)
        .map_err(|e| LabError::BadInput(format!("{}: {e}", setting.label)))?;
    let t0 = Instant::now();
    let mut calls = tokio::task::JoinSet::new();
    for call in &trace.calls {
        tokio::time::sleep_until(t0 + call.start).await;
        let (pool, log) = (pool.clone(), log.clone());
        let hold = call.duration + backend.service;
        calls.spawn(async move {
            let asked = Instant::now();
            let Ok(conn) = pool.get().await else {
                record(&log, |l| l.errors += 1);
                return;
            };
            let got = Instant::now();
            record(&log, |l| {
                l.latencies.push(got - asked);
                l.events.push(Event {
                    at: got,
                    open: 0,
                    in_use: 1,
                });
            });
            tokio::time::sleep(hold).await;
            let at = Instant::now();
            record(&log, |l| {
                l.events.push(Event {
                    at,
                    open: 0,
                    in_use: -1,
                });
            });
            drop(conn);
        });
        while calls.try_join_next().is_some() {}
    }
    while calls.join_next().await.is_some() {}
    tokio::time::sleep_until(t0 + trace.end).await;
    let end = Instant::now();
    let stats = pool.stats();
    let (events, mut latencies, errors) = {
        let mut l = log.lock().unwrap_or_else(|e| e.into_inner());
        (
            std::mem::take(&mut l.events),
            std::mem::take(&mut l.latencies),
            l.errors,
        )
    };
    pool.close();
    latencies.sort();
    let (idle_conn_s, peak_open) = integrate(&events, end);
    Ok(Measured {
        label: setting.label.clone(),
        calls: trace.calls.len() as u64,
        errors,
        opens: stats.created,
        idle_conn_s,
        waited: latencies.iter().filter(|d| !d.is_zero()).count() as u64,
        latencies,
        peak_open: peak_open.max(stats.peak_open),
        span: end - t0,
    })
}

/// The integral of `open - in_use` up to `end`, and the peak of `open`. The events are in
/// the order they happened (one thread, a clock that never goes back).
fn integrate(events: &[Event], end: Instant) -> (f64, usize) {
    let (mut open, mut in_use, mut peak) = (0i64, 0i64, 0i64);
    let mut area = 0.0;
    let mut last = events.first().map_or(end, |e| e.at);
    for e in events {
        let at = e.at.min(end);
        area += (open - in_use).max(0) as f64 * (at - last).as_secs_f64();
        last = at;
        open += i64::from(e.open);
        in_use += i64::from(e.in_use);
        peak = peak.max(open);
    }
    area += (open - in_use).max(0) as f64 * end.saturating_duration_since(last).as_secs_f64();
    (area, peak as usize)
}
