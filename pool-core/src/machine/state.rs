//! [`State`]: the pool of one key, and its entry points (see the module docs of
//! [`machine`](super) for the contract and the invariants).

use std::sync::Arc;
use std::task::Waker;
use std::time::{Duration, Instant};

use super::adaptive::Adaptive;
use super::breaker::Breaker;
use super::effects::{Acquired, Effects, Via};
use super::idle::{Conn, Idle};
use super::rotation::Rotation;
use super::timers::Timers;
use super::waiters::{Since, WaiterId, Waiters};
use super::{KeyId, Now};
use crate::config::Limits;
use crate::error::{Cause, Kind};
use crate::hooks::Returned;
use crate::stats::{CloseReason, Stats};
use crate::{Binding, Error};

/// The pool of one key: every counter, the idle list, the waiter queue, the breaker and the
/// deadlines. Its fields are the machine's own: `idle.rs`, `demand.rs`, `timers.rs` and
/// `knobs.rs` add the methods of their concern.
///
/// The fields a contended checkout touches come first and in this order (`repr(C)`): the
/// lock hands the state from core to core, and each cache line it touches is a miss on the
/// other core. The contended one-step paths (`wait_fast`, `push_fast`'s hand-off,
/// `poll_waiter`) read nothing past `stats`; the idle ones (`pop_fast`, `push_fast` to idle)
/// also read `limits` and `timers`.
#[repr(C)]
pub(crate) struct State<C> {
    /// No knob needs the clock or a refill on checkout and release: `pop_fast`/`push_fast`
    /// may serve them.
    pub(super) fast: bool,
    pub(super) closed: bool,
    /// Every idle connection is stamped when it goes idle (see [`needs_stamp`](State::needs_stamp)).
    pub(super) stamped: bool,
    pub(super) open: usize,
    pub(super) closing: usize,
    /// `limits.max_open`, or `usize::MAX` for unlimited (kept by `update_fast_path`).
    pub(super) open_cap: usize,
    pub(super) waiters: Waiters<(Conn<C>, Via)>,
    /// The idle connections and what their stamps count from.
    pub(super) idle: Idle<C>,
    pub(super) stats: Stats,
    pub(super) creating: usize,
    /// Creates in flight with no waiter tag (refill, probe).
    pub(super) background: usize,
    /// Checked-out connections given back for a reset, which the shell runs.
    pub(super) resetting: usize,
    /// This state's key (`KeyId::ROOT` in a plain pool).
    pub(super) key: KeyId,
    pub(super) limits: Limits,
    /// `max_idle` as set, before clamping to `max_open`.
    pub(super) requested_max_idle: usize,
    /// `lifetime_jitter` as set (`None`: 10 % of `max_lifetime`).
    pub(super) requested_jitter: Option<Duration>,
    pub(super) breaker: Breaker,
    pub(super) last_error: Option<Cause>,
    /// The last create failure as its waiter got it: the error of waiters kept queued
    /// after it, once nothing open can serve them.
    pub(super) last_failure: Option<Error>,
    /// The reaper's deadline as armed, and the stamp pass.
    pub(super) timers: Timers,
    /// The adaptive retention's estimator (`adaptive_idle`; see `adaptive.rs`).
    pub(super) adaptive: Option<Box<Adaptive>>,
    /// Lifetime rotation's bookkeeping (`rotation.rs`).
    pub(super) rotation: Rotation,
}

impl<C> State<C> {
    pub fn new(
        limits: Limits,
        requested_max_idle: usize,
        requested_jitter: Option<Duration>,
    ) -> Self {
        let backoff = limits.breaker_backoff;
        let adaptive = limits.adaptive.map(|b| Box::new(Adaptive::new(b)));
        let mut st = State {
            open_cap: limits.open_cap(),
            key: KeyId::ROOT,
            limits,
            requested_max_idle,
            requested_jitter,
            idle: Idle::new(None),
            open: 0,
            creating: 0,
            background: 0,
            closing: 0,
            resetting: 0,
            waiters: Waiters::new(),
            closed: false,
            stats: Stats::default(),
            breaker: Breaker::new(backoff),
            last_error: None,
            last_failure: None,
            timers: Timers::default(),
            fast: false,
            stamped: false,
            adaptive,
            rotation: Rotation::default(),
        };
        st.update_fast_path();
        st
    }

