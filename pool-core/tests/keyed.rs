//! The keyed pool on the real shell: the core laws per key, and what spans keys (the global
//! idle cap, forgetting keys, per-key limits under load), with the keyed scripted manager.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use pool_core::testing::{
    KeyedScripted, Step, assert_drained, assert_settled, cancel_at_every_point,
};
use pool_core::{CloseReason, Hooks, KeyedBuilder, KeyedPool, KeyedPooled, Stats};
use support::{SETTLE, eventually};

const SEC: Duration = Duration::from_secs(1);

type Pool = KeyedPool<KeyedScripted<u32>>;

fn builder(m: &KeyedScripted<u32>) -> KeyedBuilder<KeyedScripted<u32>> {
    KeyedPool::builder(m.clone())
}

async fn settled(pool: &Pool, m: &KeyedScripted<u32>) -> Stats {
    let inner = m.inner.clone();
    assert_settled(pool, move || inner.live(), SETTLE).await
}

#[tokio::test(start_paused = true)]
async fn each_key_reuses_its_own_connections() {
    let m = KeyedScripted::new();
    let pool = builder(&m).build().unwrap();
    for round in 0..10 {
        for key in 0..3 {
            let c = pool.get(&key).await.unwrap();
            assert_eq!(c.key, key, "round {round}");
            assert_eq!(*KeyedPooled::key(&c), key);
        }
    }
    for key in 0..3 {
        assert_eq!(
            m.key_counts(&key).creates,
            1,
            "key {key} reused its connection"
        );
        let s = pool.key_stats(&key).unwrap();
        assert_eq!((s.created, s.hits, s.idle), (1, 9, 1));
    }
    let s = settled(&pool, &m).await;
    assert_eq!((s.created, s.hits, s.idle), (3, 27, 3));
    assert_eq!(pool.key_count(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_key_cap_holds_with_creates_in_flight_and_keys_never_mix() {
    let m = KeyedScripted::new();
    m.inner
        .script_create((0..40).map(|_| Step::Slow(Duration::from_millis(2))));
    let pool = builder(&m)
        .max_open_per_key(3)
        .max_idle_per_key(3)
        .build()
        .unwrap();
    let mixed = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..4_000u32)
        .map(|i| {
            let (pool, mixed) = (pool.clone(), mixed.clone());
            tokio::spawn(async move {
                let key = i % 5;
                let c = pool.get(&key).await.unwrap();
                if c.key != key {
                    mixed.fetch_add(1, Ordering::SeqCst);
                }
                tokio::task::yield_now().await;
                drop(c);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        mixed.load(Ordering::SeqCst),
        0,
        "a waiter got another key's connection"
    );
    for key in 0..5 {
        let c = m.key_counts(&key);
        assert!(c.high_water <= 3, "key {key}: {c:?} over its cap of 3");
        assert!(c.creates >= 1);
        let peak = pool.key_stats(&key).map_or(0, |s| s.peak_open);
        assert!(
            peak >= c.high_water && peak <= 3,
            "key {key}: peak_open {peak}, counted {c:?}"
        );
    }
    let s = settled(&pool, &m).await;
    assert!(s.open <= 15);
    assert!((3..=15).contains(&s.peak_open), "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn waiters_of_a_key_are_served_in_arrival_order_and_other_keys_go_on() {
    let m = KeyedScripted::new();
    let pool = builder(&m).max_open_per_key(1).build().unwrap();
    let held = pool.get(&1).await.unwrap();
    let order = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..5 {
        let (p, order) = (pool.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let c = p.get(&1).await.unwrap();
            order.lock().push(i);
            tokio::time::sleep(Duration::from_millis(10)).await;
            drop(c);
        }));
        eventually("queued", || pool.key_stats(&1).unwrap().waiting == i + 1).await;
    }
    // Key 2 is not held up by key 1's queue.
    let other = pool.get(&2).await.unwrap();
    assert_eq!(other.key, 2);
    drop(other);
    drop(held);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(*order.lock(), vec![0, 1, 2, 3, 4]);
    let s = pool.key_stats(&1).unwrap();
    assert_eq!((s.created, s.handoffs, s.wait_count), (1, 5, 5));
    settled(&pool, &m).await;
}

#[tokio::test(start_paused = true)]
async fn the_global_idle_cap_evicts_the_least_recently_idled_connection_of_another_key() {
    let m = KeyedScripted::new();
    let pool = builder(&m)
        .max_idle(2)
        .idle_grace(Duration::ZERO)
        .build()
        .unwrap();
    let a = pool.get(&1).await.unwrap();
    let b = pool.get(&2).await.unwrap();
    let c = pool.get(&3).await.unwrap();
    drop(a);
    tokio::time::advance(Duration::from_millis(1)).await;
    drop(b);
    tokio::time::advance(Duration::from_millis(1)).await;
    drop(c);
    eventually("key 1 forgotten", || pool.key_stats(&1).is_none()).await;
    assert_eq!(pool.key_stats(&2).unwrap().idle, 1);
    assert_eq!(pool.key_stats(&3).unwrap().idle, 1);
    let s = settled(&pool, &m).await;
    assert_eq!((s.idle, s.max_idle_closed), (2, 1));
}

/// Records every close the pool reports, in order: (key, id, reason).
#[derive(Clone, Default)]
struct Closes(Arc<parking_lot::Mutex<Vec<(u32, u64, CloseReason)>>>);

impl Hooks<u32> for Closes {
    fn closed(&self, key: &u32, id: u64, reason: CloseReason) {
        self.0.lock().push((*key, id, reason));
    }
}

/// Regression (issue 17, point 9): with a grace period the global idle cap was only applied
/// when the oldest connection's grace ended, so 1,500 hosts left 1,500 idle sockets for 30 s.
/// Runs with hooks (the general release path) and without (the one-lock fast path).
async fn global_idle_cap_holds_at_every_release(with_hooks: bool) {
    const KEYS: u32 = 50;
    const CAP: usize = 10;
    let m = KeyedScripted::new();
    let closes = Closes::default();
    let mut b = builder(&m).max_idle(CAP).idle_grace(30 * SEC);
    if with_hooks {
        b = b.hooks(closes.clone());
    }
    let pool = b.build().unwrap();
    // Three connections per key: with `max_idle_per_key` 2 the third is per-key surplus.
    let mut held = Vec::new();
    for _ in 0..3 {
        for key in 0..KEYS {
            held.push(pool.get_owned(&key).await.unwrap());
        }
    }
    let mut released = Vec::new();
    for c in held {
        released.push((c.key, KeyedPooled::id(&c)));
        drop(c);
        let s = pool.stats();
        assert!(
            s.idle <= CAP,
            "{} released: idle {} above the global cap {CAP} ({with_hooks})",
            released.len(),
            s.idle
        );
        assert_eq!(s.idle, released.len().min(CAP));
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    let evicted = released.len() - CAP;
    let s = settled(&pool, &m).await;
    assert_eq!(
        (s.idle, s.max_idle_closed, s.grace_closed),
        (CAP, evicted as u64, 0)
    );
    assert_eq!(s.closed(), evicted as u64, "each close counted once: {s:?}");
    // The survivors are the most recently idled: the third round of keys 40..50.
    for key in 0..KEYS {
        let idle = pool.key_stats(&key).map_or(0, |s| s.idle);
        assert_eq!(idle, usize::from(key >= KEYS - CAP as u32), "key {key}");
    }
    if with_hooks {
        let mut got = closes.0.lock().clone();
        got.sort_by_key(|&(_, id, _)| id);
        let mut want: Vec<_> = released[..evicted]
            .iter()
            .map(|&(key, id)| (key, id, CloseReason::MaxIdle))
            .collect();
        want.sort_by_key(|&(_, id, _)| id);
        assert_eq!(
            got, want,
            "the least recently idled, once each, as max_idle"
        );
    }

    // Per-key surplus is kept within the cap: three of key 0 idle (one above its per-key
    // max_idle of 2), the three oldest of other keys go.
    let mine: Vec<_> = {
        let mut v = Vec::new();
        for _ in 0..3 {
            v.push(pool.get(&0).await.unwrap());
        }
        v
    };
    for c in mine {
        drop(c);
        assert!(pool.stats().idle <= CAP);
    }
    let s = settled(&pool, &m).await;
    assert_eq!((s.idle, s.max_idle_closed), (CAP, evicted as u64 + 3));
    assert_eq!(
        pool.key_stats(&0).unwrap().idle,
        3,
        "surplus kept for its grace"
    );
    for key in KEYS - CAP as u32..KEYS - CAP as u32 + 3 {
        assert!(pool.key_stats(&key).is_none(), "key {key} evicted");
    }
    // Its grace ends: the per-key surplus goes, as grace.
    tokio::time::advance(31 * SEC).await;
    eventually("grace ended", || pool.stats().grace_closed == 1).await;
    let s = settled(&pool, &m).await;
    assert_eq!(
        (s.idle, s.open, s.max_idle_closed),
        (CAP - 1, CAP - 1, evicted as u64 + 3)
    );
    assert_eq!(s.closed(), evicted as u64 + 4);
}

#[tokio::test(start_paused = true)]
async fn with_grace_the_global_idle_cap_holds_at_every_instant_evicting_the_least_recently_idled() {
    global_idle_cap_holds_at_every_release(false).await;
    global_idle_cap_holds_at_every_release(true).await;
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_keys_used_once_do_not_grow_memory() {
    let m = KeyedScripted::new();
    let pool = builder(&m).max_idle_time(90 * SEC).build().unwrap();
    for key in 0..10_000 {
        drop(pool.get(&key).await.unwrap());
    }
    assert_eq!(pool.stats().created, 10_000);
    // The global cap (100) holds at once, grace or not ...
    eventually("global cap", || pool.key_count() <= 100).await;
    assert!(pool.stats().idle <= 100);
    // ... and the idle timeout retires the rest.
    tokio::time::advance(91 * SEC).await;
    eventually("every key forgotten", || pool.key_count() == 0).await;
    let s = settled(&pool, &m).await;
    assert_eq!(
        (s.open, s.created, s.max_idle_closed, s.max_idle_time_closed),
        (0, 10_000, 9_900, 100)
    );
}

#[tokio::test(start_paused = true)]
async fn a_dropped_keyed_checkout_loses_nothing_at_any_point() {
    let m = KeyedScripted::new();
    m.inner
        .script_create((0..64).map(|_| Step::Slow(Duration::from_millis(3))));
    let pool = builder(&m).max_open_per_key(1).build().unwrap();
    let held = pool.get(&7).await.unwrap();
    let out = cancel_at_every_point(|| pool.get(&7), 20, |_| async {}).await;
    assert!(out.is_none(), "the key is held: no checkout can finish");
    drop(held);
    let s = settled(&pool, &m).await;
    assert_eq!((s.open, s.waiting), (1, 0));
    // Creates started for callers that left are pooled (late binding) on another key too.
    let got = cancel_at_every_point(|| pool.get(&8), 20, |_| async {}).await;
    assert!(got.is_some());
    drop(got);
    settled(&pool, &m).await;
}

#[tokio::test(start_paused = true)]
async fn a_timeout_on_one_key_leaves_the_others_alone() {
    let m = KeyedScripted::new();
    let pool = builder(&m)
        .max_open_per_key(1)
        .acquire_timeout(SEC)
        .build()
        .unwrap();
    let held = pool.get(&1).await.unwrap();
    let err = pool.get(&1).await.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert_eq!(pool.get(&2).await.unwrap().key, 2);
    drop(held);
    let s = settled(&pool, &m).await;
    assert_eq!(s.timeouts, 1);
}

#[tokio::test(start_paused = true)]
async fn a_key_whose_creates_fail_trips_its_own_breaker_only() {
    let m = KeyedScripted::new();
    let pool = builder(&m).breaker_threshold(2).build().unwrap();
    m.inner.fail_all_creates(true);
    for _ in 0..2 {
        assert!(pool.get(&1).await.unwrap_err().is_create());
    }
    let err = pool.get(&1).await.unwrap_err();
    assert!(err.is_unavailable(), "fails fast once tripped: {err}");
    assert_eq!(m.key_counts(&1).creates, 2);
    m.inner.fail_all_creates(false);
    // Another key is unaffected.
    assert_eq!(pool.get(&2).await.unwrap().key, 2);
    // Key 1 retries once its backoff has passed.
    tokio::time::advance(SEC).await;
    assert_eq!(pool.get(&1).await.unwrap().key, 1);
    let s = settled(&pool, &m).await;
    assert_eq!(s.create_errors, 2);
}

#[tokio::test(start_paused = true)]
async fn creates_that_fail_together_double_the_backoff_once() {
    // Regression: every failure of a burst doubled the backoff, so one outage that failed
    // eight creates in flight pushed the next try to the maximum (found by the HTTP chaos
    // test: a flapping backend was not tried again for seconds).
    let m = KeyedScripted::new();
    let pool = builder(&m)
        .breaker_threshold(2)
        .breaker_backoff(Duration::from_millis(100))
        .breaker_max_backoff(Duration::from_secs(60))
        .build()
        .unwrap();
    m.inner.fail_all_creates(true);
    let burst: Vec<_> = (0..8)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get(&1).await.map(|_| ()) })
        })
        .collect();
    for t in burst {
        assert!(t.await.unwrap().is_err());
    }
    let failed = m.key_counts(&1).creates;
    assert!(failed >= 2, "{failed}");
    assert!(pool.get(&1).await.unwrap_err().is_unavailable());
    m.inner.fail_all_creates(false);
    // One trip: the retry comes after the first backoff (100 ms), not 100 ms x 2^failures.
    tokio::time::advance(Duration::from_millis(250)).await;
    assert_eq!(pool.get(&1).await.unwrap().key, 1);
    settled(&pool, &m).await;
}

#[tokio::test(start_paused = true)]
async fn close_fails_waiters_of_every_key_and_drains() {
    let m = KeyedScripted::new();
    let pool = builder(&m).max_open_per_key(1).build().unwrap();
    let a = pool.get(&1).await.unwrap();
    let b = pool.get_owned(&2).await.unwrap();
    let waiters: Vec<_> = [1u32, 2]
        .into_iter()
        .map(|k| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get(&k).await.map(|_| ()) })
        })
        .collect();
    eventually("queued", || pool.stats().waiting == 2).await;
    pool.close();
    for w in waiters {
        assert!(w.await.unwrap().unwrap_err().is_closed());
    }
    assert!(pool.get(&3).await.unwrap_err().is_closed());
    drop(a);
    drop(b);
    pool.close_and_wait(SEC).await.unwrap();
    let inner = m.inner.clone();
    let s = assert_drained(&pool, move || inner.live(), SETTLE).await;
    assert_eq!(s.shutdown_closed, 2);
    assert_eq!(pool.key_count(), 0);
}

