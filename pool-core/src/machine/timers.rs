//! Deadlines: when the reaper must next run for one state, one deadline per kind.
//!
//! | kind | deadline | while |
//! |---|---|---|
//! | stamp pass | [`STAMP_EVERY`](super::idle::STAMP_EVERY) after the first unstamped idle entry | the pass is due |
//! | lifetime | each idle connection's expiry | `max_lifetime` is set |
//! | idle time | the oldest idle entry's stamp + `max_idle_time` | idle above `min_idle` |
//! | grace | the oldest idle entry's stamp + the retention (`idle_grace`, or the adaptive one) | idle above `max_idle` |
//! | breaker | its retry time | probing (open, no background create under way), refilling `min_idle`, or a keyed pool |
//! | rotation | the earliest rotation point of an idle connection with no replacement, not before the breaker's retry time | rotation may act (`rotation.rs`) |
//!
//! # One source of truth
//! [`State::poll_timeout`] is the reaper's next deadline: the earliest of the kinds above,
//! each computed by one function of this file from the state as it is. The reaper sleeps
//! until it after every turn, and computes it again whenever it is notified.
//!
//! Between turns, events add deadlines. Computing `poll_timeout` after each would walk the
//! idle list on every return (lifetimes), so an event instead *arms* the deadlines it may
//! have moved, each computed by the same function `poll_timeout` uses: idling a connection
//! (`push_idle`) arms its expiry, the idle time and grace deadlines and a new stamp pass; a
//! failed create or a refill held back arms the breaker's retry time; rotation arms its own
//! (see `rotation.rs`). [`State::arm`] lowers `armed` to the deadline and notifies the
//! reaper when it comes first. The two agree as follows:
//!
//! - **Never late.** After every step, each deadline `poll_timeout` would return is at or
//!   after `armed`, or the step notified the reaper (which then computes `poll_timeout` on
//!   its next turn). Every event that adds a deadline arms it or notifies. The release fast
//!   path adds none: it idles an unstamped entry only while a stamp pass is armed, a stamped
//!   one under `max_idle_time` only while `armed` is at or before the oldest entry's
//!   idle-time deadline (the new entry's cannot come earlier), and it runs only with no
//!   lifetime and below `max_idle`.
//! - **Maybe early.** `armed` may come before `poll_timeout`: the connection whose deadline
//!   it was left idle, a create succeeded, or the breaker's retry time was armed at the
//!   failure while `poll_timeout` counts it only for a probe, a refill or a keyed pool. The
//!   reaper then takes a turn with nothing due (`handle_timeout` acts only on what is due at
//!   its instant) and sleeps until `poll_timeout`, which re-arms exactly.
//! - **Knobs.** A knob that can move deadlines later (`set_max_lifetime`,
//!   `set_max_idle_time`, `set_idle_grace`) disarms: `armed` becomes `None` and the reaper
//!   is notified. The others (`set_max_open`, `set_max_idle`, `set_min_idle`) close or
//!   create at once and notify the reaper.
//!
//! Who reads `armed`: the plain pool's reaper never does (it sleeps until `poll_timeout`;
//! `armed` only decides whether an event notifies it); `push_fast` does, as above; a keyed
//! table files each key under its `armed` deadline after every step, and a key's reaper
//! turn ends with `poll_timeout` (as does a knob change), so its entry is exact again.

use std::time::Instant;

use super::Now;
use super::effects::Effects;
use super::idle::Conn;
use super::state::State;

/// The deadlines a state keeps beside those it derives from its idle list and breaker.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    /// The deadline the reaper was last given for this state: by `poll_timeout`, or lowered
    /// by [`State::arm`] since. `None`: nothing armed.
    pub armed: Option<Instant>,
    /// When the reaper next stamps the unstamped idle entries; `None`: no such pass is due.
    pub stamp_at: Option<Instant>,
}

impl<C> State<C> {
    /// The deadline armed for the reaper (see `timers.rs`): at or before every deadline
    /// [`poll_timeout`](State::poll_timeout) would report, or the reaper was notified.
    pub fn armed(&self) -> Option<Instant> {
        self.timers.armed
    }

    /// When `conn`'s lifetime ends (`None`: no `max_lifetime`).
    pub(super) fn expires_at(&self, conn: &Conn<C>) -> Option<Instant> {
        conn.expires_at(&self.limits, self.idle.origin())
    }

    pub(super) fn is_expired(&self, conn: &Conn<C>, now: &mut Now) -> bool {
        self.expires_at(conn).is_some_and(|t| now.get() >= t)
    }

    /// The earliest expiry of an idle connection.
    fn lifetime_deadline(&self) -> Option<Instant> {
        self.limits.max_lifetime?;
        self.idle.iter().filter_map(|c| self.expires_at(c)).min()
    }

    /// When the oldest idle entry has sat `max_idle_time`, while idle is above `min_idle`.
    pub(super) fn idle_time_deadline(&self) -> Option<Instant> {
        let max = self.limits.max_idle_time?;
        if self.idle.len() <= self.limits.min_idle {
            return None;
        }
        Some(self.idle.oldest()? + max)
    }

    /// When the oldest surplus entry's grace ends, while idle is above `max_idle`.
    pub(super) fn grace_deadline(&self) -> Option<Instant> {
        if self.idle.len() <= self.limits.max_idle {
            return None;
        }
        Some(self.idle.oldest()? + self.retention())
    }

    /// The breaker's retry time, while the reaper has something to do then: probe (open,
    /// no background create under way), refill `min_idle`, or half-open a keyed pool's key.
    fn retry_deadline(&self) -> Option<Instant> {
        let at = self.breaker.retry_at()?;
        let refill_due = self.idle.len() + self.creating.saturating_sub(self.waiters.len())
            < self.limits.min_idle;
        let probe_due = self.breaker.is_open() && self.background == 0;
        (probe_due || refill_due || self.limits.keyed).then_some(at)
    }

    /// The earliest deadline of any kind (`None` once closed).
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        if self.closed {
            return None;
        }
        [
            // Due even when nothing is left to stamp: the pass clears it, and the next
            // unstamped release arms another.
            self.timers.stamp_at,
            self.lifetime_deadline(),
            self.idle_time_deadline(),
            self.grace_deadline(),
            self.retry_deadline(),
            self.rotation_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Arms `at` for the reaper: lowers the armed deadline and notifies the reaper when `at`
    /// comes first.
    pub(super) fn arm(&mut self, at: Instant, fx: &mut Effects<C>) {
        if self.timers.armed.is_none_or(|r| at < r) {
            self.timers.armed = Some(at);
            fx.rare().notify_reaper = true;
        }
    }

    /// Forgets the armed deadline and has the reaper compute it again (a knob moved
    /// deadlines, possibly later).
    pub(super) fn disarm(&mut self, fx: &mut Effects<C>) {
        fx.rare().notify_reaper = true;
        self.timers.armed = None;
    }

    /// Whether the armed deadline comes at or before `at` (the release fast path's test).
    #[inline]
    pub(super) fn armed_by(&self, at: Instant) -> bool {
        self.timers.armed.is_some_and(|r| r <= at)
    }
}