    /// A fresh state for `key`, with this one's knobs and origin (a keyed pool's template).
    pub fn new_like(&self, key: KeyId) -> Self {
        let mut st = State::new(
            self.limits.clone(),
            self.requested_max_idle,
            self.requested_jitter,
        );
        st.key = key;
        st.idle = Idle::new(self.idle.origin());
        st
    }

    /// Stamps count from `origin` (the shell passes the pool's start).
    pub fn with_origin(mut self, origin: Instant) -> Self {
        self.idle.set_origin(origin);
        self
    }

    /// The knobs as validated (after runtime changes).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Whether every idle connection is stamped with when it went idle (a knob reads idle
    /// time: hooks, a keyed pool, `max_idle_time`, `validate_after`).
    #[inline]
    pub fn needs_stamp(&self) -> bool {
        self.stamped
    }

    /// Whether callers are queued.
    #[inline]
    pub fn has_waiters(&self) -> bool {
        !self.waiters.is_empty()
    }

    pub fn is_closed(&self) -> bool {
        self.closed
    }

    pub fn open(&self) -> usize {
        self.open
    }

    pub fn stats(&self) -> Stats {
        let mut s = self.stats;
        s.max_open = self.limits.max_open;
        s.open = self.open;
        s.idle = self.idle.len();
        s.in_use = self.open - self.idle.len();
        s.waiting = self.waiters.len();
        s.surplus_idle = self.idle.len().saturating_sub(self.limits.max_idle);
        s.resetting = self.resetting;
        s.retention = self.retention();
        s
    }

    /// Nothing left that needs this state: no connection (idle, in use, being created or
    /// closed), no waiter (not even a served or failed one not yet taken), no breaker retry
    /// pending. A keyed pool forgets such a key.
    pub fn is_vacant(&self) -> bool {
        self.open == 0 && self.waiters.is_vacant() && self.breaker.retry_at().is_none()
    }

    pub(super) fn unavailable(&self) -> Error {
        Error::with_cause(Kind::Unavailable, self.last_error.clone())
    }

    /// The error a timed-out checkout gets: the last create error as source, when a create
    /// failed since the last one succeeded.
    pub fn timeout_error(&self) -> Error {
        Error::with_cause(Kind::Timeout, self.last_error.clone())
    }

    // ---- checkout ----

    /// A checkout: an idle connection, or a place in the queue (starting a create if there is
    /// room). `retry` is for a caller whose connection turned out broken: it keeps its turn.
    /// `started`: when the checkout began, if its deadline read the precise clock (a precise
    /// start for `wait_duration`; without it the wait is timed by the coarse clock).
    pub fn acquire(
        &mut self,
        now: &mut Now,
        retry: bool,
        waker: Option<&Waker>,
        started: Option<Instant>,
        fx: &mut Effects<C>,
    ) -> Result<Acquired<C>, Error> {
        if self.closed {
            return Err(Error::closed());
        }
        self.note_checkout(now, fx);
        if (retry || self.waiters.is_empty())
            && let Some((mut conn, surplus, due)) = self.take_idle(now, fx)
        {
            self.rotate_if_due(&conn, now, fx);
            conn.must_validate = due;
            self.count_hit(surplus, now, fx);
            return Ok(Acquired::Ready(conn));
        }
        let has_room = self.has_room();
        let spare_creates = self.late_creates().saturating_sub(self.waiters.len());
        let mut breaker_holds = false;
        if spare_creates == 0 && has_room && self.breaker.is_open() {
            if self.limits.keyed && self.breaker.retry_at().is_some_and(|t| now.get() >= t) {
                self.breaker.half_open(self.limits.breaker_threshold);
            } else if self.in_flight() == 0 {
                return Err(self.unavailable());
            } else {
                // Creates fail, but connections that can serve this caller are out: it
                // queues for one of them instead of failing fast.
                breaker_holds = true;
            }
        }
        if has_room && !breaker_holds && self.limits.binding == Binding::Caller {
            // database/sql: the caller creates its own connection and waits for it.
            let id = self.waiters.push_own(Since::of(started, now), waker);
            self.start_create(Some(id), fx);
            self.created_for_waiter(now, fx);
            return Ok(Acquired::Wait(id));
        }
        if !has_room {
            self.stats.wait_count += 1;
        }
        let id = self
            .waiters
            .push(Since::of(started, now), !has_room, retry, waker);
        self.balance(now, fx);
        Ok(Acquired::Wait(id))
    }

