//! The breaker: fail fast after repeated create failures, with a backoff for background
//! creates.
//!
//! # Invariants
//! - `failures` counts create failures since the last success; `open` once it reaches
//!   `breaker_threshold` (0: never).
//! - The backoff doubles once per trip or failed background create, up to
//!   `breaker_max_backoff`, and starts again from `breaker_backoff` after a success.
//! - `retry_at`: no background create (refill or probe) before it; a keyed pool's key
//!   half-opens there instead (no background probes per key) and is not forgotten before.

use std::time::{Duration, Instant};

use super::Now;
use crate::config::Limits;

/// Fail-fast after repeated create failures, with a backoff for background creates.
#[derive(Debug)]
pub(crate) struct Breaker {
    failures: u32,
    open: bool,
    backoff: Duration,
    /// No background create (refill or probe) before this.
    retry_at: Option<Instant>,
}

impl Breaker {
    /// Closed, with `backoff` as the first wait after a trip.
    pub fn new(backoff: Duration) -> Self {
        Breaker {
            failures: 0,
            open: false,
            backoff,
            retry_at: None,
        }
    }

    /// Open: a checkout that would create fails fast, unless something out can serve it.
    #[inline]
    pub fn is_open(&self) -> bool {
        self.open
    }

    /// No background create before this (`None`: none pending).
    #[inline]
    pub fn retry_at(&self) -> Option<Instant> {
        self.retry_at
    }

    /// A lifetime rotation's replacement failed: the next try waits the backoff (which
    /// doubles), but the failure does not count toward the threshold: the connection it was
    /// to replace still serves, and a server refusing one connection above those it holds
    /// must not make checkouts fail fast. Returns the retry time.
    pub fn space_replacement(&mut self, l: &Limits, now: &mut Now) -> Instant {
        let at = now.get() + self.backoff;
        self.retry_at = Some(at);
        self.backoff = (self.backoff * 2).min(l.breaker_max_backoff);
        at
    }

    /// A create failed (`background`: a refill or probe, no waiter asked for it). Returns the
    /// retry time, to arm for the reaper.
    pub fn record_failure(
        &mut self,
        l: &Limits,
        background: bool,
        now: &mut Now,
    ) -> Option<Instant> {
        self.failures += 1;
        let trips = l.breaker_threshold > 0 && self.failures >= l.breaker_threshold;
        // The backoff doubles once per trip (or failed background probe), not once per
        // failure: creates that were in flight together fail together, and counting each
        // would push the next try out to the maximum after one outage.
        let escalates = background || (trips && !self.open);
        if escalates || (l.keyed && l.breaker_threshold > 0) {
            self.retry_at = Some(now.get() + self.backoff);
        }
        if escalates {
            self.backoff = (self.backoff * 2).min(l.breaker_max_backoff);
        }
        self.open |= trips;
        self.retry_at
    }

    /// A keyed pool's breaker after its retry time: the next checkout may create, and one
    /// more failure opens it again.
    pub fn half_open(&mut self, threshold: u32) {
        self.retry_at = None;
        if self.open {
            self.open = false;
            self.failures = threshold.saturating_sub(1);
        }
    }
}
