//! Chaos through the fault-injecting proxy between `Db` and a real PostgreSQL: the network
//! flaps (new connections refused, open ones reset) while 64 tasks run statements with random
//! timeouts and random cancellation. Checked while it runs and at the end: `max_open` is never
//! exceeded, no call outlives its bound, connection attempts while down stay bounded, the pool
//! serves again soon after recovery, and the server's sessions go back to baseline.
//!
//! Bounded by default (2 s of flapping); `CHAOS_SECS=60` runs it longer.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use pool_core::testing::proxy::FaultProxy;
use pool_sql::Db;
use pool_sql::testing::TestPg;

const CAP: usize = 8;
const APP: &str = "chaos";

fn chaos_secs() -> u64 {
    std::env::var("CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_network_under_64_tasks_keeps_every_law() {
    let pg = TestPg::start().expect("postgres");
    let port = pg.port().expect("a local server");
    let admin = support::admin(&pg);
    let proxy = FaultProxy::start(([127, 0, 0, 1], port).into())
        .await
        .unwrap();
    let url = pg
        .url()
        .replace(&format!(":{port}/"), &format!(":{}/", proxy.addr().port()));
    let db = Db::builder(&url)
        .application_name(APP)
        .max_open(CAP)
        .max_idle(CAP)
        .acquire_timeout(Duration::from_millis(500))
        .create_timeout(Duration::from_millis(300))
        .build()
        .unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, cancelled) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let (db, stop) = (db.clone(), stop.clone());
        let (ok, failed, cancelled) = (ok.clone(), failed.clone(), cancelled.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(t);
            while !stop.load(Ordering::Relaxed) {
                let sql = if rng.bool() {
                    "SELECT 1"
                } else {
                    "SELECT pg_sleep(0.02)"
                };
                let patience = Duration::from_millis(rng.u64(5..800));
                let started = tokio::time::Instant::now();
                match tokio::time::timeout(patience, db.execute(sql, &[])).await {
                    Ok(Ok(_)) => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(Err(e)) => {
                        // acquire_timeout (500 ms) and the statement bound every call; the
                        // margin is for a loaded machine.
                        assert!(
                            started.elapsed() < Duration::from_millis(500 + 700),
                            "a call took {:?}: {e}",
                            started.elapsed()
                        );
                        tokio::time::sleep(Duration::from_millis(rng.u64(1..20))).await;
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(_) => cancelled.fetch_add(1, Ordering::Relaxed),
                };
                tokio::task::yield_now().await;
            }
        }));
    }

    // Flap: 100 ms down (new connections refused, open ones reset), 300 ms up.
    let flaps = chaos_secs() * 1000 / 400;
    let flapped = proxy
        .flap(
            flaps,
            Duration::from_millis(100),
            Duration::from_millis(300),
            || db.stats().open,
            || {
                let s = db.stats();
                s.created + s.create_errors
            },
        )
        .await;
    let (peak_open, attempts_while_down) = (flapped.peak, flapped.during_outages);

    // Recovery without manual action, within a bounded time.
    let recovered = tokio::time::Instant::now();
    while db.execute("SELECT 1", &[]).await.is_err() {
        assert!(
            recovered.elapsed() < Duration::from_secs(10),
            "no recovery within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let (ok, failed, cancelled) = (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        cancelled.load(Ordering::Relaxed),
    );
    eprintln!(
        "chaos: {flaps} flaps, {ok} ok, {failed} failed, {cancelled} cancelled; connects while \
         down per flap {attempts_while_down:?}; peak open {peak_open}; recovered in {:?}",
        recovered.elapsed()
    );
    assert!(
        ok > 0 && failed > 0,
        "both outcomes happened: {ok} ok, {failed} failed"
    );
    assert!(
        peak_open <= CAP,
        "open reached {peak_open} with max_open {CAP}"
    );
    let worst = attempts_while_down.iter().copied().max().unwrap_or(0);
    assert!(
        worst <= 4 * CAP as u64,
        "{worst} connects in one 100 ms outage: {attempts_while_down:?}"
    );
    let stats = db.stats();
    assert_eq!(stats.in_use, 0, "{stats:?}");

    // Nothing leaked: after close, the server has no session of this pool, nor the proxy a
    // connection.
    db.close_and_wait(Duration::from_secs(10)).await.unwrap();
    support::wait_sessions(&admin, APP, 0).await;
    support::eventually(
        Duration::from_secs(10),
        "proxy connections closed",
        || async { proxy.live() == 0 },
    )
    .await;
}
