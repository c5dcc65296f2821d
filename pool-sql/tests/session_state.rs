//! A session never carries one caller's transaction into the next: the server's own
//! transaction status (ReadyForQuery) decides, and a session returned in a transaction is
//! rolled back on return, before anyone else can get it.

mod support;

use std::time::Duration;

use pool_sql::testing::TestPg;
use support::{admin, db, eventually, idle_in_transaction, ints};

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
    assert!(conn.get_ref().in_transaction());
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
                    .transaction(async |tx| {
                        tx.execute("INSERT INTO t VALUES (1)", &[]).await?;
                        tx.batch_execute("SELECT pg_sleep(0.005)").await?;
                        tx.execute("INSERT INTO t VALUES (2)", &[]).await
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

/// What one session leaves behind, as the next caller on the same (only) session sees it.
struct Leftovers {
    setting: String,
    temp_table: bool,
    advisory_lock: bool,
    listening: bool,
    /// Statements the session's cache held when the next caller got it.
    cached: usize,
}

async fn leave_state_and_look(db: &pool_sql::Db, admin: &pool_sql::Db, app: &str) -> Leftovers {
    let mut conn = db.conn().await.unwrap();
    conn.batch_execute(
        "SET statement_timeout = '4321ms'; CREATE TEMP TABLE scratch (x int); \
         SELECT pg_advisory_lock(hashtext(current_setting('application_name'))); LISTEN leftovers",
    )
    .await
    .unwrap();
    conn.query("SELECT 1 + $1::int", &[&1i32]).await.unwrap();
    assert!(conn.get_ref().cached_statements() > 0);
    drop(conn);
    // Nobody borrows: a session reset runs on return all the same.
    let locks = || async {
        admin
            .query_one(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid) \
                 WHERE l.locktype = 'advisory' AND a.application_name = $1",
                &[&app],
            )
            .await
            .unwrap()
            .get::<_, i64>(0)
    };
    let reset = db.pool().manager().session_reset().is_some();
    if reset {
        eventually(
            Duration::from_secs(10),
            "the lock is released on return",
            || async { locks().await == 0 },
        )
        .await;
    }
    let mut conn = db.conn().await.unwrap();
    let cached = conn.get_ref().cached_statements();
    let setting: String = conn
        .query_one("SHOW statement_timeout", &[])
        .await
        .unwrap()
        .get(0);
    let temp_table: bool = conn
        .query_one("SELECT to_regclass('pg_temp.scratch') IS NOT NULL", &[])
        .await
        .unwrap()
        .get(0);
    let listening: bool = conn
        .query_one("SELECT count(*) > 0 FROM pg_listening_channels()", &[])
        .await
        .unwrap()
        .get(0);
    let advisory_lock = locks().await > 0;
    // The statement prepared before still runs (prepared again if it was discarded).
    let two: i32 = conn
        .query_one("SELECT 1 + $1::int", &[&1i32])
        .await
        .unwrap()
        .get(0);
    assert_eq!(two, 2);
    drop(conn);
    Leftovers {
        setting,
        temp_table,
        advisory_lock,
        listening,
        cached,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_reset_session_state_survives_and_with_discard_all_none_does() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);

    // The contract without it (as database/sql): settings, temp tables, advisory locks and
    // LISTEN stay with the session.
    let plain = db(&pg, "no-reset").max_open(1).build().unwrap();
    let left = leave_state_and_look(&plain, &admin, "no-reset").await;
    assert_eq!(left.setting, "4321ms");
    assert!(left.temp_table && left.advisory_lock && left.listening);
    assert!(left.cached > 0);

    let discard = db(&pg, "discard-all")
        .max_open(1)
        .session_reset(pool_sql::SessionReset::DiscardAll)
        .build()
        .unwrap();
    let left = leave_state_and_look(&discard, &admin, "discard-all").await;
    assert_eq!(left.setting, "0", "the setting is back to its default");
    assert!(!left.temp_table && !left.advisory_lock && !left.listening);
    assert_eq!(
        left.cached, 0,
        "DISCARD ALL dropped the statements: the cache too"
    );
    let s = discard.stats();
    assert_eq!(
        (s.created, s.broken_closed),
        (1, 0),
        "reset, not replaced: {s:?}"
    );

    // The caller's own SQL; a reset that fails closes the session.
    let own = db(&pg, "own-reset")
        .max_open(1)
        .session_reset(pool_sql::SessionReset::Sql {
            sql: "RESET ALL; SELECT pg_advisory_unlock_all()".into(),
            discards_statements: false,
        })
        .build()
        .unwrap();
    let left = leave_state_and_look(&own, &admin, "own-reset").await;
    assert_eq!(left.setting, "0");
    assert!(!left.advisory_lock && left.temp_table && left.listening);
    assert!(left.cached > 0, "statements survive this reset");
    let bad = db(&pg, "bad-reset")
        .max_open(1)
        .session_reset(pool_sql::SessionReset::Sql {
            sql: "SELECT no_such_function()".into(),
            discards_statements: false,
        })
        .build()
        .unwrap();
    bad.execute("SELECT 1", &[]).await.unwrap();
    bad.execute("SELECT 1", &[]).await.unwrap();
    eventually(Duration::from_secs(10), "both sessions closed", || async {
        let s = bad.stats();
        s.broken_closed == 2 && s.open == 0
    })
    .await;
    assert_eq!(bad.stats().created, 2, "each failed reset cost its session");
}

/// tokio-postgres decodes every text as UTF-8. One caller's `set_config('client_encoding',
/// ...)` (or `SET client_encoding`, or a function's `SET` clause) leaves a session the server
/// reports (ParameterStatus) in LATIN1: handed to the next caller, its `é` came back as one
/// byte that is not UTF-8. The server's report decides: such a session is closed when it
/// comes back; one set back to UTF8 before that is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_left_in_another_client_encoding_is_not_handed_to_the_next_caller() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "encoding").max_open(1).build().unwrap();
    db.query_one("SELECT set_config('client_encoding', 'LATIN1', false)", &[])
        .await
        .unwrap();
    // The next caller, who knows nothing of it.
    let e: String = db
        .query_one("SELECT chr(233)", &[])
        .await
        .expect("the next caller's statement")
        .try_get(0)
        .expect("the next caller's text decodes");
    assert_eq!(e, "é");
    assert_eq!(db.stats().broken_closed, 1, "{:?}", db.stats());

    // Through a `Conn`, by SQL text; and set back before the session goes back: kept.
    let mut conn = db.conn().await.unwrap();
    conn.batch_execute("SET client_encoding TO 'SQL_ASCII'")
        .await
        .unwrap();
    drop(conn);
    let mut conn = db.conn().await.unwrap();
    conn.batch_execute("SET client_encoding TO 'LATIN1'; RESET client_encoding")
        .await
        .unwrap();
    drop(conn);
    let e: String = db.query_one("SELECT chr(233)", &[]).await.unwrap().get(0);
    assert_eq!(e, "é");
    let s = db.stats();
    assert_eq!((s.broken_closed, s.created), (2, 3), "{s:?}");
}

