//! pool-lab's measurement core and command line: a short sweep against a throw-away
//! PostgreSQL and a local HTTP server, the report, every bad-input error, Ctrl-C, the
//! server's connection budget, and one regression test per fix from trying it as a new user
//! (issue 22).

use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use examples::http_server::Server;
use examples::lab::http::HttpTarget;
use examples::lab::sql::SqlTarget;
use examples::lab::{LabError, Run, Stop, Workload, report, sweep};
use pool_sql::testing::TestPg;

#[path = "lab/offline.rs"]
mod offline;

const SHORT: Workload = Workload {
    bursts: 3,
    burst: 8,
    period: Duration::from_millis(50),
};

fn no_tick() {}

/// Go's way (max_idle 0, no grace), ours (max_idle 0, grace) and max_idle = max_open.
fn check_sweep(runs: &[Run], max_open: usize) {
    assert_eq!(runs.len(), 3, "{runs:#?}");
    for r in runs {
        assert_eq!(r.calls, SHORT.calls() as u64, "{}", r.setting.label);
        assert_eq!(r.errors, 0, "{}: {:?}", r.setting.label, r.first_error);
        assert!(r.stats.peak_open <= max_open, "{}", r.setting.label);
        assert!(!r.timeline.is_empty() && r.latency(0.5) > Duration::ZERO);
    }
    let (go, grace, all) = (&runs[0], &runs[1], &runs[2]);
    assert!(go.setting.go && !grace.setting.go);
    // Without grace every burst closes what max_idle (0) cannot keep and opens it again.
    assert!(
        go.opened() >= 2 * grace.opened(),
        "Go opened {}, grace {}",
        go.opened(),
        grace.opened()
    );
    assert!(grace.opened() <= max_open as u64 && all.opened() <= max_open as u64);
    let rec = sweep::recommend(runs, runs.len(), SHORT).expect("a recommendation");
    assert!(!rec.setting.go, "Go's way churns: {rec:?}");
    assert!(rec.why.contains("opens per 1,000 calls"), "{}", rec.why);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_sql_sweep_measures_each_setting_and_recommends_one() {
    let pg = TestPg::start().expect("postgres");
    let target = SqlTarget::new(&pg.url(), "SELECT pg_sleep(0.005)").unwrap();
    target.probe().await.unwrap();
    let settings = sweep::settings(4, Some(&[0, 4]), Duration::from_secs(30), SHORT.burst).unwrap();
    let mut runs = Vec::new();
    for s in &settings {
        runs.push(target.run(SHORT, s, &Stop::new(), &no_tick).await.unwrap());
    }
    check_sweep(&runs, 4);

    let dir = std::env::temp_dir().join(format!("pool-lab-test-{}", std::process::id()));
    let rec = sweep::recommend(&runs, runs.len(), SHORT);
    let section = report::Section {
        heading: "sql sweep",
        context: "a test",
        runs: &runs,
        recommendation: rec.as_ref().ok(),
    };
    report::write(&dir, "pool-lab test", &[section]).unwrap();
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert_eq!(html.matches("<svg").count(), 3, "three charts inline");
    for r in &runs {
        assert!(html.contains(&r.setting.label), "{}", r.setting.label);
    }
    assert!(html.contains("Recommended:"));
    for chart in ["1-open.svg", "1-opens.svg", "1-latency.svg"] {
        let svg = std::fs::read_to_string(dir.join(chart)).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("<polyline") | svg.contains("<rect"));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A local server answering every GET with 64 KiB.
fn big_body_server() -> impl std::future::Future<Output = std::io::Result<Server>> {
    Server::start(|_| {
        (
            "application/octet-stream",
            Bytes::from(vec![b'x'; 64 * 1024]),
        )
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_http_sweep_with_unread_bodies_shows_the_go_churn() {
    let server = big_body_server().await.unwrap();
    let target = HttpTarget::new(&server.url("/"), false).unwrap();
    target.probe().await.unwrap();
    let settings = sweep::settings(4, Some(&[0, 4]), Duration::from_secs(30), SHORT.burst).unwrap();
    let mut runs = Vec::new();
    for s in &settings {
        runs.push(target.run(SHORT, s, &Stop::new(), &no_tick).await.unwrap());
    }
    check_sweep(&runs, 4);
    // Go drops a connection with every unread body.
    assert_eq!(
        runs[0].opened(),
        SHORT.calls() as u64,
        "{:?}",
        runs[0].stats
    );
    // Those connections live a few milliseconds, less than the 10 ms between samples: the
    // timeline's counter still ends at every one of them (the cumulative chart plots it).
    for r in &runs {
        let last = r.timeline.last().expect("a timeline");
        assert_eq!(last.created, r.opened(), "{}", r.setting.label);
    }
}

/// `max_idle_conns_per_host(0)` is Go's default, 2: the sweep's "max_idle 0, no grace (Go)"
/// row kept two connections idle. Now it keeps none: every call dials, bodies read or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_go_row_with_max_idle_0_keeps_nothing_idle_over_http() {
    let server = Server::start(|_| ("text/plain", Bytes::from_static(b"ok")))
        .await
        .unwrap();
    let target = HttpTarget::new(&server.url("/"), true).unwrap();
    let settings = sweep::settings(4, Some(&[0]), Duration::from_secs(30), SHORT.burst).unwrap();
    let go = settings.iter().find(|s| s.go).expect("a Go row");
    let run = target.run(SHORT, go, &Stop::new(), &no_tick).await.unwrap();
    assert_eq!(run.opened(), SHORT.calls() as u64, "{:?}", run.stats);
    assert_eq!(run.stats.idle, 0, "{:?}", run.stats);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_and_unusable_servers_are_told_apart() {
    use LabError::*;
    let kind = |e: LabError| std::mem::discriminant(&e);
    // SQL: a URL that does not parse, a statement that may write.
    let e = SqlTarget::new("postgres://a:b@host:notaport/db", "SELECT 1").unwrap_err();
    assert_eq!(kind(e.clone()), kind(BadInput(String::new())), "{e}");
    let e = SqlTarget::new("postgres://localhost/db", "DELETE FROM t").unwrap_err();
    assert!(matches!(&e, BadInput(m) if m.contains("read-only")), "{e}");
    // A port nobody listens on.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let refused = SqlTarget::new(&format!("postgres://u:p@127.0.0.1:{port}/db"), "SELECT 1")
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    assert!(matches!(refused, Unreachable(_)), "{refused}");
    // Bad credentials and a failing statement against a real server.
    let pg = TestPg::start().expect("postgres");
    let url = pg.url_with_password("wrong").expect("local server");
    let e = SqlTarget::new(&url, "SELECT 1")
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    assert!(matches!(&e, Credentials(m) if !m.contains("wrong")), "{e}");
    let e = SqlTarget::new(&pg.url(), "SELECT 1/0")
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Rejected(m) if m.contains("division by zero")),
        "{e}"
    );

    // HTTP: a bad URL, a refused port.
    assert!(matches!(
        HttpTarget::new("not a url", true),
        Err(BadInput(_))
    ));
    let e = HttpTarget::new(&format!("http://127.0.0.1:{port}/"), true)
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    assert!(matches!(e, Unreachable(_)), "{e}");
}

/// Issue 22: `ftp://` said "http and https are supported", then https was refused too.
#[tokio::test]
async fn https_is_measured_as_the_message_for_other_schemes_says() {
    let e = HttpTarget::new("ftp://host/", true).unwrap_err();
    assert!(
        matches!(&e, LabError::BadInput(m) if m.contains("http:// and https://")),
        "{e}"
    );
    // https is taken, and tried: against a port nobody listens on, unreachable.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let target = HttpTarget::new(&format!("https://127.0.0.1:{port}/"), true).unwrap();
    let e = target.probe().await.unwrap_err();
    assert!(matches!(e, LabError::Unreachable(_)), "{e}");
}

/// Issue 22: `mysql://` gave "unexpected EOF" (the key=value parser's).
#[test]
fn a_url_of_another_database_is_refused_by_its_scheme() {
    for url in ["mysql://u:p@host/db", "redis://host", "HTTP://host/"] {
        let e = SqlTarget::new(url, "SELECT 1").unwrap_err();
        assert!(
            matches!(&e, LabError::BadInput(m) if m.contains("postgres://") && !m.contains("EOF")),
            "{url}: {e}"
        );
    }
    for url in [
        "postgres://u@host/db",
        "postgresql://u@host/db",
        "host=h user=u",
    ] {
        assert!(SqlTarget::new(url, "SELECT 1").is_ok(), "{url}");
    }
}

/// Issue 22: `SELEC 1` was called "may write"; the server's parser says what is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_does_not_parse_is_a_syntax_error_not_a_write() {
    let target = SqlTarget::new("postgres://u@127.0.0.1/db", "SELEC 1").expect("no verdict yet");
    drop(target);
    let pg = TestPg::start().expect("postgres");
    let e = SqlTarget::new(&pg.url(), "SELEC 1")
        .unwrap()
        .probe()
        .await
        .unwrap_err();
    assert!(
        matches!(&e, LabError::BadInput(m) if m.contains("syntax error") && !m.contains("may write")),
        "{e}"
    );
    // Commands that may write are still refused without asking the server.
    for statement in [
        "DELETE FROM t",
        "insert into t values (1)",
        "(UPDATE t SET a = 1)",
    ] {
        let e = SqlTarget::new(&pg.url(), statement).unwrap_err();
        assert!(
            matches!(&e, LabError::BadInput(m) if m.contains("may write")),
            "{e}"
        );
    }
    // A parenthesised SELECT is read-only and runs.
    SqlTarget::new(&pg.url(), "(SELECT 1)")
        .unwrap()
        .probe()
        .await
        .unwrap();
}

/// The standard output of a run that must have succeeded (else both outputs in the panic).
fn succeeded(out: &std::process::Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn pool_lab() -> Command {
    Command::new(env!("CARGO_BIN_EXE_pool-lab"))
}

#[test]
fn bad_flags_exit_2_with_a_message_and_no_panic() {
    for args in [
        &["--bursts", "0"][..],
        &["--period", "soon"],
        &["sql"],
        &["sql", "--url", "postgres://a@h/d", "--idle", "x"],
        &["sql", "--url", "postgres://a:b@host:notaport/db"],
        &[
            "sql",
            "--url",
            "postgres://a@h/d",
            "--query",
            "DROP TABLE t",
        ],
        &["http", "--url", "not a url"],
        &["bogus"],
        &["sql", "--url", "mysql://u@h/d"],
        &["http", "--url", "ftp://h/"],
        &["sql", "--url", "postgres://a@h/d", "--instances", "0"],
    ] {
        let out = pool_lab().args(args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(!stderr.trim().is_empty(), "{args:?}: no message");
    }
}

#[test]
fn pool_lab_never_prints_a_password_in_any_connection_string_form() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = free.local_addr().unwrap().port();
    drop(free);
    let secret = "s3cr3t-pw";
    for url in [
        format!("postgres://app:{secret}@127.0.0.1:{port}/app"),
        format!("postgres://app@127.0.0.1:{port}/app?password={secret}"),
        format!("host=127.0.0.1 port={port} user=app password={secret} dbname=app"),
        format!("host=127.0.0.1 port={port} user=app password='{secret}' dbname=app"),
    ] {
        // Nothing listens there: pool-lab says which server it checks, then that it is
        // unreachable.
        let out = pool_lab().args(["sql", "--url", &url]).output().unwrap();
        let shown = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{url}: {shown}");
        assert!(shown.contains("checking"), "{url}: {shown}");
        assert!(
            shown.contains("***"),
            "{url}: the string, redacted: {shown}"
        );
        assert!(!shown.contains(secret), "{url}: {shown}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_sweeps_a_server_and_writes_its_report() {
    let pg = TestPg::start().expect("postgres");
    let dir = std::env::temp_dir().join(format!("pool-lab-cli-{}", std::process::id()));
    let out = pool_lab()
        .args([
            "sql",
            "--url",
            &pg.url(),
            "--max-open",
            "2",
            "--idle",
            "0,2",
        ])
        .args([
            "--bursts", "2", "--burst", "4", "--period", "20ms", "--report",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    assert!(
        stdout.contains("max_idle 0, no grace (Go)      8       0"),
        "{stdout}"
    );
    assert!(stdout.contains("Recommended:"), "{stdout}");
    assert!(
        !stdout.contains("secret"),
        "the password is never printed: {stdout}"
    );
    assert!(dir.join("index.html").exists());
    std::fs::remove_dir_all(&dir).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("warning"), "2 of 60 fit: {stderr}");
}

/// Issue 22: `--max-open 200` against a smaller server produced 53300 errors, printed no hint
/// and exited 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pool_larger_than_the_server_allows_gets_a_warning_a_hint_and_exit_3() {
    let pg = TestPg::builder()
        .max_connections(10)
        .start()
        .expect("postgres");
    let out = pool_lab()
        .args([
            "sql",
            "--url",
            &pg.url(),
            "--query",
            "SELECT pg_sleep(0.05)",
        ])
        .args(["--max-open", "30", "--instances", "4", "--idle", "0"])
        .args(["--bursts", "2", "--burst", "30", "--period", "20ms"])
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(3), "{stdout}{stderr}");
    // Before the sweep: the budget, and what fits.
    for part in [
        "warning: 4 instances x max_open 30 = 120 connections",
        "max_connections 10",
        "This sweep alone",
        "PgBouncer",
        "max_client_conn = 120",
    ] {
        assert!(stderr.contains(part), "{part}: {stderr}");
    }
    // After it: the cause of the failed calls, and the hint again.
    for part in [
        "No recommendation: the server refused",
        "because the server refused connections",
        "SQLSTATE 53300",
        "per instance",
        "default_pool_size",
    ] {
        assert!(stdout.contains(part), "{part}: {stdout}");
    }
    assert!(!stdout.contains("Recommended:"), "{stdout}");
    let help = pool_lab().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("3    measured, but calls failed"), "{help}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_stops_after_the_burst_in_flight_and_prints_what_was_measured() {
    let server = big_body_server().await.unwrap();
    let child = pool_lab()
        .args(["http", "--url", &server.url("/"), "--idle", "0"])
        .args(["--bursts", "100000", "--burst", "4", "--period", "5ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it is measuring (the server sees traffic beyond the probe), then interrupt.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while server.accepts() < 20 {
        assert!(
            std::time::Instant::now() < deadline,
            "pool-lab never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let out = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stdout = succeeded(&out);
    assert!(stdout.contains("(stopped)"), "{stdout}");
    assert!(stdout.contains("opens/1k"), "the table: {stdout}");
    // Issue 22: with only Go's row measured, pool-lab recommended Go's setting.
    assert!(!stdout.contains("Recommended:"), "{stdout}");
    assert!(
        stdout.contains("No recommendation: the sweep was stopped"),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_showcase_without_postgresql_says_how_to_install_it_and_runs_the_http_part() {
    let out = pool_lab()
        .env("PG_BINDIR", "/nonexistent")
        .args(["--bursts", "2", "--burst", "4", "--period", "10ms"])
        .output()
        .unwrap();
    let stdout = succeeded(&out);
    assert!(stdout.contains("PostgreSQL part skipped"), "{stdout}");
    assert!(stdout.contains("apt-get install postgresql"), "{stdout}");
    assert!(stdout.contains("HTTP (a local server)"), "{stdout}");
    assert!(
        stdout.contains("Go (no grace, no drain)      8       0       8"),
        "Go dials per request: {stdout}"
    );
}

/// Issue 22: `--idle` values above `--max-open` were dropped without a word.
#[test]
fn idle_values_above_max_open_are_refused() {
    let e = sweep::settings(16, Some(&[0, 8, 32]), Duration::from_secs(30), 32).unwrap_err();
    assert!(
        matches!(&e, LabError::BadInput(m) if m.contains("32") && m.contains("--max-open 16")),
        "{e}"
    );
    let out = pool_lab()
        .args([
            "sql",
            "--url",
            "postgres://a@127.0.0.1:1/d",
            "--max-open",
            "16",
            "--idle",
            "0,32",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("above --max-open 16"), "{stderr}");
    assert!(
        !stderr.contains("checking"),
        "refused before any connection: {stderr}"
    );
    // Unlimited max_open keeps every value.
    let all = sweep::settings(0, Some(&[0, 64]), Duration::from_secs(30), 32).unwrap();
    assert_eq!(
        all.iter().map(|s| s.max_idle).collect::<Vec<_>>(),
        [0, 0, 64]
    );
}

/// Issue 22: an unwritable `--report` directory failed after the sweep.
#[test]
fn an_unwritable_report_directory_fails_before_the_sweep() {
    let file = std::env::temp_dir().join(format!("pool-lab-not-a-dir-{}", std::process::id()));
    std::fs::write(&file, b"a file").unwrap();
    let out = pool_lab()
        .args(["sql", "--url", "postgres://a@127.0.0.1:1/d", "--report"])
        .arg(file.join("report"))
        .output()
        .unwrap();
    std::fs::remove_file(&file).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cannot write the report"), "{stderr}");
    assert!(
        !stderr.contains("checking"),
        "before the server is even asked: {stderr}"
    );
}
