//! Adaptive retention ([`Config::adaptive_idle`](crate::Config::adaptive_idle)): how long
//! surplus idle connections are kept, learned from the traffic instead of a fixed
//! `idle_grace`.
//!
//! # The cost model
//! `cost = opens x handshake cost + idle connection-seconds x holding cost`, with one ratio,
//! the break-even time `B = handshake cost / holding cost per second`: keeping a connection
//! idle for `B` costs as much as opening one. A surplus connection kept for at most `R` whose
//! level is asked for again `gap` later costs `gap` of holding when `gap <= R` (it is reused),
//! else `R` of holding plus `B` (it closed, and the next use opens one). The estimator learns
//! the distribution of `gap` and keeps `R` where the expected cost is least: the ski-rental
//! rule with the gaps known.
//!
//! # The evidence (events the machine already sees)
//! - A checkout served from idle while surplus existed: the connection's idle age is a gap
//!   (its level was used again after that long). In LIFO order the connection taken is the
//!   one whose level the new demand reached.
//! - A surplus connection the retention closed leaves a *ghost*: when it went idle. A create
//!   started for a waiter consumes the newest ghost: the level it serves came back
//!   `now - ghost` after that connection went idle, and keeping it would have saved the open.
//!   Only the newest [`GHOSTS`] are kept; a ghost older than the histogram's range counts as a
//!   gap too long to be worth keeping.
//!
//! Gaps go into a histogram of [`BUCKETS`] buckets in steps of √2 from 10 ms (to about two
//! hours), plus one bucket for longer. When the total weight reaches [`WINDOW`], every weight
//! halves, so the estimate follows traffic that changes. Memory is constant: the buckets and
//! the ghosts.
//!
//! # What it decides
//! Before [`MIN_SAMPLES`] gaps are known, `R` is [`PRIOR`] (at most `B`): a single spike
//! keeps its surplus about a second, not a fixed 30 s. Then `R` is the upper edge of the
//! histogram bucket that minimises the expected cost, plus a quarter for jitter, and at most
//! `4 B`. `R = 0` closes surplus on release, as database/sql. While bursts recur with gaps
//! under `B`, their connections stay between them; when the bursts stop, the surplus goes
//! `R` after its last use; gaps longer than `B` make `R` small, and the surplus closes soon
//! after each burst.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Buckets of the gap histogram (the last upper edge is about two hours).
pub(crate) const BUCKETS: usize = 40;
/// The upper edge of the first bucket.
const FIRST_EDGE: Duration = Duration::from_millis(10);
/// Total weight at which every weight halves.
pub(crate) const WINDOW: f32 = 1024.0;
/// Gaps known before the histogram decides.
pub(crate) const MIN_SAMPLES: u32 = 4;
/// The retention before that (at most the break-even time).
pub(crate) const PRIOR: Duration = Duration::from_secs(1);
/// Ghosts kept (the newest).
pub(crate) const GHOSTS: usize = 64;

/// One state's estimator.
#[derive(Debug, Clone)]
pub(crate) struct Adaptive {
    /// The break-even time `B`.
    break_even: Duration,
    /// Weights of the gap buckets; `[BUCKETS]` holds the gaps beyond the last edge.
    weights: [f32; BUCKETS + 1],
    total: f32,
    /// Gaps seen (saturating): the histogram decides from [`MIN_SAMPLES`].
    samples: u32,
    /// When each retention-closed surplus connection went idle, newest at the back.
    ghosts: VecDeque<Instant>,
    /// The retention in force.
    retention: Duration,
}

/// The upper edge of bucket `k`: 10 ms x √2^k.
fn edge(k: usize) -> Duration {
    FIRST_EDGE.mul_f64(2f64.powf(k as f64 / 2.0))
}

/// The bucket of `gap`: the first whose upper edge is above it.
fn bucket(gap: Duration) -> usize {
    if gap < FIRST_EDGE {
        return 0;
    }
    let steps = 2.0 * (gap.as_secs_f64() / FIRST_EDGE.as_secs_f64()).log2();
    (steps.floor() as usize + 1).min(BUCKETS)
}

impl Adaptive {
    pub fn new(break_even: Duration) -> Self {
        Adaptive {
            break_even,
            weights: [0.0; BUCKETS + 1],
            total: 0.0,
            samples: 0,
            ghosts: VecDeque::new(),
            retention: PRIOR.min(break_even),
        }
    }

    /// How long surplus is kept now.
    pub fn retention(&self) -> Duration {
        self.retention
    }

    /// A surplus connection's level was used again `gap` after it went idle. Returns whether
    /// the retention got shorter (the reaper's deadline may have moved earlier).
    pub fn record(&mut self, gap: Duration) -> bool {
        if self.total + 1.0 >= WINDOW {
            for w in &mut self.weights {
                *w *= 0.5;
            }
            self.total *= 0.5;
        }
        self.weights[bucket(gap)] += 1.0;
        self.total += 1.0;
        self.samples = self.samples.saturating_add(1);
        let before = self.retention;
        if self.samples >= MIN_SAMPLES {
            self.retention = self.decide();
        }
        self.retention < before
    }

