//! Lifetime rotation (make-before-break): with `max_lifetime` set and `rotate_lifetime` on,
//! a connection near the end of its life gets a replacement created in the background
//! before it expires, and is retired once that replacement has landed. A checkout then never
//! waits on a create because a connection reached its lifetime, and expiries stay as spread
//! as the jitter made them.
//!
//! # Rules
//! - A connection is *due* from its rotation point, `expires_at - lead` (its jittered expiry
//!   less the lead, see [`State::rotation_lead`]).
//! - A due connection gets one replacement create when it passes through the machine
//!   (taken from idle by a checkout, or released) or, while idle, at the reaper's turn, if
//!   all of these hold:
//!   - the pool is in use: something is checked out, or a checkout came since the reaper's
//!     last turn (an idle pool lets its connections expire, as without rotation);
//!   - there is room: `open < max_open`, creates in flight and closes under way included,
//!     so rotation never takes the pool above `max_open`; at `max_open` it does nothing;
//!   - the breaker is closed and its retry time after the last failed create has passed;
//!   - the connection has not expired yet and no replacement was started for it.
//! - A replacement is a background create (no waiter tag, counted in `background`). It lands
//!   like any new connection: to the head waiter, else to idle. Then the connection it
//!   replaces is retired, closed as [`CloseReason::MaxLifetime`]: at once if it is idle,
//!   otherwise when it is next given back with nobody waiting (a queued checkout takes it
//!   first, it has not expired). A connection is never closed under its holder.
//! - Background creates are interchangeable: a background create that lands (or fails)
//!   while replacements are in flight completes (or fails) the oldest of them. Only
//!   `min_idle` refills can run beside them (the breaker's probe needs the breaker open, and
//!   no replacement starts then): at worst a connection retires when a refill lands rather
//!   than its own replacement, and the count of connections comes out the same.
//! - A failed replacement retires nothing: the old connection serves until it expires, and
//!   the failure sets the breaker's retry time (the backoff, doubling), before which no
//!   other replacement starts; it does not count toward the breaker's threshold (a server
//!   refusing the one connection above those it holds must not make checkouts fail fast).
//! - Books: [`Stats::rotated`](crate::Stats::rotated) counts replacements started; the
//!   replacement counts in `created` and the retirement in `max_lifetime_closed`, each once,
//!   so `created - closed - detached == open` holds as without rotation.
//!
//! # Deadlines (see `timers.rs`)
//! The reaper's rotation deadline is the earliest rotation point of an idle connection with
//! no replacement (not before the breaker's retry time), while the rules above would let it
//! act then. It is armed where it can appear or move earlier: a connection idled
//! (`idle_or_retire`), the first checkout since the reaper's last turn, a slot freed
//! (`balance`), and a create landed (the breaker closed, the lead may have grown), the last
//! three by `arm_rotation`.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Now;
use super::effects::Effects;
use super::idle::Conn;
use super::state::State;
use crate::hooks::Returned;
use crate::stats::CloseReason;

/// The create time assumed until a replacement has been timed: a handshake with TLS and
/// authentication over a slow link. Errs towards rotating early.
const FIRST_CREATE_ESTIMATE: Duration = Duration::from_millis(500);

/// The lead is this many times the estimated create time.
const LEAD_FACTOR: u32 = 4;

/// The shortest lead: a scheduling delay in the shell should not make a replacement late.
const MIN_LEAD: Duration = Duration::from_millis(50);

/// The longest lead is `max_lifetime / MAX_LEAD_DIVISOR`.
const MAX_LEAD_DIVISOR: u32 = 8;

/// A replacement in flight: the connection it replaces.
#[derive(Debug, Clone, Copy)]
struct Pending {
    id: u64,
    started: Instant,
    expires_at: Instant,
}

