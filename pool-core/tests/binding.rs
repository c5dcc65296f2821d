//! Whom creates serve and whom their failures reach: late binding (the default) and Go's
//! binding (`Binding::Caller`, part of Go mode), with a scripted manager on paused time.

mod support;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pool_core::testing::{ScriptedManager, Step};
use pool_core::{Binding, Pool, Pooled};
use support::{builder, eventually, settled};

const MS: Duration = Duration::from_millis(1);
const SEC: Duration = Duration::from_secs(1);

/// Spawns `n` checkouts in order (each queued before the next starts); each records its
/// number in `failed` if it fails, and holds a connection it gets for `hold`.
async fn queue_callers(
    pool: &Pool<ScriptedManager>,
    n: usize,
    hold: Duration,
    failed: &Arc<Mutex<Vec<usize>>>,
) -> Vec<tokio::task::JoinHandle<bool>> {
    let mut tasks = Vec::new();
    for i in 0..n {
        let (pool2, failed) = (pool.clone(), failed.clone());
        let before = pool.stats().waiting;
        tasks.push(tokio::spawn(async move {
            match pool2.get().await {
                Ok(c) => {
                    tokio::time::sleep(hold).await;
                    drop(c);
                    true
                }
                Err(_) => {
                    failed.lock().push(i);
                    false
                }
            }
        }));
        eventually("the caller queued", || pool.stats().waiting > before).await;
    }
    tasks
}

#[tokio::test(start_paused = true)]
async fn each_waiter_gets_at_most_one_create_and_errors_arrive_in_arrival_order() {
    let m = ScriptedManager::new();
    m.script_create((0..200).map(|_| Step::SlowFail(10 * MS, "refused")));
    let pool = builder(&m)
        .max_open(2)
        .idle_grace(Duration::ZERO)
        .breaker_threshold(0)
        .build()
        .unwrap();
    for n in [6usize, 20, 100] {
        let calls = m.create_calls();
        let failed = Arc::new(Mutex::new(Vec::new()));
        let tasks = queue_callers(&pool, n, MS, &failed).await;
        for t in tasks {
            assert!(!t.await.unwrap(), "every create fails");
        }
        assert_eq!(
            m.create_calls() - calls,
            n,
            "one create per caller, {n} callers"
        );
        assert_eq!(
            *failed.lock(),
            (0..n).collect::<Vec<_>>(),
            "errors in arrival order"
        );
    }
    let s = settled(&pool, &m).await;
    assert_eq!(s.create_errors, 126);
}

#[tokio::test(start_paused = true)]
async fn a_failed_create_while_connections_are_in_use_leaves_the_caller_queued_for_a_release() {
    let m = ScriptedManager::new();
    let pool = builder(&m).max_open(2).build().unwrap();
    let held = pool.get().await.unwrap();
    m.script_create([Step::Fail("too many connections")]);
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await.map(|c| Pooled::id(&c)) })
    };
    eventually("the create failed", || pool.stats().create_errors == 1).await;
    tokio::time::sleep(100 * MS).await;
    assert!(
        !waiter.is_finished(),
        "still queued while `held` may come back"
    );
    assert_eq!(pool.stats().waiting, 1);
    let id = Pooled::id(&held);
    drop(held);
    assert_eq!(waiter.await.unwrap().unwrap(), id, "served by the release");
    let s = settled(&pool, &m).await;
    assert_eq!((s.handoffs, s.create_errors), (1, 1), "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_queued_caller_fails_with_the_create_error_once_nothing_open_can_serve_it() {
    let m = ScriptedManager::new();
    let pool = builder(&m).max_open(2).build().unwrap();
    let held = pool.get().await.unwrap();
    m.script_create([Step::Fail("too many connections")]);
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await.map(drop) })
    };
    eventually("the create failed", || pool.stats().create_errors == 1).await;
    // The one connection that could serve it is discarded: nothing open is left.
    Pooled::discard(held);
    let err = waiter.await.unwrap().unwrap_err();
    assert!(err.is_create(), "{err:?}");
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        cause.is_some_and(|c| c.contains("too many connections")),
        "{err:?}"
    );

    // With a timeout, the timeout's error carries the create error.
    let pool = builder(&m)
        .max_open(2)
        .acquire_timeout(50 * MS)
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    m.script_create([Step::Fail("too many connections")]);
    let err = pool.get().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        cause.is_some_and(|c| c.contains("too many connections")),
        "a timeout names the create error: {err:?}"
    );
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn go_binding_fails_the_caller_at_once() {
    let m = ScriptedManager::new();
    let pool = builder(&m).go_mode().max_open(2).build().unwrap();
    let held = pool.get().await.unwrap();
    m.script_create([Step::Fail("too many connections")]);
    let err = pool.get().await.unwrap_err();
    assert!(err.is_create(), "{err:?}");
    drop(held);
    settled(&pool, &m).await;
}

