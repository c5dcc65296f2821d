//! The `metrics` feature: [`Stats`] exported through the [`metrics`] facade, to whatever
//! recorder the application installed (Prometheus, StatsD, ...).
//!
//! Gauges for the levels (`pool_open`, `pool_in_use`, `pool_idle`, `pool_waiting`,
//! `pool_surplus_idle`, `pool_max_open`, `pool_peak_open`, `pool_resetting`), counters for the totals (`pool_wait_count`,
//! `pool_created`, `pool_hits`, ... one per counter of [`Stats`], same names with the
//! `pool_` prefix) and `pool_wait_duration_seconds`. Every series has the label `pool`; a
//! keyed pool's per-key series also have `key`. Counters are set to their absolute value, so
//! recording is idempotent: call it on every scrape or on an interval.

use crate::{KeyedManager, KeyedPool, Manager, Pool, Stats};

/// The gauges, as (name, value).
fn gauges(s: &Stats) -> [(&'static str, usize); 8] {
    [
        ("pool_max_open", s.max_open),
        ("pool_open", s.open),
        ("pool_in_use", s.in_use),
        ("pool_idle", s.idle),
        ("pool_waiting", s.waiting),
        ("pool_surplus_idle", s.surplus_idle),
        ("pool_peak_open", s.peak_open),
        ("pool_resetting", s.resetting),
    ]
}

/// The counters, as (name, value).
fn counters(s: &Stats) -> [(&'static str, u64); 14] {
    [
        ("pool_wait_count", s.wait_count),
        ("pool_max_idle_closed", s.max_idle_closed),
        ("pool_max_idle_time_closed", s.max_idle_time_closed),
        ("pool_max_lifetime_closed", s.max_lifetime_closed),
        ("pool_created", s.created),
        ("pool_create_errors", s.create_errors),
        ("pool_hits", s.hits),
        ("pool_handoffs", s.handoffs),
        ("pool_timeouts", s.timeouts),
        ("pool_grace_reused", s.grace_reused),
        ("pool_grace_closed", s.grace_closed),
        ("pool_broken_closed", s.broken_closed),
        ("pool_shutdown_closed", s.shutdown_closed),
        ("pool_detached", s.detached),
    ]
}

impl Stats {
    /// Records this snapshot through the `metrics` facade with the given labels (see the
    /// module docs for the names).
    pub fn record(&self, labels: &[(&'static str, String)]) {
        let labels: Vec<metrics::Label> = labels
            .iter()
            .map(|(k, v)| metrics::Label::new(*k, v.clone()))
            .collect();
        for (name, value) in gauges(self) {
            metrics::gauge!(name, labels.iter()).set(value as f64);
        }
        for (name, value) in counters(self) {
            metrics::counter!(name, labels.iter()).absolute(value);
        }
        metrics::gauge!("pool_wait_duration_seconds", labels.iter())
            .set(self.wait_duration.as_secs_f64());
    }
}

impl<M: Manager> Pool<M> {
    /// Records the pool's [`Stats`] through the `metrics` facade, labelled `pool = name`.
    /// Call it periodically (each scrape, or every few seconds).
    pub fn record_metrics(&self, name: &str) {
        self.stats().record(&[("pool", name.to_owned())]);
    }
}

impl<M: KeyedManager> KeyedPool<M>
where
    M::Key: std::fmt::Display,
{
    /// Records the totals labelled `pool = name`, and each key's [`Stats`] labelled
    /// `pool = name, key = <key>` (keys the pool holds state for now).
    pub fn record_metrics(&self, name: &str) {
        self.stats().record(&[("pool", name.to_owned())]);
        for (key, stats) in self.all_key_stats() {
            stats.record(&[("pool", name.to_owned()), ("key", key.to_string())]);
        }
    }
}