#[tokio::test(start_paused = true)]
async fn lowering_the_global_idle_cap_closes_the_oldest_at_once() {
    let m = KeyedScripted::new();
    let pool = builder(&m).build().unwrap();
    let conns: Vec<_> = {
        let mut v = Vec::new();
        for k in 0..4 {
            v.push(pool.get(&k).await.unwrap());
        }
        v
    };
    for c in conns {
        drop(c);
        tokio::time::advance(Duration::from_millis(1)).await;
    }
    pool.set_max_idle(1);
    eventually("evicted", || pool.stats().max_idle_closed == 3).await;
    assert!(
        pool.key_stats(&3).is_some(),
        "the most recently idled stays"
    );
    pool.set_max_idle_per_key(0);
    eventually("per key", || pool.stats().max_idle_closed == 4).await;
    assert_eq!(pool.key_count(), 0);
    settled(&pool, &m).await;
}

#[tokio::test(start_paused = true)]
async fn idle_timeout_and_lifetime_apply_per_key() {
    let m = KeyedScripted::new();
    let pool = builder(&m)
        .max_idle_time(10 * SEC)
        .max_lifetime(60 * SEC)
        .lifetime_jitter(Duration::ZERO)
        .build()
        .unwrap();
    drop(pool.get(&1).await.unwrap());
    tokio::time::advance(5 * SEC).await;
    drop(pool.get(&2).await.unwrap());
    tokio::time::advance(6 * SEC).await;
    eventually("key 1 idle timeout", || pool.key_stats(&1).is_none()).await;
    assert_eq!(pool.key_stats(&2).unwrap().idle, 1);
    // Key 2 is used every few seconds: only its lifetime retires it.
    for _ in 0..20 {
        drop(pool.get(&2).await.unwrap());
        tokio::time::advance(4 * SEC).await;
    }
    let s = pool.stats();
    assert_eq!((s.max_idle_time_closed, s.max_lifetime_closed), (1, 1));
    let _ = CloseReason::MaxLifetime;
    settled(&pool, &m).await;
}

