//! Model check of the shell with shuttle: random and PCT schedules of acquire, release,
//! discard, cancel and close over the real `Pool` (the state machine, waiter futures,
//! tickets and spawned creates and closes). A lost wake-up shows up as a deadlock, which
//! shuttle reports; the cap and the books are asserted at the end of every schedule.
//!
//! Run: `RUSTFLAGS="--cfg shuttle" cargo test -p pool-core --test shuttle`
//! (a separate `CARGO_TARGET_DIR` keeps the normal build cached).
#![cfg(shuttle)]

use std::future::Future;
use std::task::Poll;

use pool_core::testing::{HasStats, KeyedScripted, ScriptedManager};
use pool_core::{KeyedPool, KeyedPooled, Pool, Pooled};
use shuttle::future::{block_on, spawn, yield_now};

/// Yields until the pool is at rest (spawned creates and closes have run).
async fn settle(pool: &impl HasStats, m: &ScriptedManager) {
    for _ in 0..10_000 {
        let s = pool.stats();
        if s.in_use == 0 && s.waiting == 0 && m.live() == s.open {
            assert_eq!(s.created - s.closed() - s.detached, s.open as u64, "{s:?}");
            return;
        }
        yield_now().await;
    }
    panic!("did not settle: live {} stats {:?}", m.live(), pool.stats());
}

/// Yields until a closed pool holds nothing: no task of the pool outlives the schedule.
async fn drain(pool: &impl HasStats, m: &ScriptedManager) {
    for _ in 0..10_000 {
        if pool.stats().open == 0 && m.live() == 0 {
            let s = pool.stats();
            assert_eq!(
                (s.waiting, s.created - s.closed() - s.detached),
                (0, 0),
                "{s:?}"
            );
            return;
        }
        yield_now().await;
    }
    panic!("did not drain: live {} stats {:?}", m.live(), pool.stats());
}

async fn poll_once_then_drop<F: Future>(fut: F) {
    let mut fut = std::pin::pin!(fut);
    let _ = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await;
}

fn acquire_release_cancel() {
    acquire_release_cancel_with(false);
}

/// The same in Go mode: creates belong to their callers, outside the hand-off queue.
fn go_acquire_release_cancel() {
    acquire_release_cancel_with(true);
}

fn acquire_release_cancel_with(go: bool) {
    block_on(async {
        let m = ScriptedManager::new();
        let mut builder = Pool::builder(m.clone());
        if go {
            builder = builder.go_mode();
        }
        let pool = builder.max_open(2).max_idle(1).build().unwrap();
        let mut tasks = Vec::new();
        for i in 0..4 {
            let pool = pool.clone();
            tasks.push(spawn(async move {
                for round in 0..2 {
                    match (i, round) {
                        (0, 1) => poll_once_then_drop(pool.get()).await,
                        (1, 0) => Pooled::discard(pool.get().await.unwrap()),
                        _ => {
                            let c = pool.get().await.unwrap();
                            yield_now().await;
                            drop(c);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        settle(&pool, &m).await;
        assert!(m.high_water() <= 2, "max_open exceeded: {}", m.high_water());
        pool.close();
        drain(&pool, &m).await;
    });
}

fn close_races_checkouts() {
    block_on(async {
        let m = ScriptedManager::new();
        let pool = Pool::builder(m.clone()).max_open(1).build().unwrap();
        let mut tasks = Vec::new();
        for _ in 0..3 {
            let pool = pool.clone();
            tasks.push(spawn(async move {
                match pool.get().await {
                    Ok(c) => {
                        yield_now().await;
                        drop(c);
                    }
                    Err(e) => assert!(e.is_closed(), "{e:?}"),
                }
            }));
        }
        let closer = {
            let pool = pool.clone();
            spawn(async move { pool.close() })
        };
        closer.await.unwrap();
        for t in tasks {
            t.await.unwrap();
        }
        drain(&pool, &m).await;
        assert!(m.high_water() <= 1);
    });
}

/// Two keys, one connection each at most, one idle across both (evictions cross keys).
fn keyed_acquire_release_cancel() {
    block_on(async {
        let m = KeyedScripted::<u8>::new();
        let pool = KeyedPool::builder(m.clone())
            .max_open_per_key(1)
            .max_idle(1)
            .idle_grace(std::time::Duration::ZERO)
            .build()
            .unwrap();
        let mut tasks = Vec::new();
        for i in 0..4u8 {
            let pool = pool.clone();
            tasks.push(spawn(async move {
                let key = i % 2;
                for round in 0..2 {
                    match (i, round) {
                        (0, 1) => poll_once_then_drop(pool.get(&key)).await,
                        (1, 0) => KeyedPooled::discard(pool.get(&key).await.unwrap()),
                        _ => {
                            let c = pool.get(&key).await.unwrap();
                            assert_eq!(c.key, key, "served another key's connection");
                            yield_now().await;
                            drop(c);
                        }
                    }
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        settle(&pool, &m.inner).await;
        for key in 0..2 {
            let c = m.key_counts(&key);
            assert!(c.high_water <= 1, "key {key} over its cap: {c:?}");
        }
        assert!(pool.stats().idle <= 1, "over the global idle cap");
        pool.close();
        drain(&pool, &m.inner).await;
        assert_eq!(pool.key_count(), 0);
    });
}

#[test]
fn shuttle_random_keyed_acquire_release_cancel() {
    shuttle::check_random(keyed_acquire_release_cancel, 3_000);
}

#[test]
fn shuttle_random_acquire_release_cancel() {
    shuttle::check_random(acquire_release_cancel, 3_000);
}

#[test]
fn shuttle_pct_acquire_release_cancel() {
    shuttle::check_pct(acquire_release_cancel, 3_000, 3);
}

#[test]
fn shuttle_random_go_acquire_release_cancel() {
    shuttle::check_random(go_acquire_release_cancel, 3_000);
}

#[test]
fn shuttle_random_close_races_checkouts() {
    shuttle::check_random(close_races_checkouts, 3_000);
}