    /// An idle connection now, without queueing or creating: `None` when callers are queued
    /// (no barging), nothing is idle, or the one in turn is due for validation (it stays
    /// where it is, for a checkout that can run the validation).
    pub fn try_acquire(&mut self, now: &mut Now, fx: &mut Effects<C>) -> Option<(Conn<C>, bool)> {
        if self.closed || !self.waiters.is_empty() {
            return None;
        }
        self.note_checkout(now, fx);
        let (conn, surplus, due) = self.take_idle(now, fx)?;
        if due {
            self.idle.unpop(self.limits.order, conn);
            // Surplus is back, and the retention may have just got shorter.
            if let Some(at) = self.grace_deadline() {
                self.arm(at, fx);
            }
            return None;
        }
        self.rotate_if_due(&conn, now, fx);
        Some((conn, surplus))
    }

    /// A checkout was served from idle (`surplus`: while surplus existed, a create the grace
    /// avoided); `min_idle` is kept.
    pub fn count_hit(&mut self, surplus: bool, now: &mut Now, fx: &mut Effects<C>) {
        self.stats.hits += 1;
        if surplus {
            self.stats.grace_reused += 1;
        }
        if self.limits.min_idle > 0 {
            self.refill(now, fx);
        }
    }

    // ---- creates, returns, closes ----

    /// A create finished: the connection (with the pool-wide id the shell gave it) goes to the
    /// head waiter or to idle. `jitter` is the shell's uniform draw in `[0, 1)`: the share of
    /// `lifetime_jitter` taken off this connection's lifetime.
    pub fn handle_created(
        &mut self,
        res: C,
        id: u64,
        tag: Option<WaiterId>,
        jitter: f32,
        now: &mut Now,
        fx: &mut Effects<C>,
    ) {
        self.creating -= 1;
        if tag.is_none() {
            self.background -= 1;
        }
        self.stats.created += 1;
        self.breaker = Breaker::new(self.limits.breaker_backoff);
        self.last_error = None;
        self.last_failure = None;
        let created_at = self.idle.stamp(now.get());
        let mut conn = Conn::new(res, id, created_at, jitter);
        if let Some(tag) = tag
            && tag.own
        {
            // Go's binding: the connection is its caller's; if the caller left, it goes on
            // as any other.
            match self.waiters.serve(tag, (conn, Via::Created)) {
                Ok(waker) => {
                    fx.wake(waker);
                    // The breaker closed: its retry time no longer holds rotation back.
                    return self.arm_rotation(fx);
                }
                Err((back, _)) => conn = back,
            }
        }
        let marked = match tag {
            None => self.retire_replaced(now, fx),
            Some(_) => None,
        };
        let returned = self.put(conn, Via::Created, now, fx);
        self.landed(marked, returned, fx);
    }

    /// A create failed: the slot frees, the waiter that asked gets the error, and the breaker
    /// counts it.
    pub fn handle_create_failed(
        &mut self,
        err: Error,
        tag: Option<WaiterId>,
        now: &mut Now,
        fx: &mut Effects<C>,
    ) {
        self.creating -= 1;
        self.open -= 1;
        self.stats.create_errors += 1;
        self.last_error = Some(err.cause().unwrap_or_else(|| Arc::new(err.clone())));
        if tag.is_none() && self.replacing() {
            let at = self.breaker.space_replacement(&self.limits, now);
            self.arm(at, fx);
        } else if let Some(at) = self
            .breaker
            .record_failure(&self.limits, tag.is_none(), now)
        {
            self.arm(at, fx);
        }
        self.last_failure = Some(err.clone());
        match tag {
            // Go's binding: the caller that started it gets the error (if it is still there).
            Some(tag) if tag.own => {
                if let Some(w) = self.waiters.fail(tag, err) {
                    fx.wake(w);
                }
            }
            // Errors go to waiters in arrival order. Late binding keeps the waiter queued
            // while connections that can serve it are in use or coming (`balance` fails it
            // once none are); Go's binding fails it at once.
            Some(_) => {
                if (self.limits.binding == Binding::Caller || self.in_flight() == 0)
                    && let Some(id) = self.waiters.oldest_created()
                    && let Some(w) = self.waiters.fail(id, err)
                {
                    fx.wake(w);
                }
            }
            None => {
                self.background -= 1;
                self.handle_replacement_failed();
            }
        }
        self.balance(now, fx);
        self.check_drained(fx);
    }

