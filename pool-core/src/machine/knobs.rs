//! The runtime knobs: database/sql's setters, applied to a live state. Each closes or
//! creates what the new value asks for at once, and tells the reaper (see `timers.rs` for
//! which knobs disarm its deadline).

use std::time::Duration;

use super::Now;
use super::effects::Effects;
use super::state::State;
use crate::Error;
use crate::config::clamp_idle;

impl<C> State<C> {
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
        self.disarm(fx);
    }

    pub fn set_max_idle_time(&mut self, d: Option<Duration>, now: &mut Now, fx: &mut Effects<C>) {
        if d.is_some() && self.limits.max_idle_time.is_none() {
            // Idle time counts from when each went idle: the entries the fast path left
            // unstamped went idle before now (at most a stamp pass ago), so this errs
            // towards keeping them.
            let t = now.get();
            self.idle.stamp_unstamped(t);
        }
        self.limits.max_idle_time = d;
        self.update_fast_path();
        self.disarm(fx);
    }

    /// Refused while the adaptive retention is on: it would do nothing.
    pub fn set_idle_grace(&mut self, d: Duration, fx: &mut Effects<C>) -> Result<(), Error> {
        if self.adaptive.is_some() {
            return Err(Error::config(
                "idle_grace",
                "is not used while adaptive_idle is on: the retention is learned from the traffic",
            ));
        }
        self.limits.idle_grace = d;
        self.disarm(fx);
        Ok(())
    }
}
