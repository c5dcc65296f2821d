//! Clear errors: a full server, a wrong password, bad config, no credentials in messages;
//! the server-side session count back to its baseline after `close`; and the rendered
//! chains of the common failures (hyper's policy: each level says its own fact once, the
//! cause is the source), as `{:#}` in anyhow prints them.

mod support;

use std::error::Error as StdError;
use std::time::Duration;

use pool_sql::testing::TestPg;
use pool_sql::{Db, SqlState};
use support::{admin, db, eventually, sessions, wait_sessions};

/// `e`, then its source, and so on.
fn chain<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |e: &&'a (dyn StdError + 'static)| {
        let e: &'a (dyn StdError + 'static) = *e;
        e.source()
    })
}

/// Each level of `e`'s chain: its `Display`, then its source's, and so on.
fn levels(e: &(dyn StdError + 'static)) -> Vec<String> {
    chain(e).map(ToString::to_string).collect()
}

/// The chain on one line, joined with ": ", as anyhow's `{:#}` prints it; after checking
/// that each level says its own fact ([`assert_each_fact_once`]).
fn render(e: &(dyn StdError + 'static)) -> String {
    let levels = levels(e);
    assert_each_fact_once(&levels);
    levels.join(": ")
}

/// Each level says its own fact: none is empty, and no two share a run of
/// [`REPEAT`] characters (a message, or a sentence of one: the old chains printed the
/// server's message in the statement's level and again as its source). Context may recur
/// below that length: the tests' hosts (`127.0.0.1:port`) are shorter.
fn assert_each_fact_once(levels: &[String]) {
    for (i, upper) in levels.iter().enumerate() {
        assert!(!upper.is_empty(), "an empty level in {levels:?}");
        for lower in &levels[i + 1..] {
            let chars: Vec<char> = lower.chars().collect();
            let shared = chars
                .windows(REPEAT.min(chars.len()))
                .map(|w| w.iter().collect::<String>())
                .find(|run| upper.contains(run.as_str()));
            assert!(
                shared.is_none(),
                "{upper:?} repeats {shared:?} of {lower:?} (chain {levels:?})"
            );
        }
    }
}

/// The length of a shared run of text that counts as a repeated fact.
const REPEAT: usize = 24;

/// Neither the chain nor `Debug` shows `secret`.
fn assert_no_secret(e: &pool_sql::Error, secret: &str) {
    for shown in [levels(e).join(": "), format!("{e:?}"), format!("{e:#?}")] {
        assert!(!shown.contains(secret), "a password in {shown}");
    }
}

/// `host:port` of a local test server.
fn addr(pg: &TestPg) -> String {
    format!("127.0.0.1:{}", pg.port().expect("a local server"))
}

#[test]
fn the_chain_check_fails_on_a_level_that_repeats_its_cause() {
    // pool-sql's chains before issue 19: the server's message in the statement's Display,
    // and again as its source; the pool's message twice.
    for old in [
        &[
            "postgres statement failed: syntax error at or near \"SELEC\" (42601)",
            "db error",
            "ERROR: syntax error at or near \"SELEC\"",
        ][..],
        &[
            "pool failed to create a connection",
            "pool failed to create a connection",
            "could not open a postgres session",
        ][..],
    ] {
        let old: Vec<String> = old.iter().map(|s| (*s).to_owned()).collect();
        let caught = std::panic::catch_unwind(|| assert_each_fact_once(&old));
        assert!(caught.is_err(), "not caught: {old:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_of_a_refused_connect_names_the_target_once_per_level_and_ends_in_the_os_error() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let secret = "refused-s3cret";
    let db = Db::open(&format!("postgres://app:{secret}@127.0.0.1:{port}/shop")).unwrap();
    let err = db.query("SELECT 1", &[]).await.unwrap_err();
    assert!(err.is_connect_refused() && err.is_connect(), "{err:?}");
    let levels = levels(&err);
    render(&err);
    assert_eq!(
        levels[..3],
        [
            format!("could not connect to app@127.0.0.1:{port}/shop"),
            "pool failed to create a connection".to_owned(),
            format!("connect to 127.0.0.1:{port} refused"),
        ],
        "{levels:?}"
    );
    // The last level is the socket's own error (its text is the OS's).
    assert_eq!(levels.len(), 4, "{levels:?}");
    let last = chain(&err).last().unwrap();
    let io = last.downcast_ref::<std::io::Error>().expect("an io::Error");
    assert_eq!(io.kind(), std::io::ErrorKind::ConnectionRefused);
    assert_no_secret(&err, secret);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_of_a_wrong_password_and_of_an_unknown_database_ends_in_the_servers_words() {
    let pg = TestPg::start().expect("postgres");
    let at = addr(&pg);
    let secret = "hunter2-not-this-one";
    let db = Db::open(&pg.url_with_password(secret).unwrap()).unwrap();
    let err = db.ping().await.unwrap_err();
    assert!(err.is_auth_failed() && err.is_connect(), "{err:?}");
    assert_eq!(err.code(), Some(&SqlState::INVALID_PASSWORD));
    assert_eq!(
        render(&err),
        format!(
            "could not connect to postgres@{at}/postgres: pool failed to create a connection: \
             {at} refused the session (SQLSTATE 28P01): FATAL: password authentication failed \
             for user \"postgres\""
        )
    );
    assert_no_secret(&err, secret);

    let url = format!(
        "{}/no_such_db",
        pg.url()
            .strip_suffix("/postgres")
            .expect("a url ending in the database")
    );
    let db = Db::open(&url).unwrap();
    let err = db.ping().await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::INVALID_CATALOG_NAME), "{err:?}");
    assert_eq!(
        render(&err),
        format!(
            "could not connect to postgres@{at}/no_such_db: pool failed to create a \
             connection: {at} refused the session (SQLSTATE 3D000): FATAL: database \
             \"no_such_db\" does not exist"
        )
    );
    assert_no_secret(&err, TestPg::PASSWORD);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_of_a_statement_error_is_its_sqlstate_then_the_servers_message() {
    let pg = TestPg::start().expect("postgres");
    let db = Db::builder(&pg.url()).max_open(1).build().unwrap();
    let err = db.query("SELEC 1", &[]).await.unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::SYNTAX_ERROR));
    assert_eq!(
        render(&err),
        "postgres statement failed (SQLSTATE 42601): ERROR: syntax error at or near \"SELEC\""
    );

    db.batch_execute("CREATE TABLE kv (k text PRIMARY KEY)")
        .await
        .unwrap();
    db.execute("INSERT INTO kv VALUES ($1)", &[&"a"])
        .await
        .unwrap();
    let err = db
        .execute("INSERT INTO kv VALUES ($1)", &[&"a"])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(&SqlState::UNIQUE_VIOLATION));
    assert_eq!(
        err.as_db_error().map(|d| d.message()),
        Some("duplicate key value violates unique constraint \"kv_pkey\"")
    );
    assert_eq!(
        render(&err),
        "postgres statement failed (SQLSTATE 23505): ERROR: duplicate key value violates \
         unique constraint \"kv_pkey\"\nDETAIL: Key (k)=(a) already exists."
    );
    // The server's error is the source itself, so a `source()` walk finds it too.
    assert!(StdError::source(&err).is_some_and(|s| s.is::<pool_sql::DbError>()));
    assert_no_secret(&err, TestPg::PASSWORD);
    db.close_and_wait(Duration::from_secs(10)).await.unwrap();
}

/// "2.5s" or "250ms" (a `Duration`'s `Debug` to the millisecond) in milliseconds.
fn millis(shown: &str) -> f64 {
    match shown.strip_suffix("ms") {
        Some(ms) => ms.parse().unwrap(),
        None => shown.strip_suffix('s').unwrap().parse::<f64>().unwrap() * 1000.0,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_of_a_pool_timeout_and_of_a_close_timeout_say_how_long_they_waited() {
    let pg = TestPg::start().expect("postgres");
    let at = addr(&pg);
    let db = Db::builder(&pg.url())
        .max_open(1)
        .acquire_timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let held = db.conn().await.unwrap();
    let err = db.query("SELECT 1", &[]).await.unwrap_err();
    assert!(err.is_timeout() && !err.is_connect(), "{err:?}");
    let text = render(&err);
    let (waited, rest) = text
        .strip_prefix("timed out after ")
        .and_then(|t| t.split_once(' '))
        .unwrap_or_else(|| panic!("{text}"));
    assert_eq!(
        rest,
        format!(
            "waiting for a session with postgres@{at}/postgres: pool timed out while waiting \
             for an open connection"
        )
    );
    let waited = millis(waited);
    assert!((200.0..10_000.0).contains(&waited), "{text}");

    let err = db
        .close_and_wait(Duration::from_millis(100))
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(
        render(&err),
        format!(
            "closing the Db for postgres@{at}/postgres timed out after 100ms: pool timed out \
             while closing: connections are still checked out"
        )
    );
    assert_no_secret(&err, TestPg::PASSWORD);
    drop(held);
}

#[tokio::test]
async fn chain_of_a_call_on_a_closed_db() {
    let db = Db::open("host=127.0.0.1 port=1 user=app password=closed-s3cret dbname=app").unwrap();
    db.close();
    let err = db.ping().await.unwrap_err();
    assert!(err.is_closed(), "{err:?}");
    assert_eq!(
        render(&err),
        "the Db for app@127.0.0.1:1/app is closed: pool is closed"
    );
    assert_no_secret(&err, "closed-s3cret");
}

/// `sslmode=require` against a server without TLS: the server's "no" is a TLS error, and
/// the password is never sent.
#[cfg(feature = "tls")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chain_of_tls_required_but_refused_by_the_server() {
    let pg = TestPg::start().expect("postgres");
    let at = addr(&pg);
    let (_, _, root) = support::certificate_for(&["127.0.0.1"]);
    let db = Db::builder(&format!("{}?sslmode=require", pg.url()))
        .tls(support::trusting(root))
        .build()
        .unwrap();
    let err = db.ping().await.unwrap_err();
    assert!(err.is_tls() && err.is_connect(), "{err:?}");
    assert_eq!(
        render(&err),
        format!(
            "could not connect to postgres@{at}/postgres: pool failed to create a connection: \
             tls with {at} failed: error performing TLS handshake: server does not support TLS"
        )
    );
    assert_no_secret(&err, TestPg::PASSWORD);
}

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
    let text = render(&err);
    assert!(
        text.contains("refused the session (SQLSTATE 53300)"),
        "{text}"
    );

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
