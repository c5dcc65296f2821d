//! The one-step paths: a checkout, a return and a wait decided in one short step under the
//! lock, with nothing for the shell to do afterwards, when no knob needs the clock or a
//! refill (`State::fast`). Each has the same effect as the general path (`acquire`,
//! `release`) in the cases it takes, and declines the others; the model tests drive both.

use std::task::Waker;
use std::time::Instant;

use super::Now;
use super::effects::{Pushed, Via};
use super::idle::Conn;
use super::state::State;
use super::waiters::{Since, WaiterId};

impl<C> State<C> {
    /// Recomputes `fast`, `open_cap` and `stamped` from the knobs (after any change).
    pub(super) fn update_fast_path(&mut self) {
        let l = &self.limits;
        self.open_cap = l.open_cap();
        self.fast = l.max_lifetime.is_none()
            && l.validate_after.is_none()
            && l.min_idle == 0
            && !l.hooks
            && l.adaptive.is_none();
        self.stamped = l.stamp
            || l.max_idle_time.is_some()
            || l.validate_after.is_some()
            || l.adaptive.is_some();
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
        let conn = self.idle.pop(self.limits.order)?;
        self.stats.hits += 1;
        if surplus {
            self.stats.grace_reused += 1;
        }
        Some(conn)
    }

    /// The common release in one step: to the head waiter when callers wait, else back to
    /// idle below `max_idle` when the reaper needs no new deadline. Same effect as `release`
    /// there; otherwise ([`Pushed::Declined`]) the connection stays in `slot` for `release`.
    /// `now` gives the idle stamp, read only when [`needs_stamp`](State::needs_stamp).
    #[inline]
    pub fn push_fast(
        &mut self,
        slot: &mut Option<Conn<C>>,
        now: impl FnOnce() -> Instant,
    ) -> Pushed {
        if !self.fast || self.closed || self.open - self.closing > self.open_cap {
            return Pushed::Declined;
        }
        if !self.waiters.is_empty() {
            return self.hand_off_fast(slot);
        }
        if self.idle.len() >= self.limits.max_idle {
            return Pushed::Declined;
        }
        let idle_since = if self.needs_stamp() {
            let t = now();
            if let Some(max) = self.limits.max_idle_time {
                let oldest = self.idle.oldest().unwrap_or(t);
                if !self.armed_by(oldest + max) {
                    return Pushed::Declined;
                }
            }
            Some(t)
        } else {
            None
        };
        // An unstamped entry needs the reaper's stamp pass scheduled: `release` does that
        // (once per pass).
        if idle_since.is_none() && self.timers.stamp_at.is_none() {
            return Pushed::Declined;
        }
        let Some(conn) = slot.take() else {
            return Pushed::Declined;
        };
        self.idle.push(conn, idle_since);
        Pushed::Idle
    }

    /// `push_fast` with callers queued: the head waiter gets the connection (`put`'s
    /// hand-off, which is all `release` does when no knob needs the clock).
    #[inline]
    fn hand_off_fast(&mut self, slot: &mut Option<Conn<C>>) -> Pushed {
        let Some(conn) = slot.take() else {
            return Pushed::Declined;
        };
        match self.waiters.serve_head((conn, Via::Release)) {
            Ok(waker) => Pushed::HandedOff(waker),
            Err((conn, _)) => {
                *slot = Some(conn);
                Pushed::Declined
            }
        }
    }

    /// The common wait in one step: the pool is full and no knob needs more than a place
    /// at the back of the queue (no create to start, no clock but the wait's coarse start).
    /// Same effect as `acquire` there; `None` sends the caller to `acquire`.
    #[inline]
    pub fn wait_fast(&mut self, waker: &Waker, now: &Now) -> Option<WaiterId> {
        if !self.fast
            || self.closed
            || self.has_room()
            || (self.waiters.is_empty() && self.idle.len() > 0)
        {
            return None;
        }
        self.stats.wait_count += 1;
        Some(self.waiters.push_full(Since::of(None, now), waker))
    }
}
