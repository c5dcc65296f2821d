//! Every knob of the pool: [`Config`] (plain data, serde behind the `serde` feature) and its
//! validation into the limits the state machine uses.

use std::time::Duration;

use crate::Error;

/// The longest duration a knob accepts; anything longer is surely a mistake (and would risk
/// overflowing an `Instant`). Use `None` where a knob means "no limit".
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Which idle connection a checkout takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum IdleOrder {
    /// Most recently used first, as database/sql, HikariCP, bb8 and deadpool: a few
    /// connections stay warm, the rest age out and the reaper retires them.
    #[default]
    Lifo,
    /// Least recently used first: spreads use over every idle connection.
    Fifo,
}

/// Whom a new connection serves: the head of the queue (late binding, the default) or the
/// caller that started it (database/sql).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum Binding {
    /// Creates are detached from callers, as http.Transport's dials: whatever arrives first,
    /// a new connection or one released by someone else, serves the head of the queue, and
    /// the other goes on to the next caller or to idle. A create that fails while
    /// connections that can serve the caller are in use leaves it queued for the next
    /// release (HikariCP); it fails when nothing open can serve it, or at its timeout, with
    /// the create error as the cause. Fewer creates under bursts than [`Binding::Caller`].
    #[default]
    Late,
    /// A create belongs to the caller that started it, as database/sql's `db.conn`: the
    /// caller waits for its own connection and gets its error at once; released connections
    /// go to callers queued because `max_open` was reached, else to idle (or are closed
    /// above `max_idle` with no grace). Reproduces database/sql's connection counts exactly.
    Caller,
}

/// What a leak report says of where a guard was checked out (see
/// [`Config::leak_threshold`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(rename_all = "snake_case"))]
#[non_exhaustive]
pub enum LeakTrace {
    /// The file, line and column of the `get` call (`#[track_caller]`): free, a pointer
    /// the call passes anyway.
    #[default]
    Caller,
    /// The caller and a [`Backtrace`](std::backtrace::Backtrace) forced at every checkout
    /// (whatever `RUST_BACKTRACE` says): an allocation and a stack walk per checkout, some
    /// microseconds. For hunting a leak, not for production traffic.
    Backtrace,
}

