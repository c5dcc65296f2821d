//! The pool's state machine: plain data behind one lock, no runtime, no I/O.
//!
//! # Invariants (checked by the unit tests and the model tests)
//! - `open = idle + checked out + creating + closing`, and `open <= max_open` whenever a
//!   create is started (a lowered `max_open` drains on return).
//! - Waiters queued implies no idle connection: every connection that arrives (release or
//!   create) goes to the head waiter first.
//! - Creates follow demand: one is started only while waiters outnumber creates in flight, or
//!   to keep `min_idle`, or to probe while the breaker is open.
//! - A close is counted once, under one reason, when it completes; its slot stays taken until
//!   then, so physical connections never exceed `max_open`.
//!
//! Methods take `&mut Now`, which reads the clock at most once and only when a decision needs
//! it, and push what the shell must do (wake, spawn a create, close) into [`Effects`], which
//! the shell runs after releasing the lock.

use std::collections::VecDeque;
use std::sync::Arc;
use std::task::Waker;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::{Limits, clamp_idle};
use crate::error::{Cause, Kind};
use crate::hooks::Returned;
use crate::stats::{CloseReason, Stats};
use crate::waiters::{Since, Slot, WaiterId, Waiters};
use crate::{Binding, Error, IdleOrder};

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

/// An instant as nanoseconds since its pool's origin (`u64::MAX`: none).
///
/// A `Conn` moves through the pool by value on every checkout and release. An `Instant` is
/// 12 bytes of data in 16, and copies of a struct with such holes get split into overlapping
/// moves whose reads then miss store forwarding: that cost the uncontended checkout a quarter
/// of its time. Eight plain bytes move as one word.
///
/// The origin belongs to the pool (set by the shell when it starts, or the first instant a
/// state stamps), never to the process: instants of another runtime's clock (a paused one in
/// a test, a second runtime) would otherwise fall before a process-wide origin and lose their
/// order.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp(u64);

impl Stamp {
    const NONE: Stamp = Stamp(u64::MAX);

    fn of(t: Instant, origin: Instant) -> Stamp {
        let nanos = t.saturating_duration_since(origin).as_nanos();
        Stamp(
            u64::try_from(nanos)
                .unwrap_or(u64::MAX - 1)
                .min(u64::MAX - 1),
        )
    }

    fn get(self, origin: Option<Instant>) -> Option<Instant> {
        origin
            .filter(|_| self != Self::NONE)
            .map(|o| o + Duration::from_nanos(self.0))
    }
}

/// A pooled resource with its bookkeeping.
pub(crate) struct Conn<C> {
    pub res: C,
    pub id: u64,
    created_at: Stamp,
    /// Fraction of `lifetime_jitter` taken off this connection's lifetime.
    jitter: f32,
    /// When it went idle; stamped lazily (see `State::push_idle`).
    idle_since: Stamp,
    /// Idle at least `validate_after`: validate before handing out.
    pub must_validate: bool,
    /// `Manager::check` panicked at checkout: never handed out, closed as broken.
    pub check_panicked: bool,
}

impl<C> Conn<C> {
    /// When it was created, given its pool's origin.
    pub fn created_at(&self, origin: Option<Instant>) -> Option<Instant> {
        self.created_at.get(origin)
    }

    /// When it went idle, if stamped, given its pool's origin.
    #[inline]
    pub fn idle_since(&self, origin: Option<Instant>) -> Option<Instant> {
        self.idle_since.get(origin)
    }

    #[inline]
    fn is_stamped(&self) -> bool {
        self.idle_since != Stamp::NONE
    }
}

/// How a checkout was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Via {
    Idle,
    Release,
    Created,
}

/// How often the reaper stamps idle entries the release fast path left unstamped (it reads no
/// clock): at most this long after a connection went idle, its idle time is known. A knob set
/// later (`set_max_idle_time`) then counts from then, not from the call, so it errs by at
/// most this much towards keeping a connection. Only while unstamped entries exist: a pool
/// at rest gets one pass and none after.
pub(crate) const STAMP_EVERY: Duration = Duration::from_secs(1);

/// A lazily read clock: at most one read per operation, none when nothing needs the time.
pub(crate) struct Now(Option<Instant>);

