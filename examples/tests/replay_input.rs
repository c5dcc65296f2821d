//! `pool-lab replay` against what an outside trial found: huge or endless files, Excel's
//! CSV, a closed pipe, a chart that disagreed with the table, flags out of range, a long
//! bad field, the trace saved over itself, the wording.

mod support;

use support::{point, pool_lab};

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use examples::lab::frontier::Analysis;
use examples::lab::frontier_chart::{self, frontier_path, label_groups, y_label};

use examples::lab::replay_cli::{MAX_TRACE_BYTES, check_calls, read_bounded};
use examples::lab::trace::Trace;

fn temp(name: &str) -> PathBuf {
    support::temp("pool-lab-input", name)
}

// ---- 1. the size of the input is bounded ----

#[test]
fn a_trace_above_the_byte_limit_is_refused_after_reading_just_past_it() {
    // An endless reader: only `take` stops it.
    let endless = std::io::repeat(b'0');
    let err = read_bounded(endless, 1024).unwrap_err();
    assert!(err.contains("larger than the limit of 1 KiB"), "{err}");
    assert!(err.contains("head -n"), "{err}");
    assert_eq!(
        read_bounded(&b"start_s\n0\n"[..], 10).unwrap(),
        "start_s\n0\n"
    );
    let err = read_bounded(&[0xff, 0xfe][..], 10).unwrap_err();
    assert!(err.contains("not UTF-8"), "{err}");
    assert_eq!(MAX_TRACE_BYTES, 256 * 1024 * 1024);
}

