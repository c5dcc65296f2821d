//! Transactions against a real PostgreSQL: closures that borrow the caller's values,
//! savepoints, isolation level / read only / deferrable, the retry on serialization
//! failures and deadlocks (bounded, only for those codes, from a statement or from
//! `COMMIT`), and a transaction future dropped half way.

mod support;

use std::time::Duration;

use pool_sql::testing::TestPg;
use pool_sql::{Db, IsolationLevel, SqlState, TxOptions};
use support::{db, ints};

/// The caller's own error type: pool-sql's errors convert into it, and lose their type.
#[derive(Debug, PartialEq)]
struct AppError(String);

impl From<pool_sql::Error> for AppError {
    fn from(e: pool_sql::Error) -> Self {
        AppError(format!("wrapped: {e}"))
    }
}

/// A statement that fails with `code` (a PL/pgSQL `RAISE ... USING ERRCODE`).
fn raise(code: &str) -> String {
    format!("DO $$ BEGIN RAISE EXCEPTION 'raised' USING ERRCODE = '{code}'; END $$")
}

async fn kv(pg: &TestPg, app: &str, max_open: usize) -> Db {
    let db = db(pg, app).max_open(max_open).build().unwrap();
    db.batch_execute("CREATE TABLE IF NOT EXISTS kv (k text PRIMARY KEY, v int NOT NULL)")
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn a_transaction_closure_borrows_the_callers_str_and_vec() {
    let pg = TestPg::start().expect("postgres");
    let db = kv(&pg, "tx-borrow", 2).await;
    let key = String::from("borrowed");
    let key: &str = &key; // a borrowed &str, not 'static
    let mut log: Vec<String> = Vec::new();

    let n = db
        .transaction(async |tx| {
            let n = tx
                .execute("INSERT INTO kv VALUES ($1, $2)", &[&key, &7i32])
                .await?;
            log.push(format!("inserted {key}"));
            let v: i32 = tx
                .query_one("SELECT v FROM kv WHERE k = $1", &[&key])
                .await?
                .get(0);
            log.push(format!("read {v}"));
            Ok::<_, pool_sql::Error>(n)
        })
        .await
        .unwrap();

    // The caller still owns both, and the closure's writes to the Vec are visible.
    assert_eq!(n, 1);
    assert_eq!(log, ["inserted borrowed", "read 7"]);
    assert_eq!(
        ints(&db, "SELECT v FROM kv WHERE k = 'borrowed'").await,
        [7]
    );

    // An Err from the closure rolls back, and the error is the caller's own type.
    let err = db
        .transaction(async |tx| {
            tx.execute("INSERT INTO kv VALUES ('gone', 1)", &[]).await?;
            log.push("second".into());
            Err::<(), _>(AppError(format!("the caller's error about {key}")))
        })
        .await
        .unwrap_err();
    assert_eq!(err, AppError("the caller's error about borrowed".into()));
    assert_eq!(log.len(), 3);
    assert_eq!(
        ints(&db, "SELECT count(*)::int FROM kv WHERE k = 'gone'").await,
        [0]
    );
}

#[tokio::test]
async fn a_savepoint_rolled_back_or_dropped_keeps_the_outer_changes() {
    let pg = TestPg::start().expect("postgres");
    let db = kv(&pg, "tx-savepoint", 1).await;

    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO kv VALUES ('outer', 1)", &[])
        .await
        .unwrap();

    // Rolled back: its insert goes, the outer one stays.
    let mut sp = tx.savepoint().await.unwrap();
    sp.execute("INSERT INTO kv VALUES ('rolled back', 2)", &[])
        .await
        .unwrap();
    sp.rollback().await.unwrap();

    // A failed statement in a savepoint: rolled back to it, the transaction goes on.
    let mut sp = tx.savepoint().await.unwrap();
    let dup = sp
        .execute("INSERT INTO kv VALUES ('outer', 3)", &[])
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Some(&SqlState::UNIQUE_VIOLATION));
    let aborted = sp.commit().await.unwrap_err();
    assert!(aborted.is_tx_aborted(), "{aborted:?}");
    // Says what happened: the savepoint, not the transaction, was rolled back.
    let said = aborted.to_string();
    assert!(
        said.contains("savepoint") && said.contains("goes on"),
        "{said}"
    );

    // Dropped open (nested in a released one): undone before the next statement.
    let mut sp = tx.savepoint().await.unwrap();
    sp.execute("INSERT INTO kv VALUES ('released', 4)", &[])
        .await
        .unwrap();
    let mut inner = sp.savepoint().await.unwrap();
    inner
        .execute("INSERT INTO kv VALUES ('dropped', 5)", &[])
        .await
        .unwrap();
    drop(inner);
    sp.commit().await.unwrap();

    // The closure form: Err rolls back to the savepoint, Ok releases it.
    let failed = tx
        .transaction(async |sp| {
            sp.execute("INSERT INTO kv VALUES ('closure err', 6)", &[])
                .await?;
            sp.execute("INSERT INTO kv VALUES ('outer', 6)", &[]).await
        })
        .await;
    assert!(failed.is_err());
    tx.transaction(async |sp| {
        sp.execute("INSERT INTO kv VALUES ('closure ok', 7)", &[])
            .await
    })
    .await
    .unwrap();

    // A savepoint dropped open just before commit is undone too.
    let mut last = tx.savepoint().await.unwrap();
    last.execute("INSERT INTO kv VALUES ('dropped before commit', 8)", &[])
        .await
        .unwrap();
    drop(last);
    tx.commit().await.unwrap();

    assert_eq!(
        ints(&db, "SELECT v FROM kv ORDER BY v").await,
        [1, 4, 7],
        "only the outer insert, the released savepoint and the Ok closure committed"
    );
}

