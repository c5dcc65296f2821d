//! Trace replay (issue 22): the trace parsers, the generators, the simulator's accounting on
//! traces small enough to check by hand, the frontier, and `pool-lab replay` as a user runs
//! it.

mod support;

use support::{point, pool_lab};

use std::path::PathBuf;
use std::time::Duration;

use examples::lab::frontier::{Analysis, fixed_settings, table};
use examples::lab::shapes::{Length, Shape};
use examples::lab::sim::{Backend, PoolSetting, simulate};
use examples::lab::trace::{Call, Trace};
use pool_core::Config;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

// ---- CSV ----

#[test]
fn a_csv_in_seconds_is_read_sorted_and_shifted_to_zero() {
    let t = Trace::parse("# made by hand\nstart_s,duration_s\n100.5,0.25\n\n100.0,0.050\n101,0\n")
        .unwrap();
    let starts: Vec<Duration> = t.calls.iter().map(|c| c.start).collect();
    assert_eq!(starts, [ms(0), ms(500), ms(1000)]);
    assert_eq!(t.calls[0].duration, ms(50));
    assert_eq!(t.calls[1].duration, ms(250));
    assert_eq!(t.end, ms(1000), "the end of the last call");
}

#[test]
fn a_csv_header_may_name_milliseconds_mixed_units_and_extra_columns() {
    let t = Trace::parse("id,start_ms,duration_ms\na,0,20\nb,1500,30\n").unwrap();
    assert_eq!(
        t.calls[1],
        Call {
            start: ms(1500),
            duration: ms(30)
        }
    );
    let t = Trace::parse("start_s,duration_ms\n2,40\n").unwrap();
    assert_eq!(
        t.calls[0],
        Call {
            start: ms(0),
            duration: ms(40)
        }
    );
    let t = Trace::parse("start_s,duration_s\n1700000000.5,0.1\n1700000001.25,0.1\n").unwrap();
    assert_eq!(t.calls[1].start, ms(750), "epoch seconds");
    let t = Trace::parse("start_s\n0\n1\n").unwrap();
    assert!(
        t.calls.iter().all(|c| c.duration.is_zero()),
        "no duration column"
    );
}

#[test]
fn a_bad_csv_line_is_named_in_the_error() {
    let cases = [
        ("start_s,duration_s\n0,0.1\n0.5,abc\n", 3, "not a number"),
        ("start_s,duration_s\n0,0.1\n-1,0.1\n", 3, "out of range"),
        (
            "start_s,duration_s\n0,0.1\n1\n",
            3,
            "1 fields where the header names 2",
        ),
        (
            "start,duration_s\n0,0.1\n",
            1,
            "the column `start` names no unit",
        ),
        ("# comment\nfoo,bar\n0,0.1\n", 2, "neither a CSV header"),
        ("start_s,duration_s\n0,inf\n", 2, "out of range"),
        (
            "start_s,duration_s\n1700000000,1\n0,1\n",
            2,
            "more than ten years after",
        ),
    ];
    for (text, line, words) in cases {
        let e = Trace::parse(text).unwrap_err();
        assert_eq!(e.line, line, "{text:?}: {e}");
        assert!(e.to_string().contains(&format!("line {line}: ")), "{e}");
        assert!(e.to_string().contains(words), "{text:?}: {e}");
    }
    for empty in ["", "# only a comment\n\n", "start_s,duration_s\n"] {
        let e = Trace::parse(empty).unwrap_err();
        assert!(e.to_string().contains("holds no call"), "{empty:?}: {e}");
    }
}

#[test]
fn no_mangled_line_panics_a_parser() {
    let good = [
        "start_ms,duration_ms\n0,20\n1500,30\n".to_owned(),
        NGINX.to_owned(),
        "h - - [29/Feb/2024:23:59:59.5 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"ua\" 1000\n".into(),
    ];
    let junk = [
        "",
        "x",
        "-",
        "9",
        ".",
        ",",
        "[",
        "]",
        " ",
        "é",
        "\"",
        "99999999999999999999",
    ];
    let mut errors = 0;
    for text in &good {
        for (i, _) in text.char_indices() {
            for j in junk {
                let mut mangled = text.clone();
                mangled.replace_range(i..i + text[i..].chars().next().map_or(0, char::len_utf8), j);
                if let Err(e) = Trace::parse(&mangled) {
                    errors += 1;
                    assert!(!e.message.is_empty());
                }
            }
        }
    }
    assert!(errors > 100, "the mangling must break something: {errors}");
}

