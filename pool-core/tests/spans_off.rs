//! With DEBUG filtered out for `pool_core`, a checkout makes no span (neither `checkout` nor
//! `create`) while the pool's INFO and WARN events still reach the subscriber. Its own test
//! binary: the capture here is the process's global subscriber, limited to INFO.

use std::sync::OnceLock;
use std::time::Duration;

use pool_core::testing::ScriptedManager;
use pool_core::testing::spans::Capture;
use pool_core::{Pool, Pooled};

fn capture() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::with_max_level(tracing::Level::INFO);
            tracing::subscriber::set_global_default(capture.clone())
                .expect("no other global subscriber in this binary");
            capture
        })
        .clone()
}

#[tokio::test(start_paused = true)]
async fn with_debug_off_a_checkout_makes_no_span_and_warnings_still_come() {
    let capture = capture();
    let m = ScriptedManager::new();
    let pool = Pool::builder(m.clone())
        .max_open(1)
        .leak_threshold(Duration::from_secs(1))
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move { Pooled::id(&pool.get().await.unwrap()) }
    });
    tokio::time::sleep(Duration::from_secs(2)).await;
    drop(held);
    waiting.await.unwrap();
    assert!(capture.spans().is_empty(), "{:#?}", capture.spans());
    // The leak report (WARN) of the connection held past 1 s came.
    let warnings = capture
        .events()
        .into_iter()
        .filter(|e| e.level == tracing::Level::WARN)
        .count();
    assert_eq!(warnings, 1);
}
