//! Statements dropped half way on a session the caller keeps (a `Tx`, a `Conn`): the next
//! statement cancels what is left of the abandoned one first, and a transaction never
//! commits a statement whose end its caller did not see.
//!
//! Each abandoned statement waits for an advisory lock another session holds, so it is
//! dropped while the server is certainly running it; the lock is let go right after, so a
//! session that let the statement go on would see it finish (and commit it).

mod support;

use std::time::Duration;

use pool_sql::testing::TestPg;
use pool_sql::{Conn, Db};
use support::{admin, db, eventually, ints};

const LOCK: i64 = 4242;

/// A session of the admin pool holding the advisory lock the abandoned statements wait for.
async fn hold_lock(admin: &Db) -> Conn {
    let mut holder = admin.conn().await.expect("a session");
    holder
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
        .await
        .expect("take the lock");
    holder
}

/// Polls `statement` until the server shows `app`'s session waiting for the lock, then
/// drops it there.
async fn drop_while_waiting<F: Future>(statement: F, admin: &Db, app: &str) {
    let waiting = eventually(Duration::from_secs(10), "the statement waits", || async {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
                 AND wait_event_type = 'Lock'",
                &[&app],
            )
            .await
            .expect("pg_stat_activity")
            .get::<_, i64>(0)
            == 1
    });
    tokio::select! {
        _ = statement => panic!("the statement ended while the lock was held"),
        () = waiting => {}
    }
}

async fn table(pg: &TestPg, app: &str) -> Db {
    let db = db(pg, app).max_open(1).build().unwrap();
    db.batch_execute("CREATE TABLE t (n int)").await.unwrap();
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tx_statement_dropped_half_way_is_never_committed() {
    let pg = TestPg::start().expect("postgres");
    let (admin, app) = (admin(&pg), "dropped-tx-insert");
    let db = table(&pg, app).await;
    let mut holder = hold_lock(&admin).await;
    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    drop_while_waiting(
        tx.execute(
            "INSERT INTO t SELECT 2 FROM (SELECT pg_advisory_lock(4242)) l",
            &[],
        ),
        &admin,
        app,
    )
    .await;
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await
        .unwrap();

    let committed = tokio::time::timeout(Duration::from_secs(10), tx.commit())
        .await
        .expect("commit does not wait behind the abandoned statement");
    let err = committed.expect_err("a transaction with an abandoned statement never commits");
    assert!(err.is_tx_aborted(), "{err:?}");
    assert_eq!(ints(&db, "SELECT n FROM t").await, Vec::<i32>::new());
    // The session serves the next caller, out of the transaction.
    db.execute("INSERT INTO t VALUES (3)", &[]).await.unwrap();
    assert_eq!(ints(&db, "SELECT n FROM t").await, [3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_never_says_ok_for_a_transaction_the_server_rolled_back() {
    let pg = TestPg::start().expect("postgres");
    let (admin, app) = (admin(&pg), "dropped-tx-raise");
    let db = table(&pg, app).await;
    let mut holder = hold_lock(&admin).await;
    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    // Fails on the server once the lock comes: after its caller left.
    drop_while_waiting(
        tx.batch_execute(
            "DO $$ BEGIN PERFORM pg_advisory_lock(4242); RAISE EXCEPTION 'late'; END $$",
        ),
        &admin,
        app,
    )
    .await;
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await
        .unwrap();

    let committed = tokio::time::timeout(Duration::from_secs(10), tx.commit())
        .await
        .expect("commit ends");
    let err = committed.expect_err("nothing was committed: commit must not say Ok");
    assert!(err.is_tx_aborted(), "{err:?}");
    assert_eq!(ints(&db, "SELECT n FROM t").await, Vec::<i32>::new());
}

/// A statement run past the crate's tracking (through the client) that fails the
/// transaction: the server's status decides the commit, not only the crate's flag.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commit_reports_a_transaction_failed_behind_its_back() {
    let pg = TestPg::start().expect("postgres");
    let db = table(&pg, "dropped-tx-client").await;
    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    let direct = tx.get_ref().client().batch_execute("SELECT 1/0").await;
    assert!(direct.is_err());
    let err = tx.commit().await.expect_err("the server rolled it back");
    assert!(err.is_tx_aborted(), "{err:?}");
    assert_eq!(ints(&db, "SELECT count(*)::int FROM t").await, [0]);
}

/// Inside a savepoint, rolling back to it undoes the abandoned statement: the transaction
/// goes on and commits what came before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_rolled_back_past_an_abandoned_statement_lets_the_transaction_commit() {
    let pg = TestPg::start().expect("postgres");
    let (admin, app) = (admin(&pg), "dropped-savepoint");
    let db = table(&pg, app).await;
    let mut holder = hold_lock(&admin).await;
    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    let mut sp = tx.savepoint().await.unwrap();
    drop_while_waiting(
        sp.execute(
            "INSERT INTO t SELECT 2 FROM (SELECT pg_advisory_lock(4242)) l",
            &[],
        ),
        &admin,
        app,
    )
    .await;
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await
        .unwrap();
    sp.rollback().await.unwrap();
    tx.execute("INSERT INTO t VALUES (3)", &[]).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(ints(&db, "SELECT n FROM t ORDER BY n").await, [1, 3]);
}

/// On a `Conn`, the next statement cancels the abandoned one instead of queueing behind it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conns_next_statement_cancels_the_abandoned_one_first() {
    let pg = TestPg::start().expect("postgres");
    let (admin, app) = (admin(&pg), "dropped-conn");
    let db = table(&pg, app).await;
    let mut holder = hold_lock(&admin).await;
    let mut conn = db.conn().await.unwrap();
    drop_while_waiting(
        conn.execute(
            "INSERT INTO t SELECT 2 FROM (SELECT pg_advisory_lock(4242)) l",
            &[],
        ),
        &admin,
        app,
    )
    .await;
    // The lock stays held: a statement queued behind the abandoned one would wait forever.
    let next = tokio::time::timeout(Duration::from_secs(10), conn.query_one("SELECT 7", &[]))
        .await
        .expect("the next statement does not queue behind the abandoned one")
        .unwrap();
    assert_eq!(next.get::<_, i32>(0), 7);
    holder
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
        .await
        .unwrap();
    drop(conn);
    assert_eq!(ints(&db, "SELECT n FROM t").await, Vec::<i32>::new());
}