// ---- access logs ----

const NGINX: &str = r#"127.0.0.1 - - [10/Oct/2023:13:55:36 +0000] "GET /a HTTP/1.1" 200 2326 "-" "curl/8.0" 0.200
127.0.0.1 - - [10/Oct/2023:13:55:36 +0000] "GET /b HTTP/1.1" 200 12 "-" "curl/8.0" 0.100
10.0.0.2 - bob [10/Oct/2023:15:55:40 +0200] "POST /c HTTP/1.1" 201 0 "https://x/" "Mozilla/5.0 (X11)" 1.500
"#;

#[test]
fn an_nginx_log_with_request_time_gives_each_call_its_start_and_duration() {
    let t = Trace::parse(NGINX).unwrap();
    assert_eq!(t.calls.len(), 3);
    // Two calls logged (ended) in second 36, spread to 36.25 and 36.75; the third, alone in
    // 13:55:40 UTC, to 40.5. Starts are ends minus request times: 36.05, 36.65, 39.0.
    let starts: Vec<f64> = t.calls.iter().map(|c| c.start.as_secs_f64()).collect();
    let expect = [0.0, 0.6, 2.95];
    for (s, e) in starts.iter().zip(expect) {
        assert!((s - e).abs() < 1e-9, "{starts:?}");
    }
    assert_eq!(t.calls[2].duration, ms(1500));
}

#[test]
fn an_apache_log_with_microseconds_starts_calls_at_the_logged_time() {
    let log = "h - - [01/Mar/2024:00:00:00 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"ua\" 250000\n\
               h - - [29/Feb/2024:23:59:59.5 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"ua\" 1000\n";
    let t = Trace::parse(log).unwrap();
    // The second line's time has a fraction (23:59:59.5, a leap day); the first, alone in
    // its second, is placed in its middle (00:00:00.5): one second later.
    assert_eq!(
        t.calls[0],
        Call {
            start: ms(0),
            duration: ms(1)
        }
    );
    assert_eq!(
        t.calls[1],
        Call {
            start: ms(1000),
            duration: ms(250)
        }
    );
}

#[test]
fn a_bad_log_line_is_named_in_the_error() {
    let good = "h - - [10/Oct/2023:13:55:36 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"ua\" 0.010";
    let cases = [
        (
            format!("{good}\nh - - [10/Foo/2023:13:55:36 +0000] \"GET /\" 200 5 0.1\n"),
            2,
            "is not like",
        ),
        (
            format!("{good}\n{good}\nh - - [10/Oct/2023:13:55:36 +0000] \"GET /\" 200 5 -\n"),
            3,
            "not a request time",
        ),
        (
            format!("{good}\nh - - 10/Oct/2023 \"GET /\" 200 5 0.1\n"),
            2,
            "no [time] field",
        ),
        (
            format!(
                "{good}\nh - - [10/Oct/9223372036854775807:13:55:36 +0000] \"GET /\" 200 5 0.1\n"
            ),
            2,
            "is not like",
        ),
        (
            format!("{good}\nh - - [10/Oct/2023:13:55:36 +99999999999] \"GET /\" 200 5 0.1\n"),
            2,
            "is not like",
        ),
        (
            format!("{good}\nh - - [10/Oct/2043:13:55:36 +0000] \"GET /\" 200 5 0.1\n"),
            2,
            "more than ten years",
        ),
    ];
    for (text, line, words) in cases {
        let e = Trace::parse(&text).unwrap_err();
        assert_eq!(e.line, line, "{e}");
        assert!(e.to_string().contains(words), "{e}");
    }
}

// ---- generators ----

