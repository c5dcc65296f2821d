//! The statement cache's "prepare again, once": only when the server refused the cached
//! statement itself before running it (its plan's result type changed, or the statement is
//! gone), never for the same SQLSTATEs raised by what a statement ran.

mod support;

use futures_util::stream;
use pool_sql::Db;
use pool_sql::testing::TestPg;
use support::{admin, db, ints};

/// A function that does something a rollback does not undo (a sequence's `nextval`), then
/// fails with `code`: PL/pgSQL raises any SQLSTATE, so any function or trigger can end with
/// 0A000 or 26000 after it ran.
async fn raising(db: &Db, name: &str, code: &str) {
    db.batch_execute(&format!(
        "CREATE SEQUENCE {name}_runs; \
         CREATE FUNCTION {name}() RETURNS int LANGUAGE plpgsql AS $$ \
         BEGIN PERFORM nextval('{name}_runs'); \
         RAISE EXCEPTION 'refused after running' USING ERRCODE = '{code}'; END $$"
    ))
    .await
    .unwrap();
}

async fn runs(db: &Db, name: &str) -> i64 {
    db.query_one(
        &format!("SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM {name}_runs"),
        &[],
    )
    .await
    .unwrap()
    .get(0)
}

/// A table `s` whose cached `SELECT *` (on `db`'s one session) goes stale: made, cached,
/// then altered by `alter` (another session, or the same).
async fn stale_select(db: &Db, alter: &Db) {
    db.batch_execute("CREATE TABLE s (a int); INSERT INTO s VALUES (1)")
        .await
        .unwrap();
    assert_eq!(ints(db, "SELECT * FROM s").await, [1]);
    alter
        .batch_execute("ALTER TABLE s ADD COLUMN b text")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_ran_and_failed_with_0a000_or_26000_is_not_run_again() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "cache-raised").max_open(1).build().unwrap();
    raising(&db, "unsupported", "0A000").await;
    raising(&db, "unnamed", "26000").await;

    let err = db.execute("SELECT unsupported()", &[]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("0A000"), "{err:?}");
    let err = db.query("SELECT unnamed()", &[]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("26000"), "{err:?}");
    assert_eq!(
        (runs(&db, "unsupported").await, runs(&db, "unnamed").await),
        (1, 1),
        "each statement failed once, so it ran once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inside_a_transaction_a_0a000_is_reported_as_itself_not_as_25p02() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "cache-raised-tx").max_open(1).build().unwrap();
    raising(&db, "unsupported", "0A000").await;
    let mut tx = db.begin().await.unwrap();
    let err = tx.execute("SELECT unsupported()", &[]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("0A000"), "{err:?}");
    drop(tx);
    assert_eq!(runs(&db, "unsupported").await, 1);
}

/// What the retry is for: a cached `SELECT *` whose table changed shape, and cached
/// statements the server forgot (`DEALLOCATE ALL` behind the cache's back) run again,
/// transparently, on the same session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_or_forgotten_cached_statement_is_prepared_again_transparently() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "cache-stale").max_open(1).build().unwrap();
    stale_select(&db, &db).await;
    let rows = db
        .query("SELECT * FROM s", &[])
        .await
        .expect("prepared again");
    assert_eq!(rows[0].len(), 2, "the new shape");

    let mut conn = db.conn().await.unwrap();
    assert_eq!(
        conn.query_one("SELECT 5", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        5
    );
    conn.get_ref()
        .client()
        .batch_execute("DEALLOCATE ALL")
        .await
        .unwrap();
    assert_eq!(
        conn.query_one("SELECT 5", &[])
            .await
            .unwrap()
            .get::<_, i32>(0),
        5
    );
    assert_eq!(db.stats().created, 1, "the same session all along");
}

/// In a transaction the stale plan fails the statement (and the transaction) with its own
/// error, and the cache forgets it: after the transaction the statement works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_plan_in_a_transaction_fails_with_its_cause_and_is_forgotten() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "cache-stale-tx").max_open(1).build().unwrap();
    stale_select(&db, &db).await;
    let mut tx = db.begin().await.unwrap();
    let err = tx.query("SELECT * FROM s", &[]).await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("0A000"), "{err:?}");
    assert!(tx.rollback().await.is_ok());
    let rows = db.query("SELECT * FROM s", &[]).await.unwrap();
    assert_eq!(rows[0].len(), 2);
}

/// A COPY whose data stream failed returns before its CopyFail is answered: the session is
/// not settled yet, but it is in no transaction block, so the next statement's stale plan is
/// still prepared again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stale_plan_right_after_an_aborted_copy_is_prepared_again() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    let db = db(&pg, "cache-stale-copyfail").max_open(1).build().unwrap();
    stale_select(&db, &admin).await;
    let mut conn = db.conn().await.unwrap();
    let aborted = conn
        .copy_in(
            "COPY s (a) FROM STDIN",
            stream::iter([
                Ok::<_, std::io::Error>("2\n"),
                Err(std::io::Error::other("the source failed")),
            ]),
        )
        .await;
    assert!(aborted.is_err());
    let rows = conn
        .query("SELECT * FROM s", &[])
        .await
        .expect("prepared again");
    assert_eq!(rows[0].len(), 2);
}
