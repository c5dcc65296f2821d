//! The terminal table of runs: aligned columns that fit 100 characters with the sweep's
//! labels, and the footnotes its marks refer to. The HTML report has the fuller table
//! (closed connections, the slowest call, the p99's interval).

use super::{Run, quantile, short};

/// The columns: heading, and whether values align right.
const COLUMNS: [(&str, bool); 9] = [
    ("setting", false),
    ("calls", true),
    ("errors", true),
    ("opened", true),
    ("opens/1k", true),
    ("held", true),
    ("p50", true),
    ("p99", true),
    ("TIME_WAIT", true),
];

/// The mark after a p99 measured from fewer calls than its interval needs.
pub const ROUGH: &str = "~";

/// The runs side by side, one line each, then what the columns and marks mean.
pub fn table(runs: &[Run]) -> String {
    let rows: Vec<[String; 9]> = runs.iter().map(row).collect();
    let mut widths = COLUMNS.map(|(h, _)| h.chars().count());
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    line(&mut out, &COLUMNS.map(|(h, _)| h.to_owned()), &widths);
    for r in &rows {
        line(&mut out, r, &widths);
    }
    out.push_str(
        "opens/1k: connections opened per 1,000 calls; held: connections open on average;\n\
         TIME_WAIT: sockets the run's closed connections left on this machine (approximate).\n",
    );
    if runs.iter().any(|r| rough_p99(r) && r.calls > 0) {
        out.push_str(&format!(
            "{ROUGH} p99 of fewer than {} calls: its 95% interval reaches past the slowest call, so \
             it is\n  a rough figure; more --bursts give a p99 to compare.\n",
            quantile::min_count(0.99)
        ));
    }
    for r in runs.iter().filter(|r| r.stopped) {
        out.push_str(&format!(
            "(stopped) {}: Ctrl-C ended it after {} calls.\n",
            r.setting.label, r.calls
        ));
    }
    out
}

/// Whether `run`'s p99 has no upper confidence bound.
fn rough_p99(run: &Run) -> bool {
    (run.calls as usize) < quantile::min_count(0.99)
}

fn row(r: &Run) -> [String; 9] {
    [
        r.setting.label.clone(),
        r.calls.to_string(),
        r.errors.to_string(),
        r.opened().to_string(),
        format!("{:.1}", r.opens_per_1000()),
        format!("{:.1}", r.mean_open()),
        short(r.latency(0.50)),
        format!(
            "{}{}",
            short(r.latency(0.99)),
            if rough_p99(r) { ROUGH } else { " " }
        ),
        r.time_wait.to_string(),
    ]
}

fn line(out: &mut String, cells: &[String; 9], widths: &[usize; 9]) {
    let mut text = String::new();
    for (i, ((cell, w), (_, right))) in cells.iter().zip(widths).zip(COLUMNS).enumerate() {
        if i > 0 {
            text.push_str("  ");
        }
        let pad = w - cell.chars().count();
        if right {
            text.push_str(&" ".repeat(pad));
            text.push_str(cell);
        } else {
            text.push_str(cell);
            text.push_str(&" ".repeat(pad));
        }
    }
    out.push_str(text.trim_end());
    out.push('\n');
}