#[test]
fn the_same_seed_gives_the_same_trace_and_another_seed_another() {
    for shape in Shape::all() {
        let a = shape.generate(7, Length::Quick);
        assert_eq!(a, shape.generate(7, Length::Quick), "{}", shape.name());
        assert_ne!(a, shape.generate(8, Length::Quick), "{}", shape.name());
        assert!(!a.calls.is_empty() && a.end >= a.calls.last().unwrap().start);
        assert_eq!(Shape::from_name(&shape.name()), Ok(shape));
    }
    let bursts = Shape::from_name("bursts-45s")
        .unwrap()
        .generate(1, Length::Full);
    assert_eq!(bursts.calls.len(), 60 * 32);
    assert_eq!(bursts.end, secs(60 * 45));
    assert_eq!(
        bursts.peak_concurrency(),
        32,
        "a burst's calls overlap, bursts do not"
    );
    assert!(
        Shape::from_name("bursts-7s")
            .unwrap_err()
            .contains("bursts-45s")
    );
}

#[test]
fn a_written_trace_reads_back_the_same() {
    // Read back, the trace starts at its first call.
    let t = Shape::Spike.generate(3, Length::Quick);
    let first = t.calls[0].start;
    let shifted: Vec<Call> = t
        .calls
        .iter()
        .map(|c| Call {
            start: c.start - first,
            duration: c.duration,
        })
        .collect();
    assert_eq!(Trace::parse(&t.to_csv()).unwrap().calls, shifted);
}

// ---- the simulator ----

const BACKEND: Backend = Backend {
    handshake: Duration::from_millis(20),
    service: Duration::ZERO,
};

/// Two calls of 1 s, 100 s apart.
fn two_calls() -> Trace {
    let call = |s| Call {
        start: secs(s),
        duration: secs(1),
    };
    Trace::new(vec![call(0), call(100)], Duration::ZERO)
}

