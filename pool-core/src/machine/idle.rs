//! The idle list and its stamps.
//!
//! # Invariants
//! - `unstamped` counts the entries with no `idle_since`.
//! - Every stamp (when a connection went idle, when it was created) counts from one origin:
//!   the pool's start, which the shell passes in, or else the first instant stamped.
//! - While a knob reads idle time (`State::needs_stamp`: hooks, a keyed pool,
//!   `max_idle_time`, `validate_after`) every entry is stamped: entries are stamped on the
//!   way in, and turning `max_idle_time` on stamps those that were not.
//! - Otherwise entries go in unstamped (the release fast path reads no clock), and the
//!   reaper's stamp pass, due at most [`STAMP_EVERY`] after the first of them went idle,
//!   stamps them. Surplus (idle above `max_idle`) stamps every entry at once: its grace
//!   counts from then.
//! - The front is the least recently idled entry; surplus closes from there.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Now;
use super::adaptive::Adaptive;
use super::effects::Effects;
use super::state::State;
use crate::IdleOrder;
use crate::config::Limits;
use crate::hooks::Returned;
use crate::stats::CloseReason;

/// How often the reaper stamps idle entries the release fast path left unstamped (it reads no
/// clock): at most this long after a connection went idle, its idle time is known. A knob set
/// later (`set_max_idle_time`) then counts from then, not from the call, so it errs by at
/// most this much towards keeping a connection. Only while unstamped entries exist: a pool
/// at rest gets one pass and none after.
pub(crate) const STAMP_EVERY: Duration = Duration::from_secs(1);

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
    pub const NONE: Stamp = Stamp(u64::MAX);

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
    /// When it went idle; stamped lazily (see the module's invariants).
    idle_since: Stamp,
    /// Idle at least `validate_after`: validate before handing out.
    pub must_validate: bool,
    /// `Manager::check` panicked at checkout: never handed out, closed as broken.
    pub check_panicked: bool,
}

impl<C> Conn<C> {
    /// A new connection, created at `created_at`, with its share of `lifetime_jitter`.
    pub(super) fn new(res: C, id: u64, created_at: Stamp, jitter: f32) -> Self {
        Conn {
            res,
            id,
            created_at,
            jitter,
            idle_since: Stamp::NONE,
            must_validate: false,
            check_panicked: false,
        }
    }

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

    /// When `max_lifetime` (less this connection's share of the jitter) ends it.
    pub(super) fn expires_at(&self, limits: &Limits, origin: Option<Instant>) -> Option<Instant> {
        let life = limits.max_lifetime?;
        let cut = limits.lifetime_jitter.mul_f32(self.jitter).min(life);
        Some(self.created_at(origin)? + (life - cut))
    }
}

/// The idle connections of one state, least recently idled first, with their stamps' origin.
pub(crate) struct Idle<C> {
    list: VecDeque<Conn<C>>,
    /// Entries with no `idle_since`.
    unstamped: usize,
    /// What every stamp of this state counts from (see [`Stamp`]).
    origin: Option<Instant>,
}

impl<C> Idle<C> {
    pub fn new(origin: Option<Instant>) -> Self {
        Idle {
            list: VecDeque::new(),
            unstamped: 0,
            origin,
        }
    }

    /// What the stamps count from (`None` until the shell gave one or a stamp was taken).
    #[inline]
    pub fn origin(&self) -> Option<Instant> {
        self.origin
    }

    pub fn set_origin(&mut self, origin: Instant) {
        self.origin = Some(origin);
    }

    #[inline]
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// The stamp of `t`; the first instant stamped becomes the origin when none was given.
    #[inline]
    pub fn stamp(&mut self, t: Instant) -> Stamp {
        Stamp::of(t, *self.origin.get_or_insert(t))
    }

    /// Idles `conn` at the back, stamped with `since` (unstamped for `None`).
    #[inline]
    pub fn push(&mut self, mut conn: Conn<C>, since: Option<Instant>) {
        conn.idle_since = match since {
            Some(t) => self.stamp(t),
            None => {
                self.unstamped += 1;
                Stamp::NONE
            }
        };
        conn.must_validate = false;
        self.list.push_back(conn);
    }

    /// The next entry in turn: the most recently idled (LIFO) or the least (FIFO).
    #[inline]
    pub fn pop(&mut self, order: IdleOrder) -> Option<Conn<C>> {
        let conn = match order {
            IdleOrder::Lifo => self.list.pop_back(),
            IdleOrder::Fifo => self.list.pop_front(),
        }?;
        if !conn.is_stamped() {
            self.unstamped -= 1;
        }
        Some(conn)
    }

    /// Puts back what [`pop`](Idle::pop) just took, where it was.
    pub fn unpop(&mut self, order: IdleOrder, conn: Conn<C>) {
        if !conn.is_stamped() {
            self.unstamped += 1;
        }
        match order {
            IdleOrder::Lifo => self.list.push_back(conn),
            IdleOrder::Fifo => self.list.push_front(conn),
        }
    }