#[tokio::test]
async fn bad_keyed_config_is_an_error_naming_the_knob() {
    let m = KeyedScripted::<u32>::new();
    let mut config = pool_core::KeyedConfig::default();
    config.per_key.min_idle = 1;
    let err = KeyedPool::new(m.clone(), config).unwrap_err();
    assert_eq!(err.knob(), Some("min_idle"));
    let err = builder(&m)
        .max_lifetime(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.knob(), Some("max_lifetime"));
}

/// Regression: with a bound tying the pool's and the key's lifetimes, `KeyedGet` was "not
/// general enough" when passed to generic code inside a spawned task.
#[tokio::test]
async fn a_keyed_checkout_future_can_go_through_generic_code_in_a_spawned_task() {
    async fn run<F: std::future::Future>(fut: F) -> F::Output {
        fut.await
    }
    let m = KeyedScripted::new();
    let pool = builder(&m).build().unwrap();
    let task = tokio::spawn(async move {
        let key = 3u32;
        let c = run(pool.get(&key)).await.unwrap();
        assert_eq!(c.key, 3);
    });
    task.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn keyed_totals_cap_open_by_the_keys_held_and_try_get_and_get_timeout_work_per_key() {
    let m = KeyedScripted::new();
    let pool = builder(&m).max_open_per_key(2).build().unwrap();
    let held: Vec<_> = [1, 1, 2].iter().map(|k| pool.get(k)).collect();
    let mut held_guards = Vec::new();
    for h in held {
        held_guards.push(h.await.unwrap());
    }
    let s = pool.stats();
    assert_eq!(
        (s.open, s.max_open),
        (3, 4),
        "two keys held, two each: {s:?}"
    );
    assert!(s.open <= s.max_open);
    // Key 1 is full: its own deadline; key 2 has an idle one for try_get once returned.
    let err = pool.get_timeout(&1, SEC).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert!(pool.try_get(&2).is_none(), "in use");
    held_guards.pop();
    let c = pool.try_get(&2).expect("idle now");
    assert_eq!(c.key, 2);
    assert!(
        pool.try_get(&3).is_none(),
        "a key never used: nothing, no create"
    );
    drop(c);
    drop(held_guards);
    settled(&pool, &m).await;
    assert_eq!(m.inner.create_calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn evict_idle_where_closes_the_dead_at_once_keeps_the_rest_in_place_and_dials_nothing() {
    let m = KeyedScripted::new();
    let pool = builder(&m).max_idle_per_key(4).build().unwrap();
    let (a, b, c) = (
        pool.get(&1).await.unwrap(),
        pool.get(&1).await.unwrap(),
        pool.get(&1).await.unwrap(),
    );
    let ids = [
        KeyedPooled::id(&a),
        KeyedPooled::id(&b),
        KeyedPooled::id(&c),
    ];
    let ids_res = [a.res.id, b.res.id, c.res.id];
    drop((a, b, c));
    assert_eq!(pool.key_stats(&1).unwrap().idle, 3);
    let evicted = pool.evict_idle_where(&1, |r| r.res.id == ids_res[1]);
    assert_eq!(evicted, 1);
    assert_eq!(pool.evict_idle_where(&2, |_| true), 0, "a key never used");
    let s = settled(&pool, &m).await;
    assert_eq!((s.idle, s.broken_closed, s.created), (2, 1, 3), "{s:?}");
    // Most recently used first, as before: c, then a.
    let first = pool.get(&1).await.unwrap();
    let second = pool.get(&1).await.unwrap();
    assert_eq!(
        [KeyedPooled::id(&first), KeyedPooled::id(&second)],
        [ids[2], ids[0]]
    );
    assert_eq!(m.inner.create_calls(), 3, "nothing dialled to replace it");
}

/// Keys are looked up in any form they borrow as, as with `HashMap::get`: `&str` for
/// `String` keys, with no `String` made on the fast path.
#[tokio::test(start_paused = true)]
async fn a_string_keyed_pool_takes_str_keys_everywhere() {
    let m = KeyedScripted::<String>::new();
    let pool = KeyedPool::builder(m.clone()).build().unwrap();
    let c = pool.get("db1:5432").await.unwrap();
    assert_eq!(c.key, "db1:5432");
    drop(c);
    assert_eq!(pool.key_stats("db1:5432").unwrap().idle, 1);
    let c = pool.try_get("db1:5432").expect("idle");
    drop(c);
    drop(pool.get_timeout("db1:5432", SEC).await.unwrap());
    drop(pool.get_owned("db1:5432").await.unwrap());
    assert!(pool.key_stats("db2:5432").is_none());
    assert_eq!(pool.evict_idle_where("db1:5432", |_| true), 1);
    let inner = m.inner.clone();
    assert_settled(&pool, move || inner.live(), SETTLE).await;
    assert_eq!(m.inner.create_calls(), 1);
}
