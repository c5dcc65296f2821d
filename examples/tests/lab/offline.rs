//! The parts of pool-lab that need no server: the recommendation, the terminal table, the
//! report's page and charts, and TIME_WAIT counting. A module of `tests/lab.rs`.

use std::time::Duration;

use examples::lab::{ROUGH, Run, charts, report, sockets, sweep, table};

use super::SHORT;

/// A run with `calls` calls of `p99_ms` each (but the first of 1 ms), for the pure parts.
fn fake_run(label: &str, max_idle: usize, go: bool, opened: u64, calls: usize, p99_ms: u64) -> Run {
    let mut stats = pool_core::Stats::default();
    stats.created = opened;
    let mut latencies = vec![Duration::from_millis(p99_ms); calls];
    latencies[0] = Duration::from_millis(1);
    Run {
        setting: examples::lab::Setting {
            label: label.to_owned(),
            max_open: 16,
            max_idle,
            idle_grace: if go {
                Duration::ZERO
            } else {
                Duration::from_secs(30)
            },
            go,
        },
        calls: calls as u64,
        errors: 0,
        refused: 0,
        first_error: None,
        latencies,
        timeline: Vec::new(),
        time_wait: 0,
        stats,
        elapsed: Duration::from_secs(1),
        stopped: false,
    }
}

/// Issue 22: with zero errors pool-lab printed "No recommendation: no setting ran without
/// errors", when no run was near both the fewest opens and the best p99.
#[test]
fn runs_without_errors_always_get_a_recommendation_or_a_true_reason() {
    let runs = [
        fake_run("max_idle 0, no grace (Go)", 0, true, 500, 400, 10), // best p99, many opens
        fake_run("max_idle 0, grace 30s", 0, false, 16, 400, 80),     // fewest opens, slow
        fake_run("max_idle 8, grace 30s", 8, false, 100, 400, 12),
    ];
    let rec = sweep::recommend(&runs, runs.len(), SHORT).expect("a recommendation");
    assert_eq!(rec.setting.label, "max_idle 8, grace 30s", "{}", rec.why);
    assert!(rec.why.contains("at the cost of latency"), "{}", rec.why);
    // Every run failed: the reason says so, and only then.
    let failed: Vec<Run> = runs
        .iter()
        .cloned()
        .map(|mut r| {
            r.errors = 1;
            r
        })
        .collect();
    let withheld = sweep::recommend(&failed, failed.len(), SHORT).unwrap_err();
    assert!(withheld.0.contains("failed calls"), "{withheld}");
}

/// Issue 22: after Ctrl-C with only Go's row measured, pool-lab recommended Go's setting.
#[test]
fn a_stopped_sweep_recommends_nothing() {
    let mut go = fake_run("max_idle 0, no grace (Go)", 0, true, 50, 400, 10);
    let planned = 2;
    let withheld = sweep::recommend(std::slice::from_ref(&go), planned, SHORT).unwrap_err();
    assert!(withheld.0.contains("1 of 2 settings"), "{withheld}");
    go.stopped = true;
    let ours = fake_run("max_idle 0, grace 30s", 0, false, 16, 400, 10);
    let withheld = sweep::recommend(&[go, ours], planned, SHORT).unwrap_err();
    assert!(withheld.0.contains("1 of 2 settings"), "{withheld}");
}