    /// The least recently idled entry.
    pub fn take_front(&mut self) -> Option<Conn<C>> {
        let conn = self.list.pop_front()?;
        if !conn.is_stamped() {
            self.unstamped -= 1;
        }
        Some(conn)
    }

    /// Takes out the entries `pick` selects, in their order, in one pass (`pick` sees each
    /// entry once); the others keep their order and their stamps.
    pub fn take_where(&mut self, mut pick: impl FnMut(&Conn<C>) -> bool) -> Vec<Conn<C>> {
        let Some(first) = self.list.iter().position(&mut pick) else {
            return Vec::new();
        };
        let mut rest = self.list.split_off(first);
        let mut taken = Vec::new();
        taken.extend(rest.pop_front());
        for conn in rest {
            if pick(&conn) {
                taken.push(conn);
            } else {
                self.list.push_back(conn);
            }
        }
        self.unstamped -= taken.iter().filter(|c| !c.is_stamped()).count();
        taken
    }

    /// When the least recently idled entry went idle (`None`: nothing idle, or unstamped).
    #[inline]
    pub fn oldest(&self) -> Option<Instant> {
        self.list.front().and_then(|c| c.idle_since(self.origin))
    }

    /// When the most recently idled entry went idle.
    pub fn newest(&self) -> Option<Instant> {
        self.list.back().and_then(|c| c.idle_since(self.origin))
    }

    /// The most recently idled entry.
    pub fn back(&self) -> Option<&Conn<C>> {
        self.list.back()
    }

    /// Every entry, least recently idled first.
    pub fn iter(&self) -> impl Iterator<Item = &Conn<C>> + '_ {
        self.list.iter()
    }

    /// When each entry went idle, least recent first (unstamped ones skipped).
    pub fn stamps(&self) -> impl Iterator<Item = Instant> + '_ {
        self.list.iter().filter_map(|c| c.idle_since(self.origin))
    }

    /// Stamps every unstamped entry with `t`.
    pub fn stamp_unstamped(&mut self, t: Instant) {
        if self.unstamped > 0 {
            let stamp = self.stamp(t);
            for c in self.list.iter_mut().filter(|c| !c.is_stamped()) {
                c.idle_since = stamp;
            }
            self.unstamped = 0;
        }
    }

    /// When the front entry went idle, stamping the unstamped ones `t` if it is one of them.
    fn front_since(&mut self, t: Instant) -> Instant {
        match self.oldest() {
            Some(since) => since,
            None => {
                self.stamp_unstamped(t);
                t
            }
        }
    }
}

/// What a state does with its idle list: idling a returned connection, taking the next one
/// out, and closing what the reaper or a knob says must go.
impl<C> State<C> {
    /// Idle connections now.
    pub fn idle_len(&self) -> usize {
        self.idle.len()
    }

    /// When the least recently idled connection went idle (`None`: nothing idle, or not
    /// stamped; a keyed pool stamps every one).
    pub fn oldest_idle(&self) -> Option<Instant> {
        self.idle.oldest()
    }

    /// When the most recently idled connection went idle.
    pub fn newest_idle(&self) -> Option<Instant> {
        self.idle.newest()
    }

