//! The fixed idle-retention settings, their Pareto frontier in (opens, idle
//! connection-seconds), and how far any other setting is from it.
//!
//! # Definitions
//! - **Fixed settings** ([`fixed_settings`]): Go's way ([`Config::go`]: no grace) with
//!   `max_idle` 0, 2, `max_open`/4, `max_open`/2 and `max_open`; and ours with the default
//!   `max_idle` 2 and `idle_grace` 10 s, 30 s and 120 s. All at the same `max_open`.
//! - **Frontier**: the fixed settings no other fixed setting beats on both opens and idle
//!   connection-seconds (ties count as beaten only when strictly worse on one).
//! - **Cost at B** ([`Measured::cost`]): `idle connection-seconds + B x opens`, B the
//!   break-even time (see [`super::sim`]).
//! - **vs best**: a setting's cost at B over the cheapest fixed setting's, minus one
//!   (`+12%`: 12 % dearer; negative: cheaper than every fixed setting).
//! - **Frontier gap**: the same ratio at the B most favourable to the setting, over all
//!   B >= 0, i.e. how far the setting is from the frontier's lower convex hull, the line of
//!   fixed settings that are each the cheapest for some B. Zero or less: the setting is on
//!   or below that line (it ties or beats every fixed setting for some B); `+5%`: at every B
//!   some fixed setting is at least 5 % cheaper.

use std::time::Duration;

use pool_core::Config;

use super::sim::{Measured, PoolSetting};

/// The fixed settings at `max_open` (see the module docs), Go's first.
pub fn fixed_settings(max_open: usize) -> Vec<PoolSetting> {
    let mut idles = vec![0, 2, max_open / 4, max_open / 2, max_open];
    idles.sort_unstable();
    idles.dedup();
    let mut out: Vec<PoolSetting> = idles
        .into_iter()
        .map(|idle| {
            let mut config = Config::go();
            config.max_open = max_open;
            config.max_idle = idle;
            PoolSetting {
                label: format!("go, max_idle {idle}"),
                config,
            }
        })
        .collect();
    for grace in [10, 30, 120] {
        let mut config = Config::default();
        config.max_open = max_open;
        config.idle_grace = Duration::from_secs(grace);
        out.push(PoolSetting {
            label: format!("grace {grace}s, max_idle {}", config.max_idle),
            config,
        });
    }
    out
}

/// The adaptive mode's setting ([`Config::adaptive_idle`] with break-even `b`, our default
/// `max_idle` 2), placed against the frontier of the fixed ones.
pub fn adaptive_setting(max_open: usize, b: Duration) -> PoolSetting {
    let mut config = Config::default();
    config.max_open = max_open;
    config.adaptive_idle = Some(b);
    PoolSetting {
        label: format!("adaptive, max_idle {}", config.max_idle),
        config,
    }
}

/// One row of the analysis: a measured setting, whether it is one of the fixed ones, and
/// where it stands.
#[derive(Debug, Clone)]
pub struct Row {
    /// What was measured.
    pub measured: Measured,
    /// One of [`fixed_settings`] (the frontier is drawn from these only).
    pub fixed: bool,
    /// On the frontier of the fixed settings (always false for other settings).
    pub on_frontier: bool,
    /// Cost at B over the cheapest fixed setting's, minus one.
    pub vs_best: f64,
    /// The frontier gap (see the module docs).
    pub gap: f64,
}

/// The settings measured on one trace, and where each stands against the fixed ones.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// The break-even time the costs use.
    pub b: Duration,
    /// The rows, in the order measured.
    pub rows: Vec<Row>,
}

/// `a / b` where both may be zero: equal zeros are a ratio of 1, anything over zero is
/// infinitely more.
fn ratio(a: f64, b: f64) -> f64 {
    if b > 0.0 {
        a / b
    } else if a > 0.0 {
        f64::INFINITY
    } else {
        1.0
    }
}

