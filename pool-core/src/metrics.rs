//! The `metrics` feature: [`Stats`] exported through the [`metrics`] facade, to whatever
//! recorder the application installed (Prometheus, StatsD, ...).
//!
//! Gauges for the levels (`pool_open`, `pool_in_use`, `pool_idle`, `pool_waiting`,
//! `pool_surplus_idle`, `pool_max_open`, `pool_peak_open`, `pool_resetting`), counters for
//! the totals (`pool_wait_count`, `pool_created`, `pool_hits`, ... one per counter of
//! [`Stats`], same names with the `pool_` prefix), `pool_wait_duration_seconds` and
//! `pool_retention_seconds` (how long surplus is kept now, [`Stats::retention`]). Every
//! series has the label `pool`. Counters are set to their absolute value, so recording is
//! idempotent: call it on every scrape or on an interval.
//!
//! A keyed pool exports its totals, its busiest keys and an `other` bucket: a bounded number
//! of label sets (see [`KeyedPool::record_metrics`]).

use std::cmp::Reverse;

use crate::{KeyedManager, KeyedPool, Manager, Pool, Stats};

/// How many keys [`KeyedPool::record_metrics`] exports series of (the others are summed under
/// `key = "other"`).
const DEFAULT_TOP_KEYS: usize = 20;

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

/// The gauges that add up over keys, as (name, value): what the `other` bucket exports.
fn level_gauges(s: &Stats) -> [(&'static str, usize); 6] {
    [
        ("pool_open", s.open),
        ("pool_in_use", s.in_use),
        ("pool_idle", s.idle),
        ("pool_waiting", s.waiting),
        ("pool_surplus_idle", s.surplus_idle),
        ("pool_resetting", s.resetting),
    ]
}

/// The counters, as (name, value).
fn counters(s: &Stats) -> [(&'static str, u64); 16] {
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
        ("pool_held_too_long", s.held_too_long),
        ("pool_rotated", s.rotated),
    ]
}

fn to_labels(labels: &[(&'static str, String)]) -> Vec<metrics::Label> {
    labels
        .iter()
        .map(|(k, v)| metrics::Label::new(*k, v.clone()))
        .collect()
}

impl Stats {
    /// Records this snapshot through the `metrics` facade with the given labels (see the
    /// module docs for the names).
    pub fn record(&self, labels: &[(&'static str, String)]) {
        let labels = to_labels(labels);
        for (name, value) in gauges(self) {
            metrics::gauge!(name, labels.iter()).set(value as f64);
        }
        for (name, value) in counters(self) {
            metrics::counter!(name, labels.iter()).absolute(value);
        }
        metrics::gauge!("pool_wait_duration_seconds", labels.iter())
            .set(self.wait_duration.as_secs_f64());
        metrics::gauge!("pool_retention_seconds", labels.iter()).set(self.retention.as_secs_f64());
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
    /// Records the pool's [`Stats`] through the `metrics` facade, in a bounded number of
    /// label sets however many keys the pool holds (keys come from users, as an HTTP
    /// client's hosts do: a label set per key would let them grow the series without bound).
    /// Call it periodically (each scrape, or every few seconds). It exports:
    /// - the totals labelled `pool = name` (the [`Stats`] names with the `pool_` prefix, as
    ///   [`Pool::record_metrics`]), plus the gauge `pool_keys`: keys held now;
    /// - the same series for the **20** keys with the most open connections (ties: the most
    ///   waiting, then an order fixed while the keys live, so the set does not flap between
    ///   scrapes), labelled `pool = name, key = <key>`;
    /// - under `pool = name, key = "other"`, the gauges `pool_open`, `pool_in_use`,
    ///   `pool_idle`, `pool_waiting`, `pool_surplus_idle`, `pool_resetting` and `pool_keys`
    ///   summed over the keys not shown. Counters are not split this way (a key moving in or
    ///   out of the top would make such a sum go down, which a counter must never do): the
    ///   totals carry them.
    ///
    /// [`record_metrics_top`](KeyedPool::record_metrics_top) takes the number of keys. A key
    /// that leaves the top, or that the pool forgets, is no longer updated: configure the
    /// exporter to drop series that stop being updated (metrics-exporter-prometheus:
    /// `idle_timeout`), or their last values stay. A key whose `Display` is `other` shares
    /// its label with the bucket.
    pub fn record_metrics(&self, name: &str) {
        self.record_metrics_top(name, DEFAULT_TOP_KEYS);
    }

    /// As [`record_metrics`](KeyedPool::record_metrics), with per-key series for the `top`
    /// keys with the most open connections (ties as there).
    /// `0` exports the totals and `other` only; `usize::MAX` every key (only for a pool whose
    /// keys are few and fixed: each key is a label set).
    pub fn record_metrics_top(&self, name: &str, top: usize) {
        let pool = ("pool", name.to_owned());
        self.stats().record(std::slice::from_ref(&pool));
        let mut keys = self.all_key_stats();
        metrics::gauge!("pool_keys", to_labels(std::slice::from_ref(&pool)).iter())
            .set(keys.len() as f64);
        if top < keys.len() {
            // The keys come in the table's slot order, fixed while they live: ties keep it.
            let mut ranked: Vec<_> = keys.drain(..).enumerate().collect();
            ranked.select_nth_unstable_by_key(top, |(i, (_, s))| {
                (Reverse(s.open), Reverse(s.waiting), *i)
            });
            keys = ranked.into_iter().map(|(_, k)| k).collect();
        }
        let shown = top.min(keys.len());
        for (key, stats) in &keys[..shown] {
            stats.record(&[pool.clone(), ("key", key.to_string())]);
        }
        let mut rest = Stats::default();
        for (_, stats) in &keys[shown..] {
            rest.add(stats);
        }
        let labels = to_labels(&[pool, ("key", "other".to_owned())]);
        for (name, value) in level_gauges(&rest) {
            metrics::gauge!(name, labels.iter()).set(value as f64);
        }
        metrics::gauge!("pool_keys", labels.iter()).set((keys.len() - shown) as f64);
    }
}