impl Now {
    pub fn lazy() -> Self {
        Now(None)
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub fn at(t: Instant) -> Self {
        Now(Some(t))
    }

    pub fn get(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }
}

/// What the shell must do once the lock is released. Small on purpose: the common case (a
/// hand-off) is one waker; everything else lives in a box allocated only when needed.
#[must_use]
pub(crate) struct Effects<C> {
    pub wake: Option<Waker>,
    pub rare: Option<Box<Rare<C>>>,
}

/// The less common effects.
pub(crate) struct Rare<C> {
    pub wakes: Vec<Waker>,
    /// Creates to spawn, each for a key and tagged with the waiter that asked (`None`: refill
    /// or probe).
    pub creates: Vec<(KeyId, Option<WaiterId>)>,
    pub closes: Vec<(KeyId, Conn<C>, CloseReason)>,
    pub notify_reaper: bool,
    /// The pool is closed and every connection is gone.
    pub drained: bool,
    /// Wakers of waiters that left: dropped with these effects, after the lock (a waker's
    /// drop may run any code, the pool's own included).
    pub stale: Vec<Waker>,
}

impl<C> Default for Effects<C> {
    fn default() -> Self {
        Effects {
            wake: None,
            rare: None,
        }
    }
}

impl<C> Effects<C> {
    pub fn rare(&mut self) -> &mut Rare<C> {
        self.rare.get_or_insert_with(|| {
            Box::new(Rare {
                wakes: Vec::new(),
                creates: Vec::new(),
                closes: Vec::new(),
                notify_reaper: false,
                drained: false,
                stale: Vec::new(),
            })
        })
    }

    /// A waker to drop once the lock is released.
    fn stale(&mut self, waker: Option<Waker>) {
        if let Some(w) = waker {
            self.rare().stale.push(w);
        }
    }

    fn wake(&mut self, waker: Option<Waker>) {
        if let Some(w) = waker {
            match self.wake {
                None => self.wake = Some(w),
                Some(_) => self.rare().wakes.push(w),
            }
        }
    }

    #[cfg(test)]
    pub fn take_creates(&mut self) -> Vec<Option<WaiterId>> {
        self.rare
            .as_mut()
            .map(|r| std::mem::take(&mut r.creates))
            .unwrap_or_default()
            .into_iter()
            .map(|(_, tag)| tag)
            .collect()
    }

    #[cfg(test)]
    pub fn take_closes(&mut self) -> Vec<(Conn<C>, CloseReason)> {
        self.rare
            .as_mut()
            .map(|r| std::mem::take(&mut r.closes))
            .unwrap_or_default()
            .into_iter()
            .map(|(_, c, r)| (c, r))
            .collect()
    }

    #[cfg(test)]
    pub fn flag(&self, f: impl Fn(&Rare<C>) -> bool) -> bool {
        self.rare.as_ref().is_some_and(|r| f(r))
    }
}

/// The result of a checkout attempt.
pub(crate) enum Acquired<C> {
    Ready(Conn<C>),
    Wait(WaiterId),
}

/// The result of polling a waiter.
pub(crate) enum WaitPoll<C> {
    /// Still queued; the replaced waker, to drop after the lock.
    Pending(Option<Waker>),
    Ready(Result<(Conn<C>, Via), Error>),
}

/// Fail-fast after repeated create failures, with a backoff for background creates.
#[derive(Debug)]
struct Breaker {
    failures: u32,
    open: bool,
    backoff: Duration,
    /// No background create (refill or probe) before this.
    retry_at: Option<Instant>,
}

pub(crate) struct State<C> {
    /// This state's key (`KeyId::ROOT` in a plain pool).
    key: KeyId,
    /// What its stamps count from (see [`Stamp`]): the pool's, or the first instant stamped.
    origin: Option<Instant>,
    limits: Limits,
    /// `max_idle` as set, before clamping to `max_open`.
    requested_max_idle: usize,
    /// `lifetime_jitter` as set (`None`: 10 % of `max_lifetime`).
    requested_jitter: Option<Duration>,
    idle: VecDeque<Conn<C>>,
    /// Idle entries with no `idle_since`.
    unstamped: usize,
    /// When the reaper next stamps the unstamped entries (see [`STAMP_EVERY`]); `None`: no
    /// such pass is due.
    stamp_at: Option<Instant>,
    open: usize,
    creating: usize,
    /// Creates in flight with no waiter tag (refill, probe).
    background: usize,
    closing: usize,
    /// Checked-out connections given back for a reset, which the shell runs.
    resetting: usize,
    waiters: Waiters<(Conn<C>, Via)>,
    closed: bool,
    stats: Stats,
    breaker: Breaker,
    last_error: Option<Cause>,
    /// The last create failure as its waiter got it: the error of waiters kept queued
    /// after it, once nothing open can serve them.
    last_failure: Option<Error>,
    /// The deadline the reaper sleeps until.
    reaper_at: Option<Instant>,
    /// No knob needs the clock or a refill on checkout and release: `pop_fast`/`push_fast`
    /// may serve them.
    fast: bool,
    /// `stamp_always()`, kept as one flag for the release fast path.
    stamped: bool,
}

impl<C> State<C> {
    pub fn new(
        limits: Limits,
        requested_max_idle: usize,
        requested_jitter: Option<Duration>,
    ) -> Self {
        let backoff = limits.breaker_backoff;
        State {
            key: KeyId::ROOT,
            origin: None,
            limits,
            requested_max_idle,
            requested_jitter,
            idle: VecDeque::new(),
            unstamped: 0,
            stamp_at: None,
            open: 0,
            creating: 0,
            background: 0,
            closing: 0,
            resetting: 0,
            waiters: Waiters::new(),
            closed: false,
            stats: Stats::default(),
            breaker: Breaker {
                failures: 0,
                open: false,
                backoff,
                retry_at: None,
            },
            last_error: None,
            last_failure: None,
            reaper_at: None,
            fast: false,
            stamped: false,
        }
        .with_fast_path()
    }

