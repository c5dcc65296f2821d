//! `pool-lab replay --url`: the same trace in real time against a local HTTP server and a
//! private PostgreSQL, one setting after the other.

mod support;

use std::path::PathBuf;
use std::time::Duration;
use support::pool_lab;

use examples::lab::frontier::{Analysis, fixed_settings};
use examples::lab::replay_real::replay;
use examples::lab::trace::{Call, Trace};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn temp(name: &str) -> PathBuf {
    support::temp("pool-lab-replay-real", name)
}

/// Two pairs of calls 300 ms apart (each holding 50 ms), observed for 400 ms.
fn two_pairs() -> Trace {
    let call = |at| Call {
        start: ms(at),
        duration: ms(50),
    };
    Trace::new(vec![call(0), call(0), call(300), call(300)], ms(400))
}

fn check_real(a: &Analysis) {
    let row = |label: &str| {
        let r = a
            .rows
            .iter()
            .find(|r| r.measured.label.starts_with(label))
            .expect(label);
        assert_eq!(
            (r.measured.calls, r.measured.errors),
            (4, 0),
            "{label}: {r:?}"
        );
        r.measured.clone()
    };
    // Go's way with max_idle 0 closes every connection it is handed back; a grace of 120 s
    // keeps the first pair's two for the second.
    let go = row("go, max_idle 0");
    assert_eq!(go.opens, 4, "{go:?}");
    assert!(go.idle_conn_s < 0.1, "{go:?}");
    let kept = row("grace 120s");
    assert!(kept.opens <= 2, "{kept:?}");
    // Two connections idle for most of the 400 ms, sampled every 10 ms.
    assert!(kept.idle_conn_s > 0.3 && kept.idle_conn_s < 1.0, "{kept:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_against_an_http_server_measures_each_setting_in_real_time() {
    let server = examples::http_server::Server::start(|_| ("text/plain", bytes::Bytes::from("ok")))
        .await
        .unwrap();
    let url = server.url("/");
    let a = replay(
        &url,
        &two_pairs(),
        &fixed_settings(4),
        &[],
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    check_real(&a);
    // The command line, on a trace file, against the same server.
    let file = temp("http.csv");
    std::fs::write(&file, two_pairs().to_csv()).unwrap();
    let args = [
        "--trace".to_owned(),
        file.display().to_string(),
        "--url".into(),
        url,
        "--max-open".into(),
        "2".into(),
    ];
    let (code, out, err) = tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        pool_lab(&args)
    })
    .await
    .unwrap();
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("replayed in real time against http://") && out.contains("Recommended"),
        "{out}"
    );
    std::fs::remove_file(&file).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_against_postgres_holds_each_session_for_the_calls_duration() {
    let pg = pool_sql::testing::TestPg::start().expect("postgres");
    let a = replay(
        &pg.url(),
        &two_pairs(),
        &fixed_settings(4),
        &[],
        Duration::from_secs(60),
    )
    .await
    .unwrap();
    check_real(&a);
    for r in &a.rows {
        // pg_sleep(0.05): no call is faster than its duration.
        assert!(r.measured.latency(0.0) >= ms(50), "{:?}", r.measured);
    }
}
