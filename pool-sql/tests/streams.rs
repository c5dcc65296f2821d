//! Row streams (`query_stream`), prepared statements (`prepare`) and typed rows
//! (`query_as`) against a real PostgreSQL: rows as they arrive, a stream dropped early is
//! cancelled and its session reused clean, a statement prepared once runs on any session,
//! a column that does not convert is named.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use pool_sql::testing::TestPg;
use pool_sql::{Error, FromRow, Row};
use support::{active, admin, db};

/// Ten billion rows: far more than a client could read (or drain) within the tests' bounds.
const ENDLESS: &str = "SELECT generate_series(1::bigint, 10000000000)";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_yields_every_row_in_order_and_then_its_count() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "rows").max_open(1).build().unwrap();
    let mut rows = db
        .query_stream("SELECT generate_series(1, $1)", &[&20_000i32])
        .await
        .unwrap();
    let mut next = 1;
    while let Some(row) = rows.try_next().await.unwrap() {
        assert_eq!(row.get::<_, i32>(0), next);
        next += 1;
    }
    assert_eq!(next, 20_001);
    assert_eq!(rows.rows_affected(), Some(20_000));
    // Ended: its session is back in the pool, though the stream is still here.
    assert_eq!(db.stats().in_use, 0);
    assert!(rows.next().await.is_none());
    drop(rows);
    let s = db.stats();
    assert_eq!((s.created, s.broken_closed), (1, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_dropped_after_one_row_is_cancelled_and_the_next_caller_gets_its_session_at_once()
{
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    let db = db(&pg, "dropped-stream").max_open(1).build().unwrap();
    let mut rows = db.query_stream(ENDLESS, &[]).await.unwrap();
    let first = rows.try_next().await.unwrap().expect("a first row");
    assert_eq!(first.get::<_, i64>(0), 1);
    // The first row came while the query still runs: rows arrive as they come.
    assert_eq!(active(&admin, "dropped-stream", "generate_series").await, 1);
    drop(rows);

    // One session only: without the cancel, the next caller would wait for ten billion
    // rows to be drained. The bound is a hang guard, well under that.
    let row = tokio::time::timeout(Duration::from_secs(10), db.query_one("SELECT 7", &[]))
        .await
        .expect("the next caller does not wait for the abandoned query")
        .expect("query");
    assert_eq!(row.get::<_, i32>(0), 7);
    assert_eq!(
        active(&admin, "dropped-stream", "generate_series").await,
        0,
        "cancelled on the server"
    );
    let s = db.stats();
    assert_eq!(
        (s.created, s.broken_closed),
        (1, 0),
        "cancelled and reused: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_on_a_conn_dropped_early_is_cancelled_before_the_next_statement_on_it() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    let db = db(&pg, "conn-stream").max_open(1).build().unwrap();
    let mut conn = db.conn().await.unwrap();
    {
        let mut rows = conn.query_stream(ENDLESS, &[]).await.unwrap();
        assert!(rows.try_next().await.unwrap().is_some());
    }
    // Without the cancel this statement would queue behind ten billion rows.
    let n: i32 = tokio::time::timeout(Duration::from_secs(10), conn.query_one("SELECT 8", &[]))
        .await
        .expect("does not queue behind the abandoned query")
        .expect("not hit by the cancel")
        .get(0);
    assert_eq!(n, 8);
    assert_eq!(active(&admin, "conn-stream", "generate_series").await, 0);

    // In a transaction, a stream dropped unfinished fails the transaction.
    let mut tx = conn.begin().await.unwrap();
    {
        let mut rows = tx.query_stream(ENDLESS, &[]).await.unwrap();
        assert!(rows.try_next().await.unwrap().is_some());
    }
    let err = tx.commit().await.unwrap_err();
    assert!(err.is_tx_aborted(), "{err:?}");
    assert_eq!(db.stats().broken_closed, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_failing_mid_stream_ends_the_stream_with_its_error_and_the_session_is_reused() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "stream-error").max_open(1).build().unwrap();
    let mut rows = db
        .query_stream(
            "SELECT 1 / (50000 - x) FROM generate_series(1, 100000) x",
            &[],
        )
        .await
        .unwrap();
    let mut ok = 0;
    let err = loop {
        match rows.next().await.expect("an error before the end") {
            Ok(_) => ok += 1,
            Err(e) => break e,
        }
    };
    assert_eq!(err.code(), Some(&pool_sql::SqlState::DIVISION_BY_ZERO));
    assert!(ok < 50_000, "{ok}");
    assert!(rows.next().await.is_none(), "the error ends the stream");
    // Back at the error (the stream is still here), through the pool's reset: the
    // server's ReadyForQuery after the error may still be on its way.
    support::eventually(
        Duration::from_secs(10),
        "session back at the error",
        || async { db.stats().in_use == 0 },
    )
    .await;
    drop(rows);
    let n: i32 = db.query_one("SELECT 9", &[]).await.unwrap().get(0);
    assert_eq!(n, 9);
    let s = db.stats();
    assert_eq!((s.created, s.broken_closed), (1, 0), "{s:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_statement_runs_on_two_different_sessions() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "prepared").max_open(2).build().unwrap();
    let stmt = db
        .prepare("SELECT $1::int * 2, pg_backend_pid()")
        .await
        .unwrap();
    assert_eq!(stmt.params(), [pool_sql::types::Type::INT4]);
    let names: Vec<&str> = stmt.columns().map(|(n, _)| n).collect();
    assert_eq!(names, ["?column?", "pg_backend_pid"]);

    let mut a = db.conn().await.unwrap();
    let mut b = db.conn().await.unwrap();
    let cached = (
        a.get_ref().cached_statements(),
        b.get_ref().cached_statements(),
    );
    let ra = a.query_one(&stmt, &[&21i32]).await.unwrap();
    let rb = b.query_one(&stmt, &[&4i32]).await.unwrap();
    assert_eq!((ra.get::<_, i32>(0), rb.get::<_, i32>(0)), (42, 8));
    assert_ne!(
        ra.get::<_, i32>(1),
        rb.get::<_, i32>(1),
        "two different sessions"
    );
    // Each session prepared it on first use, once (by the cache), at most.
    assert!(a.get_ref().cached_statements() <= cached.0 + 1);
    assert_eq!(
        b.get_ref().cached_statements(),
        cached.1 + 1,
        "prepared on first use"
    );
    // Again on the same session: from its cache.
    let again = b.query_one(&stmt, &[&5i32]).await.unwrap();
    assert_eq!(again.get::<_, i32>(0), 10);
    assert_eq!(b.get_ref().cached_statements(), cached.1 + 1);
    // The handle works as a stream and in a transaction too.
    let mut rows = b.query_stream(&stmt, &[&1i32]).await.unwrap();
    assert_eq!(rows.try_next().await.unwrap().unwrap().get::<_, i32>(0), 2);
    assert!(rows.try_next().await.unwrap().is_none());
    drop(rows);
    drop((a, b));
    let mut tx = db.begin().await.unwrap();
    assert_eq!(tx.execute(&stmt, &[&1i32]).await.unwrap(), 1);
    tx.commit().await.unwrap();

    let err = db.prepare("SELEC 1").await.unwrap_err();
    assert_eq!(err.code(), Some(&pool_sql::SqlState::SYNTAX_ERROR));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prepared_statement_runs_unnamed_with_the_cache_off() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "unnamed").statement_cache(0).build().unwrap();
    let stmt = db.prepare("SELECT $1::int + 1").await.unwrap();
    let n: i32 = db.query_one(&stmt, &[&1i32]).await.unwrap().get(0);
    assert_eq!(n, 2);
    let left: i64 = db
        .query_one("SELECT count(*) FROM pg_prepared_statements", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0, "nothing prepared stays on the server");
}

struct Account {
    id: i32,
    owner: String,
    note: Option<String>,
}

impl FromRow for Account {
    fn from_row(row: &Row) -> Result<Self, Error> {
        Ok(Account {
            id: pool_sql::get(row, "id")?,
            owner: pool_sql::get(row, "owner")?,
            note: pool_sql::get(row, "note")?,
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_as_reads_tuples_and_structs_and_names_the_column_that_does_not_convert() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "typed").build().unwrap();
    let pairs: Vec<(i32, String)> = db
        .query_as("SELECT x, 'n' || x FROM generate_series(1, 3) x", &[])
        .await
        .unwrap();
    assert_eq!(pairs[2], (3, "n3".to_owned()));
    let acct: Account = db
        .query_one_as("SELECT 1 AS id, 'ann' AS owner, NULL::text AS note", &[])
        .await
        .unwrap();
    assert_eq!((acct.id, acct.owner.as_str(), acct.note), (1, "ann", None));
    let none: Option<(i32,)> = db.query_opt_as("SELECT 1 WHERE false", &[]).await.unwrap();
    assert!(none.is_none());

    // A wrong type: the column is named, the cause says which types.
    let err = db
        .query_as::<(i32, i32)>("SELECT 1 AS id, 'x'::text AS owner", &[])
        .await
        .unwrap_err();
    assert_eq!(err.column(), Some("owner"), "{err:?}");
    assert_eq!(err.to_string(), "could not read column \"owner\" of a row");
    let cause = std::error::Error::source(&err)
        .expect("a cause")
        .to_string();
    assert!(cause.contains("i32") && cause.contains("text"), "{cause}");
    // A NULL into a type that is not an Option: named too.
    let err = db
        .query_one_as::<Account>(
            "SELECT 1 AS id, NULL::text AS owner, NULL::text AS note",
            &[],
        )
        .await
        .err()
        .expect("a NULL owner fails");
    assert_eq!(err.column(), Some("owner"), "{err:?}");
    // A missing column: no name to give, the cause names what was asked for.
    let err = db
        .query_one_as::<(i32, i32)>("SELECT 1", &[])
        .await
        .unwrap_err();
    assert_eq!(err.column(), None);
    assert!(std::error::Error::source(&err).is_some(), "{err:?}");
    // Row count errors stay the same.
    let err = db
        .query_one_as::<(i32,)>("SELECT 1 WHERE false", &[])
        .await
        .err()
        .unwrap();
    assert!(err.is_no_rows());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_the_server_stalls_past_query_timeout_fails_in_time_and_closes_its_session() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    let db = db(&pg, "stalled")
        .max_open(1)
        .query_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    // Rows flow (many batches), then the server stalls on the last one for 30 s.
    let mut rows = db
        .query_stream(
            "SELECT g, CASE WHEN g = 200000 THEN pg_sleep(30) END \
             FROM generate_series(1, 200000) g",
            &[],
        )
        .await
        .unwrap();
    let started = tokio::time::Instant::now();
    let mut read = 0;
    let err = loop {
        match rows.next().await.expect("no end before the stall") {
            Ok(_) => read += 1,
            Err(e) => break e,
        }
    };
    assert!(read > 1000, "rows came before the stall: {read}");
    assert!(err.is_timeout(), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the client's bound, not the server's 30 s: {:?}",
        started.elapsed()
    );
    assert!(rows.next().await.is_none());
    drop(rows);
    // The session was given up (cancel request, connection closed); the pool serves on.
    support::eventually(
        Duration::from_secs(10),
        "the stalled session closed",
        || async { db.stats().broken_closed == 1 },
    )
    .await;
    assert_eq!(support::ints(&db, "SELECT 3").await, [3]);
    support::eventually(Duration::from_secs(10), "stopped on the server", || async {
        active(&admin, "stalled", "pg_sleep").await == 0
    })
    .await;
}
