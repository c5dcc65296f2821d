//! Creates follow demand: when a state starts a create (waiters outnumber creates in flight
//! and resets under way, or `min_idle` is short), and when queued waiters fail instead (the
//! breaker is open, or creates failed and nothing open can serve them).

use super::Now;
use super::effects::Effects;
use super::state::State;
use super::waiters::WaiterId;

impl<C> State<C> {
    pub(super) fn has_room(&self) -> bool {
        self.open < self.open_cap
    }

    /// Creates in flight that serve whoever waits first (not a caller's own, Go's binding).
    pub(super) fn late_creates(&self) -> usize {
        self.creating - self.waiters.own()
    }

    /// Connections that will come back or arrive: checked out, being reset, being created.
    pub(super) fn in_flight(&self) -> usize {
        self.open - self.idle.len() - self.closing
    }

    /// Starts creates while waiters outnumber creates in flight and resets under way, and
    /// there is room; with the breaker open, fails those waiters at once instead, unless
    /// connections that may serve them are out. Then keeps `min_idle`.
    pub(super) fn balance(&mut self, now: &mut Now, fx: &mut Effects<C>) {
        if self.closed {
            return;
        }
        // A connection being reset comes back soon (or its close frees the slot and this
        // runs again): it serves a waiter as a create in flight would. While creates fail,
        // each waiter gets at most one create started on its behalf, oldest first; otherwise
        // a waiter whose create served someone else (late binding) gets another.
        while self.waiters.len() > self.late_creates() + self.resetting && self.has_room() {
            if self.breaker.is_open() && self.in_flight() > 0 {
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
            if self.breaker.is_open() {
                let err = self.unavailable();
                if let Some(w) = self.waiters.fail(id, err) {
                    fx.wake(w);
                }
                continue;
            }
            self.start_create(Some(id), fx);
            self.created_for_waiter(now, fx);
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
        // A slot may have freed: a replacement may be due.
        self.arm_rotation(fx);
    }

    /// Creates toward `min_idle`, unless backing off after a failure.
    pub(super) fn refill(&mut self, now: &mut Now, fx: &mut Effects<C>) {
        if self.closed || self.breaker.is_open() {
            return;
        }
        while self.idle.len() + self.late_creates().saturating_sub(self.waiters.len())
            < self.limits.min_idle
            && self.has_room()
        {
            if let Some(at) = self.breaker.retry_at()
                && now.get() < at
            {
                self.arm(at, fx);
                return;
            }
            self.start_create(None, fx);
        }
    }

    /// A create started for a waiter: with the adaptive retention, the level it serves came
    /// back (see `adaptive.rs`, ghosts).
    pub(super) fn created_for_waiter(&mut self, now: &mut Now, fx: &mut Effects<C>) {
        if self.adaptive.is_some() {
            let t = now.get();
            self.learn(|a| a.created(t), fx);
        }
    }

    pub(super) fn start_create(&mut self, tag: Option<WaiterId>, fx: &mut Effects<C>) {
        self.open += 1;
        self.stats.peak_open = self.stats.peak_open.max(self.open);
        self.creating += 1;
        if tag.is_none() {
            self.background += 1;
        }
        fx.rare().creates.push((self.key, tag));
    }
}