    /// When each idle connection went idle, least recent first (a keyed pool stamps all).
    pub fn idle_stamps(&self) -> impl Iterator<Item = Instant> + '_ {
        self.idle.stamps()
    }

    /// The next idle connection in turn that has not expired (the expired ones met on the
    /// way close), with whether surplus existed then and whether it is due for validation.
    pub(super) fn take_idle(
        &mut self,
        now: &mut Now,
        fx: &mut Effects<C>,
    ) -> Option<(Conn<C>, bool, bool)> {
        loop {
            let surplus = self.idle.len() > self.limits.max_idle;
            // With the adaptive retention, when the level this checkout reaches was last
            // left: the newest idle entry's stamp (the one LIFO takes; FIFO takes another,
            // whose age says nothing of it).
            let left = if surplus && self.adaptive.is_some() {
                self.idle.newest()
            } else {
                None
            };
            let conn = self.idle.pop(self.limits.order)?;
            if self.is_expired(&conn, now) {
                self.begin_close(conn, CloseReason::MaxLifetime, fx);
                continue;
            }
            if let Some(left) = left {
                // That level came back after this long (see `adaptive.rs`).
                let gap = now.get().saturating_duration_since(left);
                self.learn(|a| a.record(gap), fx);
            }
            let due = self.limits.validate_after.is_some_and(|after| {
                conn.idle_since(self.idle.origin())
                    .is_some_and(|t| now.get().saturating_duration_since(t) >= after)
            });
            self.rearm_after_take(fx);
            return Some((conn, surplus, due));
        }
    }

    /// Idles a connection. Beyond `max_idle` it is surplus: closed at once with no grace, else
    /// kept and stamped so the reaper closes the least recently used surplus when it has sat
    /// unused for the grace period. Entries are stamped lazily: only when a knob reads the
    /// idle time or when surplus appears, so the common path reads no clock. Then arms the
    /// deadlines the new entry may have moved, as `poll_timeout` computes them.
    pub(super) fn push_idle(
        &mut self,
        conn: Conn<C>,
        now: &mut Now,
        fx: &mut Effects<C>,
    ) -> Returned {
        let mut returned = Returned::Idle;
        if self.idle.len() >= self.limits.max_idle {
            let kept_for = self.retention();
            if kept_for.is_zero() {
                if let Some(a) = &mut self.adaptive {
                    a.bury(now.get());
                }
                return self.begin_close(conn, CloseReason::MaxIdle, fx);
            }
            let t = now.get();
            self.idle.stamp_unstamped(t);
            self.idle.push(conn, Some(t));
            if let Some(at) = self.grace_deadline() {
                self.arm(at, fx);
            }
            returned = Returned::Surplus { kept_for };
        } else if self.needs_stamp() {
            let t = now.get();
            self.idle.push(conn, Some(t));
        } else {
            self.idle.push(conn, None);
            if self.timers.stamp_at.is_none() {
                let at = now.get() + STAMP_EVERY;
                self.timers.stamp_at = Some(at);
                self.arm(at, fx);
            }
        }
        let conn = self.idle.back().expect("a connection was just idled");
        if let Some(at) = self.expires_at(conn) {
            self.arm(at, fx);
        }
        if let Some(at) = self.idle_time_deadline() {
            self.arm(at, fx);
        }
        returned
    }

    /// How long surplus is kept now: `idle_grace`, or the adaptive retention.
    pub(super) fn retention(&self) -> Duration {
        match &self.adaptive {
            Some(a) => a.retention(),
            None => self.limits.idle_grace,
        }
    }

    /// Gives the adaptive estimator a gap (`record` says whether the retention got shorter);
    /// a shorter retention may bring the grace deadline before the armed one.
    pub(super) fn learn(
        &mut self,
        record: impl FnOnce(&mut Adaptive) -> bool,
        fx: &mut Effects<C>,
    ) {
        let Some(a) = &mut self.adaptive else {
            return;
        };
        if record(a)
            && let Some(at) = self.grace_deadline()
        {
            self.arm(at, fx);
        }
    }

    /// The reaper's pass over the idle list at `t`: stamps what the fast path left unstamped
    /// when that pass is due, then closes what expired, what sat idle longer than
    /// `max_idle_time` (above `min_idle`) and surplus whose grace ended, least recently used
    /// first.
    pub(super) fn reap_idle(&mut self, t: Instant, fx: &mut Effects<C>) {
        if self.timers.stamp_at.is_some_and(|at| at <= t) {
            // Entries idled since the last pass went idle at most `STAMP_EVERY` ago.
            self.idle.stamp_unstamped(t);
            self.timers.stamp_at = None;
        }
        if self.limits.max_lifetime.is_some() {
            let (limits, origin) = (&self.limits, self.idle.origin());
            let expired = self
                .idle
                .take_where(|c| c.expires_at(limits, origin).is_some_and(|at| t >= at));
            for conn in expired {
                self.begin_close(conn, CloseReason::MaxLifetime, fx);
            }
        }
        if let Some(max) = self.limits.max_idle_time {
            while self.idle.len() > self.limits.min_idle && self.idle.front_since(t) + max <= t {
                let conn = self.idle.take_front().expect("idle is not empty");
                self.begin_close(conn, CloseReason::MaxIdleTime, fx);
            }
        }
        let grace = self.retention();
        while self.idle.len() > self.limits.max_idle && self.idle.front_since(t) + grace <= t {
            let conn = self.idle.take_front().expect("idle is not empty");
            if let Some(a) = &mut self.adaptive
                && let Some(since) = conn.idle_since(self.idle.origin())
            {
                a.bury(since);
            }
            self.begin_close(conn, CloseReason::Grace, fx);
        }
    }

    /// Closes the idle connections `dead` picks (seen dead from outside the pool), as broken;
    /// the others keep their place and their stamps, and nothing is created to replace them.
    pub fn evict_idle(&mut self, mut dead: impl FnMut(&C) -> bool, fx: &mut Effects<C>) -> usize {
        let evicted = self.idle.take_where(|c| dead(&c.res));
        let n = evicted.len();
        for conn in evicted {
            self.begin_close(conn, CloseReason::Broken, fx);
        }
        n
    }

    /// Closes the least recently idled connection (a keyed pool's global idle cap).
    pub fn close_oldest_idle(&mut self, reason: CloseReason, fx: &mut Effects<C>) -> bool {
        match self.idle.take_front() {
            Some(conn) => {
                self.begin_close(conn, reason, fx);
                true
            }
            None => false,
        }
    }

    /// Closes idle connections above `max_idle` at once, least recently used first.
    pub(super) fn shrink_idle(&mut self, fx: &mut Effects<C>) {
        while self.idle.len() > self.limits.max_idle {
            let conn = self.idle.take_front().expect("idle is not empty");
            self.begin_close(conn, CloseReason::MaxIdle, fx);
        }
    }

    /// Closes every idle connection (the pool closed).
    pub(super) fn close_all_idle(&mut self, fx: &mut Effects<C>) {
        while let Some(conn) = self.idle.take_front() {
            self.begin_close(conn, CloseReason::Shutdown, fx);
        }
    }
}