/// One state's rotation bookkeeping (see the module's rules).
#[derive(Debug, Default)]
pub(crate) struct Rotation {
    /// Replacements in flight, oldest first.
    pending: VecDeque<Pending>,
    /// Connections whose replacement landed, with their expiry: retired when next seen with
    /// nobody waiting. An entry whose connection closed otherwise (it expired while checked
    /// out, broke, was detached) is dropped once its expiry passes.
    retiring: Vec<(u64, Instant)>,
    /// The last checkout seen while rotation is on; cleared at a reaper turn that finds it
    /// older than [`State::in_use_window`] with nothing checked out.
    last_checkout: Option<Instant>,
    /// The running mean of replacement create times (`None`: none timed yet).
    create_estimate: Option<Duration>,
}

impl Rotation {
    /// Whether a replacement was started for connection `id` (in flight or landed).
    fn tracks(&self, id: u64) -> bool {
        self.pending.iter().any(|p| p.id == id) || self.retiring.iter().any(|r| r.0 == id)
    }

    /// Whether the connection `id` is to be retired now; forgets it if so.
    pub fn retires(&mut self, id: u64) -> bool {
        match self.retiring.iter().position(|r| r.0 == id) {
            Some(i) => {
                self.retiring.swap_remove(i);
                true
            }
            None => false,
        }
    }

    /// Folds a timed create into the running mean (weight 1/4 for the new sample).
    fn observe(&mut self, took: Duration) {
        self.create_estimate = Some(match self.create_estimate {
            Some(est) => (est * 3 + took) / 4,
            None => took,
        });
    }
}

impl<C> State<C> {
    /// Rotation is on: the knob and a lifetime to rotate at.
    fn rotates(&self) -> bool {
        self.limits.rotate_lifetime && self.limits.max_lifetime.is_some()
    }

    /// Connections out with callers (being reset included).
    fn checked_out(&self) -> usize {
        self.open - self.idle.len() - self.creating - self.closing
    }

    /// The rules that do not depend on the connection or the time: rotation on, the pool
    /// open and in use, room below `max_open`, the breaker closed.
    fn may_rotate(&self) -> bool {
        self.rotates()
            && !self.closed
            && (self.rotation.last_checkout.is_some() || self.checked_out() > 0)
            && self.has_room()
            && !self.breaker.is_open()
    }

    /// How recent a checkout keeps the pool "in use" with nothing checked out: an eighth of
    /// `max_lifetime` (the longest lead), so a pool serving a call now and then still rotates
    /// and one that went quiet lets its connections expire.
    fn in_use_window(&self) -> Duration {
        self.limits.max_lifetime.unwrap_or_default() / MAX_LEAD_DIVISOR
    }

