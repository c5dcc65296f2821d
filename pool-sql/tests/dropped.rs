//! Statements dropped half way on a session the caller keeps (a `Tx`, a `Conn`): the next
//! statement cancels what is left of the abandoned one first, and a transaction never
//! commits a statement whose end its caller did not see.
//!
//! Each abandoned statement waits for an advisory lock another session holds, so it is
//! dropped while the server is certainly running it; the lock is let go right after, so a
//! session that let the statement go on would see it finish (and commit it).

mod support;

use std::time::Duration;

use futures_util::FutureExt;
use pool_core::testing::proxy::Faults;
use pool_sql::testing::TestPg;
use pool_sql::{Conn, Db};
use support::{Rig, admin, db, eventually, ints};

const LOCK: i64 = 4242;

/// An INSERT that waits for the lock (then inserts 2).
const WAITING_INSERT: &str = "INSERT INTO t SELECT 2 FROM (SELECT pg_advisory_lock(4242)) l";

/// A session of the admin pool holding the advisory lock the abandoned statements wait for.
struct Lock(Conn);

impl Lock {
    async fn take(admin: &Db) -> Lock {
        let mut holder = admin.conn().await.expect("a session");
        holder
            .execute("SELECT pg_advisory_lock($1)", &[&LOCK])
            .await
            .expect("take the lock");
        Lock(holder)
    }

    async fn release(mut self) {
        self.0
            .execute("SELECT pg_advisory_unlock($1)", &[&LOCK])
            .await
            .expect("let the lock go");
    }
}

/// Drops `statement` while the server shows it waiting for `lock`, then lets the lock go.
async fn abandon<F: Future>(statement: F, lock: Lock, admin: &Db, app: &str) {
    drop_while_waiting(statement, admin, app).await;
    lock.release().await;
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
    let lock = Lock::take(&admin).await;
    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    abandon(tx.execute(WAITING_INSERT, &[]), lock, &admin, app).await;

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
    let lock = Lock::take(&admin).await;
    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    // Fails on the server once the lock comes: after its caller left.
    abandon(
        tx.batch_execute(
            "DO $$ BEGIN PERFORM pg_advisory_lock(4242); RAISE EXCEPTION 'late'; END $$",
        ),
        lock,
        &admin,
        app,
    )
    .await;

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
    let lock = Lock::take(&admin).await;
    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    let mut sp = tx.savepoint().await.unwrap();
    abandon(sp.execute(WAITING_INSERT, &[]), lock, &admin, app).await;
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
    let lock = Lock::take(&admin).await;
    let mut conn = db.conn().await.unwrap();
    drop_while_waiting(conn.execute(WAITING_INSERT, &[]), &admin, app).await;
    // The lock stays held: a statement queued behind the abandoned one would wait forever.
    let next = tokio::time::timeout(Duration::from_secs(10), conn.query_one("SELECT 7", &[]))
        .await
        .expect("the next statement does not queue behind the abandoned one")
        .unwrap();
    assert_eq!(next.get::<_, i32>(0), 7);
    lock.release().await;
    drop(conn);
    assert_eq!(ints(&db, "SELECT n FROM t").await, Vec::<i32>::new());
}

/// The session's state on the server (`pg_stat_activity.state`), once `app` has one session.
async fn wait_state(admin: &Db, app: &str, state: &str) {
    eventually(Duration::from_secs(10), state, || async {
        admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 AND state = $2",
                &[&app, &state],
            )
            .await
            .expect("pg_stat_activity")
            .get::<_, i64>(0)
            == 1
    })
    .await;
}

/// A dropped statement that finished on the server leaves the block usable, so a savepoint
/// made after it succeeds: rolling back to that savepoint must not forgive the statement
/// (it ran before the savepoint).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_savepoint_made_after_a_dropped_statement_does_not_forgive_it() {
    let pg = TestPg::start().expect("postgres");
    let (admin, app) = (admin(&pg), "dropped-before-savepoint");
    let db = table(&pg, app).await;
    let lock = Lock::take(&admin).await;
    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    abandon(tx.execute(WAITING_INSERT, &[]), lock, &admin, app).await;
    // The abandoned INSERT ends on the server, its caller gone.
    wait_state(&admin, app, "idle in transaction").await;
    let sp = tx.savepoint().await.expect("savepoint");
    sp.rollback().await.unwrap();
    let err = tx
        .commit()
        .await
        .expect_err("the dropped statement fails the transaction");
    assert!(err.is_tx_aborted(), "{err:?}");
    assert_eq!(ints(&db, "SELECT n FROM t").await, Vec::<i32>::new());
}

