//! Clear errors: a full server, a wrong password, bad config, no credentials in messages;
//! and the server-side session count back to its baseline after `close`.

mod support;

use std::time::Duration;

use pool_sql::Db;
use pool_sql::testing::TestPg;
use support::{admin, db, eventually, sessions, wait_sessions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_is_a_clear_error_and_callers_are_served_once_a_slot_frees() {
    let pg = TestPg::builder()
        .max_connections(3)
        .start()
        .expect("postgres");
    let hog = db(&pg, "hog").max_open(3).build().unwrap();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(hog.conn().await.expect("a slot"));
    }
    let db = db(&pg, "starved").max_open(2).build().unwrap();
    let err = db.query("SELECT 1", &[]).await.unwrap_err();
    assert!(err.is_too_many_connections(), "{err:?}");
    assert!(err.to_string().contains("53300"), "{err}");

    // A caller that keeps calling gets the same clear error (or the breaker's fail-fast)
    // while the server is full, and is served as soon as a slot frees.
    let waiting = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tries = 0;
            loop {
                tries += 1;
                match db.query_one("SELECT 5", &[]).await {
                    Ok(r) => return (r.get::<_, i32>(0), tries),
                    Err(e) => assert!(
                        e.is_too_many_connections()
                            || e.pool_error().is_some_and(|p| p.is_unavailable()),
                        "{e:?}"
                    ),
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    drop(held.pop());
    hog.close();
    let (five, _) = tokio::time::timeout(Duration::from_secs(20), waiting)
        .await
        .expect("served once a slot freed")
        .unwrap();
    assert_eq!(five, 5);
}

/// HikariCP's behaviour, not database/sql's: while the server refuses new sessions (53300)
/// and sessions of ours are in use, queued calls wait for those sessions instead of failing;
/// in Go mode each call gets its connect error at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_makes_calls_wait_for_sessions_in_use_instead_of_failing() {
    let pg = TestPg::builder()
        .max_connections(3)
        .start()
        .expect("postgres");
    for go in [false, true] {
        let mut builder = db(&pg, "full").max_open(10);
        if go {
            builder = builder.go_mode().max_open(10);
        }
        let db = builder.build().unwrap();
        let mut held = Vec::new();
        for _ in 0..3 {
            held.push(db.conn().await.expect("a slot"));
        }
        let calls: Vec<_> = (0..10i32)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move { db.query_one("SELECT $1::int", &[&i]).await })
            })
            .collect();
        let s = db.stats();
        // The connects fail with 53300 while the three sessions are held.
        eventually(Duration::from_secs(10), "connects refused", || async {
            db.stats().create_errors > s.create_errors
        })
        .await;
        for conn in held.drain(..) {
            drop(conn);
        }
        let mut failed = 0;
        for (i, call) in calls.into_iter().enumerate() {
            match call.await.unwrap() {
                Ok(row) => assert_eq!(row.get::<_, i32>(0), i as i32),
                Err(e) => {
                    assert!(go, "call {i} failed although sessions came back: {e:?}");
                    assert!(e.is_too_many_connections(), "{e:?}");
                    failed += 1;
                }
            }
        }
        if go {
            assert!(
                failed > 0,
                "database/sql fails callers whose connect failed"
            );
        }
        db.close_and_wait(Duration::from_secs(10)).await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_an_auth_error_at_once_with_bounded_attempts_and_no_secret_printed() {
    let pg = TestPg::start().expect("postgres");
    let secret = "hunter2-not-this-one";
    let url = pg.url_with_password(secret).expect("local server");
    let db = Db::builder(&url).max_open(4).build().unwrap();
    for _ in 0..30 {
        let err = db.query("SELECT 1", &[]).await.unwrap_err();
        assert!(
            err.is_auth_failed() || err.pool_error().is_some_and(|p| p.is_unavailable()),
            "{err:?}"
        );
        for text in [err.to_string(), format!("{err:?}"), format!("{db:?}")] {
            assert!(!text.contains(secret), "secret printed: {text}");
        }
    }
    let first = db.query("SELECT 1", &[]).await.unwrap_err();
    let attempts = db.stats().create_errors;
    assert!(
        (1..=10).contains(&attempts),
        "connect attempts for 31 calls: {attempts} ({first})"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_config_is_a_clear_error_without_the_secret() {
    let err = Db::open("postgres://u:s3cret-pw@localhost:notaport/db").unwrap_err();
    assert!(err.is_config(), "{err:?}");
    assert_eq!(err.knob(), Some("url"));
    assert!(!format!("{err} {err:?}").contains("s3cret-pw"), "{err:?}");

    let err = Db::builder("postgres://localhost/db")
        .max_lifetime(Duration::ZERO)
        .build()
        .unwrap_err();
    assert_eq!(err.knob(), Some("max_lifetime"), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_refused_is_reported_as_such() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = Db::open(&format!("postgres://u:p@127.0.0.1:{port}/db")).unwrap();
    let err = db.query("SELECT 1", &[]).await.unwrap_err();
    assert!(err.is_connect_refused(), "{err:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_carry_the_application_name_and_close_returns_to_baseline() {
    let pg = TestPg::start().expect("postgres");
    let admin = admin(&pg);
    let db = Db::builder(&pg.url())
        .max_open(5)
        .max_idle(5)
        .build()
        .unwrap();
    let mut held = Vec::new();
    for _ in 0..5 {
        let mut c = db.conn().await.unwrap();
        c.query("SELECT 1", &[]).await.unwrap();
        held.push(c);
    }
    wait_sessions(&admin, pool_sql::DEFAULT_APPLICATION_NAME, 5).await;
    drop(held);
    db.close_and_wait(Duration::from_secs(10))
        .await
        .expect("all closed");
    eventually(
        Duration::from_secs(10),
        "the server has no session of ours",
        || async { sessions(&admin, pool_sql::DEFAULT_APPLICATION_NAME).await == 0 },
    )
    .await;
    let err = db.query("SELECT 1", &[]).await.unwrap_err();
    assert!(err.is_closed(), "{err:?}");
}
