//! The pool's state machine: plain data behind the shell's one lock, with no runtime, no
//! I/O, no clock, no random generator and no global state. The same inputs give the same
//! steps in every process; the shell (`src/shell/`) runs what the steps ask for.
//!
//! # The contract
//! - The shell locks a [`Table`] and reaches each key's [`State`] through [`Table::with`].
//! - Events come in as calls named for what happened: a checkout (`acquire`, `try_acquire`,
//!   and the one-step `pop_fast` and `wait_fast`), a return (`release`, the one-step
//!   `push_fast`, which hands off to the head waiter or goes idle,
//!   `begin_reset`/`end_reset`, `detach`, `begin_close`), a finished task
//!   (`handle_created`, `handle_create_failed`, `handle_closed`), a waiter's fate
//!   (`timeout_waiter`, `cancel_waiter`), `close`, a runtime knob (`knobs.rs`) and the
//!   reaper's turn (`handle_timeout`). Each decides under the lock and pushes what the shell
//!   must do into [`Effects`] (wake, spawn a create, close, notify the reaper), which the
//!   shell runs after releasing it.
//! - Polls answer the shell: `poll_waiter` (is this checkout served?), `poll_timeout` (when
//!   must the reaper run next? see `timers.rs`), `stats`.
//! - Time comes in. A step gets a [`Now`]: the clock the shell passed in ([`Clock`]), read at
//!   most once per step and only when a decision needs it, so the default fast path reads
//!   none (a woken waiter's poll brings a coarse reading taken before the lock, which times
//!   the end of its wait: `Now::with_coarse`). Instants are `std::time::Instant`; the shell converts from its runtime's clock
//!   (paused in tests). Unit tests drive the machine on a virtual clock.
//! - Randomness comes in: `handle_created` takes the draw that sets the new connection's
//!   share of `lifetime_jitter`.
//! - No file here names the runtime, a random generator, a clock read or a global item:
//!   `scripts/check-machine.sh` (run by `.ci/run`) fails the build otherwise.
//!
//! # Invariants (checked by the unit tests and the model tests in `tests/`)
//! - `open = idle + checked out + resetting + creating + closing`, and `open <= max_open`
//!   whenever a create is started (a lowered `max_open` drains on return).
//! - Waiters queued implies no idle connection: every connection that arrives (release or
//!   create) goes to the head waiter first.
//! - Creates follow demand: one is started only while waiters outnumber creates in flight
//!   (and resets under way), or to keep `min_idle`, or to probe while the breaker is open,
//!   or to replace a connection near its lifetime while the pool is in use (`rotation.rs`).
//! - A close is counted once, under one reason, when it completes; its slot stays taken
//!   until then, so physical connections never exceed `max_open`.
//! - The reaper is never late: every deadline `poll_timeout` would report is at or after the
//!   deadline armed for it, or the reaper was told to look again (see `timers.rs`).
//!
//! # Files
//! - `state.rs`: [`State`], one key's pool: its counters, the checkout and return paths,
//!   creates, closes, waiters' fates, the reaper's turn.
//! - `fast.rs`: the one-step checkout, return and wait (`pop_fast`, `push_fast`,
//!   `wait_fast`) when no knob needs the clock or a refill.
//! - `idle.rs`: the idle list, its lazy stamps and what closes from it.
//! - `demand.rs`: when a create starts, and when queued waiters fail instead.
//! - `adaptive.rs`: the adaptive retention of surplus (`adaptive_idle`): its cost model and
//!   estimator.
//! - `breaker.rs`: fail fast after repeated create failures; the retry backoff.
//! - `timers.rs`: one deadline per kind, and how event-time arming agrees with
//!   `poll_timeout`.
//! - `rotation.rs`: lifetime rotation, a replacement created before a connection expires.
//! - `knobs.rs`: the runtime setters.
//! - `effects.rs`: [`Effects`], what a step asks the shell to do; checkout results.
//! - `waiters.rs`: the FIFO waiter queue.
//! - `table.rs`: the [`Table`] trait; the plain pool's table is one `State`.
//! - `keyed_table.rs`: [`KeyTable`], a `State` per key plus the global idle cap.

mod adaptive;
mod breaker;
mod demand;
mod effects;
mod fast;
mod idle;
mod keyed_table;
mod knobs;
mod rotation;
mod state;
mod table;
mod timers;
mod waiters;

#[cfg(test)]
mod tests;

use std::time::{Duration, Instant};

pub(crate) use effects::{Acquired, Effects, Pushed, Rare, Via, WaitPoll};
pub(crate) use idle::Conn;
pub(crate) use keyed_table::KeyTable;
pub(crate) use state::State;
pub(crate) use table::Table;
pub(crate) use waiters::WaiterId;

/// Which key's state a connection, create or waiter belongs to: an index with a generation,
/// so a reused index is never confused with a forgotten key. The plain pool has one key,
/// [`KeyId::ROOT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct KeyId {
    pub idx: u32,
    pub generation: u32,
}

impl KeyId {
    pub const ROOT: KeyId = KeyId {
        idx: 0,
        generation: 0,
    };
}

/// The clocks the shell lends the machine: plain functions, so a step can read them lazily
/// and a test can name its own.
#[derive(Clone, Copy)]
pub(crate) struct Clock {
    /// The precise monotonic clock: deadlines, lifetimes, idle times, precise waits.
    pub now: fn() -> Instant,
    /// A coarse clock for differences only: the wait time of checkouts with no deadline
    /// (see `Since`).
    pub coarse: fn() -> Duration,
}

/// The time of one step: read from the shell's clock at most once, and only when a decision
/// needs it.
pub(crate) struct Now {
    at: Option<Instant>,
    /// A coarse reading taken before the step (see [`Now::with_coarse`]).
    coarse_at: Option<Duration>,
    clock: Clock,
}

impl Now {
    /// A step whose time is read on first need from `clock`.
    pub fn lazy(clock: Clock) -> Self {
        Now {
            at: None,
            coarse_at: None,
            clock,
        }
    }

    /// The same, with a coarse reading the shell took before it locked: a step that times a
    /// wait's end then reads no clock under the lock.
    pub fn with_coarse(mut self, reading: Duration) -> Self {
        self.coarse_at = Some(reading);
        self
    }

    /// A step at a known instant (a test's virtual clock); `clock` serves coarse readings.
    #[cfg(test)]
    pub fn at(t: Instant, clock: Clock) -> Self {
        Now {
            at: Some(t),
            coarse_at: None,
            clock,
        }
    }

    /// The step's instant, read now if it was not yet.
    pub fn get(&mut self) -> Instant {
        let clock = self.clock.now;
        *self.at.get_or_insert_with(clock)
    }

    /// A coarse reading, for differences only: the one the shell gave, else read now (not
    /// cached: each wait reads its own).
    pub fn coarse(&self) -> Duration {
        self.coarse_at.unwrap_or_else(self.clock.coarse)
    }
}
