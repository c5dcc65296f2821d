//! Session hygiene: abandoned statements, transactions left open or failed, statement
//! timeouts.

mod support;

use std::time::Duration;

use pool_sql::testing::TestPg;
use support::{admin, db, eventually, ints};

async fn active_sleeps(admin: &pool_sql::Db, app: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
             AND state = 'active' AND query LIKE '%pg_sleep%'",
            &[&app],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_dropped_mid_pg_sleep_is_cancelled_and_the_next_borrower_does_not_wait_for_it() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    let db = db(&pg, "dropped").max_open(1).build().unwrap();
    let abandoned = {
        let db = db.clone();
        tokio::spawn(async move { db.query("SELECT pg_sleep(60)", &[]).await })
    };
    eventually(Duration::from_secs(10), "the sleep runs", || async {
        active_sleeps(&admin, "dropped").await == 1
    })
    .await;
    abandoned.abort();
    assert!(abandoned.await.unwrap_err().is_cancelled());

    // One session only: the next query must get the abandoned one, cleaned. Without the
    // cancel it would wait the full 60 s; the bound below is a hang guard, not a speed test.
    let row = tokio::time::timeout(Duration::from_secs(20), db.query_one("SELECT 7", &[]))
        .await
        .expect("the next borrower does not wait for the abandoned sleep")
        .expect("query");
    assert_eq!(row.get::<_, i32>(0), 7);
    assert_eq!(
        active_sleeps(&admin, "dropped").await,
        0,
        "cancelled on the server"
    );
    let s = db.stats();
    assert_eq!(
        s.created, 1,
        "the session was cancelled and reused, not replaced: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_open_is_rolled_back_before_the_session_is_reused() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "tx-open").max_open(1).build().unwrap();
    db.batch_execute("CREATE TABLE t (x int)").await.unwrap();

    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    drop(tx); // neither commit nor rollback

    // Same (only) session: not in a transaction any more, and the insert is gone.
    let n: i64 = db
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);
    // And what it writes now commits: another session sees it.
    db.execute("INSERT INTO t VALUES (2)", &[]).await.unwrap();
    let admin = admin(&pg);
    assert_eq!(
        ints(&admin, "SELECT x FROM t").await,
        [2],
        "the session was out of the old transaction"
    );
    assert_eq!(db.stats().created, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_transaction_does_not_commit_and_says_so() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "tx-failed").max_open(1).build().unwrap();
    db.batch_execute("CREATE TABLE t (x int PRIMARY KEY)")
        .await
        .unwrap();

    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    let dup = tx
        .execute("INSERT INTO t VALUES (1)", &[])
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Some(&pool_sql::SqlState::UNIQUE_VIOLATION));
    let err = tx.commit().await.unwrap_err();
    assert!(err.is_tx_aborted(), "{err:?}");
    let n: i64 = db
        .query_one("SELECT count(*) FROM t", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(n, 0);

    // The closure form commits on Ok and rolls back on Err.
    let inserted: u64 = db
        .transaction(async |tx| tx.execute("INSERT INTO t VALUES (2)", &[]).await)
        .await
        .unwrap();
    assert_eq!(inserted, 1);
    let failed: Result<(), pool_sql::Error> = db
        .transaction(async |tx| {
            tx.execute("INSERT INTO t VALUES (3)", &[]).await?;
            tx.execute("INSERT INTO t VALUES (2)", &[]).await.map(drop)
        })
        .await;
    assert!(failed.is_err());
    assert_eq!(ints(&db, "SELECT x FROM t ORDER BY x").await, [2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_timeout_cancels_the_statement_and_the_session_stays_usable() {
    let pg = TestPg::start().expect("postgres");
    let url = format!("{}?options=-c%20statement_timeout%3D200", pg.url());
    let db = pool_sql::Db::builder(&url).max_open(1).build().unwrap();
    let err = db.query("SELECT pg_sleep(10)", &[]).await.unwrap_err();
    assert!(err.is_query_canceled(), "{err:?}");
    assert!(!err.is_closed() && !err.is_timeout(), "{err:?}");
    assert_eq!(
        db.query_one("SELECT 1", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        1
    );
    let s = db.stats();
    assert_eq!((s.created, s.broken_closed), (1, 0), "same session: {s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_past_query_timeout_fails_in_time_closes_its_session_and_stops_on_the_server() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    let db = db(&pg, "overrun")
        .max_open(2)
        .query_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = db.query("SELECT pg_sleep(30)", &[]).await.unwrap_err();
    assert!(err.is_timeout() && !err.is_closed(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the client's deadline, not the server's 30 s: {:?}",
        started.elapsed()
    );
    // The session leaves the pool as broken, and the server stopped the statement (the
    // cancel request) and ended the session (the socket closed).
    eventually(
        Duration::from_secs(10),
        "session closed as broken",
        || async {
            let s = db.stats();
            (s.open, s.broken_closed) == (0, 1)
        },
    )
    .await;
    eventually(Duration::from_secs(10), "server session ended", || async {
        support::sessions(&admin, "overrun").await == 0
    })
    .await;
    // Fast statements are untouched by the limit.
    assert_eq!(ints(&db, "SELECT 5").await, [5]);

    // On a pinned session, the overrun ends the session: what follows fails as closed, at
    // once, instead of queueing behind the abandoned statement.
    let mut conn = db.conn().await.unwrap();
    let err = conn.execute("SELECT pg_sleep(30)", &[]).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let err = tokio::time::timeout(Duration::from_secs(5), conn.execute("SELECT 1", &[]))
        .await
        .expect("fails at once")
        .unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    drop(conn);
    assert_eq!(ints(&db, "SELECT 6").await, [6]);
    eventually(Duration::from_secs(10), "both overruns closed", || async {
        let s = db.stats();
        (s.broken_closed, s.in_use) == (2, 0)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cancel_for_an_abandoned_statement_never_hits_the_next_one() {
    // A cancel request is only done once the server closed its connection: it has then
    // signalled the backend. Reusing the session before that lets the signal land on the
    // next caller's statement (57014 "canceling statement due to user request").
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "stray").max_open(1).build().unwrap();
    let mut rng = fastrand::Rng::with_seed(3);
    let mut abandoned = 0;
    for _ in 0..300 {
        let patience = Duration::from_micros(rng.u64(200..3_000));
        if tokio::time::timeout(patience, db.execute("SELECT pg_sleep(0.002)", &[]))
            .await
            .is_err()
        {
            abandoned += 1;
        }
        if let Err(e) = db.execute("SELECT pg_sleep(0.001)", &[]).await {
            panic!("after {abandoned} abandoned statements: {e:?}");
        }
    }
    assert!(abandoned > 50, "the test abandons statements: {abandoned}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_inside_a_transaction_commits_nothing_and_the_pool_serves_on() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    let db = db(&pg, "panicky").max_open(2).build().unwrap();
    db.execute("CREATE TABLE p (x int)", &[]).await.unwrap();
    for _ in 0..3 {
        let d = db.clone();
        let t = tokio::spawn(async move {
            d.transaction(async |tx| {
                tx.execute("INSERT INTO p VALUES (1)", &[]).await?;
                panic!("user code panics inside a transaction");
                #[allow(unreachable_code)]
                Ok::<(), pool_sql::Error>(())
            })
            .await
        });
        assert!(t.await.unwrap_err().is_panic());
    }
    assert_eq!(ints(&db, "SELECT count(*)::int FROM p").await, [0]);
    eventually(Duration::from_secs(10), "sessions back", || async {
        let s = db.stats();
        s.in_use == 0 && s.broken_closed == 3
    })
    .await;
    db.close_and_wait(Duration::from_secs(10)).await.unwrap();
    support::wait_sessions(&admin, "panicky", 0).await;
}
