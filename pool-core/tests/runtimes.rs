//! A pool outlives the runtime it was built in: a pool (or an HTTP client) in a `static`,
//! shared by `#[tokio::test]`s that each run a runtime of their own. Creates and closes run
//! on the runtime that uses the pool, and a reaper whose runtime shut down is started again
//! there, so idle connections still time out.

use std::time::Duration;

use pool_core::Pool;
use pool_core::testing::ScriptedManager;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .unwrap()
}

#[test]
fn a_pool_whose_first_runtime_shut_down_creates_and_reaps_in_the_next() {
    let first = runtime();
    let pool = first.block_on(async {
        let pool = Pool::builder(ScriptedManager::new())
            .max_open(4)
            .max_idle_time(Duration::from_secs(5))
            .build()
            .unwrap();
        drop(pool.get().await.unwrap());
        pool
    });
    drop(first); // its reaper and its tasks are dropped with it

    let second = runtime();
    second.block_on(async {
        // Two at once: the second is a create, which must run here.
        let a = tokio::time::timeout(Duration::from_secs(10), pool.get())
            .await
            .expect("a create spawned on the dead runtime would never finish")
            .unwrap();
        let b = tokio::time::timeout(Duration::from_secs(10), pool.get())
            .await
            .expect("a create spawned on the dead runtime would never finish")
            .unwrap();
        drop((a, b));
        assert_eq!(pool.stats().idle, 2);
        // Both time out idle: a reaper runs again, on this runtime.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while pool.stats().idle > 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "no reaper closed the idle connections: {:?}",
                pool.stats()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(pool.stats().max_idle_time_closed, 2);
    });
}
