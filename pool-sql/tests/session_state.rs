//! A session never carries one caller's transaction into the next: the server's own
//! transaction status (ReadyForQuery) decides, and a session returned in a transaction is
//! rolled back on return, before anyone else can get it.

mod support;

use std::time::Duration;

use pool_sql::testing::TestPg;
use support::{admin, db, eventually, ints};

/// Sessions of `app` the server shows inside a transaction with nothing running.
async fn idle_in_transaction(admin: &pool_sql::Db, app: &str) -> i64 {
    admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = $1 \
             AND state LIKE 'idle in transaction%'",
            &[&app],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_opened_in_sql_text_never_reaches_the_next_caller() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    let db = db(&pg, "sql-text-tx").max_open(1).build().unwrap();
    db.batch_execute("CREATE TABLE t (x int)").await.unwrap();

    // `BEGIN` as text on the pool itself: the session goes back in a transaction.
    db.batch_execute("BEGIN").await.unwrap();
    // The next caller's autocommit insert must commit, not join the abandoned transaction.
    assert_eq!(
        db.execute("INSERT INTO t VALUES (1)", &[]).await.unwrap(),
        1
    );
    assert_eq!(ints(&admin, "SELECT x FROM t").await, [1], "committed");

    // On a pinned session, with work inside: dropped, none of it commits.
    let mut conn = db.conn().await.unwrap();
    conn.batch_execute("BEGIN; INSERT INTO t VALUES (2)")
        .await
        .unwrap();
    assert!(conn.session().in_transaction());
    drop(conn);
    db.execute("INSERT INTO t VALUES (3)", &[]).await.unwrap();
    assert_eq!(ints(&admin, "SELECT x FROM t ORDER BY x").await, [1, 3]);

    // A failed transaction (status `E`): the next caller does not inherit 25P02.
    let mut conn = db.conn().await.unwrap();
    conn.batch_execute("BEGIN").await.unwrap();
    conn.batch_execute("SELECT 1/0").await.unwrap_err();
    drop(conn);
    db.execute("INSERT INTO t VALUES (4)", &[]).await.unwrap();
    assert_eq!(ints(&admin, "SELECT x FROM t ORDER BY x").await, [1, 3, 4]);

    // A function that opens nothing but the caller's own `START TRANSACTION`.
    let mut conn = db.conn().await.unwrap();
    conn.batch_execute("START TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        .await
        .unwrap();
    drop(conn);
    let iso: String = db
        .query_one("SELECT current_setting('transaction_isolation')", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        iso, "read committed",
        "a fresh transaction, not the abandoned one"
    );
    assert_eq!(
        db.stats().created,
        1,
        "the one session was cleaned, not replaced"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_transaction_is_rolled_back_on_return_not_at_the_next_checkout() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    let db = db(&pg, "lazy-rollback").max_open(2).build().unwrap();
    db.batch_execute("CREATE TABLE t (x int PRIMARY KEY); INSERT INTO t VALUES (1)")
        .await
        .unwrap();

    let mut tx = db.begin().await.unwrap();
    tx.execute("UPDATE t SET x = 2 WHERE x = 1", &[])
        .await
        .unwrap();
    drop(tx); // neither commit nor rollback; nobody borrows afterwards

    // With no checkout at all, the server sees the transaction end and the lock go.
    eventually(
        Duration::from_secs(10),
        "the abandoned transaction ends",
        || async { idle_in_transaction(&admin, "lazy-rollback").await == 0 },
    )
    .await;
    let locked: Vec<i32> = ints(&admin, "SELECT x FROM t FOR UPDATE NOWAIT").await;
    assert_eq!(
        locked,
        [1],
        "the row lock is free and the update rolled back"
    );
    eventually(
        Duration::from_secs(10),
        "the session is idle again",
        || async {
            let s = db.stats();
            s.idle == 1 && s.resetting == 0
        },
    )
    .await;
    let s = db.stats();
    assert_eq!((s.created, s.broken_closed), (1, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_cut_at_random_points_never_stay_open_on_the_server() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    let db = db(&pg, "tx-race").max_open(4).build().unwrap();
    db.batch_execute("CREATE TABLE t (x int)").await.unwrap();
    for round in 0..20u64 {
        let mut tasks = Vec::new();
        for _ in 0..4 {
            let db = db.clone();
            tasks.push(tokio::spawn(async move {
                let _ = db
                    .transaction(|tx| {
                        Box::pin(async move {
                            tx.execute("INSERT INTO t VALUES (1)", &[]).await?;
                            tx.batch_execute("SELECT pg_sleep(0.005)").await?;
                            tx.execute("INSERT INTO t VALUES (2)", &[]).await
                        })
                    })
                    .await;
            }));
        }
        // Cut them at a random point: before BEGIN, inside, at COMMIT.
        tokio::time::sleep(Duration::from_micros(500 + fastrand::u64(0..12_000))).await;
        for t in &tasks {
            t.abort();
        }
        for t in tasks {
            let _ = t.await;
        }
        eventually(
            Duration::from_secs(10),
            &format!("round {round}: no session left in a transaction"),
            || async { idle_in_transaction(&admin, "tx-race").await == 0 },
        )
        .await;
    }
    // Every committed transaction committed both rows, and nothing half.
    let rows = ints(&admin, "SELECT x FROM t").await;
    let ones = rows.iter().filter(|&&x| x == 1).count();
    let twos = rows.iter().filter(|&&x| x == 2).count();
    assert_eq!(ones, twos, "no transaction committed half its work");
}
