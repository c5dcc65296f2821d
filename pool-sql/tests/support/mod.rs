//! Helpers the pool-sql integration tests share: an admin connection to the test server,
//! server-side session counts, and polling with a deadline.
#![allow(dead_code)]

use std::future::Future;
use std::time::Duration;

use pool_sql::Db;
use pool_sql::testing::TestPg;

/// A separate small pool for looking at (and killing) the sessions under test.
pub fn admin(pg: &TestPg) -> Db {
    Db::builder(&pg.url())
        .application_name("pool-sql-admin")
        .max_open(2)
        .build()
        .expect("admin pool")
}

/// A pool under test whose sessions the admin can count by `app`.
pub fn db(pg: &TestPg, app: &str) -> pool_sql::DbBuilder {
    Db::builder(&pg.url()).application_name(app)
}

/// Sessions the server has for `app` right now.
pub async fn sessions(admin: &Db, app: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .expect("count sessions")
        .get(0)
}

/// Polls `check` until it returns true, failing the test after `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if check().await {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until the server has exactly `n` sessions for `app`.
pub async fn wait_sessions(admin: &Db, app: &str, n: i64) {
    eventually(
        Duration::from_secs(10),
        &format!("{app} has {n} sessions"),
        || async { sessions(admin, app).await == n },
    )
    .await;
}

/// Terminates every session of `app` and waits until they are gone.
pub async fn kill_sessions(admin: &Db, app: &str) {
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .await
        .expect("terminate");
    wait_sessions(admin, app, 0).await;
}

/// The first column of every row of `sql`, as `i32`.
pub async fn ints(db: &Db, sql: &str) -> Vec<i32> {
    db.query(sql, &[])
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect()
}
