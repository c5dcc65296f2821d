//! Helpers shared by pool-core's integration tests.
#![allow(dead_code)]

use std::time::Duration;

use pool_core::testing::{ScriptedManager, assert_settled};
use pool_core::{Builder, Pool, Stats};

pub const SETTLE: Duration = Duration::from_secs(5);

pub fn builder(m: &ScriptedManager) -> Builder<ScriptedManager> {
    Pool::builder(m.clone())
}

/// Ends a test: the pool is at rest and its books balance.
pub async fn settled(pool: &Pool<ScriptedManager>, m: &ScriptedManager) -> Stats {
    let m = m.clone();
    assert_settled(pool, move || m.live(), SETTLE).await
}

/// Polls `cond` (yielding to other tasks) until it holds, or panics after `what` times out.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + SETTLE;
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_micros(100)).await;
    }
}