    /// A fresh state for `key`, with this one's knobs and origin (a keyed pool's template).
    pub fn new_like(&self, key: KeyId) -> Self {
        let mut st = State::new(
            self.limits.clone(),
            self.requested_max_idle,
            self.requested_jitter,
        );
        st.key = key;
        st.origin = self.origin;
        st
    }

    /// Stamps count from `origin` (the shell passes the pool's start).
    pub fn with_origin(mut self, origin: Instant) -> Self {
        self.origin = Some(origin);
        self
    }

    /// The stamp of `t` (none for `None`); the first instant stamped becomes the origin
    /// when the shell gave none.
    #[inline]
    fn stamp(&mut self, t: Option<Instant>) -> Stamp {
        match t {
            None => Stamp::NONE,
            Some(t) => Stamp::of(t, *self.origin.get_or_insert(t)),
        }
    }

    /// The knobs as validated (after runtime changes).
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    fn with_fast_path(mut self) -> Self {
        self.update_fast_path();
        self
    }

    fn update_fast_path(&mut self) {
        let l = &self.limits;
        self.fast =
            l.max_lifetime.is_none() && l.validate_after.is_none() && l.min_idle == 0 && !l.hooks;
        self.stamped = l.stamp || l.max_idle_time.is_some() || l.validate_after.is_some();
    }

    /// The common checkout in one step: an idle connection when nobody waits and no knob
    /// needs the clock. Same effect as `acquire`'s idle branch, with nothing for the shell to
    /// do afterwards.
    #[inline]
    pub fn pop_fast(&mut self) -> Option<Conn<C>> {
        if !self.fast || !self.waiters.is_empty() {
            return None;
        }
        let surplus = self.idle.len() > self.limits.max_idle;
        let conn = self.pop_idle()?;
        self.stats.hits += 1;
        if surplus {
            self.stats.grace_reused += 1;
        }
        Some(conn)
    }

    /// The common release in one step: back to idle below `max_idle` when nobody waits and
    /// the reaper needs no new deadline. Same effect as `release` there; otherwise the
    /// connection stays in `slot` for `release`. `now` gives the idle stamp, read only when
    /// [`needs_stamp`](State::needs_stamp).
    #[inline]
    pub fn push_fast(&mut self, slot: &mut Option<Conn<C>>, now: impl FnOnce() -> Instant) -> bool {
        if !self.fast
            || self.closed
            || !self.waiters.is_empty()
            || self.idle.len() >= self.limits.max_idle
            || self.open - self.closing > self.limits.open_cap()
        {
            return false;
        }
        let idle_since = if self.needs_stamp() {
            let t = now();
            if let Some(max) = self.limits.max_idle_time {
                let oldest = self.oldest_idle().unwrap_or(t);
                if self.reaper_at.is_none_or(|r| r > oldest + max) {
                    return false;
                }
            }
            Some(t)
        } else {
            None
        };
        // An unstamped entry needs the reaper's stamp pass scheduled: `release` does that
        // (once per pass).
        if idle_since.is_none() && self.stamp_at.is_none() {
            return false;
        }
        let Some(mut conn) = slot.take() else {
            return false;
        };
        if idle_since.is_none() {
            self.unstamped += 1;
        }
        conn.idle_since = self.stamp(idle_since);
        conn.must_validate = false;
        self.idle.push_back(conn);
        true
    }

    /// Whether every idle connection is stamped with when it went idle.
    #[inline]
    pub fn needs_stamp(&self) -> bool {
        self.stamp_always()
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
        s
    }

    fn has_room(&self) -> bool {
        self.open < self.limits.open_cap()
    }

    #[inline]
    fn stamp_always(&self) -> bool {
        self.stamped
    }

    /// Idle connections now.
    pub fn idle_len(&self) -> usize {
        self.idle.len()
    }

    /// When the least recently idled connection went idle (`None`: nothing idle, or not
    /// stamped; a keyed pool stamps every one).
    pub fn oldest_idle(&self) -> Option<Instant> {
        self.idle.front().and_then(|c| c.idle_since(self.origin))
    }

    /// When the most recently idled connection went idle.
    pub fn newest_idle(&self) -> Option<Instant> {
        self.idle.back().and_then(|c| c.idle_since(self.origin))
    }