fn ours(max_idle: usize, grace: u64) -> PoolSetting {
    let mut config = Config::default();
    config.max_open = 8;
    config.max_idle = max_idle;
    config.idle_grace = secs(grace);
    PoolSetting {
        label: format!("grace {grace}s"),
        config,
    }
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

#[test]
fn two_calls_100s_apart_cost_what_the_hand_computes() {
    let t = two_calls();
    // Without grace (Go, max_idle 0): each call opens a connection (20 ms handshake) and
    // closes it when done; nothing is ever idle.
    let mut go = Config::go();
    go.max_open = 8;
    go.max_idle = 0;
    let m = simulate(
        &t,
        &PoolSetting {
            label: "go".into(),
            config: go,
        },
        BACKEND,
    )
    .unwrap();
    assert_eq!(
        (m.opens, m.waited, m.calls, m.errors),
        (2, 2, 2, 0),
        "{m:?}"
    );
    assert!(close(m.idle_conn_s, 0.0), "{m:?}");
    assert_eq!(m.latency(0.5), ms(20));
    assert_eq!(m.peak_open, 1);

    // Grace 120 s: the first connection (ready at 0.02 s, released at 1.02 s) waits idle
    // until the second call takes it at 100 s: one open, 98.98 idle seconds; the second
    // call's connection is released at 101 s, the end of the trace.
    let m = simulate(&t, &ours(0, 120), BACKEND).unwrap();
    assert_eq!((m.opens, m.waited), (1, 1), "{m:?}");
    assert!(close(m.idle_conn_s, 98.98), "{m:?}");
    assert_eq!(m.span, secs(101));
    assert!(close(m.cost(secs(60)), 98.98 + 60.0));

    // Grace 30 s: kept idle 30 s (1.02 to 31.02), closed, opened again at 100 s.
    let m = simulate(&t, &ours(0, 30), BACKEND).unwrap();
    assert_eq!((m.opens, m.waited), (2, 2), "{m:?}");
    assert!(close(m.idle_conn_s, 30.0), "{m:?}");
}

#[test]
fn service_time_lengthens_every_hold() {
    let backend = Backend {
        service: secs(2),
        ..BACKEND
    };
    let m = simulate(&two_calls(), &ours(0, 120), backend).unwrap();
    // Released at 3.02 s instead of 1.02 s; the trace now ends at 103 s.
    assert!(close(m.idle_conn_s, 100.0 - 3.02), "{m:?}");
    assert_eq!(m.span, secs(103));
}

#[test]
fn a_burst_above_max_idle_is_kept_for_the_grace_and_counted_idle() {
    // 4 calls at once for 1 s, then one call at 10 s; max_idle 2, grace 5 s.
    let mut calls: Vec<Call> = (0..4)
        .map(|_| Call {
            start: secs(0),
            duration: secs(1),
        })
        .collect();
    calls.push(Call {
        start: secs(10),
        duration: secs(1),
    });
    let t = Trace::new(calls, secs(20));
    let m = simulate(&t, &ours(2, 5), BACKEND).unwrap();
    // 4 opens; from 1.02 s: 4 idle for 5 s, then 2 (the surplus closed at 6.02 s) until
    // 10 s, then 1 idle (one in use) until 11 s, then 2 until the end at 20 s.
    let expect = 4.0 * 5.0 + 2.0 * (10.0 - 6.02) + 1.0 + 2.0 * 9.0;
    assert_eq!((m.opens, m.peak_open, m.waited), (4, 4, 4), "{m:?}");
    assert!(
        close(m.idle_conn_s, expect),
        "{} against {expect}",
        m.idle_conn_s
    );
}

#[test]
fn a_simulation_gives_the_same_numbers_every_time() {
    let t = Shape::Poisson.generate(5, Length::Quick);
    for s in fixed_settings(16).iter().take(3) {
        let a = simulate(&t, s, BACKEND).unwrap();
        assert_eq!(a, simulate(&t, s, BACKEND).unwrap(), "{}", s.label);
        assert_eq!(a.calls as usize, t.calls.len());
        assert_eq!(a.errors, 0);
    }
}

// ---- the frontier ----

#[test]
fn the_frontier_the_cheapest_at_b_and_the_gap_are_as_defined() {
    // Fixed: A (10 opens, 0 s), B (2, 200 s), C (5, 150 s: dominated by nobody), D (10, 300 s:
    // dominated by A). Other: X (4, 100 s), Y (10, 100 s).
    let a = Analysis::new(
        vec![
            (point("A", 10, 0.0), true),
            (point("B", 2, 200.0), true),
            (point("C", 5, 150.0), true),
            (point("D", 10, 300.0), true),
            (point("X", 4, 100.0), false),
            (point("Y", 10, 100.0), false),
        ],
        secs(60),
    );
    let on: Vec<&str> = a
        .frontier()
        .iter()
        .map(|r| r.measured.label.as_str())
        .collect();
    assert_eq!(on, ["B", "C", "A"]);
    // Costs at 60: A 600, B 320, C 450, X 340, Y 700.
    assert_eq!(a.best_fixed().unwrap().measured.label, "B");
    assert!(close(a.rows[4].vs_best, 340.0 / 320.0 - 1.0));
    // X's best B: where A and B cost the same (B = 25: 250 each), X costs 200: gap -20 %.
    assert!(
        close(a.rows[4].gap, 200.0 / 250.0 - 1.0),
        "{}",
        a.rows[4].gap
    );
    // Y is A plus 100 s: its best B is also 25, where it costs 350 against 250: gap +40 %.
    assert!(close(a.rows[5].gap, 0.4), "{}", a.rows[5].gap);
    let text = table(&a, false);
    assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
    assert!(
        text.contains("on (-20%)") && text.contains("gap +40%"),
        "{text}"
    );
    assert!(text.contains("yes") && text.contains("no"), "{text}");
}

#[test]
fn another_setting_is_placed_against_the_frontier_of_the_fixed_ones() {
    // How the adaptive mode's row is added: a label and a Config, measured beside the fixed
    // settings. A grace of 60 s on bursts 45 s apart keeps every connection, as 120 s does.
    let t = Shape::Bursts { every: secs(45) }.generate(1, Length::Quick);
    let mut grace_60 = ours(2, 60);
    grace_60.config.max_open = 64;
    let a =
        examples::lab::replay::measure_all(&t, &fixed_settings(64), &[grace_60], BACKEND, secs(60))
            .unwrap();
    let other = a.rows.last().unwrap();
    assert!(!other.fixed && !other.on_frontier, "{other:?}");
    assert_eq!(other.measured.opens, 32, "{other:?}");
    assert!(
        other.gap.abs() < 1e-9 && other.vs_best.abs() < 1e-9,
        "{other:?}"
    );
    assert!(table(&a, false).contains("on (+0%)"));
}

// ---- pool-lab replay ----

fn temp(name: &str) -> PathBuf {
    support::temp("pool-lab-replay", name)
}

#[test]
fn replay_on_the_shipped_trace_prints_a_table_a_recommendation_and_a_report() {
    let shipped = concat!(env!("CARGO_MANIFEST_DIR"), "/traces/bursts-45s.csv");
    let dir = temp("report");
    let (code, out, err) = pool_lab(&["--trace", shipped, "--report", dir.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("1920 calls"), "{out}");
    for label in [
        "go, max_idle 0",
        "go, max_idle 64",
        "grace 30s, max_idle 2",
        "grace 120s",
    ] {
        assert!(out.contains(label), "{label}: {out}");
    }
    // Bursts 45 s apart: keeping the burst's 32 connections (max_idle 32, or a grace of
    // 120 s) opens 32 in all; a grace of 30 s reopens 30 each burst and holds them 30 s.
    let (_, rec) = out.split_once("Recommended at B = 1m: ").expect(&out);
    assert!(rec.starts_with("go, max_idle 32 (32 opens"), "{rec}");
    assert!(
        rec.contains("Tied") && rec.contains("grace 120s, max_idle 2"),
        "{rec}"
    );
    let row = |label: &str| {
        out.lines()
            .find(|l| l.starts_with(label))
            .expect(label)
            .to_owned()
    };
    assert!(row("grace 30s, max_idle 2").contains(" 1802 ") && row("grace 30s").contains(" no "));
    assert!(row("go, max_idle 0").contains(" 1920 "), "{out}");
    assert!(out.lines().all(|l| l.chars().count() <= 100), "{out}");
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    assert!(html.contains("is the cheapest setting at B = 1m") && html.contains("<svg"));
    let svg = std::fs::read_to_string(dir.join("frontier.svg")).unwrap();
    assert!(svg.contains("frontier of the fixed settings") && svg.contains("go, max_idle 0"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn replay_reads_a_users_csv_and_log() {
    let csv = temp("user.csv");
    std::fs::write(
        &csv,
        "start_ms,duration_ms\n0,50\n10,50\n20000,50\n20010,50\n",
    )
    .unwrap();
    let (code, out, err) = pool_lab(&["--trace", csv.to_str().unwrap(), "--break-even", "5s"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("4 calls over 20 s") && out.contains("Recommended at B = 5s"),
        "{out}"
    );
    let log = temp("access.log");
    std::fs::write(&log, NGINX).unwrap();
    let (code, out, err) = pool_lab(&["--trace", log.to_str().unwrap(), "--handshake", "5ms"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("3 calls") && out.contains("handshake 5ms"),
        "{out}"
    );
    std::fs::remove_file(&csv).unwrap();
    std::fs::remove_file(&log).unwrap();
}

#[test]
fn replay_exits_2_naming_the_line_of_a_bad_file() {
    let bad = temp("bad.csv");
    std::fs::write(&bad, "start_s,duration_s\n0,0.1\n1,oops\n").unwrap();
    let (code, out, err) = pool_lab(&["--trace", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("line 3: the duration `oops` is not a number"),
        "{err}"
    );
    std::fs::remove_file(&bad).unwrap();
    let (code, _, err) = pool_lab(&["--trace", "/nonexistent/trace.csv"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read /nonexistent/trace.csv"), "{err}");
    let (code, _, err) = pool_lab(&["--generate", "bursts-7s"]);
    assert_eq!(code, 2);
    assert!(err.contains("no trace shape `bursts-7s`"), "{err}");
    let (code, _, err) = pool_lab(&["--generate", "spike", "--service", "2h"]);
    assert_eq!(code, 2);
    assert!(err.contains("--service 2h is longer than an hour"), "{err}");
    let (code, _, err) = pool_lab(&["--generate", "spike", "--bursts", "3"]);
    assert_eq!(code, 2);
    assert!(err.contains("do not apply to replay"), "{err}");
    let dir = temp("not-a-dir");
    std::fs::write(&dir, "a file").unwrap();
    let (code, out, err) = pool_lab(&["--generate", "spike", "--report", dir.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}");
    assert!(
        err.contains("cannot write the report into") && out.is_empty(),
        "{err}"
    );
    std::fs::remove_file(&dir).unwrap();
    let (code, _, err) = pool_lab(&["--url", "ftp://x", "--generate", "spike", "--quick"]);
    assert_eq!(code, 2);
    assert!(err.contains("postgres:// and http://"), "{err}");
}