/// Issue 22: TIME_WAIT sockets of one setting's connections were counted in the next.
#[test]
fn time_wait_counts_only_connections_that_were_not_there_before() {
    // /proc/net/tcp lines: sl, local, remote, state (01 established, 06 TIME_WAIT).
    let line = |n: u32, local: &str, remote: &str, state: &str| {
        format!("{n:4}: {local} {remote} {state} 00000000:00000000 00:00000000 00000000 0 0 1\n")
    };
    let header = "  sl  local_address rem_address   st tx_queue rx_queue\n";
    let port = 5432; // 0x1538
    let before = format!(
        "{header}{}{}",
        line(0, "0100007F:9C40", "0100007F:1538", "01"), // the last setting's, still open
        line(1, "0100007F:9C41", "0100007F:1538", "06"), // the last setting's, closed
    );
    let after = format!(
        "{header}{}{}{}{}",
        line(0, "0100007F:9C40", "0100007F:1538", "06"), // closed during this run
        line(1, "0100007F:9C41", "0100007F:1538", "06"),
        line(2, "0100007F:9C42", "0100007F:1538", "06"), // this run's
        line(3, "0100007F:9C43", "0100007F:0050", "06"), // another port
    );
    let (before, after) = (
        sockets::Snapshot::parse(&before, port),
        sockets::Snapshot::parse(&after, port),
    );
    assert_eq!(after.new_time_wait(&before), 1);
}

/// Issue 22: p99 from 16-160 calls was shown as if it were exact.
#[test]
fn a_p99_from_too_few_calls_is_marked_and_its_interval_shown() {
    let few = fake_run("max_idle 0, grace 30s", 0, false, 16, 160, 10);
    assert_eq!(
        few.latency_interval(0.99).1,
        None,
        "no upper bound from 160 calls"
    );
    let many = fake_run("max_idle 8, grace 30s", 8, false, 16, 640, 10);
    assert!(matches!(many.latency_interval(0.99), (Some(_), Some(_))));
    let text = table(&[few.clone(), many.clone()]);
    let rows: Vec<&str> = text.lines().collect();
    assert!(rows[1].contains(&format!("10.0 ms{ROUGH}")), "{text}");
    assert!(!rows[2].contains(ROUGH), "{text}");
    assert!(text.contains("fewer than 368 calls"), "{text}");

    let dir = std::env::temp_dir().join(format!("pool-lab-interval-{}", std::process::id()));
    let runs = [few, many];
    let section = report::Section {
        heading: "h",
        context: "c",
        runs: &runs,
        recommendation: None,
    };
    report::write(&dir, "t", &[section]).unwrap();
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        html.contains("n too small (160 calls; 368 needed)"),
        "{html}"
    );
    assert!(html.contains("p99, 95% interval"), "{html}");
}

/// Issue 22: the terminal table was wider than a terminal.
#[test]
fn the_terminal_table_fits_100_columns() {
    let settings = sweep::settings(100, None, Duration::from_secs(120), 100).unwrap();
    let runs: Vec<Run> = settings
        .iter()
        .map(|s| {
            let mut r = fake_run(&s.label, s.max_idle, s.go, 99_999, 10_000, 1234);
            r.time_wait = 99_999;
            r.setting = s.clone();
            r
        })
        .collect();
    let mut runs = runs;
    runs[0].calls = 100; // a rough p99, and its footnote
    runs[1].stopped = true;
    let text = table(&runs);
    assert!(text.contains(ROUGH) && text.contains("(stopped)"), "{text}");
    for line in text.lines() {
        assert!(
            line.chars().count() <= 100,
            "{} wide: {line}",
            line.chars().count()
        );
    }
    assert!(text.contains("max_idle 25, no grace (Go)"), "{text}");
}

/// Issue 22: two rows with equal p99s were left unexplained, and the page had no summary.
#[test]
fn the_page_opens_with_a_summary_and_explains_equal_p99s() {
    let runs = [
        fake_run("max_idle 0, no grace (Go)", 0, true, 400, 400, 10),
        fake_run("max_idle 0, grace 30s", 0, false, 16, 400, 10),
    ];
    let notes = report::equal_p99s(&runs);
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert!(
        notes[0].contains(
            "max_idle 0, no grace (Go), max_idle 0, grace 30s have the same p99, 10.0 ms"
        ),
        "{}",
        notes[0]
    );
    assert!(notes[0].contains("server's work"), "{}", notes[0]);
    let section = report::Section {
        heading: "PostgreSQL",
        context: "3 bursts",
        runs: &runs,
        recommendation: None,
    };
    let summary = report::summary(&section);
    assert!(
        summary.contains("max_idle 0, no grace (Go) opened 1000.0 connections per 1,000 calls and max_idle 0, grace 30s 40.0 (25.0x fewer)"),
        "{summary}"
    );
    let dir = std::env::temp_dir().join(format!("pool-lab-summary-{}", std::process::id()));
    report::write(&dir, "t", &[section]).unwrap();
    let html = std::fs::read_to_string(dir.join("index.html")).unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let at = |needle: &str| {
        html.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {html}"))
    };
    assert!(
        at("class=\"summary\"") < at("<h2>"),
        "the summary comes first"
    );
    assert!(html.contains("have the same p99"));
}

