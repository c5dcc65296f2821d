//! Bad input gets a clear answer naming the knob: never a panic, never a hang.

mod support;

use std::time::Duration;

use pool_core::testing::ScriptedManager;
use pool_core::{Config, IdleOrder, LeakTrace, MAX_DURATION, Pool};

fn rejects(config: Config, knob: &str) {
    let err = Pool::new(ScriptedManager::new(), config.clone()).expect_err(knob);
    assert!(err.is_config(), "{err:?}");
    assert_eq!(err.knob(), Some(knob), "{config:?} -> {err}");
    assert!(
        err.to_string().contains(knob),
        "the message names the knob: {err}"
    );
}

/// A default `Config` with `f` applied: `Config` is `#[non_exhaustive]`, so outside the
/// crate it is built by assigning fields, not by a struct literal.
fn with(f: impl FnOnce(&mut Config)) -> Config {
    let mut c = Config::default();
    f(&mut c);
    c
}

#[tokio::test]
async fn every_bad_knob_is_named() {
    let zero = Some(Duration::ZERO);
    let huge = MAX_DURATION + Duration::from_secs(1);
    rejects(with(|c| c.max_lifetime = zero), "max_lifetime");
    rejects(with(|c| c.max_lifetime = Some(huge)), "max_lifetime");
    rejects(with(|c| c.max_idle_time = zero), "max_idle_time");
    rejects(with(|c| c.acquire_timeout = zero), "acquire_timeout");
    rejects(with(|c| c.create_timeout = zero), "create_timeout");
    rejects(with(|c| c.hook_timeout = Duration::ZERO), "hook_timeout");
    rejects(with(|c| c.idle_grace = huge), "idle_grace");
    rejects(with(|c| c.idle_grace = Duration::MAX), "idle_grace");
    rejects(
        with(|c| c.lifetime_jitter = Some(Duration::from_secs(1))),
        "lifetime_jitter",
    );
    rejects(
        with(|c| {
            c.max_lifetime = Some(Duration::from_secs(1));
            c.lifetime_jitter = Some(Duration::from_secs(2));
        }),
        "lifetime_jitter",
    );
    rejects(
        with(|c| {
            c.min_idle = 3;
            c.max_idle = 2;
        }),
        "min_idle",
    );
    rejects(
        with(|c| {
            c.min_idle = 3;
            c.max_idle = 5;
            c.max_open = 2;
        }),
        "min_idle",
    );
    rejects(
        with(|c| c.breaker_backoff = Duration::ZERO),
        "breaker_backoff",
    );
    rejects(
        with(|c| c.breaker_max_backoff = Duration::from_millis(1)),
        "breaker_max_backoff",
    );
    rejects(with(|c| c.leak_threshold = zero), "leak_threshold");
    rejects(with(|c| c.leak_threshold = Some(huge)), "leak_threshold");
    // A backtrace for reports that never come: the knob says what it needs.
    rejects(with(|c| c.leak_trace = LeakTrace::Backtrace), "leak_trace");
}

#[tokio::test]
async fn meaningful_zeros_and_clamps_are_accepted() {
    let ok = |config: Config| Pool::new(ScriptedManager::new(), config).map(drop).unwrap();
    // max_idle above max_open is clamped, as database/sql does.
    ok(with(|c| {
        c.max_open = 2;
        c.max_idle = 50;
    }));
    // zero grace: database/sql's behaviour; zero max_idle: keep none; zero max_open: unlimited.
    ok(with(|c| {
        c.idle_grace = Duration::ZERO;
        c.max_idle = 0;
        c.max_open = 0;
    }));
    // validate on every reuse; breaker off (its backoff then unused).
    ok(with(|c| {
        c.validate_after = Some(Duration::ZERO);
        c.breaker_threshold = 0;
        c.breaker_backoff = Duration::ZERO;
    }));
    ok(with(|c| {
        c.max_lifetime = Some(Duration::from_secs(60));
        c.lifetime_jitter = Some(Duration::ZERO);
        c.idle_order = IdleOrder::Fifo;
    }));
    ok(with(|c| {
        c.leak_threshold = Some(MAX_DURATION);
        c.leak_trace = LeakTrace::Backtrace;
    }));
}

#[test]
fn building_outside_a_runtime_is_an_error_not_a_panic() {
    let err = Pool::builder(ScriptedManager::new()).build().unwrap_err();
    assert_eq!(err.knob(), Some("runtime"));
}

#[tokio::test]
async fn runtime_setters_validate_too() {
    let pool = Pool::builder(ScriptedManager::new())
        .max_idle(2)
        .build()
        .unwrap();
    assert_eq!(
        pool.set_max_lifetime(Some(Duration::ZERO))
            .unwrap_err()
            .knob(),
        Some("max_lifetime")
    );
    assert_eq!(
        pool.set_max_idle_time(Some(Duration::ZERO))
            .unwrap_err()
            .knob(),
        Some("max_idle_time")
    );
    assert_eq!(
        pool.set_idle_grace(Duration::MAX).unwrap_err().knob(),
        Some("idle_grace")
    );
    assert_eq!(pool.set_min_idle(3).unwrap_err().knob(), Some("min_idle"));
    pool.set_max_lifetime(Some(Duration::from_secs(60)))
        .unwrap();
    pool.set_max_lifetime(None).unwrap();
    pool.set_min_idle(2).unwrap();
}

#[tokio::test]
async fn config_reads_from_serde_with_human_durations() {
    let c: Config = serde_json::from_str(r#"{"max_open": 100, "max_idle": 20, "idle_grace": "45s", "max_lifetime": "30m", "idle_order": "fifo", "leak_threshold": "2m", "leak_trace": "backtrace"}"#).unwrap();
    assert_eq!(
        (c.max_open, c.max_idle, c.idle_grace),
        (100, 20, Duration::from_secs(45))
    );
    assert_eq!(c.max_lifetime, Some(Duration::from_secs(1800)));
    assert_eq!(c.idle_order, IdleOrder::Fifo);
    assert_eq!(
        (c.leak_threshold, c.leak_trace),
        (Some(Duration::from_secs(120)), LeakTrace::Backtrace)
    );
    assert_eq!(
        c.hook_timeout,
        Config::default().hook_timeout,
        "missing knobs take their defaults"
    );
    let err = serde_json::from_str::<Config>(r#"{"max_opn": 1}"#).unwrap_err();
    assert!(
        err.to_string().contains("max_opn"),
        "a misspelt knob is rejected: {err}"
    );
    let back: Config = serde_json::from_str(&serde_json::to_string(&c).unwrap()).unwrap();
    assert_eq!(back, c);
}