    /// The idle connections worth replacing: not surplus (the retention closes those, least
    /// recently used first) and not closed for idleness before their rotation point.
    fn rotatable_idle(&self) -> impl Iterator<Item = &Conn<C>> + '_ {
        let surplus = self.idle.len().saturating_sub(self.limits.max_idle);
        let origin = self.idle.origin();
        let idle_time = self
            .limits
            .max_idle_time
            .filter(|_| self.idle.len() > self.limits.min_idle);
        self.idle.iter().skip(surplus).filter(move |c| {
            let closes_idle = idle_time
                .zip(c.idle_since(origin))
                .map(|(max, since)| since + max);
            match (closes_idle, self.rotation_point(c)) {
                (Some(idle_end), Some(point)) => idle_end > point,
                (_, point) => point.is_some(),
            }
        })
    }

    /// How long before its expiry a connection gets its replacement:
    /// `LEAD_FACTOR` (4) times the running mean of replacement create times (500 ms until
    /// one was timed), at least 50 ms, at most an eighth of `max_lifetime`.
    ///
    /// Why: the replacement must land before the old connection expires, or that slot is
    /// missing until it does. The machine can time only what it starts with a clock reading
    /// in hand, its own replacements, so the estimate is their mean, and four times the mean
    /// covers the tail of a handshake (a slow server, a TLS resumption miss) without
    /// tracking a distribution. Rotating early costs little: the old connection keeps
    /// serving until the replacement lands, and a lead of `L` shortens lives by at most `L`,
    /// i.e. at most one create in eight more than without rotation at the bound. The bound
    /// keeps short lifetimes (tests, aggressive credential rotation) from rotating most of
    /// the time, and keeps rotation points as spread as the jittered expiries.
    pub(super) fn rotation_lead(&self) -> Duration {
        let Some(life) = self.limits.max_lifetime else {
            return Duration::ZERO;
        };
        let est = self
            .rotation
            .create_estimate
            .unwrap_or(FIRST_CREATE_ESTIMATE);
        (est * LEAD_FACTOR)
            .max(MIN_LEAD)
            .min(life / MAX_LEAD_DIVISOR)
    }

    /// When `conn` is due (`None`: rotation off, or a replacement was already started).
    fn rotation_point(&self, conn: &Conn<C>) -> Option<Instant> {
        if self.rotation.tracks(conn.id) {
            return None;
        }
        let expires_at = self.expires_at(conn)?;
        Some(
            expires_at
                .checked_sub(self.rotation_lead())
                .unwrap_or(expires_at),
        )
    }

    /// The earliest instant rotation may act for `conn`, while the pool's rules allow it.
    fn rotation_deadline_of(&self, conn: &Conn<C>) -> Option<Instant> {
        let point = self.rotation_point(conn)?;
        Some(self.breaker.retry_at().map_or(point, |r| r.max(point)))
    }

    /// The reaper's rotation deadline: the earliest of the idle connections' (see the
    /// module's deadlines).
    pub(super) fn rotation_deadline(&self) -> Option<Instant> {
        if !self.may_rotate() {
            return None;
        }
        self.rotatable_idle()
            .filter_map(|c| self.rotation_deadline_of(c))
            .min()
    }

    /// Arms the reaper's rotation deadline (a scan of the idle list, only with rotation on).
    pub(super) fn arm_rotation(&mut self, fx: &mut Effects<C>) {
        if let Some(at) = self.rotation_deadline() {
            self.arm(at, fx);
        }
    }

    /// A usable connection nobody waits for: retired if its replacement landed, else idled,
    /// arming its rotation deadline.
    pub(super) fn idle_or_retire(
        &mut self,
        conn: Conn<C>,
        now: &mut Now,
        fx: &mut Effects<C>,
    ) -> Returned {
        if self.rotation.retires(conn.id) {
            return self.begin_close(conn, CloseReason::MaxLifetime, fx);
        }
        let returned = self.push_idle(conn, now, fx);
        if self.may_rotate()
            && let Some(at) = self.idle.back().and_then(|c| self.rotation_deadline_of(c))
        {
            self.arm(at, fx);
        }
        returned
    }

    /// A checkout at the step's time: the pool is in use. The first since the reaper last
    /// found it unused arms the rotation deadline, which appears only while it is in use.
    pub(super) fn note_checkout(&mut self, now: &mut Now, fx: &mut Effects<C>) {
        if self.rotates() {
            let first = self.rotation.last_checkout.is_none();
            self.rotation.last_checkout = Some(now.get());
            if first {
                self.arm_rotation(fx);
            }
        }
    }

    /// An idle connection was taken: an entry that was surplus (skipped by the rotation) or
    /// about to close for idleness (above `min_idle`) may now be worth replacing, and its
    /// deadline may come before the armed one.
    pub(super) fn rearm_after_take(&mut self, fx: &mut Effects<C>) {
        let len = self.idle.len();
        if self.rotates() && (len >= self.limits.max_idle || len <= self.limits.min_idle) {
            self.arm_rotation(fx);
        }
    }

    /// Starts the replacement of `conn` if it is due and the rules allow it (it passes
    /// through the machine: taken from idle, or released).
    pub(super) fn rotate_if_due(&mut self, conn: &Conn<C>, now: &mut Now, fx: &mut Effects<C>) {
        if !self.may_rotate() {
            return;
        }
        let Some(at) = self.rotation_deadline_of(conn) else {
            return;
        };
        let t = now.get();
        if at <= t {
            self.start_rotation(conn, t, fx);
        }
    }

    /// The reaper's turn at `t`: forgets a last checkout older than the in-use window (the
    /// next checkout marks the pool in use again), then replaces the due idle connections
    /// while the rules allow.
    pub(super) fn rotate_idle(&mut self, t: Instant, fx: &mut Effects<C>) {
        let window = self.in_use_window();
        if (self.rotation.last_checkout).is_some_and(|at| at + window < t) {
            self.rotation.last_checkout = None;
        }
        if self.may_rotate() {
            let due: Vec<u64> = self
                .rotatable_idle()
                .filter(|c| self.rotation_deadline_of(c).is_some_and(|at| at <= t))
                .map(|c| c.id)
                .collect();
            for id in due {
                if !self.has_room() {
                    break;
                }
                let expires_at = self
                    .idle
                    .iter()
                    .find(|c| c.id == id)
                    .and_then(|c| self.expires_at(c));
                if let Some(expires_at) = expires_at {
                    self.push_rotation(id, expires_at, t, fx);
                }
            }
        }
        self.rotation.retiring.retain(|r| r.1 > t);
    }

    fn start_rotation(&mut self, conn: &Conn<C>, t: Instant, fx: &mut Effects<C>) {
        if let Some(expires_at) = self.expires_at(conn)
            && t < expires_at
        {
            self.push_rotation(conn.id, expires_at, t, fx);
        }
    }

    fn push_rotation(&mut self, id: u64, expires_at: Instant, t: Instant, fx: &mut Effects<C>) {
        self.rotation.pending.push_back(Pending {
            id,
            started: t,
            expires_at,
        });
        self.stats.rotated += 1;
        self.start_create(None, fx);
    }

    /// A background create is landing, before its connection is placed: if replacements
    /// are in flight, the oldest is complete. Its create time feeds the lead, and the
    /// connection it replaces retires now if idle (first, so that the replacement takes its
    /// place in idle rather than being surplus), else it is marked to retire when next
    /// given back; returns its id then (see [`landed`](State::landed)).
    pub(super) fn retire_replaced(&mut self, now: &mut Now, fx: &mut Effects<C>) -> Option<u64> {
        let p = self.rotation.pending.pop_front()?;
        let t = now.get();
        self.rotation
            .observe(t.saturating_duration_since(p.started));
        let idle = self.idle.take_where(|c| c.id == p.id);
        if idle.is_empty() {
            if p.expires_at > t {
                self.rotation.retiring.push((p.id, p.expires_at));
                return Some(p.id);
            }
        } else {
            for conn in idle {
                self.begin_close(conn, CloseReason::MaxLifetime, fx);
            }
        }
        None
    }

    /// A create landed and was placed (`returned`): a replacement that was not kept (it
    /// closed as surplus) leaves the connection it was to replace (`marked`) serving until
    /// it expires. Then re-arms the rotation deadline (the breaker closed, the lead may have
    /// grown).
    pub(super) fn landed(&mut self, marked: Option<u64>, returned: Returned, fx: &mut Effects<C>) {
        if let (Some(id), Returned::Closed(_)) = (marked, returned) {
            self.rotation.retires(id);
        }
        self.arm_rotation(fx);
    }

    /// Replacements are in flight: a background create that fails now is taken for one.
    pub(super) fn replacing(&self) -> bool {
        !self.rotation.pending.is_empty()
    }

    /// A background create failed: the oldest replacement in flight, if any, is given up;
    /// its connection serves on until it expires.
    pub(super) fn handle_replacement_failed(&mut self) {
        self.rotation.pending.pop_front();
    }
}