#[tokio::test]
async fn isolation_read_only_and_deferrable_apply_inside_and_not_after() {
    let pg = TestPg::start().expect("postgres");
    let db = kv(&pg, "tx-options", 1).await;
    let show = async |tx: &mut pool_sql::Tx, what: &str| -> String {
        tx.query_one(&format!("SHOW {what}"), &[])
            .await
            .unwrap()
            .get(0)
    };

    for (level, name) in [
        (IsolationLevel::ReadCommitted, "read committed"),
        (IsolationLevel::RepeatableRead, "repeatable read"),
        (IsolationLevel::Serializable, "serializable"),
    ] {
        let seen = db
            .transaction_with(TxOptions::new().isolation(level), async |tx| {
                Ok::<_, pool_sql::Error>(show(tx, "transaction_isolation").await)
            })
            .await
            .unwrap();
        assert_eq!(seen, name);
    }

    let options = TxOptions::new()
        .isolation(IsolationLevel::Serializable)
        .read_only(true)
        .deferrable(true);
    let mut tx = db.begin_with(options).await.unwrap();
    assert_eq!(show(&mut tx, "transaction_read_only").await, "on");
    assert_eq!(show(&mut tx, "transaction_deferrable").await, "on");
    let err = tx
        .execute("INSERT INTO kv VALUES ('ro', 1)", &[])
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&SqlState::READ_ONLY_SQL_TRANSACTION),
        "{err:?}"
    );
    assert!(tx.commit().await.unwrap_err().is_tx_aborted());

    // The same (only) session afterwards: the session's defaults, and writes work.
    let level: String = db
        .query_one("SHOW transaction_isolation", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(level, "read committed");
    db.execute("INSERT INTO kv VALUES ('rw', 1)", &[])
        .await
        .unwrap();
    // A pinned session begins with options too.
    let conn = db.conn().await.unwrap();
    let mut tx = conn
        .begin_with(TxOptions::new().isolation(IsolationLevel::RepeatableRead))
        .await
        .unwrap();
    assert_eq!(
        show(&mut tx, "transaction_isolation").await,
        "repeatable read"
    );
    tx.rollback().await.unwrap();
    assert_eq!(db.stats().created, 1, "{:?}", db.stats());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_serializable_updates_are_retried_and_both_land() {
    let pg = TestPg::start().expect("postgres");
    let db = kv(&pg, "tx-serializable", 2).await;
    db.batch_execute("INSERT INTO kv VALUES ('a', 0), ('b', 0)")
        .await
        .unwrap();
    // Both first runs read before either writes: their snapshots overlap, so the second
    // writer waits for the first's row locks and then fails with 40001.
    let both_read = tokio::sync::Barrier::new(2);
    let serializable = TxOptions::new().isolation(IsolationLevel::Serializable);
    let add_one = async || {
        let mut runs = 0u32;
        db.transaction_retry(serializable, async |tx| {
            runs += 1;
            let sum: i64 = tx.query_one("SELECT sum(v) FROM kv", &[]).await?.get(0);
            if runs == 1 {
                both_read.wait().await;
            }
            tx.execute("UPDATE kv SET v = v + 1", &[]).await?;
            Ok::<_, pool_sql::Error>(sum)
        })
        .await
        .map(|_| runs)
    };
    let (a, b) = tokio::join!(add_one(), add_one());
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        (a.min(b), a.max(b)),
        (1, 2),
        "one ran once, the other was retried once"
    );
    assert_eq!(ints(&db, "SELECT v FROM kv ORDER BY k").await, [2, 2]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_deadlock_is_retried_and_both_transactions_land() {
    let pg = TestPg::start().expect("postgres");
    let db = kv(&pg, "tx-deadlock", 2).await;
    db.batch_execute("INSERT INTO kv VALUES ('a', 0), ('b', 0)")
        .await
        .unwrap();
    // Each first run locks one row, waits until the other has locked the other, then asks
    // for it: a lock cycle the server breaks by failing one with 40P01. The victim's next
    // run waits for the other to finish (else it could lock its first row again before the
    // other got it, and meet it in a new cycle).
    let both_locked = tokio::sync::Barrier::new(2);
    let (finished, finished_rx) = tokio::sync::watch::channel(0);
    let fast = TxOptions::new().backoff(Duration::ZERO);
    let cross = async |first: &str, second: &str| {
        let mut runs = 0u32;
        let r = db
            .transaction_retry(fast, async |tx| {
                runs += 1;
                if runs > 1 {
                    let mut other = finished_rx.clone();
                    other.wait_for(|n| *n >= 1).await.ok();
                }
                tx.batch_execute("SET LOCAL deadlock_timeout = '20ms'")
                    .await?;
                tx.execute("UPDATE kv SET v = v + 1 WHERE k = $1", &[&first])
                    .await?;
                if runs == 1 {
                    both_locked.wait().await;
                }
                tx.execute("UPDATE kv SET v = v + 1 WHERE k = $1", &[&second])
                    .await
            })
            .await;
        finished.send_modify(|n| *n += 1);
        r.map(|_| runs)
    };
    let (a, b) = tokio::join!(cross("a", "b"), cross("b", "a"));
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(
        (a.min(b), a.max(b)),
        (1, 2),
        "one was chosen as the victim and ran again"
    );
    assert_eq!(ints(&db, "SELECT v FROM kv ORDER BY k").await, [2, 2]);
}

#[tokio::test]
async fn the_retry_is_bounded_and_only_for_serialization_failures_and_deadlocks() {
    let pg = TestPg::start().expect("postgres");
    let db = kv(&pg, "tx-bounded", 1).await;
    let fast = TxOptions::new().backoff(Duration::ZERO);

    for (code, attempts, runs_wanted) in [
        ("40001", 4, 4),
        ("40P01", 2, 2),
        ("40001", 0, 1), // 0 counts as 1
        ("23505", 5, 1), // not a conflict: no retry
        ("P0001", 5, 1),
    ] {
        let mut runs = 0u32;
        let sql = raise(code);
        let err = db
            .transaction_retry(fast.attempts(attempts), async |tx| {
                runs += 1;
                tx.execute("INSERT INTO kv VALUES ('never', 1)", &[])
                    .await?;
                // The caller's own error type: the Tx saw the SQLSTATE, that is enough.
                tx.batch_execute(&sql).await.map_err(AppError::from)?;
                Ok::<_, AppError>(())
            })
            .await
            .unwrap_err();
        assert!(
            err.0.starts_with("wrapped: postgres statement failed"),
            "{err:?}"
        );
        assert_eq!(runs, runs_wanted, "{code} with {attempts} attempts");
    }
    // The default: 3 attempts.
    let mut runs = 0;
    let err = db
        .transaction_retry(TxOptions::new(), async |tx| {
            runs += 1;
            tx.batch_execute(&raise("40001")).await
        })
        .await
        .unwrap_err();
    assert!(err.is_serialization_failure(), "{err:?}");
    assert_eq!(runs, TxOptions::DEFAULT_ATTEMPTS);
    assert_eq!(ints(&db, "SELECT count(*)::int FROM kv").await, [0]);
}

#[tokio::test]
async fn a_serialization_failure_at_commit_is_retried() {
    let pg = TestPg::start().expect("postgres");
    let db = kv(&pg, "tx-commit-conflict", 1).await;
    // A deferred constraint trigger fails the first two COMMITs with 40001; a sequence
    // (never rolled back) counts them.
    db.batch_execute(&format!(
        "CREATE SEQUENCE commits;
         CREATE FUNCTION fail_commit() RETURNS trigger LANGUAGE plpgsql AS $f$
         BEGIN
             IF nextval('commits') <= 2 THEN
                 {};
             END IF;
             RETURN NULL;
         END $f$;
         CREATE CONSTRAINT TRIGGER at_commit AFTER INSERT ON kv
             DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION fail_commit();",
        "RAISE EXCEPTION 'at commit' USING ERRCODE = 'serialization_failure'"
    ))
    .await
    .unwrap();
    let mut runs = 0;
    db.transaction_retry(TxOptions::new().backoff(Duration::ZERO), async |tx| {
        runs += 1;
        tx.execute("INSERT INTO kv VALUES ('c', 1)", &[]).await
    })
    .await
    .unwrap();
    assert_eq!(runs, 3, "two COMMITs failed with 40001, the third landed");
    assert_eq!(ints(&db, "SELECT v FROM kv").await, [1]);

    // transaction_with runs once: the COMMIT's 40001 is the caller's.
    db.batch_execute("ALTER SEQUENCE commits RESTART")
        .await
        .unwrap();
    let err = db
        .transaction(async |tx| tx.execute("INSERT INTO kv VALUES ('d', 1)", &[]).await)
        .await
        .unwrap_err();
    assert!(err.is_serialization_failure(), "{err:?}");
}

#[tokio::test]
async fn a_transaction_future_dropped_mid_way_leaves_the_next_caller_a_clean_session() {
    let pg = TestPg::start().expect("postgres");
    let db = kv(&pg, "tx-dropped", 1).await;
    let (inserted, mut inserted_rx) = tokio::sync::mpsc::channel::<()>(1);
    let serializable = TxOptions::new().isolation(IsolationLevel::Serializable);
    {
        let abandoned = db.transaction_with(serializable, async |tx| {
            tx.execute("INSERT INTO kv VALUES ('abandoned', 1)", &[])
                .await?;
            let mut sp = tx.savepoint().await?;
            sp.execute("INSERT INTO kv VALUES ('abandoned too', 2)", &[])
                .await?;
            inserted.send(()).await.ok();
            std::future::pending::<()>().await;
            Ok::<_, pool_sql::Error>(())
        });
        tokio::pin!(abandoned);
        tokio::select! {
            _ = &mut abandoned => panic!("the transaction never ends by itself"),
            _ = inserted_rx.recv() => {}
        }
        // Dropped here, inside its transaction and its savepoint.
    }

    // The one session, rolled back and back to the session's defaults.
    let level: String = db
        .query_one("SHOW transaction_isolation", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(level, "read committed");
    assert_eq!(ints(&db, "SELECT count(*)::int FROM kv").await, [0]);
    db.transaction(async |tx| tx.execute("INSERT INTO kv VALUES ('next', 3)", &[]).await)
        .await
        .unwrap();
    assert_eq!(ints(&db, "SELECT v FROM kv").await, [3]);
    let s = db.stats();
    assert_eq!(
        (s.created, s.broken_closed),
        (1, 0),
        "the same session: {s:?}"
    );
}

#[tokio::test]
async fn a_savepoint_cut_mid_statement_is_still_rolled_back_before_the_next_one() {
    let pg = TestPg::start().expect("postgres");
    let db = kv(&pg, "tx-savepoint-cut", 1).await;
    let mut tx = db.begin().await.unwrap();
    tx.execute("INSERT INTO kv VALUES ('outer', 1)", &[])
        .await
        .unwrap();
    {
        let mut sp = tx.savepoint().await.unwrap();
        sp.execute("INSERT INTO kv VALUES ('inner', 2)", &[])
            .await
            .unwrap();
        // Cut while the server runs it: the savepoint goes with its statement in flight.
        let cut = tokio::time::timeout(
            Duration::from_millis(50),
            sp.execute("INSERT INTO kv SELECT 'slow', 3 FROM pg_sleep(0.5)", &[]),
        )
        .await;
        assert!(cut.is_err(), "the statement was still running");
    }
    tx.execute("INSERT INTO kv VALUES ('after', 4)", &[])
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(ints(&db, "SELECT v FROM kv ORDER BY v").await, [1, 4]);
}