/// The pool's knobs, with database/sql's names where it has one.
///
/// [`Builder`](crate::Builder) is the way to set them in code: it has a setter per knob.
/// A `Config` is for settings that travel as data (a file through serde, a struct handed
/// from one crate to another): start from [`Config::default`] or [`Config::go`] and assign
/// the fields, then hand it to [`Pool::new`](crate::Pool::new) or
/// [`Builder::config`](crate::Builder::config), which validate it and name the knob they
/// reject.
///
/// The struct is `#[non_exhaustive]`, so that a knob can be added without breaking anyone:
/// outside this crate it cannot be written as a struct literal (not even with
/// `..Config::default()`), but every field can be assigned.
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use pool_core::Config;
///
/// let mut config = Config::default();
/// config.max_open = 16;
/// config.max_idle = 4;
/// config.max_lifetime = Some(Duration::from_secs(30 * 60));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct Config {
    /// Most connections open at once, creates in flight included (`SetMaxOpenConns`).
    /// Default 0: unlimited.
    pub max_open: usize,
    /// Most connections kept idle past the grace period (`SetMaxIdleConns`). Default 2; 0
    /// keeps none. Clamped to `max_open` when that is set, as database/sql does.
    pub max_idle: usize,
    /// Connections kept ready: created at start and refilled by the reaper. Default 0. Must
    /// not exceed `max_idle`.
    pub min_idle: usize,
    /// How long a connection released while `max_idle` are already idle stays as *surplus*
    /// before the reaper closes it; checkouts reuse surplus before creating. Default 30 s;
    /// zero closes it at once, exactly as database/sql.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub idle_grace: Duration,
    /// Learn how long to keep surplus from the traffic, instead of a fixed `idle_grace`
    /// (which is then not used). The value is the break-even time: how long holding an idle
    /// connection costs as much as opening one (a handshake, authentication, a TLS session,
    /// the server's work). The pool measures after how long each level of demand comes back
    /// and keeps surplus for the retention of least expected cost: across bursts that recur
    /// sooner than the break-even, not past a spike or between bursts further apart. Until it
    /// has seen four gaps the retention is 1 s, so a first burst's surplus goes after a
    /// second and the next burst opens it again while the pool learns.
    ///
    /// Default `None`: the fixed `idle_grace`. 60 s suits most databases and HTTP backends;
    /// zero and more than 30 minutes are refused (for zero, set `idle_grace` to zero). While
    /// it is on, `set_idle_grace` is refused. A keyed pool learns per key, and forgets what a
    /// key learned when it forgets the key (nothing open or waiting).
    /// [`Stats::retention`](crate::Stats::retention) shows the retention in force,
    /// [`Hooks::put_idle`](crate::Hooks::put_idle) each decision. It reads the clock on every
    /// checkout and return (the fast path's clock-free checkout is off).
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub adaptive_idle: Option<Duration>,
    /// Longest life of a connection (`SetConnMaxLifetime`). Default `None`: no limit. An
    /// expired connection is never handed out; one that expires while in use closes on return.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_lifetime: Option<Duration>,
    /// Largest random amount taken off each connection's `max_lifetime`, so connections
    /// created together do not expire together. Default `None`: 10 % of `max_lifetime`;
    /// zero disables. Needs `max_lifetime`.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub lifetime_jitter: Option<Duration>,
    /// Replace a connection before its lifetime ends (make-before-break). Default `true`;
    /// [`Config::go`] sets `false` (database/sql does not). Does nothing without
    /// `max_lifetime`.
    ///
    /// Without it, a connection that reaches `max_lifetime` closes, and the next checkout
    /// that finds nothing idle waits for a create (HikariCP's housekeeper retires, then
    /// fills). With it, a connection some lead time before its (jittered) expiry gets a
    /// replacement created in the background; when the replacement lands it serves the
    /// head waiter or goes idle, and the old connection is retired (closed as
    /// [`CloseReason::MaxLifetime`](crate::CloseReason::MaxLifetime)) as soon as it is idle,
    /// never under its holder. Until then, and if the replacement fails, the old one serves
    /// on until it expires.
    ///
    /// Only while the pool is in use (something checked out, or a checkout since the
    /// reaper's last turn) and below `max_open`: an idle pool lets its connections expire,
    /// and a pool at `max_open` behaves as without rotation. Not while the breaker is open
    /// or before its retry time after a failed create.
    ///
    /// The lead is four times the running mean of the replacements' create times (500 ms
    /// until one was timed), at least 50 ms and at most an eighth of `max_lifetime`: so a
    /// replacement lands before the expiry with room for a slow handshake, and lifetimes
    /// shorten by at most an eighth. [`Stats::rotated`](crate::Stats::rotated) counts the
    /// replacements started.
    pub rotate_lifetime: bool,
    /// Idle longer than this and the reaper closes it, keeping `min_idle`
    /// (`SetConnMaxIdleTime`). Default `None`: no limit.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub max_idle_time: Option<Duration>,
    /// Longest a checkout waits in all. Default `None`: until the caller drops the future.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub acquire_timeout: Option<Duration>,
    /// Longest one `Manager::create` may take. Default `None`: `acquire_timeout` when set,
    /// else 30 s (Go's dial timeout), so a hung create never holds its slot forever.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub create_timeout: Option<Duration>,
    /// Overrides `Manager::validate_after`: validate a connection idle at least this long
    /// before reuse. Default `None`: the manager's choice.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub validate_after: Option<Duration>,
    /// Deadline of each `validate`, `reset` and `close`; on timeout the connection is dropped
    /// and its slot freed. Default 5 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub hook_timeout: Duration,
    /// Which idle connection a checkout takes. Default [`IdleOrder::Lifo`].
    pub idle_order: IdleOrder,
    /// Consecutive create failures that open the breaker: while open, a checkout that would
    /// have to create fails at once with the last error, and a background probe retries with
    /// backoff. Default 5; 0 disables the breaker.
    pub breaker_threshold: u32,
    /// First delay of the breaker's probe and of `min_idle` refills after a failure; doubles
    /// after each failure up to `breaker_max_backoff`. Default 100 ms.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub breaker_backoff: Duration,
    /// Longest delay between probes. Default 5 s.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub breaker_max_backoff: Duration,
    /// Whom a new connection serves. Default [`Binding::Late`]; [`Config::go`] sets
    /// [`Binding::Caller`].
    pub binding: Binding,
    /// Leak detection (HikariCP's `leakDetectionThreshold`): a guard checked out longer than
    /// this is reported once, while it is still out: a `tracing` warning (target
    /// `pool_core`) naming the file and line of the `get` call, the
    /// [`Hooks::held_too_long`](crate::Hooks::held_too_long) hook, and
    /// [`Stats::held_too_long`](crate::Stats::held_too_long). Default `None`: off, and then
    /// free (no timer, no clock read, no allocation). On, a checkout costs a clock read and
    /// an entry in a table behind its own lock, and one task per pool sleeps until the
    /// oldest guard out crosses the threshold. Set it above the longest legitimate hold (a
    /// long transaction, a streamed body): a report is a suspicion, not a verdict, and the
    /// guard still returns normally.
    #[cfg_attr(feature = "serde", serde(with = "humantime_serde"))]
    pub leak_threshold: Option<Duration>,
    /// What a leak report says of the checkout. Default [`LeakTrace::Caller`]: the `get`
    /// call's file and line. Needs `leak_threshold`.
    pub leak_trace: LeakTrace,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_open: 0,
            max_idle: 2,
            min_idle: 0,
            idle_grace: Duration::from_secs(30),
            adaptive_idle: None,
            max_lifetime: None,
            lifetime_jitter: None,
            rotate_lifetime: true,
            max_idle_time: None,
            acquire_timeout: None,
            create_timeout: None,
            validate_after: None,
            hook_timeout: Duration::from_secs(5),
            idle_order: IdleOrder::Lifo,
            breaker_threshold: 5,
            breaker_backoff: Duration::from_millis(100),
            breaker_max_backoff: Duration::from_secs(5),
            binding: Binding::Late,
            leak_threshold: None,
            leak_trace: LeakTrace::Caller,
        }
    }
}