    /// When each idle connection went idle, least recent first (a keyed pool stamps all).
    pub fn idle_stamps(&self) -> impl Iterator<Item = Instant> + '_ {
        self.idle.iter().filter_map(|c| c.idle_since(self.origin))
    }

    /// The deadline this state last asked the reaper for.
    pub fn reaper_at(&self) -> Option<Instant> {
        self.reaper_at
    }

    /// Nothing left that needs this state: no connection (idle, in use, being created or
    /// closed), no waiter (not even a served or failed one not yet taken), no breaker retry
    /// pending. A keyed pool forgets such a key.
    pub fn is_vacant(&self) -> bool {
        self.open == 0 && self.waiters.is_vacant() && self.breaker.retry_at.is_none()
    }

    /// Closes the least recently idled connection (a keyed pool's global idle cap).
    pub fn close_oldest_idle(&mut self, reason: CloseReason, fx: &mut Effects<C>) -> bool {
        match self.take_front() {
            Some(conn) => {
                self.begin_close(conn, reason, fx);
                true
            }
            None => false,
        }
    }

    fn expires_at(&self, conn: &Conn<C>) -> Option<Instant> {
        let life = self.limits.max_lifetime?;
        let cut = self.limits.lifetime_jitter.mul_f32(conn.jitter).min(life);
        Some(conn.created_at(self.origin)? + (life - cut))
    }

    fn is_expired(&self, conn: &Conn<C>, now: &mut Now) -> bool {
        self.expires_at(conn).is_some_and(|t| now.get() >= t)
    }

    /// Pushes `at` as the reaper's next wake-up when it is earlier than the current one.
    fn schedule(&mut self, at: Instant, fx: &mut Effects<C>) {
        if self.reaper_at.is_none_or(|r| at < r) {
            self.reaper_at = Some(at);
            fx.rare().notify_reaper = true;
        }
    }

    fn pop_idle(&mut self) -> Option<Conn<C>> {
        let conn = match self.limits.order {
            IdleOrder::Lifo => self.idle.pop_back(),
            IdleOrder::Fifo => self.idle.pop_front(),
        }?;
        if !conn.is_stamped() {
            self.unstamped -= 1;
        }
        Some(conn)
    }

    /// Puts back what [`pop_idle`](State::pop_idle) just took, where it was.
    fn unpop_idle(&mut self, conn: Conn<C>) {
        if !conn.is_stamped() {
            self.unstamped += 1;
        }
        match self.limits.order {
            IdleOrder::Lifo => self.idle.push_back(conn),
            IdleOrder::Fifo => self.idle.push_front(conn),
        }
    }

    fn take_front(&mut self) -> Option<Conn<C>> {
        let conn = self.idle.pop_front()?;
        if !conn.is_stamped() {
            self.unstamped -= 1;
        }
        Some(conn)
    }

    fn unavailable(&self) -> Error {
        Error::with_cause(Kind::Unavailable, self.last_error.clone())
    }

    /// The error a timed-out checkout gets: the last create error as source, when a create
    /// failed since the last one succeeded.
    pub fn timeout_error(&self) -> Error {
        Error::with_cause(Kind::Timeout, self.last_error.clone())
    }

    /// Creates in flight that serve whoever waits first (not a caller's own, Go's binding).
    fn late_creates(&self) -> usize {
        self.creating - self.waiters.own()
    }

    /// Connections that will come back or arrive: checked out, being reset, being created.
    fn in_flight(&self) -> usize {
        self.open - self.idle.len() - self.closing
    }

    /// A checkout: an idle connection, or a place in the queue (starting a create if there is
    /// room). `retry` is for a caller whose connection turned out broken: it keeps its turn.
    /// `started`: when the checkout began, if its deadline read tokio's clock (a precise start
    /// for `wait_duration`; without it the wait is timed by the coarse clock).
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
        if (retry || self.waiters.is_empty())
            && let Some((mut conn, surplus, due)) = self.take_idle(now, fx)
        {
            conn.must_validate = due;
            self.count_hit(surplus, now, fx);
            return Ok(Acquired::Ready(conn));
        }
        let has_room = self.has_room();
        let spare_creates = self.late_creates().saturating_sub(self.waiters.len());
        let mut breaker_holds = false;
        if spare_creates == 0 && has_room && self.breaker.open {
            if self.limits.keyed && self.breaker.retry_at.is_some_and(|t| now.get() >= t) {
                self.half_open();
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
            let id = self.waiters.push_own(Since::of(started), waker);
            self.start_create(Some(id), fx);
            return Ok(Acquired::Wait(id));
        }
        if !has_room {
            self.stats.wait_count += 1;
        }
        let id = self
            .waiters
            .push(Since::of(started), !has_room, retry, waker);
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
        let (conn, surplus, due) = self.take_idle(now, fx)?;
        if due {
            self.unpop_idle(conn);
            return None;
        }
        Some((conn, surplus))
    }

