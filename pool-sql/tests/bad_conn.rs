//! Dead sessions: killed while idle or in use, the bad-connection retry in both directions,
//! and a server restart.

mod support;

use std::time::Duration;

use pool_sql::testing::TestPg;
use support::{admin, db, eventually, kill_sessions, sessions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_killed_while_idle_is_replaced_and_the_next_query_succeeds() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    let db = db(&pg, "idle-kill").max_open(2).build().unwrap();
    db.query("SELECT 1", &[]).await.unwrap();
    kill_sessions(&admin, "idle-kill").await;

    let row = db
        .query_one("SELECT 2", &[])
        .await
        .expect("served by a fresh session");
    assert_eq!(row.get::<_, i32>(0), 2);
    let s = db.stats();
    assert_eq!(s.created, 2, "{s:?}");
    assert_eq!(s.broken_closed, 1, "the dead session was discarded: {s:?}");
}

/// The race database/sql's retry exists for, made deterministic: on a current-thread
/// runtime the pool's connection task cannot run while the test blocks, so when the next
/// checkout comes the task has not read the server's goodbye and the client still looks
/// open. The socket probe at checkout sees the unread bytes, a round trip confirms, and
/// the session is discarded before any statement is sent on it.
#[tokio::test(flavor = "current_thread")]
async fn a_session_killed_before_its_connection_task_noticed_is_never_used() {
    let pg = TestPg::start().expect("postgres");
    let url = pg.url();
    let db = db(&pg, "retry-yes").max_open(2).build().unwrap();
    db.query("SELECT 1", &[]).await.unwrap();

    // Kill the idle session from another thread and runtime, blocking this one until the
    // server has ended it: our connection task gets no chance to notice.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let admin = pool_sql::Db::builder(&url)
                .application_name("admin")
                .build()
                .unwrap();
            kill_sessions(&admin, "retry-yes").await;
        });
    })
    .join()
    .unwrap();

    let row = db
        .query_one("SELECT 3", &[])
        .await
        .expect("served by a fresh session");
    assert_eq!(row.get::<_, i32>(0), 3);
    let s = db.stats();
    assert_eq!(s.created, 2, "{s:?}");
    assert_eq!(
        s.created,
        s.broken_closed + 1,
        "the dead session was discarded: {s:?}"
    );
}

/// The negative direction: a statement that reached the server is never run again, even
/// though its session died. A sequence (not rolled back) counts its executions.
/// The retry's positive direction, deterministic: a session whose socket fails the first
/// write (`fail_next_write`, feature `testing`: as a reset socket would, nothing sent). The
/// statement provably never reached the server, so it runs again on another session, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_never_left_is_retried_on_another_session_and_runs_once() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "retry-write").max_open(4).build().unwrap();
    db.batch_execute("CREATE SEQUENCE runs").await.unwrap();
    {
        let conn = db.conn().await.unwrap();
        conn.get_ref().fail_next_write();
    }
    assert_eq!(db.stats().idle, 1);

    let run: i64 = db
        .query_one("SELECT nextval('runs')", &[])
        .await
        .expect("retried on a healthy session")
        .get(0);
    assert_eq!(run, 1, "the statement ran exactly once");
    let s = db.stats();
    assert_eq!(s.created, 2, "the broken session was replaced: {s:?}");
    assert_eq!(s.broken_closed, 1, "{s:?}");
}

