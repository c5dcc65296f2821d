//! Bad input gets a clear answer naming the knob: never a panic, never a hang.

mod support;

use std::time::Duration;

use pool_core::testing::ScriptedManager;
use pool_core::{Config, IdleOrder, MAX_DURATION, Pool};

fn rejects(config: Config, knob: &str) {
    let err = Pool::new(ScriptedManager::new(), config.clone()).expect_err(knob);
    assert!(err.is_config(), "{err:?}");
    assert_eq!(err.knob(), Some(knob), "{config:?} -> {err}");
    assert!(
        err.to_string().contains(knob),
        "the message names the knob: {err}"
    );
}

#[tokio::test]
async fn every_bad_knob_is_named() {
    let zero = Some(Duration::ZERO);
    let huge = MAX_DURATION + Duration::from_secs(1);
    let c = Config::default;
    rejects(
        Config {
            max_lifetime: zero,
            ..c()
        },
        "max_lifetime",
    );
    rejects(
        Config {
            max_lifetime: Some(huge),
            ..c()
        },
        "max_lifetime",
    );
    rejects(
        Config {
            max_idle_time: zero,
            ..c()
        },
        "max_idle_time",
    );
    rejects(
        Config {
            acquire_timeout: zero,
            ..c()
        },
        "acquire_timeout",
    );
    rejects(
        Config {
            create_timeout: zero,
            ..c()
        },
        "create_timeout",
    );
    rejects(
        Config {
            hook_timeout: Duration::ZERO,
            ..c()
        },
        "hook_timeout",
    );
    rejects(
        Config {
            idle_grace: huge,
            ..c()
        },
        "idle_grace",
    );
    rejects(
        Config {
            idle_grace: Duration::MAX,
            ..c()
        },
        "idle_grace",
    );
    rejects(
        Config {
            lifetime_jitter: Some(Duration::from_secs(1)),
            ..c()
        },
        "lifetime_jitter",
    );
    rejects(
        Config {
            max_lifetime: Some(Duration::from_secs(1)),
            lifetime_jitter: Some(Duration::from_secs(2)),
            ..c()
        },
        "lifetime_jitter",
    );
    rejects(
        Config {
            min_idle: 3,
            max_idle: 2,
            ..c()
        },
        "min_idle",
    );
    rejects(
        Config {
            min_idle: 3,
            max_idle: 5,
            max_open: 2,
            ..c()
        },
        "min_idle",
    );
    rejects(
        Config {
            breaker_backoff: Duration::ZERO,
            ..c()
        },
        "breaker_backoff",
    );
    rejects(
        Config {
            breaker_max_backoff: Duration::from_millis(1),
            ..c()
        },
        "breaker_max_backoff",
    );
}

#[tokio::test]
async fn meaningful_zeros_and_clamps_are_accepted() {
    let ok = |config: Config| Pool::new(ScriptedManager::new(), config).map(drop).unwrap();
    // max_idle above max_open is clamped, as database/sql does.
    ok(Config {
        max_open: 2,
        max_idle: 50,
        ..Config::default()
    });
    // zero grace: database/sql's behaviour; zero max_idle: keep none; zero max_open: unlimited.
    ok(Config {
        idle_grace: Duration::ZERO,
        max_idle: 0,
        max_open: 0,
        ..Config::default()
    });
    // validate on every reuse; breaker off (its backoff then unused).
    ok(Config {
        validate_after: Some(Duration::ZERO),
        breaker_threshold: 0,
        breaker_backoff: Duration::ZERO,
        ..Config::default()
    });
    ok(Config {
        max_lifetime: Some(Duration::from_secs(60)),
        lifetime_jitter: Some(Duration::ZERO),
        idle_order: IdleOrder::Fifo,
        ..Config::default()
    });
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
    let c: Config = serde_json::from_str(r#"{"max_open": 100, "max_idle": 20, "idle_grace": "45s", "max_lifetime": "30m", "idle_order": "fifo"}"#).unwrap();
    assert_eq!(
        (c.max_open, c.max_idle, c.idle_grace),
        (100, 20, Duration::from_secs(45))
    );
    assert_eq!(c.max_lifetime, Some(Duration::from_secs(1800)));
    assert_eq!(c.idle_order, IdleOrder::Fifo);
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

/// Handles and futures cross threads: `tokio::spawn` needs `Send` futures, and pools live in
/// shared state. This fails to compile if any of them stops being `Send` (or `Sync`).
#[test]
fn pool_guard_and_futures_are_send() {
    fn send<T: Send>(_: &T) {}
    fn send_sync<T: Send + Sync>(_: &T) {}
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pool = Pool::builder(ScriptedManager::new()).build().unwrap();
        send_sync(&pool);
        let get = pool.get();
        send(&get);
        drop(get);
        let owned = pool.get_owned();
        send(&owned);
        let guard = owned.await.unwrap();
        send_sync(&guard);
    });
}
