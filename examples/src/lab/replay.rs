//! `pool-lab replay`: every setting through the simulator on one trace, the analysis, the
//! text the terminal shows and the HTML report. The command line (`src/bin/pool_lab.rs`)
//! only parses flags and calls these; `benches/src/bin/idle_bench.rs` calls
//! [`measure_all`] on the generated traces.

use std::path::Path;
use std::time::Duration;

use super::LabError;
use super::frontier::{self, Analysis};
use super::frontier_chart;
use super::sim::{Backend, PoolSetting, simulate};
use super::trace::Trace;

/// Simulates `trace` with each of `fixed` (the settings the frontier is drawn from) and
/// each of `others` (placed against it), in that order, and analyses them at break-even
/// time `b`.
///
/// # Errors
/// [`LabError::BadInput`] when the pool refuses a setting's knobs.
pub fn measure_all(
    trace: &Trace,
    fixed: &[PoolSetting],
    others: &[PoolSetting],
    backend: Backend,
    b: Duration,
) -> Result<Analysis, LabError> {
    measure_all_with(trace, fixed, others, backend, b, |_, _| {})
}

/// [`measure_all`], calling `progress(i, label)` before the `i`-th setting (from 1) is
/// simulated: `pool-lab replay` reports each on stderr, as a large trace takes a while.
///
/// # Errors
/// [`LabError::BadInput`] when the pool refuses a setting's knobs.
pub fn measure_all_with(
    trace: &Trace,
    fixed: &[PoolSetting],
    others: &[PoolSetting],
    backend: Backend,
    b: Duration,
    mut progress: impl FnMut(usize, &str),
) -> Result<Analysis, LabError> {
    let mut measured = Vec::with_capacity(fixed.len() + others.len());
    let all = fixed.iter().map(|s| (s, true));
    for (i, (s, is_fixed)) in all.chain(others.iter().map(|s| (s, false))).enumerate() {
        progress(i + 1, &s.label);
        measured.push((simulate(trace, s, backend)?, is_fixed));
    }
    Ok(Analysis::new(measured, b))
}

/// A trace and the backend in words, for the terminal and the report.
pub fn describe(trace: &Trace, backend: Backend, max_open: usize) -> String {
    let service = if backend.service.is_zero() {
        String::new()
    } else {
        format!(
            " plus {} of service time",
            humantime::format_duration(backend.service)
        )
    };
    let at_once = match trace.peak_concurrency() {
        0 => "each lasting zero".to_owned(),
        1 => "one at a time".to_owned(),
        n => format!("at most {n} at once"),
    };
    format!(
        "{} over {:.0} s, {at_once}; simulated backend: handshake {}, each call holds its \
         connection for the trace's duration{service}; max_open {max_open}.",
        calls(trace.calls.len()),
        trace.end.as_secs_f64(),
        humantime::format_duration(backend.handshake),
    )
}

/// `1 call`, `2 calls`.
pub fn calls(n: usize) -> String {
    if n == 1 {
        "1 call".to_owned()
    } else {
        format!("{n} calls")
    }
}

/// The sentence the report opens with: which setting is cheapest at B and by how much.
pub fn summary(a: &Analysis) -> String {
    let Some(pick) = a.cheapest() else {
        return "Nothing was measured.".into();
    };
    let worst = a
        .rows
        .iter()
        .map(|r| r.measured.cost(a.b))
        .fold(0.0, f64::max);
    format!(
        "On this trace {} is the cheapest setting at B = {}: {:.0} connection-seconds against \
         {:.0} for the dearest.",
        pick.measured.label,
        humantime::format_duration(a.b),
        pick.measured.cost(a.b),
        worst
    )
}

/// Writes `DIR/index.html` (the summary, the recommendation, the table and the chart) and
/// `DIR/frontier.svg`.
///
/// # Errors
/// [`LabError::BadInput`] naming the directory when it cannot be written.
pub fn write_report(dir: &Path, title: &str, context: &str, a: &Analysis) -> Result<(), LabError> {
    let fail = |e: &dyn std::fmt::Display| {
        LabError::BadInput(format!(
            "cannot write the report into {}: {e}",
            dir.display()
        ))
    };
    let svg = frontier_chart::svg(a, "Opens against idle connection-seconds, per setting")
        .map_err(|e| fail(&e))?;
    std::fs::create_dir_all(dir).map_err(|e| fail(&e))?;
    std::fs::write(dir.join("frontier.svg"), &svg).map_err(|e| fail(&e))?;
    let rec = frontier::recommend(a);
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{t}</title>\n\
         <style>body{{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;font-size:14px}}td,th{{border:1px solid #ccc;\
         padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}\
         .rec{{background:#eef3f8;padding:1em;border-left:4px solid #0072b2}}</style>\n\
         </head><body>\n<h1>{t}</h1>\n<p><b>{summary}</b></p>\n<p>{context}</p>\n\
         <div class=\"rec\">{rec}</div>\n<h2>Settings</h2>\n{table}\n<p>{model}</p>\n\
         <h2>Frontier</h2>\n{svg}\n</body></html>\n",
        t = escape(title),
        summary = escape(&summary(a)),
        context = escape(context),
        rec = escape(&rec).replace('\n', "<br>\n"),
        table = html_table(&frontier::table(a, true)),
        model = escape(MODEL),
    );
    std::fs::write(dir.join("index.html"), html).map_err(|e| fail(&e))
}

/// The cost model and the columns, in words (the report's footnote).
pub const MODEL: &str = "cost = idle connection-seconds + B x opens, where B, the break-even \
     time, is what one handshake costs in idle connection-seconds. vs best: cost over the \
     cheapest fixed setting's cost. frontier: for a fixed setting, whether no other fixed \
     setting has both fewer opens and fewer idle connection-seconds; for another setting, its \
     cost over the cheapest fixed setting's at the B most favourable to it (on: it is the \
     cheapest for some B). waited: checkouts that waited for a create or a release.";

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn html_table(md: &str) -> String {
    let mut html = String::from("<table>\n");
    for (i, line) in md.lines().enumerate().filter(|(i, _)| *i != 1) {
        let tag = if i == 0 { "th" } else { "td" };
        html.push_str("<tr>");
        for c in line.trim_matches('|').split('|').map(str::trim) {
            html.push_str(&format!("<{tag}>{}</{tag}>", escape(c)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    html
}