/// The same through the closure form, the statement dropped at its first poll and a failing
/// nested transaction after it (the docs' duplicate-key pattern).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_nested_transaction_does_not_forgive_an_earlier_dropped_statement() {
    let pg = TestPg::start().expect("postgres");
    let db = table(&pg, "dropped-before-closure").await;
    let mut tx = db.begin().await.unwrap();
    assert!(
        tx.execute("INSERT INTO t VALUES ($1)", &[&2i32])
            .now_or_never()
            .is_none()
    );
    let nested = tx
        .transaction(async |sp| sp.execute("SELECT 1/0", &[]).await)
        .await;
    assert!(nested.is_err());
    let committed = tx.commit().await;
    assert!(
        committed.as_ref().is_err_and(|e| e.is_tx_aborted()),
        "{committed:?}"
    );
    assert_eq!(ints(&db, "SELECT n FROM t").await, Vec::<i32>::new());
}

/// `Tx::savepoint` dropped before it returns changes no data: the transaction goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_savepoint_call_leaves_the_transaction_whole() {
    let pg = TestPg::start().expect("postgres");
    let db = table(&pg, "dropped-savepoint-call").await;
    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap();
    assert!(tx.savepoint().now_or_never().is_none());
    tx.commit()
        .await
        .expect("the transaction did nothing wrong");
    assert_eq!(ints(&db, "SELECT n FROM t").await, [1]);
}

/// A statement dropped at its first poll: its request is still in tokio-postgres's queue,
/// unwritten, when the next statement looks. It must not queue behind it (the lock stays
/// held: it would wait forever).
async fn first_poll_drop(pg: TestPg, app: &'static str) {
    let admin = admin(&pg);
    let db = table(&pg, app).await;
    let mut conn = db.conn().await.unwrap();
    // Cached, so the next run writes Bind/Execute at its first poll.
    let sql = "SELECT pg_advisory_lock($1), pg_advisory_unlock($1)";
    conn.execute(sql, &[&1i64]).await.unwrap();
    let lock = Lock::take(&admin).await;
    assert!(conn.execute(sql, &[&LOCK]).now_or_never().is_none());
    let next = tokio::time::timeout(Duration::from_secs(5), conn.query_one("SELECT 7", &[])).await;
    lock.release().await;
    let next = next.expect("the next statement does not queue behind the dropped one");
    assert_eq!(next.unwrap().get::<_, i32>(0), 7);
}

#[tokio::test(flavor = "current_thread")]
async fn a_statement_dropped_at_its_first_poll_is_cancelled_on_one_thread() {
    first_poll_drop(TestPg::start().expect("postgres"), "first-poll-ct").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_dropped_at_its_first_poll_is_cancelled_in_a_spawned_task() {
    let pg = TestPg::start().expect("postgres");
    tokio::spawn(first_poll_drop(pg, "first-poll-spawned"))
        .await
        .unwrap();
}

/// The statement that settles a dropped one is itself dropped while it waits for the
/// cancel's confirmation: the cancel is still waited for by the next statement, never left
/// to land on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_whose_waiter_was_dropped_never_hits_a_later_statement() {
    let rig = Rig::start("dropped-late-cancel").await;
    let db = rig.db().max_open(1).build().unwrap();
    let mut conn = db.conn().await.unwrap();
    conn.execute("SELECT 1", &[]).await.unwrap();
    // Connection 0 is the session; the later ones (cancel requests) are slow.
    rig.proxy.set_conn(0, Some(Faults::none()));
    rig.proxy.set(Faults::latency(Duration::from_millis(800)));
    let a = tokio::time::timeout(
        Duration::from_millis(50),
        conn.execute("SELECT pg_sleep(0.3)", &[]),
    )
    .await;
    assert!(a.is_err(), "A dropped");
    let b = tokio::time::timeout(Duration::from_millis(100), conn.execute("SELECT 1", &[])).await;
    assert!(
        b.is_err(),
        "B dropped while it waits for the cancel's confirmation"
    );
    // A ends on its own meanwhile.
    wait_state(&rig.admin, rig.app, "idle").await;
    let c = conn.execute("SELECT pg_sleep(1.5)", &[]).await;
    assert!(c.is_ok(), "C was hit by A's cancel request: {c:?}");
}