/// Two bad sessions in a row, then database/sql's third try on a never-used session: the
/// used idle session met on the way is closed unasked (it may be as dead as the others), and
/// a fresh one runs the statement, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_two_bad_sessions_the_third_try_takes_a_new_one() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "retry-third").max_open(4).build().unwrap();
    db.batch_execute("CREATE SEQUENCE runs").await.unwrap();
    // Three used sessions, idle, all of them going to fail their next write.
    let held = [
        db.conn().await.unwrap(),
        db.conn().await.unwrap(),
        db.conn().await.unwrap(),
    ];
    for mut conn in held {
        conn.query_one("SELECT 1", &[]).await.unwrap();
        assert!(conn.get_ref().uses() > 0);
        conn.get_ref().fail_next_write();
    }
    assert_eq!((db.stats().idle, db.stats().created), (3, 3));

    let run: i64 = db
        .query_one("SELECT nextval('runs')", &[])
        .await
        .expect("the third try, on a new session, succeeds")
        .get(0);
    assert_eq!(run, 1, "the statement ran exactly once");
    let s = db.stats();
    assert_eq!(s.created, 4, "one new session for the third try: {s:?}");
    assert_eq!(
        s.open, 1,
        "the two failed and the skipped used session are gone: {s:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_may_have_run_is_not_retried_and_says_why() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    admin.batch_execute("CREATE SEQUENCE runs").await.unwrap();
    let db = db(&pg, "retry-no").max_open(2).build().unwrap();
    let work = {
        let db = db.clone();
        tokio::spawn(async move { db.query("SELECT nextval('runs'), pg_sleep(30)", &[]).await })
    };
    eventually(Duration::from_secs(10), "the statement runs", || async {
        let n: i64 = admin
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'retry-no' AND state = 'active'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        n == 1
    })
    .await;
    kill_sessions(&admin, "retry-no").await;

    let err = work
        .await
        .unwrap()
        .expect_err("the statement's session was killed");
    assert!(err.is_server_shutdown(), "{err:?}");
    assert_eq!(
        err.code(),
        Some(&pool_sql::SqlState::ADMIN_SHUTDOWN),
        "{err}"
    );
    let runs: i64 = admin
        .query_one("SELECT last_value FROM runs", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(runs, 1, "run once, never again");
    assert_eq!(
        sessions(&admin, "retry-no").await,
        0,
        "no retry left a session behind"
    );
    // The pool is fine afterwards.
    db.query("SELECT 1", &[]).await.expect("next query");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_server_is_used_again_without_a_create_storm_while_it_was_down() {
    let pg = TestPg::start().expect("postgres");
    let db = db(&pg, "restart")
        .max_open(4)
        .acquire_timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    db.query("SELECT 1", &[]).await.unwrap();
    pg.stop().expect("stop");

    // Down: fifty calls in a row. Each fails (the killed session first, then connects
    // refused); the breaker keeps the connection attempts far below one per call.
    let before = db.stats().create_errors;
    for _ in 0..50 {
        let err = db.query("SELECT 1", &[]).await.expect_err("server down");
        assert!(
            err.is_closed()
                || err.is_connect_refused()
                || err.pool_error().is_some_and(|e| e.is_unavailable()),
            "{err:?}"
        );
    }
    let attempts = db.stats().create_errors - before;
    assert!(
        (1..=12).contains(&attempts),
        "connect attempts while down: {attempts}"
    );

    pg.resume().expect("resume");
    eventually(Duration::from_secs(15), "the pool serves again", || async {
        db.query("SELECT 1", &[]).await.is_ok()
    })
    .await;
}

/// The race the socket peek cannot close: `pg_terminate_backend` returns before the backends
/// exit, so the peek at checkout may see nothing yet and a statement goes out on a session
/// whose goodbye (FATAL 57P01) is on its way. That goodbye is then the statement's first
/// reply, on a session between statements: the statement never ran, and runs again on
/// another session, as database/sql retries a bad connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_on_sessions_terminated_between_statements_are_retried() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    let app = "terminated-idle";
    let db = db(&pg, app).max_open(3).max_idle(3).build().unwrap();
    for round in 0..10 {
        // Three sessions, used and idle: held at once, so three whatever the scheduling.
        let mut held = Vec::new();
        for _ in 0..3 {
            let mut conn = db.conn().await.unwrap();
            conn.query("SELECT 1", &[]).await.unwrap();
            held.push(conn);
        }
        drop(held);
        assert_eq!(db.stats().idle, 3, "round {round}");
        admin
            .execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
                &[&app],
            )
            .await
            .unwrap();
        let calls: Vec<_> = (0..6i32)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move { db.query_one("SELECT $1::int", &[&i]).await })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            let row = call
                .await
                .unwrap()
                .unwrap_or_else(|e| panic!("round {round}, call {i}: {e:?}"));
            assert_eq!(row.get::<_, i32>(0), i as i32);
        }
    }
}

/// The other direction, on a reused session: a statement killed while it runs is not run
/// again, whether its protocol answered before running (a prepared query: BindComplete came
/// first) or could not have (a simple-protocol batch, whose first reply may be the FATAL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_session_killed_mid_statement_runs_it_once() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    admin.batch_execute("CREATE SEQUENCE runs").await.unwrap();
    let app = "killed-reused";
    let db = db(&pg, app).max_open(1).build().unwrap();
    let batch = "DO $$ BEGIN PERFORM nextval('runs'); PERFORM pg_sleep(30); END $$";
    for (n, prepared) in [(1i64, true), (2, false)] {
        db.query("SELECT 1", &[]).await.unwrap(); // the session is reused from here on
        let work = {
            let db = db.clone();
            tokio::spawn(async move {
                if prepared {
                    db.query("SELECT nextval('runs'), pg_sleep(30)", &[])
                        .await
                        .map(drop)
                } else {
                    db.batch_execute(batch).await
                }
            })
        };
        let runs = || async {
            let runs: i64 = admin
                .query_one(
                    "SELECT CASE WHEN is_called THEN last_value ELSE 0 END FROM runs",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            runs
        };
        eventually(Duration::from_secs(10), "the statement runs", || async {
            runs().await == n
        })
        .await;
        kill_sessions(&admin, app).await;
        let err = work.await.unwrap().expect_err("killed");
        assert!(err.is_server_shutdown() || err.is_closed(), "{err:?}");
        assert_eq!(
            runs().await,
            n,
            "prepared {prepared}: run once, never again"
        );
    }
}

/// Regression: `validate_after` did nothing (the manager had no `validate`), so a session
/// that stopped answering while idle (here: black-holed by the proxy) took the next
/// statement with it. With it, the round trip times out under `hook_timeout`, the session is
/// closed, and the statement runs on a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validate_after_replaces_an_idle_session_that_stopped_answering() {
    use pool_core::testing::proxy::Faults;

    let rig = support::Rig::start("validate").await;
    let builder = rig
        .db()
        .max_open(1)
        .validate_after(Duration::ZERO)
        .query_timeout(Duration::from_secs(60));
    let mut pool = builder.pool_config().clone();
    pool.hook_timeout = Duration::from_millis(300);
    let db = builder.pool(pool).build().unwrap();
    db.execute("SELECT 1", &[]).await.unwrap();
    assert_eq!(rig.proxy.accepted(), 1);
    rig.proxy.set_conn(0, Some(Faults::black_hole()));

    let one: i32 = tokio::time::timeout(Duration::from_secs(20), db.query_one("SELECT 1", &[]))
        .await
        .expect("the statement went to the black-holed session")
        .unwrap()
        .get(0);
    assert_eq!(one, 1);
    assert_eq!(rig.proxy.accepted(), 2, "a new session served it");
    rig.proxy.set_conn(0, None);
    db.close_and_wait(Duration::from_secs(10)).await.unwrap();
}