impl Analysis {
    /// Places each of `measured` (`fixed[i]` says whether it is a fixed setting) against
    /// the fixed ones at break-even time `b`. With no fixed setting, every margin is zero.
    pub fn new(measured: Vec<(Measured, bool)>, b: Duration) -> Analysis {
        let fixed: Vec<&Measured> = measured.iter().filter(|m| m.1).map(|m| &m.0).collect();
        let best = fixed
            .iter()
            .map(|m| m.cost(b))
            .fold(f64::INFINITY, f64::min);
        let dominated = |m: &Measured| {
            fixed.iter().any(|f| {
                f.opens as f64 <= m.opens as f64
                    && f.idle_conn_s <= m.idle_conn_s
                    && ((f.opens as f64) < m.opens as f64 || f.idle_conn_s < m.idle_conn_s)
            })
        };
        let breaks = break_evens(&fixed);
        let rows = measured
            .iter()
            .map(|(m, is_fixed)| Row {
                measured: m.clone(),
                fixed: *is_fixed,
                on_frontier: *is_fixed && !dominated(m),
                vs_best: if fixed.is_empty() {
                    0.0
                } else {
                    ratio(m.cost(b), best) - 1.0
                },
                gap: if fixed.is_empty() {
                    0.0
                } else {
                    gap(m, &fixed, &breaks)
                },
            })
            .collect();
        Analysis { b, rows }
    }

    /// The frontier's rows, by opens.
    pub fn frontier(&self) -> Vec<&Row> {
        let mut f: Vec<&Row> = self.rows.iter().filter(|r| r.on_frontier).collect();
        f.sort_by(|a, b| {
            a.measured
                .opens
                .cmp(&b.measured.opens)
                .then(a.measured.idle_conn_s.total_cmp(&b.measured.idle_conn_s))
        });
        f
    }

    /// The cheapest row at B (fixed or not), the first of equals; `None` without rows.
    pub fn cheapest(&self) -> Option<&Row> {
        self.rows
            .iter()
            .min_by(|a, b| a.measured.cost(self.b).total_cmp(&b.measured.cost(self.b)))
    }

    /// The cheapest fixed setting at B.
    pub fn best_fixed(&self) -> Option<&Row> {
        self.rows
            .iter()
            .filter(|r| r.fixed)
            .min_by(|a, b| a.measured.cost(self.b).total_cmp(&b.measured.cost(self.b)))
    }
}

/// Every B > 0 where two fixed settings cost the same: the lower envelope of their costs
/// (a concave, piecewise linear function of B) bends only at some of these.
fn break_evens(fixed: &[&Measured]) -> Vec<f64> {
    let mut out = Vec::new();
    for (i, a) in fixed.iter().enumerate() {
        for b in &fixed[i + 1..] {
            let d_opens = a.opens as f64 - b.opens as f64;
            if d_opens != 0.0 {
                let at = (b.idle_conn_s - a.idle_conn_s) / d_opens;
                if at > 0.0 && at.is_finite() {
                    out.push(at);
                }
            }
        }
    }
    out
}

/// The frontier gap of `m`: the least, over B >= 0, of its cost over the cheapest fixed
/// cost, minus one. Between two bends of the envelope the ratio of two linear functions is
/// monotone, so its least value is at a bend, at B = 0 or as B grows without bound.
fn gap(m: &Measured, fixed: &[&Measured], breaks: &[f64]) -> f64 {
    let cost = |x: &Measured, b: f64| x.idle_conn_s + b * x.opens as f64;
    let at = |b: f64| {
        let best = fixed
            .iter()
            .map(|f| cost(f, b))
            .fold(f64::INFINITY, f64::min);
        ratio(cost(m, b), best)
    };
    let at_zero = at(0.0);
    let fewest = fixed.iter().map(|f| f.opens).min().unwrap_or(0) as f64;
    let at_infinity = ratio(m.opens as f64, fewest);
    breaks
        .iter()
        .map(|&b| at(b))
        .fold(at_zero.min(at_infinity), f64::min)
        - 1.0
}

/// A margin as text: `+12%`, `-3%`, `0%`; `inf` when the best costs nothing.
pub fn percent(x: f64) -> String {
    if x.is_infinite() {
        "inf".into()
    } else {
        format!("{:+.0}%", x * 100.0)
    }
}

/// What the frontier column says of a row: `yes` / `no` for a fixed setting, the gap for
/// another (`on` when it is zero or less).
pub fn frontier_cell(r: &Row) -> String {
    match (r.fixed, r.on_frontier) {
        (true, true) => "yes".into(),
        (true, false) => "no".into(),
        (false, _) if r.gap <= 1e-9 => format!("on ({})", percent(r.gap)),
        (false, _) => format!("gap {}", percent(r.gap)),
    }
}