impl Config {
    /// database/sql's behaviour exactly ("Go mode"): its defaults (`max_open` 0 = unlimited,
    /// `max_idle` 2), no grace (`idle_grace` 0: a connection above `max_idle` closes when it
    /// is returned), no lifetime jitter, no lifetime rotation (`rotate_lifetime` off), no
    /// breaker, and [`Binding::Caller`]. Set Go's other
    /// knobs on the result. What still differs from Go: queued callers are served first come,
    /// first served (Go picks one at random), and the reaper closes expired connections at
    /// their deadline (Go checks on a timer).
    ///
    /// ```
    /// let mut config = pool_core::Config::go();
    /// config.max_open = 100;
    /// config.max_idle = 20;
    /// assert!(config.idle_grace.is_zero());
    /// ```
    #[must_use]
    pub fn go() -> Config {
        Config {
            max_open: 0,
            max_idle: 2,
            idle_grace: Duration::ZERO,
            lifetime_jitter: Some(Duration::ZERO),
            rotate_lifetime: false,
            breaker_threshold: 0,
            binding: Binding::Caller,
            ..Config::default()
        }
    }
}

/// The longest break-even time of `adaptive_idle`.
const MAX_BREAK_EVEN: Duration = Duration::from_secs(30 * 60);

/// Go's dial timeout: the create deadline when no `acquire_timeout` is set.
const DEFAULT_CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// The validated, normalised knobs the state machine reads.
#[derive(Debug, Clone)]
pub(crate) struct Limits {
    /// 0 = unlimited.
    pub max_open: usize,
    /// Already clamped to `max_open`.
    pub max_idle: usize,
    pub min_idle: usize,
    pub idle_grace: Duration,
    /// The break-even time of the adaptive retention (`None`: the fixed `idle_grace`).
    pub adaptive: Option<Duration>,
    pub max_lifetime: Option<Duration>,
    pub lifetime_jitter: Duration,
    /// Replace connections before they expire (`rotation.rs`); acts only with `max_lifetime`.
    pub rotate_lifetime: bool,
    pub max_idle_time: Option<Duration>,
    pub validate_after: Option<Duration>,
    pub order: IdleOrder,
    pub breaker_threshold: u32,
    pub breaker_backoff: Duration,
    pub breaker_max_backoff: Duration,
    pub binding: Binding,
    /// One key of a keyed pool: no background probe or refill, and a failed create keeps
    /// the key's state until its retry time.
    pub keyed: bool,
    /// Stamp every idle connection with the time it went idle (keyed pools order idle
    /// connections across keys by it; hooks report it).
    pub stamp: bool,
    /// Lifecycle hooks are set: every checkout takes the general path.
    pub hooks: bool,
}

impl Limits {
    pub fn open_cap(&self) -> usize {
        if self.max_open == 0 {
            usize::MAX
        } else {
            self.max_open
        }
    }
}

/// The knobs the async shell reads.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timeouts {
    pub acquire: Option<Duration>,
    pub create: Duration,
    pub hook: Duration,
}

pub(crate) fn check_duration(knob: &'static str, d: Duration) -> Result<Duration, Error> {
    if d > MAX_DURATION {
        return Err(Error::config(
            knob,
            format!("is {d:?}, more than a year; use None for no limit"),
        ));
    }
    Ok(d)
}

pub(crate) fn check_positive(
    knob: &'static str,
    d: Option<Duration>,
) -> Result<Option<Duration>, Error> {
    match d {
        Some(d) if d.is_zero() => Err(Error::config(knob, "is zero; use None for no limit")),
        Some(d) => check_duration(knob, d).map(Some),
        None => Ok(None),
    }
}

