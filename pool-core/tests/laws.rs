//! The laws of RELIABILITY.md that apply to the core, each proven on the real shell with the
//! scripted manager (paused tokio time where time matters).

mod support;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use pool_core::testing::{ScriptError, ScriptedManager, Step};
use pool_core::{IdleOrder, Pooled};
use support::{builder, eventually, settled};

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);

// ---- reuse and no spurious work (law 12) ----

#[tokio::test(start_paused = true)]
async fn sequential_checkouts_reuse_one_connection() {
    let m = ScriptedManager::new();
    let pool = builder(&m).build().unwrap();
    for _ in 0..100 {
        let c = pool.get().await.unwrap();
        assert_eq!(c.id, 1);
    }
    let s = settled(&pool, &m).await;
    assert_eq!((s.created, s.hits, s.idle), (1, 99, 1));
    assert_eq!(m.create_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn idle_order_lifo_takes_most_recent_fifo_takes_oldest() {
    for (order, expect) in [(IdleOrder::Lifo, 2), (IdleOrder::Fifo, 1)] {
        let m = ScriptedManager::new();
        let pool = builder(&m).idle_order(order).build().unwrap();
        let a = pool.get().await.unwrap();
        let b = pool.get().await.unwrap();
        drop(a);
        drop(b);
        assert_eq!(pool.get().await.unwrap().id, expect, "{order:?}");
    }
}

// ---- hard cap (law 2) and no lost waiter (law 4) ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_acquires_on_eight_never_exceed_eight_and_all_are_served() {
    for go in [false, true] {
        ten_thousand_on_eight(go).await;
    }
}

/// `go`: Go mode (database/sql's binding: a create belongs to its caller).
fn go_or_not(m: &ScriptedManager, go: bool) -> pool_core::Builder<ScriptedManager> {
    if go { builder(m).go_mode() } else { builder(m) }
}

async fn ten_thousand_on_eight(go: bool) {
    let m = ScriptedManager::new();
    m.script_create((0..8).map(|_| Step::Slow(Duration::from_millis(1))));
    let pool = go_or_not(&m, go).max_open(8).max_idle(8).build().unwrap();
    let served = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..10_000)
        .map(|_| {
            let (pool, served) = (pool.clone(), served.clone());
            tokio::spawn(async move {
                let c = pool.get().await.unwrap();
                tokio::task::yield_now().await;
                drop(c);
                served.fetch_add(1, Ordering::SeqCst);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(served.load(Ordering::SeqCst), 10_000);
    assert_eq!(
        m.high_water(),
        8,
        "live resources plus creates in flight exceeded max_open"
    );
    let s = settled(&pool, &m).await;
    assert_eq!(s.created, 8);
    assert_eq!(s.peak_open, 8, "the pool's own high-water mark");
    assert!(s.wait_count > 0 && s.handoffs > 0, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn creates_in_flight_count_against_max_open() {
    let m = ScriptedManager::new();
    m.script_create([
        Step::Slow(10 * SEC),
        Step::Slow(10 * SEC),
        Step::Slow(10 * SEC),
    ]);
    let pool = builder(&m).max_open(2).build().unwrap();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            tokio::spawn({
                let p = pool.clone();
                async move { drop(p.get().await.unwrap()) }
            })
        })
        .collect();
    eventually("three queued", || pool.stats().waiting == 3).await;
    assert_eq!(
        m.create_calls(),
        2,
        "a third create started while two were in flight"
    );
    assert_eq!(pool.stats().open, 2);
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(m.high_water(), 2);
    assert_eq!(settled(&pool, &m).await.peak_open, 2);
}

// ---- fairness (law 11) ----

#[tokio::test(start_paused = true)]
async fn waiters_are_served_in_arrival_order_and_newcomers_do_not_barge() {
    let m = ScriptedManager::new();
    let pool = builder(&m).max_open(1).build().unwrap();
    let held = pool.get().await.unwrap();
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (p, order) = (pool.clone(), order.clone());
        tasks.push(tokio::spawn(async move {
            let c = p.get().await.unwrap();
            order.lock().push(i);
            tokio::task::yield_now().await;
            drop(c);
        }));
        eventually("waiter queued", || pool.stats().waiting == i + 1).await;
    }
    drop(held);
    // A newcomer arriving right after the release must queue behind the twenty.
    let newcomer = pool.get().await.unwrap();
    order.lock().push(99);
    drop(newcomer);
    for t in tasks {
        t.await.unwrap();
    }
    let expected: Vec<usize> = (0..20).chain([99]).collect();
    assert_eq!(*order.lock(), expected);
    let s = settled(&pool, &m).await;
    assert_eq!(s.created, 1);
    assert_eq!(s.handoffs, 21);
}

// ---- grace retention: the headline ----

async fn burst(pool: &pool_core::Pool<ScriptedManager>, n: usize) {
    let conns: Vec<_> = futures_util::future::join_all((0..n).map(|_| pool.get())).await;
    drop(conns);
}

#[tokio::test(start_paused = true)]
async fn grace_keeps_surplus_for_the_next_burst_then_reaps_it() {
    let m = ScriptedManager::new();
    let pool = builder(&m)
        .max_open(10)
        .max_idle(2)
        .idle_grace(30 * SEC)
        .build()
        .unwrap();
    burst(&pool, 10).await;
    let s = settled(&pool, &m).await;
    assert_eq!((s.created, s.idle, s.surplus_idle), (10, 10, 8));
    tokio::time::sleep(10 * SEC).await;
    burst(&pool, 10).await;
    let s = settled(&pool, &m).await;
    assert_eq!(
        s.created, 10,
        "the second burst created instead of reusing surplus"
    );
    assert_eq!(s.grace_reused, 8);
    assert_eq!(s.grace_closed, 0);
    // Nothing touches the pool for the whole grace period: surplus closes, max_idle stays.
    tokio::time::sleep(31 * SEC).await;
    let s = settled(&pool, &m).await;
    assert_eq!((s.grace_closed, s.idle, s.surplus_idle), (8, 2, 0));
    assert_eq!(m.live(), 2);
}

#[tokio::test(start_paused = true)]
async fn zero_grace_is_database_sql_closing_above_max_idle_at_once() {
    let m = ScriptedManager::new();
    let pool = builder(&m)
        .max_open(10)
        .max_idle(2)
        .idle_grace(Duration::ZERO)
        .build()
        .unwrap();
    for _ in 0..3 {
        burst(&pool, 10).await;
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let s = settled(&pool, &m).await;
    // database/sql: max_idle + bursts x (max_open - max_idle).
    assert_eq!(s.created, 2 + 3 * 8);
    assert_eq!(s.max_idle_closed, 3 * 8);
    assert_eq!(s.idle, 2);
}

#[tokio::test(start_paused = true)]
async fn lowering_max_idle_closes_surplus_at_once_and_counts_it() {
    let m = ScriptedManager::new();
    let pool = builder(&m).max_open(10).max_idle(10).build().unwrap();
    burst(&pool, 10).await;
    pool.set_max_idle(3);
    let s = settled(&pool, &m).await;
    assert_eq!((s.idle, s.max_idle_closed), (3, 7));
}

// ---- lifetime and idle time ----

#[tokio::test(start_paused = true)]
async fn an_expired_connection_is_never_handed_out() {
    let m = ScriptedManager::new();
    let pool = builder(&m)
        .max_lifetime(60 * SEC)
        .lifetime_jitter(Duration::ZERO)
        .build()
        .unwrap();
    drop(pool.get().await.unwrap());
    // Stop the reaper from winning the race: check at the exact expiry instant via get.
    tokio::time::advance(60 * SEC).await;
    let c = pool.get().await.unwrap();
    assert_eq!(c.id, 2, "an expired connection was reused");
    drop(c);
    let s = settled(&pool, &m).await;
    assert_eq!(s.max_lifetime_closed, 1);
}

#[tokio::test(start_paused = true)]
async fn a_connection_expiring_while_checked_out_closes_on_return_once() {
    let m = ScriptedManager::new();
    let pool = builder(&m)
        .max_lifetime(60 * SEC)
        .lifetime_jitter(Duration::ZERO)
        .build()
        .unwrap();
    let c = pool.get().await.unwrap();
    tokio::time::sleep(120 * SEC).await;
    assert_eq!(m.live(), 1, "a checked-out connection was interrupted");
    drop(c);
    let s = settled(&pool, &m).await;
    assert_eq!((s.max_lifetime_closed, s.open), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn the_reaper_retires_idle_connections_at_their_lifetime() {
    let m = ScriptedManager::new();
    let pool = builder(&m)
        .max_idle(4)
        .max_lifetime(60 * SEC)
        .lifetime_jitter(10 * SEC)
        .build()
        .unwrap();
    burst(&pool, 4).await;
    tokio::time::sleep(49 * SEC).await;
    assert_eq!(
        settled(&pool, &m).await.max_lifetime_closed,
        0,
        "jitter took more than lifetime_jitter"
    );
    tokio::time::sleep(11 * SEC + Duration::from_millis(1)).await;
    let s = settled(&pool, &m).await;
    assert_eq!((s.max_lifetime_closed, s.open), (4, 0));
}

#[tokio::test(start_paused = true)]
async fn max_idle_time_retires_idle_connections_above_min_idle() {
    let m = ScriptedManager::new();
    let pool = builder(&m)
        .max_idle(5)
        .min_idle(2)
        .max_idle_time(10 * SEC)
        .build()
        .unwrap();
    eventually("warm-up", || pool.stats().idle == 2).await;
    burst(&pool, 5).await;
    tokio::time::sleep(11 * SEC).await;
    let s = settled(&pool, &m).await;
    // The burst took both warm connections, so the reaper refilled two (HikariCP's minimumIdle
    // counts idle connections): 7 created, all but min_idle retired.
    assert_eq!(
        (s.created, s.max_idle_time_closed, s.idle),
        (7, 5, 2),
        "{s:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn min_idle_warms_up_and_refills() {
    let m = ScriptedManager::new();
    let pool = builder(&m).max_idle(3).min_idle(3).build().unwrap();
    eventually("warm-up", || pool.stats().idle == 3).await;
    let c = pool.get().await.unwrap();
    Pooled::discard(c);
    eventually("refill", || pool.stats().idle == 3).await;
    let s = settled(&pool, &m).await;
    assert_eq!((s.created, s.broken_closed), (4, 1));
}

// ---- timeouts (law 3) and clear errors (law 7) ----

#[tokio::test(start_paused = true)]
async fn acquire_timeout_bounds_a_checkout_and_names_the_last_create_error() {
    let m = ScriptedManager::new();
    m.script_create([Step::SlowFail(2 * SEC, "password authentication failed")]);
    let pool = builder(&m)
        .max_open(1)
        .acquire_timeout(5 * SEC)
        .build()
        .unwrap();
    let held = {
        // The first caller gets the create error itself, at once (after 2 s), not a timeout.
        let err = pool.get().await.unwrap_err();
        assert!(err.is_create() && !err.is_timeout(), "{err:?}");
        assert_eq!(
            err.downcast_ref::<ScriptError>(),
            Some(&ScriptError("password authentication failed"))
        );
        pool.get().await.unwrap()
    };
    let start = tokio::time::Instant::now();
    let err = pool.get().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(start.elapsed(), 5 * SEC);
    // The last create succeeded, so the timeout names no stale create error.
    assert!(err.downcast_ref::<ScriptError>().is_none());
    drop(held);
    let s = settled(&pool, &m).await;
    assert_eq!((s.timeouts, s.create_errors), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_timeout_while_creates_fail_carries_the_create_error() {
    let m = ScriptedManager::new();
    let pool = builder(&m)
        .max_open(1)
        .acquire_timeout(5 * SEC)
        .breaker_threshold(0)
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    m.fail_all_creates(true);
    let waiter = tokio::spawn({
        let p = pool.clone();
        async move { p.get_owned().await }
    });
    eventually("queued", || pool.stats().waiting == 1).await;
    Pooled::discard(held); // frees the slot: the waiter's create fails
    let err = waiter.await.unwrap().unwrap_err();
    assert!(err.is_create());
    m.script_create([Step::SlowFail(SEC, "connection refused"), Step::Never]);
    let err = pool.get().await.unwrap_err();
    assert!(err.is_create());
    // The next create hangs: the caller times out at acquire_timeout, told what failed last.
    let t = tokio::time::Instant::now();
    let err = pool.get().await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(
        err.downcast_ref::<ScriptError>(),
        Some(&ScriptError("connection refused"))
    );
    assert_eq!(t.elapsed(), 5 * SEC);
    // create_timeout defaults to acquire_timeout: the hung create frees its slot too.
    eventually("hung create given up", || pool.stats().open == 0).await;
    assert_eq!(pool.stats().create_errors, 3);
}

#[tokio::test(start_paused = true)]
async fn a_hung_create_frees_its_slot_after_create_timeout() {
    let m = ScriptedManager::new();
    m.script_create([Step::Never]);
    let pool = builder(&m)
        .max_open(1)
        .create_timeout(3 * SEC)
        .build()
        .unwrap();
    let err = pool.get().await.unwrap_err();
    assert!(err.is_timeout() && err.is_create(), "{err:?}");
    let s = settled(&pool, &m).await;
    assert_eq!((s.open, s.create_errors), (0, 1));
    assert!(pool.get().await.is_ok());
}

// ---- panics (law 7) ----

#[tokio::test(start_paused = true)]
async fn a_panicking_create_fails_its_caller_and_spares_the_others() {
    let m = ScriptedManager::new();
    m.script_create([Step::Panic]);
    let pool = builder(&m).max_open(2).build().unwrap();
    let first = pool.get().await.unwrap_err();
    assert!(first.is_panic() && first.is_create(), "{first:?}");
    let others =
        futures_util::future::join_all((0..5).map(|_| async { pool.get().await.map(drop) })).await;
    assert!(others.iter().all(|r| r.is_ok()));
    let s = settled(&pool, &m).await;
    assert_eq!((s.create_errors, s.created), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn a_guard_dropped_during_a_panic_discards_its_connection() {
    let m = ScriptedManager::new();
    let pool = builder(&m).build().unwrap();
    let p = pool.clone();
    let r = tokio::spawn(async move {
        let _c = p.get().await.unwrap();
        panic!("user code panics while holding a connection");
    })
    .await;
    assert!(r.is_err());
    let s = settled(&pool, &m).await;
    assert_eq!((s.broken_closed, s.open), (1, 0));
    assert!(pool.get().await.is_ok(), "the pool hangs after a panic");
}

#[tokio::test(start_paused = true)]
async fn panics_in_hooks_cost_the_connection_not_the_pool() {
    let m = ScriptedManager::new().with_validate_after(Duration::ZERO);
    m.script_validate([Step::Panic]);
    m.script_close([Step::Panic]);
    let pool = builder(&m).build().unwrap();
    drop(pool.get().await.unwrap());
    let c = pool.get().await.unwrap(); // validate panics: discarded, a new one is made
    assert_eq!(c.id, 2);
    drop(c);
    let s = settled(&pool, &m).await;
    assert_eq!((s.broken_closed, s.created, m.validate_calls()), (1, 2, 1));
}

// ---- safe reuse (law 6) ----

#[tokio::test(start_paused = true)]
async fn broken_connections_are_never_handed_out() {
    let m = ScriptedManager::new();
    let pool = builder(&m).max_idle(3).build().unwrap();
    let mut a = pool.get().await.unwrap();
    a.broken = true;
    drop(a); // check on release: closed
    let s = settled(&pool, &m).await;
    assert_eq!((s.broken_closed, s.idle), (1, 0));
    let c = pool.get().await.unwrap();
    assert_eq!(c.id, 2);
}

#[tokio::test(start_paused = true)]
async fn validation_runs_only_after_the_idle_threshold_and_failures_move_on() {
    let m = ScriptedManager::new().with_validate_after(SEC);
    let pool = builder(&m).max_idle(2).build().unwrap();
    burst(&pool, 2).await;
    drop(pool.get().await.unwrap());
    assert_eq!(
        m.validate_calls(),
        0,
        "validated a connection idle under the threshold"
    );
    tokio::time::advance(2 * SEC).await;
    m.script_validate([Step::Fail("server closed the connection")]);
    let c = pool.get().await.unwrap();
    assert_eq!(
        m.validate_calls(),
        2,
        "the first failed, the second was validated too"
    );
    drop(c);
    let s = settled(&pool, &m).await;
    assert_eq!((s.broken_closed, s.created), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn a_dirty_connection_is_reset_before_reuse_and_a_hung_reset_is_bounded() {
    let m = ScriptedManager::new();
    let pool = builder(&m).hook_timeout(2 * SEC).build().unwrap();
    let mut c = pool.get().await.unwrap();
    c.dirty = true;
    drop(c);
    let c = pool.get().await.unwrap();
    assert!(!c.dirty && m.reset_calls() == 1);
    let mut c2 = c;
    c2.dirty = true;
    drop(c2);
    m.script_reset([Step::Never]);
    let t = tokio::time::Instant::now();
    let c = pool.get().await.unwrap();
    assert_eq!(t.elapsed(), 2 * SEC);
    assert_eq!(c.id, 2, "a connection whose reset hung was handed out");
    drop(c);
    let s = settled(&pool, &m).await;
    assert_eq!(s.broken_closed, 1);
}

#[tokio::test(start_paused = true)]
async fn a_dirty_connection_is_reset_on_return_and_reaches_nobody_before() {
    let m = ScriptedManager::new();
    let pool = builder(&m)
        .max_open(1)
        .hook_timeout(5 * SEC)
        .build()
        .unwrap();
    m.script_reset([Step::Slow(SEC)]);
    let mut c = pool.get().await.unwrap();
    c.dirty = true;
    drop(c);
    let s = pool.stats();
    assert_eq!(
        (s.resetting, s.idle, s.in_use, s.open),
        (1, 0, 1, 1),
        "being reset: open, not idle: {s:?}"
    );
    // The reset runs on return, with nobody asking for the connection.
    tokio::time::sleep(SEC / 2).await;
    assert_eq!(
        m.reset_calls(),
        1,
        "reset on return, not at the next checkout"
    );
    let t = tokio::time::Instant::now();
    let c = pool.get().await.unwrap();
    assert_eq!(
        t.elapsed(),
        SEC / 2,
        "the waiter got it when the reset ended"
    );
    assert!(!c.dirty);
    assert_eq!((c.id, m.reset_calls()), (1, 1));
    drop(c);
    let s = settled(&pool, &m).await;
    assert_eq!((s.idle, s.resetting, s.created, s.handoffs), (1, 0, 1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_failed_reset_on_return_closes_the_connection_and_a_closed_pool_skips_the_reset() {
    let m = ScriptedManager::new();
    let pool = builder(&m).hook_timeout(2 * SEC).build().unwrap();
    m.script_reset([Step::Fail("rollback failed")]);
    let mut c = pool.get().await.unwrap();
    c.dirty = true;
    drop(c);
    let s = settled(&pool, &m).await;
    assert_eq!((s.broken_closed, s.open, s.resetting), (1, 0, 0), "{s:?}");
    // A reset still running when the pool closes: the connection closes when it ends; one
    // returned dirty after the close is closed without a reset.
    m.script_reset([Step::Slow(SEC)]);
    let mut c1 = pool.get().await.unwrap();
    let mut c2 = pool.get().await.unwrap();
    c1.dirty = true;
    drop(c1);
    pool.close();
    c2.dirty = true;
    drop(c2);
    let t = tokio::time::Instant::now();
    pool.close_and_wait(10 * SEC).await.unwrap();
    assert_eq!(t.elapsed(), SEC);
    let s = pool.stats();
    assert_eq!((s.shutdown_closed, s.open, m.live()), (2, 0, 0), "{s:?}");
    assert_eq!(m.reset_calls(), 2, "the failed one and c1's");
}

// ---- cancellation (law 5) ----

#[tokio::test(start_paused = true)]
async fn a_dropped_waiter_leaves_the_queue_at_once() {
    let m = ScriptedManager::new();
    let pool = builder(&m).max_open(1).build().unwrap();
    let held = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let p = pool.clone();
        async move { p.get().await.map(drop) }
    });
    eventually("queued", || pool.stats().waiting == 1).await;
    waiter.abort();
    eventually("left", || pool.stats().waiting == 0).await;
    drop(held);
    let s = settled(&pool, &m).await;
    assert_eq!((s.idle, s.handoffs), (1, 0));
}

#[tokio::test(start_paused = true)]
async fn a_connection_handed_to_a_waiter_that_left_moves_on() {
    let m = ScriptedManager::new();
    let pool = builder(&m).max_open(1).build().unwrap();
    let held = pool.get().await.unwrap();
    let mut gone = Box::pin(pool.get());
    assert!(
        std::future::poll_fn(|cx| std::task::Poll::Ready(gone.as_mut().poll(cx)))
            .await
            .is_pending()
    );
    let next = tokio::spawn({
        let p = pool.clone();
        async move { p.get().await.unwrap().id }
    });
    eventually("two queued", || pool.stats().waiting == 2).await;
    drop(held); // handed to `gone`, which never polls again
    drop(gone); // ... and it goes to `next`
    assert_eq!(next.await.unwrap(), 1);
    let s = settled(&pool, &m).await;
    assert_eq!(s.created, 1);
}

#[tokio::test(start_paused = true)]
async fn a_create_whose_caller_left_is_pooled() {
    let m = ScriptedManager::new();
    m.script_create([Step::Slow(SEC)]);
    let pool = builder(&m).build().unwrap();
    assert!(
        pool_core::testing::drop_after_polls(pool.get(), 1)
            .await
            .is_none()
    );
    tokio::time::sleep(2 * SEC).await;
    let s = settled(&pool, &m).await;
    assert_eq!((s.created, s.idle), (1, 1));
    assert_eq!(pool.get().await.unwrap().id, 1);
    assert_eq!(m.create_calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn late_binding_a_waiter_takes_a_release_before_its_own_create() {
    let m = ScriptedManager::new();
    m.script_create([Step::Ok, Step::Slow(10 * SEC)]);
    let pool = builder(&m).max_open(2).build().unwrap();
    let held = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let p = pool.clone();
        async move { p.get().await.unwrap().id }
    });
    eventually("create started", || m.create_calls() == 2).await;
    drop(held);
    assert_eq!(
        waiter.await.unwrap(),
        1,
        "the waiter waited for its own create"
    );
    tokio::time::sleep(11 * SEC).await;
    let s = settled(&pool, &m).await;
    assert_eq!((s.created, s.idle), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn cancel_grid_for_checkouts_through_create_reset_and_validate() {
    for go in [false, true] {
        cancel_grid(go).await;
    }
}

async fn cancel_grid(go: bool) {
    let m = ScriptedManager::new().with_validate_after(Duration::ZERO);
    let pool = go_or_not(&m, go).max_open(2).max_idle(2).build().unwrap();
    // Make every step of a checkout take a few polls.
    let done = pool_core::testing::cancel_at_every_point(
        || {
            m.script_create([Step::Slow(Duration::from_millis(3))]);
            m.script_validate([Step::Slow(Duration::from_millis(3))]);
            m.script_reset([Step::Slow(Duration::from_millis(3))]);
            let p = pool.clone();
            async move {
                let mut c = p.get().await.unwrap();
                c.dirty = true;
                drop(c);
                let c = p.get().await.unwrap();
                c.id
            }
        },
        200,
        |_| async {
            tokio::time::sleep(Duration::from_millis(10)).await;
            settled(&pool, &m).await;
            assert!(m.high_water() <= 2);
        },
    )
    .await;
    assert!(
        done.is_some(),
        "the checkout never completed within 200 polls"
    );
    settled(&pool, &m).await;
}

#[tokio::test(start_paused = true)]
async fn ten_thousand_acquires_dropped_at_random_points_leak_nothing() {
    for go in [false, true] {
        dropped_at_random_points(go).await;
    }
}

async fn dropped_at_random_points(go: bool) {
    let m = ScriptedManager::new();
    let pool = go_or_not(&m, go).max_open(4).max_idle(4).build().unwrap();
    let mut tasks = Vec::new();
    for i in 0..10_000u32 {
        if i % 7 == 0 {
            m.script_create([Step::Slow(Duration::from_micros(50))]);
        }
        let p = pool.clone();
        let polls = fastrand_like(i) % 6;
        tasks.push(tokio::spawn(async move {
            if let Some(Ok(c)) = pool_core::testing::drop_after_polls(p.get(), polls as usize).await
            {
                tokio::task::yield_now().await;
                if polls == 3 {
                    Pooled::discard(c);
                }
            }
        }));
        if i % 100 == 0 {
            tokio::task::yield_now().await;
        }
    }
    for t in tasks {
        t.await.unwrap();
    }
    tokio::time::sleep(SEC).await;
    let s = settled(&pool, &m).await;
    assert!(m.high_water() <= 4);
    assert_eq!(s.open, m.live());
}

fn fastrand_like(i: u32) -> u32 {
    i.wrapping_mul(2_654_435_761).rotate_left(13)
}

// ---- shutdown (law 8) and leaks (law 1) ----

#[tokio::test(start_paused = true)]
async fn close_fails_waiters_at_once_and_closes_the_rest_on_return() {
    let m = ScriptedManager::new();
    let pool = builder(&m).max_open(2).max_idle(2).build().unwrap();
    let a = pool.get().await.unwrap();
    drop(pool.get().await.unwrap());
    let waiter = tokio::spawn({
        let p = pool.clone();
        async move { p.get().await.err() }
    });
    let waiter2 = tokio::spawn({
        let p = pool.clone();
        async move { p.get().await.err() }
    });
    eventually("queued", || {
        pool.stats().waiting == 1 || m.create_calls() == 2
    })
    .await;
    pool.close();
    for w in [waiter, waiter2] {
        let err = w.await.unwrap().expect("a waiter was served after close");
        assert!(err.is_closed(), "{err:?}");
    }
    assert!(pool.get().await.unwrap_err().is_closed());
    eventually("idle closed", || pool.stats().idle == 0 && m.live() == 1).await;
    drop(a);
    let s = pool_core::testing::assert_drained(&pool, || m.live(), support::SETTLE).await;
    assert_eq!(s.shutdown_closed, 2);
}

#[tokio::test(start_paused = true)]
async fn close_and_wait_is_bounded_and_waits_for_returns() {
    let m = ScriptedManager::new();
    let pool = builder(&m).build().unwrap();
    let c = pool.get().await.unwrap();
    let err = pool.close_and_wait(SEC).await.unwrap_err();
    assert!(err.is_timeout());
    let p = pool.clone();
    let waiting = tokio::spawn(async move { p.close_and_wait(10 * SEC).await });
    tokio::time::sleep(SEC).await;
    drop(c);
    waiting.await.unwrap().unwrap();
    assert_eq!(m.live(), 0);
}

#[tokio::test(start_paused = true)]
async fn dropping_the_last_handle_closes_idle_and_stops_the_reaper() {
    let m = ScriptedManager::new();
    let tasks_before = tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks();
    let pool = builder(&m).max_idle(4).idle_grace(SEC).build().unwrap();
    burst(&pool, 4).await;
    let clone = pool.clone();
    drop(pool);
    assert_eq!(m.live(), 4, "idle closed while a handle remained");
    drop(clone);
    eventually("idle closed", || m.live() == 0).await;
    eventually("reaper and close tasks gone", || {
        tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks()
            == tasks_before
    })
    .await;
}

// ---- recovery without storms (law 10) ----

#[tokio::test(start_paused = true)]
async fn the_breaker_fails_fast_probes_with_backoff_and_recovers() {
    let m = ScriptedManager::new();
    let pool = builder(&m)
        .max_open(4)
        .breaker_threshold(3)
        .breaker_backoff(Duration::from_millis(100))
        .breaker_max_backoff(SEC)
        .build()
        .unwrap();
    m.fail_all_creates(true);
    for _ in 0..3 {
        assert!(pool.get().await.unwrap_err().is_create());
    }
    let err = pool.get().await.unwrap_err();
    assert!(err.is_unavailable(), "{err:?}");
    assert_eq!(
        err.downcast_ref::<ScriptError>(),
        Some(&ScriptError("backend down"))
    );
    let calls = m.create_calls();
    // Ten seconds down: probes back off 100 ms, 200, 400, 800, then every second.
    for _ in 0..100 {
        assert!(pool.get().await.unwrap_err().is_unavailable());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let probes = m.create_calls() - calls;
    assert!((8..=14).contains(&probes), "{probes} probes in 10 s");
    m.fail_all_creates(false);
    tokio::time::sleep(2 * SEC).await;
    assert!(
        pool.get().await.is_ok(),
        "the pool did not recover by itself"
    );
    settled(&pool, &m).await;
}

#[tokio::test(start_paused = true)]
async fn min_idle_refill_backs_off_while_creates_fail() {
    let m = ScriptedManager::new();
    m.fail_all_creates(true);
    let pool = builder(&m)
        .max_idle(2)
        .min_idle(2)
        .breaker_threshold(0)
        .breaker_backoff(Duration::from_millis(100))
        .breaker_max_backoff(SEC)
        .build()
        .unwrap();
    tokio::time::sleep(10 * SEC).await;
    let calls = m.create_calls();
    assert!((10..=30).contains(&calls), "{calls} refill creates in 10 s");
    m.fail_all_creates(false);
    tokio::time::sleep(2 * SEC).await;
    assert_eq!(pool.stats().idle, 2);
}

// ---- knobs ----

#[tokio::test(start_paused = true)]
async fn raising_max_open_serves_waiters() {
    let m = ScriptedManager::new();
    let pool = builder(&m).max_open(1).build().unwrap();
    let held = pool.get().await.unwrap();
    let waiter = tokio::spawn({
        let p = pool.clone();
        async move { p.get().await.unwrap().id }
    });
    eventually("queued", || pool.stats().waiting == 1).await;
    pool.set_max_open(2);
    assert_eq!(waiter.await.unwrap(), 2);
    drop(held);
    let s = settled(&pool, &m).await;
    assert_eq!((s.wait_count, s.max_open), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn lowering_max_open_drains_on_return() {
    let m = ScriptedManager::new();
    let pool = builder(&m).max_open(4).max_idle(4).build().unwrap();
    let conns = futures_util::future::join_all((0..4).map(|_| pool.get())).await;
    pool.set_max_open(2);
    drop(conns);
    let s = settled(&pool, &m).await;
    assert_eq!((s.open, s.max_idle_closed), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn detach_frees_the_slot() {
    let m = ScriptedManager::new();
    let pool = builder(&m).max_open(1).build().unwrap();
    let res = Pooled::detach(pool.get().await.unwrap());
    let c = pool.get().await.unwrap();
    assert_eq!((res.id, c.id), (1, 2));
    drop(c);
    let s = pool.stats();
    assert_eq!((s.detached, s.created, s.open), (1, 2, 1));
}

// ---- no process-global state ----

/// A pool keeps time by its own clock, whatever else runs in the process: a first runtime
/// whose paused clock ran an hour ahead must not make a second runtime's pool lose the order
/// of its idle connections (stamps counted from a process-wide origin did: every instant
/// of the second runtime fell before it and read as the same time).
#[test]
fn a_pool_keeps_time_by_its_own_clock_whatever_else_runs_in_the_process() {
    let paused = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap()
    };
    paused().block_on(async {
        let m = ScriptedManager::new();
        let pool = builder(&m).max_idle_time(SEC).build().unwrap();
        tokio::time::advance(3600 * SEC).await;
        drop(pool.get().await.unwrap());
    });
    paused().block_on(async {
        let m = ScriptedManager::new();
        let pool = builder(&m)
            .max_idle(4)
            .max_idle_time(15 * SEC)
            .build()
            .unwrap();
        let (a, b, c) = (
            pool.get().await.unwrap(),
            pool.get().await.unwrap(),
            pool.get().await.unwrap(),
        );
        drop(a);
        tokio::time::advance(10 * SEC).await;
        drop(b);
        tokio::time::advance(10 * SEC).await;
        drop(c);
        tokio::time::advance(6 * SEC).await;
        eventually("the two idle longer than 15 s are closed", || {
            pool.stats().max_idle_time_closed == 2
        })
        .await;
        assert_eq!(pool.stats().idle, 1, "the one idle 6 s stays");
    });
}

/// A waker the pool stores for a queued caller may run any code when dropped, the pool's own
/// included: the pool drops it after releasing its lock (tokio #5475 deadlocked on this).
/// Checked for a caller whose future is dropped while queued, and for one that times out (its
/// waker is still held by the poll then, so that path cannot deadlock, but it is run too); a
/// deadlock fails the test through the channel's deadline instead of hanging it.
#[test]
fn a_waker_the_pool_drops_may_use_the_pool() {
    use std::sync::atomic::AtomicBool;
    use std::task::{Context, Poll, Wake, Waker};

    /// Forwards wake-ups to the task, and asks the pool for its stats when dropped.
    struct Reentrant {
        pool: pool_core::Pool<ScriptedManager>,
        task: Waker,
        dropped: Arc<AtomicBool>,
    }
    impl Wake for Reentrant {
        fn wake(self: Arc<Self>) {
            self.task.wake_by_ref();
        }
    }
    impl Drop for Reentrant {
        fn drop(&mut self) {
            let _ = self.pool.stats();
            self.dropped.store(true, Ordering::SeqCst);
        }
    }

    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let m = ScriptedManager::new();
            let pool = builder(&m)
                .max_open(1)
                .acquire_timeout(SEC)
                .build()
                .unwrap();
            let held = pool.get().await.unwrap();
            for times_out in [false, true] {
                let dropped = Arc::new(AtomicBool::new(false));
                let mut get = Box::pin(pool.get());
                // Between polls the pool holds the only strong reference to the reentrant
                // waker: whichever of its paths drops it, that drop runs its code.
                let mut weak: Option<std::sync::Weak<Reentrant>> = None;
                let r = std::future::poll_fn(|cx| {
                    let reentrant = weak.as_ref().and_then(|w| w.upgrade()).unwrap_or_else(|| {
                        let r = Arc::new(Reentrant {
                            pool: pool.clone(),
                            task: cx.waker().clone(),
                            dropped: dropped.clone(),
                        });
                        weak = Some(Arc::downgrade(&r));
                        r
                    });
                    let waker = Waker::from(reentrant);
                    let polled = get.as_mut().poll(&mut Context::from_waker(&waker));
                    drop(waker);
                    match polled {
                        Poll::Pending if !times_out => Poll::Ready(None),
                        Poll::Pending => Poll::Pending,
                        Poll::Ready(r) => Poll::Ready(Some(r.map(drop))),
                    }
                })
                .await;
                drop(get); // a caller that leaves: the pool drops the stored waker
                if times_out {
                    assert!(r.unwrap().unwrap_err().is_timeout());
                }
                assert!(
                    dropped.load(Ordering::SeqCst),
                    "the stored waker was dropped"
                );
            }
            drop(held);
        });
        done.send(()).unwrap();
    });
    finished
        .recv_timeout(Duration::from_secs(30))
        .expect("a waker dropped under the pool's lock deadlocked the pool");
}

/// `wait_duration` is the time callers waited for capacity; for checkouts with a deadline
/// (whose start the deadline already read), by the runtime's clock (paused time included), to
/// the millisecond, and a short real wait is not read as zero.
#[tokio::test(start_paused = true)]
async fn wait_duration_is_the_time_waited_by_the_runtimes_clock() {
    let m = ScriptedManager::new();
    let pool = builder(&m)
        .max_open(1)
        .acquire_timeout(10 * SEC)
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { drop(pool.get().await.unwrap()) })
        })
        .collect();
    eventually("three wait", || pool.stats().waiting == 3).await;
    tokio::time::advance(250 * MS).await;
    drop(held);
    for w in waiters {
        w.await.unwrap();
    }
    let s = pool.stats();
    assert_eq!(s.wait_count, 3);
    // Each waited 250 ms, give or take the yields that let them queue and run.
    assert!(
        s.wait_duration >= 750 * MS && s.wait_duration < 760 * MS,
        "{:?}",
        s.wait_duration
    );
}

#[test]
fn a_short_real_wait_is_not_read_as_zero() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let m = ScriptedManager::new();
        let pool = builder(&m)
            .max_open(1)
            .acquire_timeout(10 * SEC)
            .build()
            .unwrap();
        for _ in 0..16 {
            let held = pool.get().await.unwrap();
            let waiter = {
                let pool = pool.clone();
                tokio::spawn(async move { drop(pool.get().await.unwrap()) })
            };
            while pool.stats().waiting == 0 {
                tokio::task::yield_now().await;
            }
            drop(held);
            waiter.await.unwrap();
        }
        let s = pool.stats();
        assert_eq!(s.wait_count, 16);
        assert!(s.wait_duration > Duration::ZERO, "{s:?}");
    });
}

// ---- per-call deadline, try_get ----

#[tokio::test(start_paused = true)]
async fn get_timeout_is_this_calls_deadline_with_the_pools_own_error_and_cause() {
    let m = ScriptedManager::new();
    let pool = builder(&m).max_open(2).build().unwrap();
    let held = pool.get().await.unwrap();
    let t = tokio::time::Instant::now();
    m.script_create([Step::Fail("refused")]);
    let err = pool.get_timeout(200 * MS).await.unwrap_err();
    assert_eq!(
        t.elapsed(),
        200 * MS,
        "its own deadline, with none on the pool"
    );
    assert!(err.is_timeout(), "{err:?}");
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert!(cause.is_some_and(|c| c.contains("refused")), "{err:?}");
    // Served before its deadline, it is an ordinary checkout.
    let held2 = pool.get().await.unwrap();
    let quick = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get_timeout(SEC).await.map(|c| Pooled::id(&c)) })
    };
    eventually("queued", || pool.stats().waiting == 1).await;
    let id = Pooled::id(&held);
    drop(held);
    assert_eq!(quick.await.unwrap().unwrap(), id);
    drop(held2);
    // A deadline past what an Instant holds is no deadline, not a panic.
    drop(pool.get_timeout(Duration::MAX).await.unwrap());
    settled(&pool, &m).await;
}

#[tokio::test(start_paused = true)]
async fn try_get_takes_an_idle_connection_now_or_nothing_and_never_overtakes_a_waiter() {
    let m = ScriptedManager::new();
    let pool = builder(&m).max_open(1).build().unwrap();
    assert!(pool.try_get().is_none(), "nothing idle: no create");
    assert_eq!(m.create_calls(), 0);
    let c = pool.get().await.unwrap();
    assert!(pool.try_get().is_none(), "in use");
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { pool.get().await.map(drop) })
    };
    eventually("queued", || pool.stats().waiting == 1).await;
    drop(c);
    waiter.await.unwrap().unwrap();
    let c = pool.try_get().expect("idle and ready");
    assert_eq!(Pooled::id(&c), 1);
    // A connection that needs a reset goes through the return path instead.
    let mut c = c;
    c.dirty = true;
    drop(c);
    eventually("reset on return", || pool.stats().idle == 1).await;
    let c = pool.try_get().expect("clean again");
    assert!(!c.dirty);
    drop(c);
    // One found broken is closed, not counted as served from idle.
    let hits = pool.stats().hits;
    m.script_check([Step::Fail("dead"), Step::Fail("dead")]);
    assert!(pool.try_get().is_none());
    let s = pool.stats();
    assert_eq!((s.hits, s.idle), (hits, 0), "{s:?}");
    // Due for validation: left for a checkout that can validate it.
    let m = ScriptedManager::new().with_validate_after(SEC);
    let pool = builder(&m).build().unwrap();
    drop(pool.get().await.unwrap());
    tokio::time::advance(2 * SEC).await;
    assert!(pool.try_get().is_none());
    assert_eq!(pool.stats().idle, 1, "left where it was");
    drop(pool.get().await.unwrap());
    assert_eq!(m.validate_calls(), 1);
    settled(&pool, &m).await;
}

// ---- runtime knobs apply to existing connections at once ----

#[tokio::test(start_paused = true)]
async fn set_max_idle_time_counts_how_long_connections_were_already_idle() {
    let m = ScriptedManager::new();
    // Default knobs: the release fast path stamps nothing; the reaper's pass does.
    let pool = builder(&m).max_idle(4).build().unwrap();
    burst(&pool, 4).await;
    tokio::time::sleep(20 * SEC).await;
    // One of them is used again: idle for 2 s when the knob changes, the others for 22 s.
    drop(pool.get().await.unwrap());
    tokio::time::sleep(2 * SEC).await;
    let t0 = tokio::time::Instant::now();
    pool.set_max_idle_time(Some(5 * SEC)).unwrap();
    eventually("the three long idle closed", || {
        pool.stats().max_idle_time_closed == 3
    })
    .await;
    assert!(t0.elapsed() < SEC, "closed at once, not 5 s after the call");
    assert_eq!(pool.stats().idle, 1, "the one idle for 2 s stays");
    tokio::time::sleep(6 * SEC).await;
    let s = settled(&pool, &m).await;
    assert_eq!((s.max_idle_time_closed, s.idle), (4, 0), "{s:?}");
}