/// The table of an analysis: Markdown (for BENCHMARKS.md and the report) or aligned plain
/// text that fits 100 columns (for the terminal).
pub fn table(a: &Analysis, markdown: bool) -> String {
    let b = humantime::format_duration(a.b).to_string();
    let head = [
        "setting".to_owned(),
        "opens".into(),
        "idle conn-s".into(),
        format!("cost @B={b}"),
        "vs best".into(),
        "frontier".into(),
        "waited".into(),
        "p99 wait".into(),
        "peak".into(),
    ];
    let mut rows = vec![head.to_vec()];
    for r in &a.rows {
        let m = &r.measured;
        let label = if m.errors > 0 {
            format!("{} ({} errors)", m.label, m.errors)
        } else {
            m.label.clone()
        };
        rows.push(vec![
            label,
            m.opens.to_string(),
            format!("{:.0}", m.idle_conn_s),
            format!("{:.0}", m.cost(a.b)),
            percent(r.vs_best),
            frontier_cell(r),
            m.waited.to_string(),
            super::short(m.latency(0.99)),
            m.peak_open.to_string(),
        ]);
    }
    render(&rows, markdown)
}

fn render(rows: &[Vec<String>], markdown: bool) -> String {
    let mut out = String::new();
    if markdown {
        for (i, row) in rows.iter().enumerate() {
            out.push_str(&format!("| {} |\n", row.join(" | ")));
            if i == 0 {
                out.push_str("|---|");
                out.push_str(&"---:|".repeat(row.len() - 1));
                out.push('\n');
            }
        }
        return out;
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, &w))| {
                if c == 0 {
                    format!("{cell:<w$}")
                } else {
                    format!("{cell:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The recommendation in words: the cheapest setting at B, what it saves against the
/// cheapest fixed one (when it is not one), and the frontier.
pub fn recommend(a: &Analysis) -> String {
    let Some(pick) = a.cheapest() else {
        return "No recommendation: nothing was measured.".into();
    };
    let b = humantime::format_duration(a.b);
    let m = &pick.measured;
    let mut text = format!(
        "Recommended at B = {b}: {} ({} opens, {:.0} idle connection-seconds, cost {:.0}).",
        m.label,
        m.opens,
        m.idle_conn_s,
        m.cost(a.b)
    );
    if let Some(best) = a.best_fixed().filter(|_| !pick.fixed) {
        text.push_str(&format!(
            " The cheapest fixed setting, {}, costs {:.0} ({} against it).",
            best.measured.label,
            best.measured.cost(a.b),
            percent(pick.vs_best)
        ));
    }
    let ties: Vec<&str> = a
        .rows
        .iter()
        .filter(|r| !std::ptr::eq(*r, pick) && r.measured.cost(a.b) == m.cost(a.b))
        .map(|r| r.measured.label.as_str())
        .collect();
    if !ties.is_empty() {
        text.push_str(&format!(" Tied with: {}.", ties.join("; ")));
    }
    // One entry per point: settings that measured the same share it.
    let mut frontier: Vec<(String, u64, f64)> = Vec::new();
    for r in a.frontier() {
        let (opens, idle) = (r.measured.opens, r.measured.idle_conn_s);
        match frontier.last_mut() {
            Some(last) if last.1 == opens && last.2 == idle => {
                last.0.push_str(&format!(" = {}", r.measured.label));
            }
            _ => frontier.push((r.measured.label.clone(), opens, idle)),
        }
    }
    let frontier: Vec<String> = frontier
        .iter()
        .map(|(label, opens, idle)| format!("{label} ({opens} opens, {idle:.0} conn-s)"))
        .collect();
    if !frontier.is_empty() {
        text.push_str(&format!(
            "\nFrontier of the fixed settings, fewest opens first: {}.",
            frontier.join("; ")
        ));
    }
    text.push_str(&format!(
        "\nB = {b} means one handshake costs as much as holding an idle connection for {b}; \
         a larger B favours keeping connections, a smaller one closing them (--break-even)."
    ));
    text
}
