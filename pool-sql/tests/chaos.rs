//! Chaos through the fault-injecting proxy between `Db` and a real PostgreSQL, with many tasks
//! running statements under random cancellation:
//! - the network flaps (new connections refused, open ones reset);
//! - the network black-holes (packets vanish: nothing fails, everything hangs);
//! - latency spikes past `acquire_timeout` (sessions held longer than callers will wait).
//!
//! Checked each time: `max_open` is never exceeded (the pool's high-water mark), no call
//! outlives its bound, connection attempts while down stay bounded, the pool serves again soon
//! after recovery, and the server's sessions and the proxy's connections go back to zero.
//!
//! Bounded in CI (2 s of flapping); `SOAK=full` flaps for 30 s (`CHAOS_SECS=n` any number).

mod support;

use std::ops::Range;
use std::time::Duration;

use pool_core::testing::load::{Load, chaos_secs};
use pool_core::testing::proxy::Faults;
use pool_sql::Db;
use support::{CAP, Rig};

/// `tasks` callers running `SELECT 1` in a loop, each call under a random patience; a call
/// that fails must fail by a timeout (`under` names the fault for the message).
fn select_ones(db: &Db, tasks: u64, patience_ms: Range<u64>, under: &'static str) -> Load {
    let db = db.clone();
    Load::start(tasks, patience_ms, None, move |_| {
        let db = db.clone();
        async move {
            db.execute("SELECT 1", &[])
                .await
                .map(drop)
                .inspect_err(|e| {
                    assert!(e.is_timeout(), "only timeouts {under}: {e:?}");
                })
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_network_under_64_tasks_keeps_every_law() {
    let rig = Rig::start("chaos").await;
    let db = rig
        .db()
        .acquire_timeout(Duration::from_millis(500))
        .create_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let load = Load::start(64, 5..800, None, {
        let db = db.clone();
        move |rng| {
            let db = db.clone();
            let sql = if rng.bool() {
                "SELECT 1"
            } else {
                "SELECT pg_sleep(0.02)"
            };
            async move { db.execute(sql, &[]).await.map(drop) }
        }
    });

    // Flap: 100 ms down (new connections refused, open ones reset), 300 ms up.
    let flaps = chaos_secs() * 1000 / 400;
    let attempts_while_down = rig
        .proxy
        .flap(
            flaps,
            Duration::from_millis(100),
            Duration::from_millis(300),
            || {
                let s = db.stats();
                s.created + s.create_errors
            },
        )
        .await
        .during_outages;
    let recovered = Rig::recovery(&db).await;
    let tally = load.stop().await;
    eprintln!(
        "chaos: {flaps} flaps, {tally:?}; connects while down per flap {attempts_while_down:?}; \
         peak open {}; recovered in {recovered:?}",
        db.stats().peak_open
    );
    assert!(tally.ok > 0 && tally.failed > 0, "{tally:?}");
    let worst = attempts_while_down.iter().copied().max().unwrap_or(0);
    assert!(
        worst <= 4 * CAP as u64,
        "{worst} connects in one 100 ms outage: {attempts_while_down:?}"
    );
    // acquire_timeout (500 ms) plus the statement bound every call; margin for a loaded machine.
    rig.settle(db, &tally, Duration::from_millis(1200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_network_times_statements_out_and_the_pool_recovers_after() {
    let rig = Rig::start("black_hole").await;
    let db = rig
        .db()
        .acquire_timeout(Duration::from_millis(300))
        .create_timeout(Duration::from_millis(300))
        .query_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let load = select_ones(&db, 32, 10_000..10_001, "in a black hole");
    load.wait_for(|t| t.ok, 200).await;
    rig.proxy.set(Faults::black_hole());
    load.wait_for(|t| t.failed, 64).await;
    let during = load.tally();
    rig.proxy.set(Faults::none());
    let recovered = Rig::recovery(&db).await;
    load.wait_for(|t| t.ok, during.ok + 200).await;
    let tally = load.stop().await;
    let s = db.stats();
    eprintln!(
        "black hole: {tally:?}; peak open {}, broken_closed {}; recovered in {recovered:?}",
        s.peak_open, s.broken_closed
    );
    // Sessions caught in the black hole were given up by query_timeout, not kept: the pool
    // replaced them once the network came back.
    assert!(s.broken_closed > 0, "{s:?}");
    // acquire_timeout (300 ms) + query_timeout (200 ms), not retried; margin for load.
    rig.settle(db, &tally, Duration::from_millis(1200)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_past_acquire_timeout_times_waiters_out_and_passes() {
    let rig = Rig::start("latency").await;
    let db = rig
        .db()
        .acquire_timeout(Duration::from_millis(100))
        // A session replaced under the latency (one whose statement was cancelled and whose
        // reset took too long) needs a few slow round trips to start: 3 s, not the default of
        // acquire_timeout, or the breaker would take the slow connects for an outage.
        .create_timeout(Duration::from_secs(3))
        .query_timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let load = select_ones(&db, 64, 5..2_000, "under latency");
    load.wait_for(|t| t.ok, 500).await;
    // 150 ms each way: a statement holds its session 300 ms, three times what a caller waits
    // for one; 64 callers on 8 sessions mostly time out waiting.
    rig.proxy.set(Faults::latency(Duration::from_millis(150)));
    let before = load.tally();
    load.wait_for(|t| t.failed, before.failed + 200).await;
    let during = load.tally();
    rig.proxy.set(Faults::none());
    let recovered = Rig::recovery(&db).await;
    load.wait_for(|t| t.ok, during.ok + 500).await;
    let tally = load.stop().await;
    let s = db.stats();
    eprintln!(
        "latency: {tally:?}; ok during the spike {}; acquire timeouts {}; peak open {}; \
         recovered in {recovered:?}",
        during.ok - before.ok,
        s.timeouts,
        s.peak_open
    );
    assert!(
        during.ok > before.ok,
        "the slow sessions still served: {during:?}"
    );
    assert!(
        s.timeouts >= 200,
        "waiters gave up at acquire_timeout: {s:?}"
    );
    // Waiting is bounded by acquire_timeout (100 ms); a session once held runs for about
    // 300 ms and never past query_timeout (2 s).
    rig.settle(db, &tally, Duration::from_millis(1000)).await;
}