pub(crate) fn clamp_idle(max_idle: usize, max_open: usize) -> usize {
    if max_open == 0 {
        max_idle
    } else {
        max_idle.min(max_open)
    }
}

impl Config {
    /// Checks every knob and returns what the pool runs with.
    pub(crate) fn validate(
        &self,
        manager_validate_after: Option<Duration>,
    ) -> Result<(Limits, Timeouts), Error> {
        let max_idle = clamp_idle(self.max_idle, self.max_open);
        if self.min_idle > max_idle {
            return Err(Error::config(
                "min_idle",
                format!(
                    "({}) is more than max_idle ({max_idle}, after clamping to max_open): the pool would close what it keeps ready; raise max_idle",
                    self.min_idle
                ),
            ));
        }
        let idle_grace = check_duration("idle_grace", self.idle_grace)?;
        let adaptive = self.adaptive_idle;
        match adaptive {
            Some(b) if b.is_zero() => {
                return Err(Error::config(
                    "adaptive_idle",
                    "is zero: every surplus connection would close at once; set idle_grace to zero for that",
                ));
            }
            Some(b) if b > MAX_BREAK_EVEN => {
                return Err(Error::config(
                    "adaptive_idle",
                    format!(
                        "({b:?}) is more than {MAX_BREAK_EVEN:?}: the estimator measures gaps up to about two hours"
                    ),
                ));
            }
            _ => {}
        }
        let max_lifetime = check_positive("max_lifetime", self.max_lifetime)?;
        let lifetime_jitter = match (self.lifetime_jitter, max_lifetime) {
            (Some(j), None) if !j.is_zero() => {
                return Err(Error::config(
                    "lifetime_jitter",
                    "needs max_lifetime: it shortens each connection's lifetime",
                ));
            }
            (Some(j), Some(l)) if j > l => {
                return Err(Error::config(
                    "lifetime_jitter",
                    format!("({j:?}) is more than max_lifetime ({l:?})"),
                ));
            }
            (Some(j), _) => j,
            (None, Some(l)) => l / 10,
            (None, None) => Duration::ZERO,
        };
        let max_idle_time = check_positive("max_idle_time", self.max_idle_time)?;
        let acquire = check_positive("acquire_timeout", self.acquire_timeout)?;
        let create = check_positive("create_timeout", self.create_timeout)?
            .or(acquire)
            .unwrap_or(DEFAULT_CREATE_TIMEOUT);
        let validate_after = match self.validate_after.or(manager_validate_after) {
            Some(d) => Some(check_duration("validate_after", d)?),
            None => None,
        };
        let hook = check_positive("hook_timeout", Some(self.hook_timeout))?.unwrap_or_default();
        self.leak()?;
        let breaker_backoff = check_duration("breaker_backoff", self.breaker_backoff)?;
        let breaker_max_backoff = check_duration("breaker_max_backoff", self.breaker_max_backoff)?;
        // A failed create is retried after `breaker_backoff` by the breaker's probe, a
        // `min_idle` refill and a lifetime rotation's next replacement.
        let retries = self.breaker_threshold > 0
            || self.min_idle > 0
            || (self.rotate_lifetime && max_lifetime.is_some());
        if retries {
            if breaker_backoff.is_zero() {
                return Err(Error::config(
                    "breaker_backoff",
                    "is zero: failed creates would be retried in a hot loop",
                ));
            }
            if breaker_max_backoff < breaker_backoff {
                return Err(Error::config(
                    "breaker_max_backoff",
                    format!(
                        "({breaker_max_backoff:?}) is less than breaker_backoff ({breaker_backoff:?})"
                    ),
                ));
            }
        }
        let limits = Limits {
            max_open: self.max_open,
            max_idle,
            min_idle: self.min_idle,
            idle_grace,
            adaptive,
            max_lifetime,
            lifetime_jitter,
            rotate_lifetime: self.rotate_lifetime,
            max_idle_time,
            validate_after,
            order: self.idle_order,
            breaker_threshold: self.breaker_threshold,
            breaker_backoff,
            breaker_max_backoff,
            binding: self.binding,
            keyed: false,
            stamp: false,
            hooks: false,
        };
        Ok((
            limits,
            Timeouts {
                acquire,
                create,
                hook,
            },
        ))
    }

    /// The leak detection knobs, checked: `None` when it is off.
    pub(crate) fn leak(&self) -> Result<Option<(Duration, LeakTrace)>, Error> {
        let threshold = check_positive("leak_threshold", self.leak_threshold)?;
        if threshold.is_none() && self.leak_trace != LeakTrace::Caller {
            return Err(Error::config(
                "leak_trace",
                "needs leak_threshold: it says what a leak report shows",
            ));
        }
        Ok(threshold.map(|t| (t, self.leak_trace)))
    }
}