    /// A connection came back from a caller needing a reset: it stays out of service
    /// (counted in `open`, neither idle nor available) until [`end_reset`](State::end_reset).
    pub fn begin_reset(&mut self) {
        self.resetting += 1;
    }

    /// The reset of a returned connection finished (its result is released or closed by
    /// the caller, under the same lock).
    pub fn end_reset(&mut self) {
        self.resetting -= 1;
    }

    /// A connection that passed its checks comes back from a caller.
    pub fn release(&mut self, conn: Conn<C>, now: &mut Now, fx: &mut Effects<C>) -> Returned {
        if !self.closed && self.is_expired(&conn, now) {
            return self.begin_close(conn, CloseReason::MaxLifetime, fx);
        }
        self.rotate_if_due(&conn, now, fx);
        self.put(conn, Via::Release, now, fx)
    }

    /// Gives a usable connection to the head waiter, else to idle (or retires it: its
    /// replacement landed, see `rotation.rs`).
    pub(super) fn put(
        &mut self,
        conn: Conn<C>,
        via: Via,
        now: &mut Now,
        fx: &mut Effects<C>,
    ) -> Returned {
        if self.closed {
            return self.begin_close(conn, CloseReason::Shutdown, fx);
        }
        if self.open - self.closing > self.open_cap {
            return self.begin_close(conn, CloseReason::MaxIdle, fx);
        }
        match self.waiters.serve_head((conn, via)) {
            Ok(waker) => {
                fx.wake(waker);
                Returned::HandedOff
            }
            Err((conn, _)) => self.idle_or_retire(conn, now, fx),
        }
    }

    /// Takes a connection out of service; its slot frees when [`handle_closed`] runs.
    ///
    /// [`handle_closed`]: State::handle_closed
    pub fn begin_close(
        &mut self,
        conn: Conn<C>,
        reason: CloseReason,
        fx: &mut Effects<C>,
    ) -> Returned {
        self.closing += 1;
        fx.rare().closes.push((self.key, conn, reason));
        Returned::Closed(reason)
    }

    /// A close finished (or was abandoned): the slot frees and the reason is counted.
    pub fn handle_closed(&mut self, reason: CloseReason, now: &mut Now, fx: &mut Effects<C>) {
        self.closing -= 1;
        self.open -= 1;
        self.stats.count_close(reason);
        self.balance(now, fx);
        self.check_drained(fx);
    }

    /// A caller took its connection out of the pool for good.
    pub fn detach(&mut self, now: &mut Now, fx: &mut Effects<C>) {
        self.open -= 1;
        self.stats.detached += 1;
        self.balance(now, fx);
        self.check_drained(fx);
    }

    fn check_drained(&self, fx: &mut Effects<C>) {
        if self.closed && self.open == 0 {
            fx.rare().drained = true;
        }
    }

    // ---- closing and the reaper ----

    /// Closes the pool: waiters fail at once, idle connections close, the rest close on return.
    pub fn close(&mut self, fx: &mut Effects<C>) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.waiters.fail_all(Error::closed, &mut fx.rare().wakes);
        self.close_all_idle(fx);
        fx.rare().notify_reaper = true;
        self.check_drained(fx);
    }

    /// The reaper's turn (its clock read once, unless the pool is closed): closes what
    /// expired, what sat idle too long and surplus whose grace ended (least recently used
    /// first), starts the replacements due (`rotation.rs`), then refills `min_idle` or probes
    /// the breaker.
    pub fn handle_timeout(&mut self, now: &mut Now, fx: &mut Effects<C>) {
        if self.closed {
            return;
        }
        let t = now.get();
        self.reap_idle(t, fx);
        self.rotate_idle(t, fx);
        if self.limits.keyed {
            // No background probes per key: demand drives them. When the retry time comes,
            // an open breaker lets the next checkout try (half-open: one more failure opens
            // it again), and a key nobody uses can be forgotten.
            if self.breaker.retry_at().is_some_and(|at| at <= t) {
                self.breaker.half_open(self.limits.breaker_threshold);
            }
        } else if self.breaker.is_open() {
            if self.background == 0 && self.breaker.retry_at().is_none_or(|at| at <= t) {
                self.start_create(None, fx);
            }
        } else {
            self.refill(now, fx);
        }
    }

    /// The reaper's next deadline (see `timers.rs`), armed as such.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let next = self.next_deadline();
        self.timers.armed = next;
        next
    }
}