#[test]
fn a_trace_above_the_call_limit_is_refused_before_it_is_parsed() {
    let text = "# c\nstart_s\n0\n\n1\n2\n";
    assert!(check_calls(text, 3).is_ok());
    let err = check_calls(text, 2).unwrap_err();
    assert!(
        err.contains("about 3 calls, more than the limit of 2") && err.contains("head -n"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn replay_of_dev_zero_stops_at_the_limit_with_exit_2() {
    let (code, out, err) = pool_lab(&["--trace", "/dev/zero"]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(
        err.contains("larger than the limit of 256 MiB") && err.contains("head -n"),
        "{err}"
    );
}

#[test]
fn replay_reports_each_setting_it_simulates_and_help_states_the_limits() {
    let (code, out, err) = pool_lab(&["--generate", "spike", "--quick"]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("simulating 1/9: go, max_idle 0 ..."), "{err}");
    assert!(
        err.contains("simulating 9/9: adaptive, max_idle 2 ..."),
        "{err}"
    );
    let (code, out, _) = pool_lab(&["--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("256 MiB and 2,000,000 calls"), "{out}");
    assert!(out.contains("adaptive, max_idle 2"), "{out}");
    assert!(out.contains("a line starting with `#`"), "{out}");
}

// ---- 2. Excel's CSV ----

#[test]
fn a_csv_with_a_byte_order_mark_and_quoted_cells_is_read() {
    let plain = Trace::parse("start_s,duration_s\n0,0.05\n1,0.05\n").unwrap();
    let bom = Trace::parse("\u{feff}start_s,duration_s\r\n0,0.05\r\n1,0.05\r\n").unwrap();
    assert_eq!(bom, plain);
    let quoted =
        Trace::parse("\u{feff}\"start_s\",\"duration_s\"\n\"0\",\"0.05\"\n1, \"0.05\" \n").unwrap();
    assert_eq!(quoted, plain);
}

// ---- 3. a closed pipe ----

#[test]
fn replay_into_a_closed_pipe_exits_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pool-lab"))
        .args(["replay", "--generate", "spike", "--quick"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take()); // as `| head -0` does, before anything is printed
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(0), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

// ---- 5. --break-even ----

#[test]
fn break_even_out_of_range_is_refused_naming_the_flag() {
    for b in ["0s", "1ms", "2h"] {
        let (code, out, err) = pool_lab(&["--generate", "spike", "--quick", "--break-even", b]);
        assert_eq!(code, 2, "{b}: {out}\n{err}");
        assert!(
            err.contains(&format!("--break-even {b} is out of range: give 1s to 30m")),
            "{err}"
        );
        assert!(
            !err.contains("idle_grace") && !err.contains("adaptive_idle"),
            "{err}"
        );
    }
}

// ---- 6. long fields ----

#[test]
fn a_long_bad_field_is_shortened_in_the_error() {
    let long = "x".repeat(100_000);
    let err = Trace::parse(&format!("start_s,duration_s\n0,{long}\n")).unwrap_err();
    let shown = format!("`{}...`", "x".repeat(40));
    assert!(err.message.contains(&shown), "{}", err.message);
    assert!(err.message.len() < 200, "{}", err.message);
    let err = Trace::parse(&format!("start_{long},duration_s\n0,1\n")).unwrap_err();
    assert!(err.message.len() < 200, "{}", err.message);
}

// ---- 7. --save-trace over --trace ----

#[test]
fn saving_the_trace_over_itself_is_refused() {
    let csv = temp("self.csv");
    let text = "start_s,duration_s\n0,0.05\n";
    std::fs::write(&csv, text).unwrap();
    let path = csv.to_str().unwrap();
    let dotted = format!(
        "{}/./{}",
        csv.parent().unwrap().display(),
        csv.file_name().unwrap().to_str().unwrap()
    );
    let (code, out, err) = pool_lab(&["--trace", path, "--save-trace", &dotted]);
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("is the --trace file itself"), "{err}");
    assert_eq!(std::fs::read_to_string(&csv).unwrap(), text);
    std::fs::remove_file(&csv).unwrap();
}

// ---- 8. wording ----

#[test]
fn one_call_is_one_call_and_the_hints_say_what_to_do() {
    let csv = temp("one.csv");
    std::fs::write(&csv, "start_s\n0\n").unwrap();
    let (code, out, err) = pool_lab(&["--trace", csv.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("1 call over 0 s, each lasting zero;"), "{out}");
    std::fs::remove_file(&csv).unwrap();

    let (code, _, err) = pool_lab(&[]);
    assert_eq!(code, 2);
    assert!(
        err.contains("--trace") && err.contains("--generate"),
        "{err}"
    );

    let log = "1.2.3.4 - - [10/Oct/2023:13:55:36 +0000] \"GET / HTTP/1.1\" 200 5 \"-\" \"curl\"";
    let err = Trace::parse(log).unwrap_err();
    assert!(
        err.message
            .contains("add `$request_time` (nginx) or `%D` (Apache) at the end"),
        "{}",
        err.message
    );
    let err = Trace::parse("start_s,duration_s\n0,0.05 # c\n").unwrap_err();
    assert!(
        err.message.contains("a comment takes a line of its own"),
        "{}",
        err.message
    );
}

// ---- 4. the frontier chart agrees with the table ----

#[test]
fn a_frontier_segment_is_the_linear_mix_sampled_along_the_log_axis() {
    let path = frontier_path(&[(10.0, 100.0), (1000.0, 0.0)]);
    assert!(path.len() > 40, "{path:?}");
    assert_eq!(path.first(), Some(&(10.0, 100.0)));
    assert_eq!(path.last(), Some(&(1000.0, 0.0)));
    for &(x, y) in &path {
        let linear = 100.0 - 100.0 * (x - 10.0) / 990.0;
        assert!((y - linear).abs() < 1e-9, "({x}, {y}) off the mix {linear}");
    }
    // Halfway along the log axis (100 opens) the mix has 91 idle seconds, not 50.
    let mid = path.iter().find(|p| (p.0 - 100.0).abs() < 1e-6).unwrap();
    assert!((mid.1 - 90.909).abs() < 1e-3, "{mid:?}");
    // The SVG draws it so: the frontier polyline holds the samples, not two corners.
    let a = Analysis::new(
        vec![
            (point("go, max_idle 0", 1000, 0.0), true),
            (point("go, max_idle 64", 10, 100.0), true),
        ],
        Duration::from_secs(60),
    );
    let svg = frontier_chart::svg(&a, "t").unwrap();
    let most = svg
        .split("points=\"")
        .skip(1)
        .map(|p| p.split('"').next().unwrap().split(' ').count())
        .max()
        .unwrap_or(0);
    assert!(most > 40, "{svg}");
}

#[test]
fn every_point_gets_exactly_one_label_and_ticks_are_whole() {
    // A chain: 1 is near 0 and 2, 0 and 2 are not near each other.
    let groups = label_groups(&[(0, 0), (6, 0), (12, 0), (100, 100), (101, 100)], 8);
    let mut all: Vec<usize> = groups.iter().flatten().copied().collect();
    all.sort_unstable();
    assert_eq!(all, [0, 1, 2, 3, 4], "{groups:?}");
    assert_eq!(groups, [vec![0, 1], vec![2], vec![3, 4]]);
    assert_eq!(y_label(0.5), "");
    assert_eq!(y_label(3.0), "3");
    let a = Analysis::new(
        vec![
            (point("go, max_idle 0", 10, 0.2), true),
            (point("go, max_idle 2", 5, 0.9), true),
        ],
        Duration::from_secs(60),
    );
    let svg = frontier_chart::svg(&a, "t").unwrap();
    // The idle axis's labels are the texts anchored at their end.
    let ticks: Vec<&str> = svg
        .split("<text")
        .filter(|t| t.contains("text-anchor=\"end\""))
        .filter_map(|t| t.split('>').nth(1))
        .map(|t| t.trim_end_matches("</text").trim())
        .filter(|t| !t.is_empty())
        .collect();
    assert!(ticks.len() >= 3, "{ticks:?}");
    let mut unique = ticks.clone();
    unique.dedup();
    assert_eq!(unique, ticks, "a tick twice");
    assert!(ticks.iter().all(|t| t.parse::<u64>().is_ok()), "{ticks:?}");
}
