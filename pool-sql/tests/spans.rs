//! Tracing spans: each statement is a `statement` span (target `pool_sql`, level DEBUG)
//! with `db` (`user@host:port/db`, no password) and `command` (the first keyword), then
//! `rows` or `error`, `session` (the server's pid), `retried` (bad-connection re-runs) and
//! `duration`; the closure forms of transactions put a `transaction` span around their
//! statements, with `attempts` and `committed`. A `Db` call's `checkout` span (target
//! `pool_core`) and a new session's `create` span sit inside its statement span. Never the statement's text or its parameters. And with
//! pool-core's leak detection on, a session held too long is reported at the line of the
//! user's `conn()`, `begin()` or `transaction()`, not at pool-sql's.

use std::sync::OnceLock;
use std::time::Duration;

use pool_core::testing::spans::{Capture, CapturedSpan};
use pool_sql::testing::TestPg;
use pool_sql::{Db, TxOptions};

/// One capture for the whole test binary, the global default: each test reads the spans of
/// its own thread (its current-thread runtime runs the pool's tasks there).
fn capture() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::new();
            tracing::subscriber::set_global_default(capture.clone())
                .expect("no other global subscriber in this binary");
            capture
        })
        .clone()
}

fn statements(capture: &Capture) -> Vec<CapturedSpan> {
    capture.spans_named("pool_sql", "statement")
}

