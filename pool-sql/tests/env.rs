//! Configuration from the environment: `DbBuilder::from_env_with` over a map (tests in one
//! process never touch its environment, so they cannot race), and `Db::from_env` itself in
//! a child process of this test binary with an environment of its own.

mod support;

use std::collections::HashMap;
use std::ffi::OsString;
use std::time::Duration;

use pool_sql::testing::TestPg;
use pool_sql::{DbBuilder, Error};

fn from(vars: &[(&str, &str)]) -> Result<DbBuilder, Error> {
    let vars: HashMap<&str, &str> = vars.iter().copied().collect();
    DbBuilder::from_env_with(|name| vars.get(name).map(OsString::from))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn libpq_variables_reach_the_server_and_a_password_with_quotes_stays_secret() {
    let pg = TestPg::start().expect("test server");
    let admin = support::admin(&pg);
    // A password with every character the quoting must survive.
    let password = "p a'ss\\w\"ord";
    admin
        .batch_execute(&format!(
            "CREATE ROLE odd LOGIN PASSWORD '{}'",
            password.replace('\'', "''")
        ))
        .await
        .unwrap();
    let port = pg.port().expect("a local server").to_string();
    let app = "env app 'quoted'";
    let builder = from(&[
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", &port),
        ("PGUSER", "odd"),
        ("PGPASSWORD", password),
        ("PGDATABASE", "postgres"),
        ("PGAPPNAME", app),
        ("PGCONNECT_TIMEOUT", "5"),
        ("PGSSLMODE", "disable"),
        ("PGHOSTADDR", ""),
    ])
    .unwrap();
    let shown = format!("{builder:?} {}", builder.redacted_url());
    assert!(!shown.contains("ss\\w"), "no password in {shown}");
    assert!(shown.contains("password=***"), "{shown}");
    let db = builder.max_open(1).build().unwrap();
    let row = db
        .query_one(
            "SELECT current_user::text, current_setting('application_name')",
            &[],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, &str>(0), "odd");
    assert_eq!(row.get::<_, &str>(1), app);
    assert!(!format!("{db:?}").contains("ss\\w"));

    // A wrong password through the same path is an authentication failure, not a parse error.
    let db = from(&[
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", &port),
        ("PGUSER", "odd"),
        ("PGPASSWORD", "wrong"),
    ])
    .unwrap()
    .build()
    .unwrap();
    let err = db.ping().await.unwrap_err();
    assert!(err.is_auth_failed(), "{err:?}");
}

#[tokio::test]
async fn database_url_wins_over_the_pg_variables() {
    let pg = TestPg::start().expect("test server");
    let url = pg.url();
    let db = from(&[
        ("DATABASE_URL", &url),
        ("PGHOST", "no-such-host.invalid"),
        ("PGPORT", "not a port"),
    ])
    .unwrap()
    .build()
    .unwrap();
    db.ping().await.unwrap();
    assert!(!format!("{db:?}").contains(TestPg::PASSWORD));
}

#[test]
fn each_bad_value_is_a_config_error_naming_its_variable_and_never_its_value() {
    let cases: [(&[(&str, &str)], &str); 6] = [
        (&[("PGHOST", "h"), ("PGPORT", "54x2")], "PGPORT"),
        (&[("PGHOST", "h"), ("PGPORT", "5432,99999")], "PGPORT"),
        (
            &[("PGHOST", "h"), ("PGCONNECT_TIMEOUT", "5s")],
            "PGCONNECT_TIMEOUT",
        ),
        (&[("PGHOST", "h"), ("PGSSLMODE", "sometimes")], "PGSSLMODE"),
        (
            &[("PGUSER", "u"), ("PGPASSWORD", "secret-pw")],
            "DATABASE_URL",
        ),
        (&[("DATABASE_URL", ""), ("PGHOST", "")], "DATABASE_URL"),
    ];
    for (vars, knob) in cases {
        let err = from(vars).unwrap_err();
        assert!(err.is_config(), "{vars:?}: {err:?}");
        assert_eq!(err.knob(), Some(knob), "{vars:?}: {err}");
        let shown = format!("{err} {err:?}");
        for (_, value) in vars.iter().filter(|(_, v)| v.len() > 1) {
            assert!(!shown.contains(value), "{value} repeated in {shown}");
        }
    }
    // Several ports, one per host, and a multi-host PGHOST are fine.
    let builder = from(&[("PGHOST", "a,b"), ("PGPORT", "5432, 5433")]).unwrap();
    assert_eq!(builder.redacted_url(), "host='a,b' port='5432, 5433'");

    // A value that is not UTF-8: named, not shown.
    use std::os::unix::ffi::OsStringExt;
    let err = DbBuilder::from_env_with(|name| match name {
        "PGHOST" => Some(OsString::from("h")),
        "PGPASSWORD" => Some(OsString::from_vec(vec![b's', 0xff, b'x'])),
        _ => None,
    })
    .unwrap_err();
    assert_eq!(err.knob(), Some("PGPASSWORD"), "{err}");
}

/// Runs in a child process only (see the next test), where the environment is its own.
#[tokio::test]
async fn child_reads_the_process_environment() {
    if std::env::var_os("POOL_SQL_ENV_CHILD").is_none() {
        return;
    }
    let db = pool_sql::Db::from_env().expect("from the environment");
    let app: String = tokio::time::timeout(
        Duration::from_secs(20),
        db.query_one("SELECT current_setting('application_name')", &[]),
    )
    .await
    .expect("in time")
    .expect("a row")
    .get(0);
    assert_eq!(app, "from-the-env");
}

#[test]
fn db_from_env_reads_the_process_environment() {
    let pg = TestPg::start().expect("test server");
    let port = pg.port().expect("a local server").to_string();
    let run = |vars: &[(&str, &str)]| {
        let mut child = std::process::Command::new(std::env::current_exe().unwrap());
        child.args([
            "--exact",
            "child_reads_the_process_environment",
            "--nocapture",
        ]);
        child
            .env_remove("DATABASE_URL")
            .env("POOL_SQL_ENV_CHILD", "1");
        for (name, value) in vars {
            child.env(name, value);
        }
        child.output().expect("run the child")
    };
    let vars = [
        ("PGHOST", "127.0.0.1"),
        ("PGPORT", port.as_str()),
        ("PGUSER", "postgres"),
        ("PGPASSWORD", TestPg::PASSWORD),
        ("PGDATABASE", "postgres"),
        ("PGAPPNAME", "from-the-env"),
    ];
    let out = run(&vars);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("1 passed"), "the child test ran: {text}");
    // The same child with another application name fails: the child's check can fail.
    let mut wrong = vars;
    wrong[5].1 = "someone-else";
    assert!(!run(&wrong).status.success());
}