    /// The next idle connection in turn that has not expired (the expired ones met on the
    /// way close), with whether surplus existed then and whether it is due for validation.
    fn take_idle(&mut self, now: &mut Now, fx: &mut Effects<C>) -> Option<(Conn<C>, bool, bool)> {
        loop {
            let surplus = self.idle.len() > self.limits.max_idle;
            let conn = self.pop_idle()?;
            if self.is_expired(&conn, now) {
                self.begin_close(conn, CloseReason::MaxLifetime, fx);
                continue;
            }
            let due = self.limits.validate_after.is_some_and(|after| {
                conn.idle_since(self.origin)
                    .is_some_and(|t| now.get().saturating_duration_since(t) >= after)
            });
            return Some((conn, surplus, due));
        }
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

    /// A keyed pool's breaker after its retry time: the next checkout may create, and one
    /// more failure opens it again.
    fn half_open(&mut self) {
        let b = &mut self.breaker;
        b.retry_at = None;
        if b.open {
            b.open = false;
            b.failures = self.limits.breaker_threshold.saturating_sub(1);
        }
    }

    /// Starts creates while waiters outnumber creates in flight and resets under way, and
    /// there is room; with the breaker open, fails those waiters at once instead, unless
    /// connections that may serve them are out. Then keeps `min_idle`.
    fn balance(&mut self, now: &mut Now, fx: &mut Effects<C>) {
        if self.closed {
            return;
        }
        // A connection being reset comes back soon (or its close frees the slot and this
        // runs again): it serves a waiter as a create in flight would. While creates fail,
        // each waiter gets at most one create started on its behalf, oldest first; otherwise
        // a waiter whose create served someone else (late binding) gets another.
        while self.waiters.len() > self.late_creates() + self.resetting && self.has_room() {
            if self.breaker.open && self.in_flight() > 0 {
                // No create while it is open; what is out may still serve them.
                break;
            }
            let id = match self.waiters.tag_oldest_uncreated() {
                Some(id) => id,
                None if self.last_failure.is_none() => match self.waiters.oldest_waiting() {
                    Some(id) => id,
                    None => break,
                },
                None => break,
            };
            if self.breaker.open {
                let err = self.unavailable();
                if let Some(w) = self.waiters.fail(id, err) {
                    fx.wake(w);
                }
                continue;
            }
            self.start_create(Some(id), fx);
        }
        // Waiters whose creates failed stay queued while something open may serve them;
        // once nothing can (nothing checked out, being reset or created), they fail with
        // the create error.
        if !self.waiters.is_empty()
            && self.in_flight() == 0
            && self.closing == 0
            && let Some(err) = self.last_failure.clone()
        {
            self.waiters
                .fail_created(|| err.clone(), &mut fx.rare().wakes);
        }
        if self.limits.min_idle > 0 {
            self.refill(now, fx);
        }
    }

    /// Creates toward `min_idle`, unless backing off after a failure.
    fn refill(&mut self, now: &mut Now, fx: &mut Effects<C>) {
        if self.closed || self.breaker.open {
            return;
        }
        while self.idle.len() + self.late_creates().saturating_sub(self.waiters.len())
            < self.limits.min_idle
            && self.has_room()
        {
            if let Some(at) = self.breaker.retry_at
                && now.get() < at
            {
                self.schedule(at, fx);
                return;
            }
            self.start_create(None, fx);
        }
    }

    fn start_create(&mut self, tag: Option<WaiterId>, fx: &mut Effects<C>) {
        self.open += 1;
        self.stats.peak_open = self.stats.peak_open.max(self.open);
        self.creating += 1;
        if tag.is_none() {
            self.background += 1;
        }
        fx.rare().creates.push((self.key, tag));
    }

    /// A create finished: the connection (with the pool-wide id the shell gave it) goes to the
    /// head waiter or to idle.
    pub fn handle_created(
        &mut self,
        res: C,
        id: u64,
        tag: Option<WaiterId>,
        now: &mut Now,
        fx: &mut Effects<C>,
    ) {
        self.creating -= 1;
        if tag.is_none() {
            self.background -= 1;
        }
        self.stats.created += 1;
        self.breaker = Breaker {
            failures: 0,
            open: false,
            backoff: self.limits.breaker_backoff,
            retry_at: None,
        };
        self.last_error = None;
        self.last_failure = None;
        let created_at = self.stamp(Some(now.get()));
        let mut conn = Conn {
            res,
            id,
            created_at,
            jitter: fastrand::f32(),
            idle_since: Stamp::NONE,
            must_validate: false,
            check_panicked: false,
        };
        if let Some(tag) = tag
            && tag.own
        {
            // Go's binding: the connection is its caller's; if the caller left, it goes on
            // as any other.
            match self.waiters.serve(tag, (conn, Via::Created)) {
                Ok(waker) => return fx.wake(waker),
                Err((back, _)) => conn = back,
            }
        }
        self.put(conn, Via::Created, now, fx);
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
        let l = &self.limits;
        let b = &mut self.breaker;
        b.failures += 1;
        let trips = l.breaker_threshold > 0 && b.failures >= l.breaker_threshold;
        // The backoff doubles once per trip (or failed background probe), not once per
        // failure: creates that were in flight together fail together, and counting each
        // would push the next try out to the maximum after one outage.
        let escalates = tag.is_none() || (trips && !b.open);
        if escalates || (l.keyed && l.breaker_threshold > 0) {
            b.retry_at = Some(now.get() + b.backoff);
        }
        if escalates {
            b.backoff = (b.backoff * 2).min(l.breaker_max_backoff);
        }
        b.open |= trips;
        if let Some(at) = b.retry_at {
            self.schedule(at, fx);
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
            None => self.background -= 1,
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
        self.put(conn, Via::Release, now, fx)
    }

    /// Gives a usable connection to the head waiter, else to idle.
    fn put(&mut self, conn: Conn<C>, via: Via, now: &mut Now, fx: &mut Effects<C>) -> Returned {
        if self.closed {
            return self.begin_close(conn, CloseReason::Shutdown, fx);
        }
        if self.open - self.closing > self.limits.open_cap() {
            return self.begin_close(conn, CloseReason::MaxIdle, fx);
        }
        match self.waiters.serve_head((conn, via)) {
            Ok(waker) => {
                fx.wake(waker);
                Returned::HandedOff
            }
            Err((conn, _)) => self.push_idle(conn, now, fx),
        }
    }

    /// Idles a connection. Beyond `max_idle` it is surplus: closed at once with no grace, else
    /// kept and stamped so the reaper closes the least recently used surplus when it has sat
    /// unused for the grace period. Entries are stamped lazily: only when a knob reads the
    /// idle time or when surplus appears, so the common path reads no clock.
    fn push_idle(&mut self, mut conn: Conn<C>, now: &mut Now, fx: &mut Effects<C>) -> Returned {
        conn.must_validate = false;
        if self.idle.len() >= self.limits.max_idle {
            if self.limits.idle_grace.is_zero() {
                return self.begin_close(conn, CloseReason::MaxIdle, fx);
            }
            let t = now.get();
            self.stamp_unstamped(t);
            conn.idle_since = self.stamp(Some(t));
            let oldest = self
                .idle
                .front()
                .and_then(|c| c.idle_since(self.origin))
                .unwrap_or(t);
            self.schedule(oldest + self.limits.idle_grace, fx);
        } else if self.stamp_always() {
            conn.idle_since = self.stamp(Some(now.get()));
        } else {
            conn.idle_since = Stamp::NONE;
            self.unstamped += 1;
            if self.stamp_at.is_none() {
                let at = now.get() + STAMP_EVERY;
                self.stamp_at = Some(at);
                self.schedule(at, fx);
            }
        }
        if let Some(at) = self.expires_at(&conn) {
            self.schedule(at, fx);
        }
        if let (Some(max), Some(t)) = (self.limits.max_idle_time, conn.idle_since(self.origin))
            && self.idle.len() >= self.limits.min_idle
        {
            let oldest = self
                .idle
                .front()
                .and_then(|c| c.idle_since(self.origin))
                .unwrap_or(t);
            self.schedule(oldest + max, fx);
        }
        self.idle.push_back(conn);
        Returned::Idle
    }

    fn stamp_unstamped(&mut self, t: Instant) {
        if self.unstamped > 0 {
            let stamp = self.stamp(Some(t));
            for c in self.idle.iter_mut().filter(|c| !c.is_stamped()) {
                c.idle_since = stamp;
            }
            self.unstamped = 0;
        }
    }

    /// Closes the idle connections `dead` picks (seen dead from outside the pool), as broken;
    /// the others keep their place and their stamps, and nothing is created to replace them.
    pub fn evict_idle(&mut self, mut dead: impl FnMut(&C) -> bool, fx: &mut Effects<C>) -> usize {
        // One pass: the kept go back in their order, the dead close.
        let all = std::mem::take(&mut self.idle);
        let mut evicted = 0;
        for conn in all {
            if dead(&conn.res) {
                if !conn.is_stamped() {
                    self.unstamped -= 1;
                }
                self.begin_close(conn, CloseReason::Broken, fx);
                evicted += 1;
            } else {
                self.idle.push_back(conn);
            }
        }
        evicted
    }

    /// Takes a connection out of service; its slot frees when [`handle_closed`] runs.
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

    fn finish_wait(
        &mut self,
        since: Since,
        counted: bool,
        now: &mut Now,
        slot: Slot<(Conn<C>, Via)>,
    ) -> Result<(Conn<C>, Via), Error> {
        if counted {
            self.stats.wait_duration += since.elapsed(|| now.get());
        }
        match slot {
            Slot::Served((conn, via)) => {
                match via {
                    Via::Release => self.stats.handoffs += 1,
                    Via::Idle => self.stats.hits += 1,
                    Via::Created => {}
                }
                Ok((conn, via))
            }
            Slot::Failed(err) => Err(err),
            Slot::Waiting(_) => {
                unreachable!("finish_wait is only called on a served or failed slot")
            }
        }
    }

    /// Polls a waiter: takes its connection or error, or records the waker.
    pub fn poll_waiter(&mut self, id: WaiterId, waker: &Waker, now: &mut Now) -> WaitPoll<C> {
        let Some(entry) = self.waiters.get_mut(id) else {
            return WaitPoll::Ready(Err(Error::closed()));
        };
        if let Slot::Waiting(w) = &mut entry.slot {
            if w.as_ref().is_some_and(|w| w.will_wake(waker)) {
                return WaitPoll::Pending(None);
            }
            return WaitPoll::Pending(w.replace(waker.clone()));
        }
        let entry = self.waiters.remove(id).expect("entry was just found");
        WaitPoll::Ready(self.finish_wait(entry.since, entry.counted, now, entry.slot))
    }

    /// The waiter's deadline passed: a connection delivered meanwhile is still taken;
    /// otherwise it leaves the queue with a timeout error (its waker leaves in `fx`).
    pub fn timeout_waiter(
        &mut self,
        id: WaiterId,
        now: &mut Now,
        fx: &mut Effects<C>,
    ) -> Result<(Conn<C>, Via), Error> {
        let Some(entry) = self.waiters.remove(id) else {
            return Err(self.timeout_error());
        };
        if let Slot::Waiting(waker) = entry.slot {
            fx.stale(waker);
            if entry.counted {
                self.stats.wait_duration += entry.since.elapsed(|| now.get());
            }
            self.stats.timeouts += 1;
            return Err(self.timeout_error());
        }
        self.finish_wait(entry.since, entry.counted, now, entry.slot)
    }

    /// The waiter's future was dropped: it leaves the queue (its waker leaves in `fx`), and a
    /// connection already handed to it moves on to the next waiter or to idle.
    pub fn cancel_waiter(&mut self, id: WaiterId, now: &mut Now, fx: &mut Effects<C>) {
        let Some(entry) = self.waiters.remove(id) else {
            return;
        };
        if entry.counted {
            self.stats.wait_duration += entry.since.elapsed(|| now.get());
        }
        match entry.slot {
            Slot::Served((conn, via)) => {
                self.put(conn, via, now, fx);
            }
            Slot::Waiting(waker) => fx.stale(waker),
            Slot::Failed(_) => {}
        }
    }

    /// Closes the pool: waiters fail at once, idle connections close, the rest close on return.
    pub fn close(&mut self, fx: &mut Effects<C>) {
        if self.closed {
            return;
        }
        self.closed = true;
        self.waiters.fail_all(Error::closed, &mut fx.rare().wakes);
        while let Some(conn) = self.take_front() {
            self.begin_close(conn, CloseReason::Shutdown, fx);
        }
        fx.rare().notify_reaper = true;
        self.check_drained(fx);
    }

    /// The reaper's turn: closes what expired, what sat idle too long and surplus whose grace
    /// ended (least recently used first), then refills `min_idle` or probes the breaker.
    pub fn handle_timeout(&mut self, now: Instant, fx: &mut Effects<C>) {
        if self.closed {
            return;
        }
        let mut clock = Now::at(now);
        if self.stamp_at.is_some_and(|t| t <= now) {
            // Entries idled since the last pass went idle at most `STAMP_EVERY` ago.
            self.stamp_unstamped(now);
            self.stamp_at = None;
        }
        if self.limits.max_lifetime.is_some() {
            let mut i = 0;
            while i < self.idle.len() {
                if self.expires_at(&self.idle[i]).is_some_and(|t| now >= t) {
                    let conn = self.idle.remove(i).expect("index is in range");
                    if !conn.is_stamped() {
                        self.unstamped -= 1;
                    }
                    self.begin_close(conn, CloseReason::MaxLifetime, fx);
                } else {
                    i += 1;
                }
            }
        }
        if let Some(max) = self.limits.max_idle_time {
            while self.idle.len() > self.limits.min_idle && self.front_idle_since(now) + max <= now
            {
                let conn = self.take_front().expect("idle is not empty");
                self.begin_close(conn, CloseReason::MaxIdleTime, fx);
            }
        }
        let grace = self.limits.idle_grace;
        while self.idle.len() > self.limits.max_idle && self.front_idle_since(now) + grace <= now {
            let conn = self.take_front().expect("idle is not empty");
            self.begin_close(conn, CloseReason::Grace, fx);
        }
        if self.limits.keyed {
            // No background probes per key: demand drives them. When the retry time comes,
            // an open breaker lets the next checkout try (half-open: one more failure opens
            // it again), and a key nobody uses can be forgotten.
            if self.breaker.retry_at.is_some_and(|t| t <= now) {
                self.half_open();
            }
        } else if self.breaker.open {
            if self.background == 0 && self.breaker.retry_at.is_none_or(|t| t <= now) {
                self.start_create(None, fx);
            }
        } else {
            self.refill(&mut clock, fx);
        }
    }

    /// `idle_since` of the least recently used idle entry, stamping it now if it has none.
    fn front_idle_since(&mut self, now: Instant) -> Instant {
        match self.idle.front().and_then(|c| c.idle_since(self.origin)) {
            Some(t) => t,
            None => {
                self.stamp_unstamped(now);
                now
            }
        }
    }

    /// The reaper's next deadline (and records it as such).
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        let mut next: Option<Instant> = None;
        let mut at = |t: Instant| next = Some(next.map_or(t, |n| n.min(t)));
        if !self.closed {
            // Due even when nothing is left to stamp: the pass clears it, and the next
            // unstamped release arms another.
            if let Some(t) = self.stamp_at {
                at(t);
            }
            if self.limits.max_lifetime.is_some() {
                for c in &self.idle {
                    if let Some(t) = self.expires_at(c) {
                        at(t);
                    }
                }
            }
            let front = self.idle.front().and_then(|c| c.idle_since(self.origin));
            if let (Some(max), Some(t)) = (self.limits.max_idle_time, front)
                && self.idle.len() > self.limits.min_idle
            {
                at(t + max);
            }
            if let Some(t) = front
                && self.idle.len() > self.limits.max_idle
            {
                at(t + self.limits.idle_grace);
            }
            let refill_due = self.idle.len() + self.creating.saturating_sub(self.waiters.len())
                < self.limits.min_idle;
            if let Some(t) = self.breaker.retry_at
                && ((self.breaker.open && self.background == 0) || refill_due || self.limits.keyed)
            {
                at(t);
            }
        }
        self.reaper_at = next;
        next
    }

    // ---- runtime knobs ----

    /// Closes idle connections above `max_idle` at once, least recently used first.
    fn shrink_idle(&mut self, fx: &mut Effects<C>) {
        while self.idle.len() > self.limits.max_idle {
            let conn = self.take_front().expect("idle is not empty");
            self.begin_close(conn, CloseReason::MaxIdle, fx);
        }
    }

    pub fn set_max_open(&mut self, n: usize, now: &mut Now, fx: &mut Effects<C>) {
        self.limits.max_open = n;
        self.set_max_idle(self.requested_max_idle, now, fx);
    }

    pub fn set_max_idle(&mut self, n: usize, now: &mut Now, fx: &mut Effects<C>) {
        self.requested_max_idle = n;
        self.limits.max_idle = clamp_idle(n, self.limits.max_open);
        self.limits.min_idle = self.limits.min_idle.min(self.limits.max_idle);
        self.update_fast_path();
        self.shrink_idle(fx);
        self.balance(now, fx);
        fx.rare().notify_reaper = true;
    }

    pub fn set_min_idle(
        &mut self,
        n: usize,
        now: &mut Now,
        fx: &mut Effects<C>,
    ) -> Result<(), Error> {
        if n > self.limits.max_idle {
            return Err(Error::config(
                "min_idle",
                format!("({n}) is more than max_idle ({})", self.limits.max_idle),
            ));
        }
        self.limits.min_idle = n;
        self.update_fast_path();
        self.balance(now, fx);
        fx.rare().notify_reaper = true;
        Ok(())
    }

    pub fn set_max_lifetime(&mut self, d: Option<Duration>, fx: &mut Effects<C>) {
        self.limits.max_lifetime = d;
        self.limits.lifetime_jitter = match (d, self.requested_jitter) {
            (Some(l), Some(j)) => j.min(l),
            (Some(l), None) => l / 10,
            (None, _) => Duration::ZERO,
        };
        self.update_fast_path();
        fx.rare().notify_reaper = true;
        self.reaper_at = None;
    }

    pub fn set_max_idle_time(&mut self, d: Option<Duration>, now: &mut Now, fx: &mut Effects<C>) {
        if d.is_some() && self.limits.max_idle_time.is_none() {
            let t = now.get();
            self.stamp_unstamped(t);
        }
        self.limits.max_idle_time = d;
        self.update_fast_path();
        fx.rare().notify_reaper = true;
        self.reaper_at = None;
    }

    pub fn set_idle_grace(&mut self, d: Duration, fx: &mut Effects<C>) {
        self.limits.idle_grace = d;
        fx.rare().notify_reaper = true;
        self.reaper_at = None;
    }
}

#[cfg(test)]
pub(crate) mod tests;