/// database/sql's connection count for bursts of `burst` concurrent calls on `max_open`
/// with `max_idle` and no grace: `max_idle + bursts * (max_open - max_idle)`.
/// `spread`: callers of a burst arrive 1 ms apart instead of within 3 ms.
async fn burst_opens(binding: Binding, create: Step, spread: bool) -> u64 {
    let m = ScriptedManager::new();
    let pool = builder(&m)
        .go_mode()
        .binding(binding)
        .max_open(10)
        .max_idle(2)
        .build()
        .unwrap();
    for _ in 0..5 {
        m.script_create((0..20).map(|_| create.clone()));
        let tasks: Vec<_> = (0..20)
            .map(|i| {
                let pool = pool.clone();
                tokio::spawn(async move {
                    // Staggered starts: callers arrive while creates are in flight.
                    tokio::time::sleep(MS * if spread { i } else { i % 4 }).await;
                    let c = pool.get().await.unwrap();
                    tokio::time::sleep(2 * MS).await;
                    drop(c);
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        tokio::time::sleep(100 * MS).await;
    }
    let s = settled(&pool, &m).await;
    assert!(s.peak_open <= 10, "{s:?}");
    s.created
}

#[tokio::test(start_paused = true)]
async fn go_mode_opens_exactly_what_database_sql_opens_under_bursts() {
    let go = 2 + 5 * (10 - 2);
    for create in [Step::Ok, Step::Slow(3 * MS), Step::Slow(MS)] {
        assert_eq!(
            burst_opens(Binding::Caller, create.clone(), false).await,
            go,
            "Go's binding, create {create:?}"
        );
    }
    // Late binding hands releases to callers whose creates are still in flight: when
    // callers trickle in during slow creates it opens fewer than Go (the reason it is the
    // default).
    let caller = burst_opens(Binding::Caller, Step::Slow(5 * MS), true).await;
    let late = burst_opens(Binding::Late, Step::Slow(5 * MS), true).await;
    assert!(late < caller, "late binding opened {late}, Go's {caller}");
}

/// Late binding serves the head with any create: a waiter whose own create served someone
/// else, and who then has nothing coming (the connection it would have had is discarded),
/// gets another create once creates succeed again, instead of waiting forever.
#[tokio::test(start_paused = true)]
async fn a_waiter_whose_create_served_another_gets_a_new_one_when_nothing_else_comes() {
    let m = ScriptedManager::new();
    let pool = builder(&m).max_open(2).build().unwrap();
    m.script_create([Step::SlowFail(10 * MS, "refused"), Step::Slow(20 * MS)]);
    let a = {
        let pool = pool.clone();
        tokio::spawn(async move { Pooled::discard(pool.get().await.unwrap()) })
    };
    eventually("a queued", || pool.stats().waiting == 1).await;
    let b = {
        let pool = pool.clone();
        tokio::spawn(async move { drop(pool.get().await.unwrap()) })
    };
    // a's create fails (b's is in flight: a stays queued), b's create serves a (the head),
    // and a discards its connection: b has no create of its own left.
    a.await.unwrap();
    tokio::time::timeout(10 * SEC, b)
        .await
        .expect("b was served, not left waiting with room in the pool")
        .unwrap();
    let s = settled(&pool, &m).await;
    assert_eq!((s.created, s.create_errors), (2, 1), "{s:?}");
}

/// A checkout that retries after a broken connection is timed once, not from its start
/// again.
#[tokio::test(start_paused = true)]
async fn a_retried_checkout_counts_its_wait_once() {
    let m = ScriptedManager::new();
    let pool = builder(&m)
        .max_open(1)
        .acquire_timeout(10 * SEC)
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { drop(pool.get().await.unwrap()) })
    };
    eventually("queued", || pool.stats().waiting == 1).await;
    tokio::time::advance(100 * MS).await;
    // Released fine, then found broken at the checkout it was handed to: the caller queues
    // again and a new one is created.
    m.script_check([Step::Ok, Step::Fail("dead"), Step::Fail("dead")]);
    drop(held);
    waiter.await.unwrap();
    let s = settled(&pool, &m).await;
    assert_eq!((s.created, s.broken_closed), (2, 1), "it did retry: {s:?}");
    assert!(
        s.wait_duration >= 100 * MS && s.wait_duration < 150 * MS,
        "{:?}",
        s.wait_duration
    );
}
