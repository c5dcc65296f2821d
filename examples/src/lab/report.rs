//! `--report DIR`: an HTML page that opens with a summary (what was measured, the headline
//! difference), then per section the recommendation, the table (with each p99's interval),
//! a note where p99s are equal, and three SVG charts (see [`charts`](super::charts)): open
//! connections over time, connections opened so far, latency percentiles.

use std::path::Path;

use super::charts::{latency_chart, open_chart, opens_chart};
use super::sweep::Recommendation;
use super::{Run, quantile, short};

/// One part of a report: a heading, the workload, its runs and their recommendation.
#[derive(Debug, Clone, Copy)]
pub struct Section<'a> {
    /// The part's heading (the target).
    pub heading: &'a str,
    /// The workload, in words.
    pub context: &'a str,
    /// The runs, side by side.
    pub runs: &'a [Run],
    /// What pool-lab recommends, for a sweep.
    pub recommendation: Option<&'a Recommendation>,
}

/// Creates `dir` and writes a file into it (then removes it), so that a report that cannot
/// be written fails before a sweep of minutes, not after.
///
/// # Errors
/// The directory cannot be created, or a file not written into it.
pub fn check_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let probe = dir.join(".pool-lab-write-check");
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

/// Writes `DIR/index.html` (and the charts beside it as `.svg` files): a summary at the top,
/// then for each section its recommendation, table, notes and three charts.
///
/// # Errors
/// The directory or a file could not be written, or a chart not drawn.
pub fn write(
    dir: &Path,
    title: &str,
    sections: &[Section<'_>],
) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let mut html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>\n\
         <style>body{{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}}\
         table{{border-collapse:collapse;font-size:14px}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}\
         td:first-child,th:first-child{{text-align:left}}.rec{{background:#eef3f8;padding:1em;border-left:4px solid #0072b2}}\
         .summary{{font-size:1.1em}}.note{{color:#444}}</style>\n\
         </head><body>\n<h1>{title}</h1>\n",
        title = escape(title),
    );
    for section in sections {
        html.push_str(&format!(
            "<p class=\"summary\">{}</p>\n",
            escape(&summary(section))
        ));
    }
    for (i, section) in sections.iter().enumerate() {
        html.push_str(&format!(
            "<h2>{}</h2>\n<p>{}</p>\n",
            escape(section.heading),
            escape(section.context)
        ));
        if let Some(rec) = section.recommendation {
            html.push_str(&format!(
                "<div class=\"rec\"><b>Recommended: {}</b><p>{}</p></div>\n",
                escape(&rec.setting.label),
                escape(&rec.why)
            ));
        }
        html.push_str(&html_table(section.runs));
        for note in equal_p99s(section.runs) {
            html.push_str(&format!("<p class=\"note\">{}</p>\n", escape(&note)));
        }
        let charts = [
            (
                "open",
                "Open connections over time",
                "Sampled every 10 ms: a connection that lives for less may not show here; \
                 the next chart counts every one.",
                open_chart(section.runs)?,
            ),
            (
                "opens",
                "Connections opened so far",
                "From the pool's own counter, so short-lived connections count too: the \
                 steeper the line, the more the setting dials.",
                opens_chart(section.runs)?,
            ),
            (
                "latency",
                "Call latency",
                "The whisker on each p99 bar is its 95% interval; one that runs to the edge \
                 has no upper bound (too few calls).",
                latency_chart(section.runs)?,
            ),
        ];
        for (name, heading, note, svg) in &charts {
            std::fs::write(dir.join(format!("{}-{name}.svg", i + 1)), svg)?;
            html.push_str(&format!(
                "<h3>{heading}</h3>\n<p class=\"note\">{}</p>\n{svg}\n",
                escape(note)
            ));
        }
    }
    html.push_str("</body></html>\n");
    std::fs::write(dir.join("index.html"), html)?;
    Ok(())
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The headline of a section, one sentence or two: what was measured, and the difference
/// between the setting that opened the most and the one that opened the fewest.
pub fn summary(section: &Section<'_>) -> String {
    let runs = section.runs;
    let mut text = format!(
        "{}: {} setting{} measured, {}",
        section.heading,
        runs.len(),
        if runs.len() == 1 { "" } else { "s" },
        section.context
    );
    let measured: Vec<&Run> = runs.iter().filter(|r| r.calls > 0).collect();
    let most = measured
        .iter()
        .max_by(|a, b| a.opens_per_1000().total_cmp(&b.opens_per_1000()));
    let fewest = measured
        .iter()
        .min_by(|a, b| a.opens_per_1000().total_cmp(&b.opens_per_1000()));
    if let (Some(most), Some(fewest)) = (most, fewest) {
        let (a, b) = (most.opens_per_1000(), fewest.opens_per_1000());
        if a > b * 1.1 {
            let ratio = if b > 0.0 {
                format!("{:.1}x fewer", a / b)
            } else {
                "none".to_owned()
            };
            text.push_str(&format!(
                " {} opened {a:.1} connections per 1,000 calls and {} {b:.1} ({ratio}); p99 {} \
                 against {}.",
                most.setting.label,
                fewest.setting.label,
                short(most.latency(0.99)),
                short(fewest.latency(0.99))
            ));
        } else {
            text.push_str(&format!(
                " Every setting opened about as many connections ({b:.1}-{a:.1} per 1,000 calls)."
            ));
        }
    }
    if let Some(rec) = section.recommendation {
        text.push_str(&format!(" pool-lab recommends {}.", rec.setting.label));
    }
    text
}

/// Why rows share a p99, one note per group of equal values (as the table shows them).
pub fn equal_p99s(runs: &[Run]) -> Vec<String> {
    let mut groups: Vec<(String, Vec<&Run>)> = Vec::new();
    for r in runs.iter().filter(|r| r.calls > 0) {
        let p99 = short(r.latency(0.99));
        match groups.iter_mut().find(|(v, _)| *v == p99) {
            Some((_, rows)) => rows.push(r),
            None => groups.push((p99, vec![r])),
        }
    }
    groups
        .into_iter()
        .filter(|(_, rows)| rows.len() > 1)
        .map(|(p99, rows)| {
            let names: Vec<&str> = rows.iter().map(|r| r.setting.label.as_str()).collect();
            let calls = rows[0].calls;
            format!(
                "{} have the same p99, {p99}. A p99 is one call: the slowest but {} of {calls}. \
                 Equal values mean those calls took as long whatever the setting: their time is \
                 the server's work on the statement and the wait for one of max_open \
                 connections, which max_idle and the grace do not change. The settings differ \
                 in what they open (the opens columns and the second chart).",
                names.join(", "),
                calls.saturating_sub((calls as f64 * 0.99) as u64 + 1)
            )
        })
        .collect()
}

/// The full table: the terminal's columns, and closed connections, the p99's interval and
/// the slowest call.
fn html_table(runs: &[Run]) -> String {
    let mut html = String::from(
        "<table>\n<tr><th>setting</th><th>calls</th><th>errors</th><th>opened</th>\
         <th>closed</th><th>opens per 1,000 calls</th><th>held (mean)</th><th>p50</th>\
         <th>p99</th><th>p99, 95% interval</th><th>max</th><th>TIME_WAIT</th></tr>\n",
    );
    for r in runs {
        let interval = match r.latency_interval(0.99) {
            (Some(lo), Some(hi)) => format!("{} - {}", short(lo), short(hi)),
            _ => format!(
                "n too small ({} calls; {} needed)",
                r.calls,
                quantile::min_count(0.99)
            ),
        };
        let cells = [
            format!(
                "{}{}",
                r.setting.label,
                if r.stopped { " (stopped)" } else { "" }
            ),
            r.calls.to_string(),
            r.errors.to_string(),
            r.opened().to_string(),
            r.closed().to_string(),
            format!("{:.1}", r.opens_per_1000()),
            format!("{:.1}", r.mean_open()),
            short(r.latency(0.50)),
            short(r.latency(0.99)),
            interval,
            short(r.max_latency()),
            r.time_wait.to_string(),
        ];
        html.push_str("<tr>");
        for c in cells {
            html.push_str(&format!("<td>{}</td>", escape(&c)));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
    html
}
