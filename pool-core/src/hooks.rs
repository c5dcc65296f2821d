//! Lifecycle hooks in the spirit of Go's `net/http/httptrace`: a callback per event in a
//! connection's life, on both pools.
//!
//! Set them with [`Builder::hooks`](crate::Builder::hooks) or
//! [`KeyedBuilder::hooks`](crate::KeyedBuilder::hooks). A pool without hooks pays nothing
//! for them: it never calls, stamps or allocates anything on their behalf. With hooks set,
//! every checkout takes the general path (it stamps idle times to report them).
//!
//! Each hook runs on the task where the event happens, after the pool's lock is released:
//! `get_conn` and `got_conn` on the caller's task, `create_*` and `closed` on the task that
//! creates or closes, `put_idle` where the guard drops, `held_too_long` on the pool's leak
//! watcher task. Keep them short. A hook that panics
//! is caught and logged, and changes nothing the pool does: hooks observe. (Discarding the
//! connection of a panicking `got_conn`, as this crate once did, turned a hook that always
//! panics into a checkout that creates and discards connections forever.)
//!
//! The same information goes to `tracing` (target `pool_core`): events "checkout started",
//! "got a connection", "creating a connection", "created a connection", "failed to create a
//! connection", "returned a connection" and "closing a connection", with the fields below.
//! A guard held longer than `leak_threshold` is a warning, "a connection has been checked
//! out longer than leak_threshold", with the fields of [`HeldTooLong`] (`caller` as
//! `file:line:column`).

use std::backtrace::Backtrace;
use std::panic::Location;
use std::time::Duration;

use crate::{CloseReason, Error};

/// What [`Hooks::got_conn`] reports, as httptrace's `GotConnInfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct GotConn {
    /// The pool's id of the connection (as in tracing events and `Pooled::id`).
    pub id: u64,
    /// The connection served an earlier checkout (it was idle or handed off), rather than
    /// being created for this one.
    pub reused: bool,
    /// It came from the idle list (not handed off by a release, not new).
    pub was_idle: bool,
    /// How long it sat idle, when `was_idle`; zero otherwise.
    pub idle_time: Duration,
    /// How long this checkout took, from `get_conn` to now.
    pub wait: Duration,
}

/// What [`Hooks::held_too_long`] reports: a guard checked out longer than
/// [`Config::leak_threshold`](crate::Config::leak_threshold), HikariCP's leak detection.
/// Each guard is reported once, while it is still out; it may yet come back (a log line at
/// `info` says so), so a report is a suspicion of a leak, not a proof.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct HeldTooLong<'a> {
    /// The pool's id of the connection (as in tracing events and `Pooled::id`).
    pub id: u64,
    /// How long it has been out so far: the threshold, or a little more.
    pub held: Duration,
    /// Where it was checked out: the file, line and column of the `get` call.
    pub caller: &'static Location<'static>,
    /// The stack at the checkout, with [`LeakTrace::Backtrace`](crate::LeakTrace::Backtrace);
    /// `None` otherwise.
    pub backtrace: Option<&'a Backtrace>,
}

/// Where a connection went when its guard dropped (or was consumed), for
/// [`Hooks::put_idle`]: httptrace's `PutIdleConn` with the reason when it was not kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Returned {
    /// Kept idle, below `max_idle`.
    Idle,
    /// Kept idle above `max_idle`, as surplus. Surplus is a count: the reaper closes the
    /// least recently used idle connections above `max_idle` once they have sat unused for
    /// the retention, so this one closes only if it becomes one of those.
    Surplus {
        /// The retention in force when it came back: `idle_grace`, or the one
        /// [`Config::adaptive_idle`](crate::Config::adaptive_idle) learned (it may change
        /// while the connection waits).
        kept_for: std::time::Duration,
    },
    /// Handed straight to a queued checkout.
    HandedOff,
    /// Not kept: closed for this reason (`MaxIdle` with no grace, `MaxLifetime`, `Broken`
    /// for a failed check or `Pooled::discard`, `Shutdown` for a closed pool).
    Closed(CloseReason),
    /// Taken out of the pool with `Pooled::detach`.
    Detached,
}

impl Returned {
    /// A short name for logs: "idle", "surplus", "handed_off", "detached", or the close reason's name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Returned::Idle => "idle",
            Returned::Surplus { .. } => "surplus",
            Returned::HandedOff => "handed_off",
            Returned::Closed(reason) => reason.as_str(),
            Returned::Detached => "detached",
        }
    }
}

/// Callbacks for each event in a connection's life. Every method has an empty default:
/// implement the ones you need. `K` is the pool's key (`()` for a plain [`Pool`](crate::Pool)).
///
/// # Examples
///
/// A line per checkout, as an httptrace `GotConn` callback would print:
///
/// ```
/// use pool_core::{GotConn, Hooks};
///
/// struct Trace;
///
/// impl Hooks<String> for Trace {
///     fn got_conn(&self, host: &String, info: &GotConn) {
///         println!(
///             "{host}: conn {} reused={} was_idle={} idle_time={:?}",
///             info.id, info.reused, info.was_idle, info.idle_time
///         );
///     }
/// }
/// ```
pub trait Hooks<K = ()>: Send + Sync + 'static {
    /// A checkout for `key` starts (httptrace `GetConn`).
    fn get_conn(&self, _key: &K) {}

    /// A checkout got its connection (httptrace `GotConn`).
    fn got_conn(&self, _key: &K, _info: &GotConn) {}

    /// A create starts (httptrace `ConnectStart`).
    fn create_start(&self, _key: &K) {}

    /// A create finished: the new connection's id, or the error (a failure, a timeout, a
    /// panic) (httptrace `ConnectDone`).
    fn create_done(&self, _key: &K, _result: Result<u64, &Error>) {}

    /// A checked-out connection came back: kept idle, handed off, or not kept and why
    /// (httptrace `PutIdleConn`).
    fn put_idle(&self, _key: &K, _id: u64, _returned: Returned) {}

    /// The pool closed a connection, for this reason (each connection once).
    fn closed(&self, _key: &K, _id: u64, _reason: CloseReason) {}

    /// A guard of `key` has been checked out longer than
    /// [`Config::leak_threshold`](crate::Config::leak_threshold) (HikariCP's leak
    /// detection): once per guard, on the pool's watcher task, while it is still out.
    fn held_too_long(&self, _key: &K, _info: &HeldTooLong<'_>) {}
}

/// Runs a hook, catching and logging a panic.
pub(crate) fn call(hook: &'static str, f: impl FnOnce()) {
    if let Err(panic) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        let panic = crate::shell::util::panic_message(panic.as_ref());
        tracing::error!(target: "pool_core", hook, panic, "a lifecycle hook panicked");
    }
}
