//! [`Stats`]: database/sql's `DBStats` in snake_case, plus what a pool with grace adds.

use std::time::Duration;

/// A snapshot of the pool's gauges and counters.
///
/// The first nine fields are database/sql's `DBStats` (`max_open` is `MaxOpenConnections`,
/// `open` is `OpenConnections`, ...), so dashboards port as they are. Counters only grow.
///
/// Invariants once nothing is in flight (no create, close or checkout under way):
/// `open == idle + in_use` and
/// `created - (every *_closed counter) - detached == open`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// The `max_open` limit (0 = unlimited).
    pub max_open: usize,
    /// Connections open now: idle, in use, being created and being closed.
    pub open: usize,
    /// `open - idle`: checked out, being created or being closed (Go counts pending opens
    /// as in use too).
    pub in_use: usize,
    /// Idle connections, surplus included.
    pub idle: usize,
    /// Checkouts that had to wait because `max_open` was reached.
    pub wait_count: u64,
    /// Total time those checkouts waited. A checkout with a deadline (`acquire_timeout`,
    /// `get_timeout`) is timed by tokio's clock, paused time included; one without by the
    /// kernel's coarse clock (a few ns to read, resolution one scheduler tick: short waits
    /// may read 0 one by one, their sum is right on average).
    pub wait_duration: Duration,
    /// Closed because `max_idle` was full (with `idle_grace = 0`, or an adaptive retention of
    /// 0), because `max_idle` or
    /// `max_open` was lowered, because the pool was over `max_open` on release, or (keyed
    /// pools) over the global `max_idle`, grace or not.
    pub max_idle_closed: u64,
    /// Closed by the reaper after `max_idle_time`.
    pub max_idle_time_closed: u64,
    /// Closed because `max_lifetime` passed, or retired by lifetime rotation once its
    /// replacement landed (see [`Config::rotate_lifetime`](crate::Config::rotate_lifetime)).
    pub max_lifetime_closed: u64,
    /// Checkouts queued now.
    pub waiting: usize,
    /// Connections created.
    pub created: u64,
    /// Creates that failed (error, timeout or panic).
    pub create_errors: u64,
    /// Checkouts served from idle.
    pub hits: u64,
    /// Checkouts served by a release straight from another caller.
    pub handoffs: u64,
    /// Checkouts that timed out.
    pub timeouts: u64,
    /// Idle connections above `max_idle`, kept for the grace period: `idle - max_idle`.
    pub surplus_idle: usize,
    /// Checkouts served from idle while surplus existed: creates that the grace avoided.
    pub grace_reused: u64,
    /// Surplus closed when its grace period (or adaptive retention) ended.
    pub grace_closed: u64,
    /// Closed as broken: failed checks, validation or reset, discarded guards, panics.
    pub broken_closed: u64,
    /// Closed by `close()` or by dropping the last pool handle.
    pub shutdown_closed: u64,
    /// Taken out of the pool with `Pooled::detach`.
    pub detached: u64,
    /// The most connections open at once so far (the high-water mark of `open`, creates
    /// in flight included): proof that `max_open` held, and how much of it the traffic used.
    /// In a keyed pool's totals, the most open across all keys at once.
    pub peak_open: usize,
    /// Connections given back that [`Manager::check`](crate::Manager::check) sent to
    /// [`Manager::reset`](crate::Manager::reset) first: counted in `open` and `in_use`,
    /// handed to nobody until the reset succeeds (a failed one closes them as broken).
    pub resetting: usize,
    /// Guards held longer than [`Config::leak_threshold`](crate::Config::leak_threshold),
    /// each counted once, when it crossed it (HikariCP's leak detection): suspected leaks.
    /// Always 0 with leak detection off (the default). A keyed pool counts them in its
    /// totals only.
    pub held_too_long: u64,
    /// How long surplus idle connections are kept now: `idle_grace`, or the retention
    /// [`Config::adaptive_idle`](crate::Config::adaptive_idle) learned from the traffic (it
    /// changes as the traffic does). In a keyed pool's totals, the longest of any key.
    pub retention: Duration,
    /// Replacements started by lifetime rotation (see
    /// [`Config::rotate_lifetime`](crate::Config::rotate_lifetime)): each a create counted in
    /// `created` when it lands (in `create_errors` when it fails), and the connection it
    /// replaces a close counted in `max_lifetime_closed`. Always 0 with rotation off or no
    /// `max_lifetime`.
    pub rotated: u64,
}

impl Stats {
    /// The sum of every `*_closed` counter.
    pub fn closed(&self) -> u64 {
        self.max_idle_closed
            + self.max_idle_time_closed
            + self.max_lifetime_closed
            + self.grace_closed
            + self.broken_closed
            + self.shutdown_closed
    }
}

/// Why the pool closed a connection; each close is counted once, under one reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CloseReason {
    /// Over `max_idle` with no grace, `max_idle`/`max_open` lowered, over `max_open`, or
    /// over a keyed pool's global `max_idle`.
    MaxIdle,
    /// Idle longer than `max_idle_time`.
    MaxIdleTime,
    /// Older than its lifetime.
    MaxLifetime,
    /// Surplus whose grace period ended.
    Grace,
    /// Failed a check, validation or reset, was discarded, or its holder panicked.
    Broken,
    /// The pool was closed.
    Shutdown,
}

impl CloseReason {
    /// A short lowercase name, as logged.
    pub fn as_str(self) -> &'static str {
        match self {
            CloseReason::MaxIdle => "max_idle",
            CloseReason::MaxIdleTime => "max_idle_time",
            CloseReason::MaxLifetime => "max_lifetime",
            CloseReason::Grace => "grace_ended",
            CloseReason::Broken => "broken",
            CloseReason::Shutdown => "shutdown",
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Stats {
    pub(crate) fn count_close(&mut self, reason: CloseReason) {
        let c = match reason {
            CloseReason::MaxIdle => &mut self.max_idle_closed,
            CloseReason::MaxIdleTime => &mut self.max_idle_time_closed,
            CloseReason::MaxLifetime => &mut self.max_lifetime_closed,
            CloseReason::Grace => &mut self.grace_closed,
            CloseReason::Broken => &mut self.broken_closed,
            CloseReason::Shutdown => &mut self.shutdown_closed,
        };
        *c += 1;
    }
}

impl Stats {
    /// Adds `other`'s gauges and counters to these (`max_open` is left alone): a keyed
    /// pool's total is the sum of its keys.
    pub(crate) fn add(&mut self, other: &Stats) {
        self.open += other.open;
        self.in_use += other.in_use;
        self.idle += other.idle;
        self.wait_count += other.wait_count;
        self.wait_duration += other.wait_duration;
        self.max_idle_closed += other.max_idle_closed;
        self.max_idle_time_closed += other.max_idle_time_closed;
        self.max_lifetime_closed += other.max_lifetime_closed;
        self.waiting += other.waiting;
        self.created += other.created;
        self.create_errors += other.create_errors;
        self.hits += other.hits;
        self.handoffs += other.handoffs;
        self.timeouts += other.timeouts;
        self.surplus_idle += other.surplus_idle;
        self.grace_reused += other.grace_reused;
        self.grace_closed += other.grace_closed;
        self.broken_closed += other.broken_closed;
        self.shutdown_closed += other.shutdown_closed;
        self.detached += other.detached;
        self.resetting += other.resetting;
        self.held_too_long += other.held_too_long;
        self.rotated += other.rotated;
        // `peak_open` is not a sum: the keyed table keeps its own.
    }
}