/// The colours of the series palette (Okabe-Ito), as plotters writes them into an SVG.
const SERIES_COLOURS: [&str; 7] = [
    "#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000",
];

/// Issue 22: the legend covered the lines; red and green series were unreadable to colour-blind
/// readers and the bar chart reused their colours; opens sampled every 10 ms missed short
/// connections; counts had decimals.
#[test]
fn charts_keep_the_legend_off_the_lines_and_read_without_colour() {
    let mut runs = [
        fake_run("max_idle 0, no grace (Go)", 0, true, 40, 400, 10),
        fake_run("max_idle 0, grace 30s", 0, false, 4, 400, 10),
        fake_run("max_idle 4", 4, false, 4, 400, 10),
    ];
    for (k, r) in runs.iter_mut().enumerate() {
        r.timeline = (0..=100)
            .map(|i| examples::lab::Sample {
                at: i as f64 * 0.01,
                open: (i % 5).min(3 + k),
                created: (i as u64 * r.stats.created) / 100,
            })
            .collect();
    }
    let open = charts::open_chart(&runs).unwrap();
    let opens = charts::opens_chart(&runs).unwrap();
    let latency = charts::latency_chart(&runs).unwrap();
    for svg in [&open, &opens] {
        // The legend's labels sit right of the plot (900 wide, the last 270 for the legend).
        for r in &runs {
            let x = text_x(svg, &r.setting.label)
                .unwrap_or_else(|| panic!("{}: {svg}", r.setting.label));
            assert!(x >= 630.0, "{} at x = {x}", r.setting.label);
        }
        assert!(
            svg.contains("#0072B2") && svg.contains("#D55E00"),
            "Okabe-Ito colours"
        );
        // Go's series (the first, blue) is dashed: many short segments in its colour; the
        // second (vermillion) is one line, and one in the legend.
        let segments = |colour: &str| svg.matches(&format!("stroke=\"{colour}\"")).count();
        assert!(segments("#0072B2") > 10, "dashed");
        assert_eq!(segments("#D55E00"), 2, "solid");
        assert!(svg.contains("dashed: Go"));
        // Counts up the side are integers.
        let labels = y_labels(svg);
        assert!(labels.len() >= 3, "{labels:?}");
        for label in labels {
            assert!(label.parse::<i64>().is_ok(), "a count label {label:?}");
        }
    }
    for colour in SERIES_COLOURS.iter().take(6) {
        assert!(
            !latency.contains(colour),
            "the bars use no series colour ({colour})"
        );
    }
}

/// The x of the `<text>` element whose content is `content`.
fn text_x(svg: &str, content: &str) -> Option<f64> {
    let end = svg.find(&format!(">\n{content}\n</text>"))?;
    let start = svg[..end].rfind("<text")?;
    let tag = &svg[start..end];
    let x = tag.split("x=\"").nth(1)?.split('"').next()?;
    x.parse().ok()
}

/// The y-axis tick labels: `<text>` elements anchored at their end (right-aligned) left of
/// the plot.
fn y_labels(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .filter(|t| t.contains("text-anchor=\"end\""))
        .filter_map(|t| Some(t.split('>').nth(1)?.split('<').next()?.trim().to_owned()))
        .collect()
}