/// `SET client_encoding = 'UNICODE'` leaves the session in UTF8, but PostgreSQL reports it
/// as `UNICODE`, verbatim (`check_client_encoding` keeps that one alias for old JDBC
/// drivers), and the session was closed as if in a foreign encoding. Its text decodes: the
/// session is kept. So it is with the other spellings (`utf-8`, `Unicode`), which this
/// server reports as `UTF8`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_in_client_encoding_unicode_is_utf8_and_kept() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "unicode").max_open(1).build().unwrap();
    for (alias, reported) in [
        ("UNICODE", "UNICODE"),
        ("utf-8", "UTF8"),
        ("Unicode", "UTF8"),
    ] {
        let mut conn = db.conn().await.unwrap();
        conn.batch_execute(&format!("SET client_encoding = '{alias}'"))
            .await
            .unwrap();
        let row = conn
            .query_one("SELECT current_setting('client_encoding'), chr(233)", &[])
            .await
            .unwrap();
        let (enc, e): (String, String) = (row.get(0), row.get(1));
        assert_eq!((enc.as_str(), e.as_str()), (reported, "é"), "{alias}");
        drop(conn);
        db.query_one("SELECT 1", &[]).await.unwrap();
    }
    let s = db.stats();
    assert_eq!(
        (s.broken_closed, s.created),
        (0, 1),
        "a UTF8 session was closed: {s:?}"
    );
}

/// With `DiscardAll`, state set in ways other than a plain `SET` (a function calling
/// `set_config`, `SET` inside a `DO` block, `set_config` as a query, `SET ROLE`, a cursor
/// `WITH HOLD`, a statement prepared in SQL, an advisory lock taken in a function) reaches
/// no later caller.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discard_all_clears_state_however_it_was_set() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    admin
        .batch_execute(
            "CREATE ROLE probe_low NOLOGIN; \
             CREATE FUNCTION probe_set() RETURNS void LANGUAGE plpgsql AS $$ BEGIN \
               PERFORM set_config('search_path', 'pg_catalog', false); \
               PERFORM set_config('myapp.tenant', 'evil', false); \
               PERFORM pg_advisory_lock(77); END $$",
        )
        .await
        .unwrap();
    let db = db(&pg, "discard-however")
        .max_open(1)
        .session_reset(pool_sql::SessionReset::DiscardAll)
        .build()
        .unwrap();
    let mut conn = db.conn().await.unwrap();
    conn.execute("SELECT probe_set()", &[]).await.unwrap();
    conn.batch_execute(
        "DO $$ BEGIN SET TIME ZONE 'Asia/Tokyo'; END $$; \
         SELECT set_config('statement_timeout', '1234', false); \
         PREPARE probe_p AS SELECT 1; \
         BEGIN; DECLARE probe_c CURSOR WITH HOLD FOR SELECT 1; COMMIT; \
         SET ROLE probe_low",
    )
    .await
    .unwrap();
    drop(conn);
    eventually(Duration::from_secs(10), "the reset is done", || async {
        db.stats().resetting == 0 && db.stats().idle == 1
    })
    .await;
    let row = db
        .query_one(
            "SELECT current_setting('search_path'), current_setting('myapp.tenant', true), \
             current_setting('TimeZone'), current_setting('statement_timeout'), \
             current_user::text, \
             (SELECT count(*) FROM pg_prepared_statements WHERE name = 'probe_p'), \
             (SELECT count(*) FROM pg_cursors WHERE name = 'probe_c'), \
             (SELECT count(*) FROM pg_locks \
              WHERE locktype = 'advisory' AND pid = pg_backend_pid())",
            &[],
        )
        .await
        .unwrap();
    let search_path: String = row.get(0);
    let tenant: Option<String> = row.get(1);
    let tz: String = row.get(2);
    let st: String = row.get(3);
    let user: String = row.get(4);
    let (prepared, cursors, locks): (i64, i64, i64) = (row.get(5), row.get(6), row.get(7));
    assert_eq!(search_path, "\"$user\", public");
    assert!(tenant.as_deref().is_none_or(str::is_empty), "{tenant:?}");
    assert_ne!(tz, "Asia/Tokyo");
    assert_eq!(st, "0");
    assert_eq!(user, "postgres");
    assert_eq!((prepared, cursors, locks), (0, 0, 0));
}