#[tokio::test]
async fn statement_spans_hold_their_checkout_and_say_what_ran_but_not_its_text() {
    let capture = capture();
    let pg = TestPg::start().expect("postgres");
    let db = Db::builder(&pg.url()).max_open(1).build().unwrap();

    let rows = db
        .query(
            "  -- the caller's note\n /* and a block */ select $1::text union all select 'b'",
            &[&"t0psecret"],
        )
        .await
        .unwrap();
    assert_eq!(rows.len(), 2);
    db.execute("CREATE TEMP TABLE t (x int)", &[])
        .await
        .unwrap();
    let err = db
        .execute("INSERT INTO missing VALUES (1)", &[])
        .await
        .unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42P01"));

    let spans = statements(&capture);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let show = |s: &CapturedSpan| {
        ["command", "rows", "error"].map(|f| s.field(f).unwrap_or("-").to_owned())
    };
    assert_eq!(show(&spans[0]), ["SELECT", "2", "-"]);
    assert_eq!(show(&spans[1]), ["CREATE", "0", "-"]);
    assert_eq!(show(&spans[2]), ["INSERT", "-", err.to_string().as_str()]);
    let db_field = spans[0].field("db").expect("db").to_owned();
    assert!(
        db_field.contains('@') && db_field.contains(':'),
        "{db_field}"
    );
    assert!(
        spans
            .iter()
            .all(|s| s.field("db") == Some(db_field.as_str()))
    );

    // Each Db call checked its session out inside its statement span; the first one
    // created it there.
    let checkouts = capture.spans_named("pool_core", "checkout");
    assert_eq!(checkouts.len(), 3);
    for (c, s) in checkouts.iter().zip(&spans) {
        assert_eq!(c.parent, Some(s.id));
    }
    assert_eq!(checkouts[0].field("via"), Some("created"));
    assert_eq!(checkouts[1].field("via"), Some("idle"));
    let creates = capture.spans_named("pool_core", "create");
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0].parent, None);
    assert_eq!(creates[0].follows, [checkouts[0].id]);

    // A first word that is not one of PostgreSQL's commands is not shown.
    let err = db.batch_execute("s3cretword").await.unwrap_err();
    assert_eq!(err.code().map(|c| c.code()), Some("42601"));
    let last = statements(&capture).pop().expect("a span");
    assert_eq!(last.field("command"), Some("OTHER"));

    for s in capture.spans() {
        for (name, value) in &s.fields {
            for text in ["t0psecret", "missing", "note", "union", "s3cretword"] {
                assert!(
                    !value.contains(text),
                    "span {} field {name} = {value}",
                    s.name
                );
            }
        }
    }
    db.close_and_wait(std::time::Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_pinned_session_and_a_transaction_trace_each_statement() {
    let capture = capture();
    let pg = TestPg::start().expect("postgres");
    let db = Db::builder(&pg.url()).build().unwrap();

    let mut conn = db.conn().await.unwrap();
    conn.execute("SET application_name = 'spans'", &[])
        .await
        .unwrap();
    let mut tx = conn.begin().await.unwrap();
    tx.query("SELECT 1", &[]).await.unwrap();
    tx.commit().await.unwrap();
    let tx = db.begin().await.unwrap();
    tx.rollback().await.unwrap();

    let commands: Vec<String> = statements(&capture)
        .iter()
        .map(|s| s.field("command").unwrap_or("-").to_owned())
        .collect();
    assert_eq!(
        commands,
        ["SET", "BEGIN", "SELECT", "COMMIT", "BEGIN", "ROLLBACK"]
    );
    // `db.conn()` checks out outside any statement; `db.begin()` inside its BEGIN.
    let spans = statements(&capture);
    let checkouts = capture.spans_named("pool_core", "checkout");
    assert_eq!(checkouts.len(), 2);
    assert_eq!(checkouts[0].parent, None);
    assert_eq!(checkouts[1].parent, Some(spans[4].id));
    db.close_and_wait(std::time::Duration::from_secs(5))
        .await
        .unwrap();
}

#[tokio::test]
async fn a_session_held_too_long_is_reported_at_the_users_line() {
    let capture = capture();
    let pg = TestPg::start().expect("postgres");
    let mut config = pool_core::Config::default();
    config.max_open = 4;
    config.leak_threshold = Some(std::time::Duration::from_millis(50));
    let db = Db::builder(&pg.url()).pool(config).build().unwrap();

    let conn_line = line!() + 1;
    let conn = db.conn().await.unwrap();
    let begin_line = line!() + 1;
    let tx = db.begin().await.unwrap();
    let (release, released) = tokio::sync::oneshot::channel::<()>();
    let in_task = db.clone();
    let transaction_line = line!() + 3;
    let transaction = tokio::spawn(async move {
        in_task
            .transaction(async |_tx| {
                released.await.ok();
                Ok::<_, pool_sql::Error>(())
            })
            .await
    });

    let callers = || -> Vec<String> {
        capture
            .events()
            .iter()
            .filter(|e| e.level == tracing::Level::WARN && e.target == "pool_core")
            .filter_map(|e| e.fields.get("caller").cloned())
            .collect()
    };
    pool_core::testing::eventually("three leak reports", || callers().len() >= 3).await;
    let mut callers = callers();
    callers.sort();
    let mut expected: Vec<String> = [conn_line, begin_line, transaction_line]
        .iter()
        .map(|line| format!("{}:{line}:", file!()))
        .collect();
    expected.sort();
    for (caller, want) in callers.iter().zip(&expected) {
        assert!(
            caller.starts_with(want.as_str()),
            "{caller} is not at {want}"
        );
    }
    assert_eq!(db.stats().held_too_long, 3);
    drop(conn);
    tx.rollback().await.unwrap();
    release.send(()).unwrap();
    transaction.await.unwrap().unwrap();
    db.close_and_wait(std::time::Duration::from_secs(5))
        .await
        .unwrap();
}

/// A `Debug` of a `Duration` ("1.5ms", "812.3µs", "2s") back as one.
fn parse_duration(text: &str) -> Duration {
    let units = [("ns", 1e-9), ("µs", 1e-6), ("ms", 1e-3), ("s", 1.0)];
    let (number, scale) = units
        .iter()
        .find_map(|(unit, scale)| Some((text.strip_suffix(unit)?, *scale)))
        .unwrap_or_else(|| panic!("not a duration: {text}"));
    Duration::from_secs_f64(number.parse::<f64>().expect(text) * scale)
}

#[tokio::test]
async fn statement_spans_record_the_session_the_duration_and_the_retries() {
    let capture = capture();
    let pg = TestPg::start().expect("postgres");
    let db = Db::builder(&pg.url()).max_open(4).build().unwrap();

    // The session: the server's pid of the session the statement ran on.
    let first: i32 = db
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    db.execute("SELECT pg_sleep(0.05)", &[]).await.unwrap();
    // A bad connection: the idle session's next write fails, the statement runs again on
    // a new session.
    {
        let conn = db.conn().await.unwrap();
        conn.get_ref().fail_next_write();
    }
    db.execute("SELECT 1", &[]).await.unwrap();
    let second: i32 = db
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    assert_ne!(first, second);

    let spans = statements(&capture);
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let show =
        |s: &CapturedSpan| ["session", "retried"].map(|f| s.field(f).unwrap_or("-").to_owned());
    let (first, second) = (first.to_string(), second.to_string());
    assert_eq!(show(&spans[0]), [first.as_str(), "0"]);
    assert_eq!(show(&spans[1]), [first.as_str(), "0"]);
    assert_eq!(
        show(&spans[2]),
        [second.as_str(), "1"],
        "retried once, on the new session"
    );
    assert_eq!(show(&spans[3]), [second.as_str(), "0"]);
    let took = |s: &CapturedSpan| parse_duration(s.field("duration").expect("a duration"));
    assert!(
        took(&spans[1]) >= Duration::from_millis(50),
        "{:?}",
        spans[1]
    );
    assert!(took(&spans[0]) < took(&spans[1]), "{spans:#?}");

    // A transaction run twice (its first run conflicts): a `transaction` span holds the
    // statement spans of both runs, each on its session, and records the attempts.
    let mut runs = 0;
    let pid: i32 = db
        .transaction_retry(TxOptions::new().backoff(Duration::ZERO), async |tx| {
            runs += 1;
            if runs == 1 {
                tx.batch_execute(
                    "DO $$ BEGIN RAISE EXCEPTION 'x' USING ERRCODE = 'serialization_failure'; END $$",
                )
                .await?;
            }
            Ok::<i32, pool_sql::Error>(tx.query_one("SELECT pg_backend_pid()", &[]).await?.get(0))
        })
        .await
        .unwrap();
    let transactions = capture.spans_named("pool_sql", "transaction");
    assert_eq!(transactions.len(), 1);
    let t = &transactions[0];
    assert_eq!(
        (t.field("attempts"), t.field("committed")),
        (Some("2"), Some("true"))
    );
    let inside: Vec<CapturedSpan> = statements(&capture)
        .into_iter()
        .filter(|s| s.parent == Some(t.id))
        .collect();
    let commands: Vec<&str> = inside.iter().map(|s| s.field("command").unwrap()).collect();
    assert_eq!(
        commands,
        ["BEGIN", "DO", "ROLLBACK", "BEGIN", "SELECT", "COMMIT"]
    );
    let pid = pid.to_string();
    assert!(
        inside[3..]
            .iter()
            .all(|s| s.field("session") == Some(pid.as_str()))
    );
    assert!(inside.iter().all(|s| s.field("duration").is_some()));
    db.close_and_wait(Duration::from_secs(5)).await.unwrap();
}