    /// A surplus connection idle since `since` was closed by the retention.
    pub fn bury(&mut self, since: Instant) {
        if self.ghosts.len() == GHOSTS {
            self.ghosts.pop_front();
        }
        self.ghosts.push_back(since);
    }

    /// A create started for a waiter at `now`: the newest ghost's level came back. Returns
    /// whether the retention got shorter.
    pub fn created(&mut self, now: Instant) -> bool {
        match self.ghosts.pop_back() {
            Some(since) => self.record(now.saturating_duration_since(since)),
            None => false,
        }
    }

    /// The retention of least expected cost (see the module docs), in units of seconds.
    fn decide(&self) -> Duration {
        let b = self.break_even.as_secs_f64();
        let total = f64::from(self.total);
        // R = 0: every gap pays an open.
        let mut best = (total * b, Duration::ZERO);
        let (mut held, mut covered) = (0.0, 0.0);
        for k in 0..BUCKETS {
            let w = f64::from(self.weights[k]);
            let upper = edge(k).as_secs_f64();
            // A gap in this bucket, on average (its geometric middle; half the first edge).
            let typical = if k == 0 {
                upper / 2.0
            } else {
                upper / 2f64.powf(0.25)
            };
            held += w * typical;
            covered += w;
            let cost = held + (total - covered) * (upper + b);
            if cost < best.0 {
                best = (cost, edge(k));
            }
        }
        best.1.mul_f64(1.25).min(self.break_even * 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const B: Duration = Duration::from_secs(60);

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    #[test]
    fn buckets_step_by_the_square_root_of_two() {
        assert_eq!(bucket(Duration::ZERO), 0);
        assert_eq!(bucket(Duration::from_millis(9)), 0);
        assert_eq!(bucket(Duration::from_millis(10)), 1);
        assert_eq!(bucket(Duration::from_millis(15)), 2);
        assert_eq!(bucket(Duration::from_millis(20)), 3);
        assert!(edge(BUCKETS - 1) > Duration::from_secs(7000));
        assert_eq!(bucket(Duration::from_secs(8000)), BUCKETS);
        for k in 1..BUCKETS {
            let inside = edge(k - 1) + (edge(k) - edge(k - 1)) / 2;
            assert_eq!(bucket(inside), k, "{inside:?}");
        }
    }

    #[test]
    fn before_enough_evidence_the_prior_holds() {
        let mut a = Adaptive::new(B);
        assert_eq!(a.retention(), PRIOR);
        for _ in 0..MIN_SAMPLES - 1 {
            a.record(secs(45.0));
        }
        assert_eq!(a.retention(), PRIOR);
        assert_eq!(
            Adaptive::new(Duration::from_millis(300)).retention(),
            secs(0.3)
        );
    }

    #[test]
    fn gaps_under_the_break_even_are_kept_across() {
        let mut a = Adaptive::new(B);
        for _ in 0..20 {
            a.record(secs(45.0));
            a.record(Duration::from_millis(3));
        }
        let r = a.retention();
        assert!(r >= secs(45.0) && r <= secs(90.0), "{r:?}");
    }

    #[test]
    fn gaps_over_the_break_even_are_not() {
        let mut a = Adaptive::new(B);
        for _ in 0..20 {
            a.record(secs(300.0));
            a.record(Duration::from_millis(3));
        }
        let r = a.retention();
        assert!(r < secs(1.0), "kept {r:?} for gaps of 300 s");
        assert!(
            r >= Duration::from_millis(3),
            "{r:?}: the short gaps are worth keeping"
        );
    }

    #[test]
    fn the_estimate_follows_a_change_of_traffic() {
        let mut a = Adaptive::new(B);
        for _ in 0..600 {
            a.record(secs(5.0));
        }
        assert!(a.retention() >= secs(5.0));
        for _ in 0..2000 {
            a.record(secs(600.0));
        }
        assert!(a.retention() < secs(1.0), "{:?}", a.retention());
    }

    #[test]
    fn ghosts_turn_creates_into_gaps_newest_first() {
        let t0 = crate::machine::tests::epoch();
        let mut a = Adaptive::new(B);
        assert!(!a.created(t0), "no ghost, no evidence");
        for i in 0..GHOSTS as u64 + 3 {
            a.bury(t0 + Duration::from_secs(i));
        }
        assert_eq!(a.ghosts.len(), GHOSTS);
        let later = t0 + Duration::from_secs(100);
        a.created(later);
        assert_eq!(a.samples, 1);
        assert_eq!(a.weights[bucket(secs(100.0 - (GHOSTS as f64 + 2.0)))], 1.0);
    }
}
