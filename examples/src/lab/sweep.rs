//! The settings a sweep measures, and the recommendation drawn from their runs.

use std::fmt;
use std::time::Duration;

use super::{LabError, Run, Setting, Workload, short};

/// The settings to sweep at a fixed `max_open`: each `max_idle` of `idles` (by default 0, 2,
/// a quarter, half and all of `max_open`) with Go's behaviour (no grace) and with
/// `idle_grace = grace`; `max_idle = max_open` once (nothing is ever above it). With
/// `max_open = 0` (unlimited), `reference` (the burst size) stands in for it, and a value
/// above it is measured as "all idle".
///
/// # Errors
/// [`LabError::BadInput`] for a `max_idle` above a limited `max_open`: the pool would cap
/// it, so the row would measure another setting than its label says.
pub fn settings(
    max_open: usize,
    idles: Option<&[usize]>,
    grace: Duration,
    reference: usize,
) -> Result<Vec<Setting>, LabError> {
    let top = if max_open == 0 { reference } else { max_open };
    let mut idles: Vec<usize> = match idles {
        Some(list) => list.to_vec(),
        None => vec![0, 2, top / 4, top / 2, top],
    };
    if max_open > 0 {
        let above: Vec<String> = idles
            .iter()
            .filter(|&&i| i > max_open)
            .map(ToString::to_string)
            .collect();
        if !above.is_empty() {
            return Err(LabError::BadInput(format!(
                "--idle {} above --max-open {max_open}: max_idle cannot exceed max_open (the \
                 pool would cap it); use values from 0 to {max_open}",
                above.join(",")
            )));
        }
    }
    idles.sort_unstable();
    idles.dedup();
    let mut out = Vec::new();
    for idle in idles {
        if idle >= top {
            if out.iter().any(|s: &Setting| s.max_idle >= top) {
                continue;
            }
            out.push(Setting {
                label: format!("max_idle {idle}"),
                max_open,
                max_idle: idle,
                idle_grace: Duration::ZERO,
                go: false,
            });
            continue;
        }
        out.push(Setting {
            label: format!("max_idle {idle}, no grace (Go)"),
            max_open,
            max_idle: idle,
            idle_grace: Duration::ZERO,
            go: true,
        });
        if !grace.is_zero() {
            out.push(Setting {
                label: format!(
                    "max_idle {idle}, grace {}",
                    humantime::format_duration(grace)
                ),
                max_open,
                max_idle: idle,
                idle_grace: grace,
                go: false,
            });
        }
    }
    Ok(out)
}

/// The setting pool-lab recommends, and why.
#[derive(Debug, Clone)]
pub struct Recommendation {
    /// The recommended setting.
    pub setting: Setting,
    /// The trade, in a few sentences.
    pub why: String,
}

/// Why pool-lab recommends nothing: the runs cannot support a choice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld(pub String);

impl fmt::Display for Withheld {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Of `planned` settings' runs: among those without errors whose p99 is within reach of the
/// best (times 1.5 plus 2 ms: a shared machine is noisy), those within reach of their fewest
/// opens per 1,000 calls (plus 10 %, at least 1), the one with the smallest `max_idle` (what
/// stays open once traffic stops), and of two with the same, the one with fewer opens.
///
/// # Errors
/// [`Withheld`] with the reason when the runs cannot support a choice: fewer runs than
/// `planned` or a run cut short (Ctrl-C: a recommendation compares every setting it names),
/// a server that refused connections for its connection limit (the runs then measured the
/// limit, not the settings), no clean run, or a server that closed every connection after
/// one call (see [`diagnose`]).
pub fn recommend(
    runs: &[Run],
    planned: usize,
    workload: Workload,
) -> Result<Recommendation, Withheld> {
    let complete = runs.iter().filter(|r| !r.stopped).count();
    if complete < planned {
        return Err(Withheld(format!(
            "No recommendation: the sweep was stopped with {complete} of {planned} settings \
             measured in full, and a recommendation compares them all. Run it to the end, or \
             with fewer --idle values."
        )));
    }
    let refused: u64 = runs.iter().map(|r| r.refused).sum();
    if refused > 0 {
        return Err(Withheld(format!(
            "No recommendation: the server refused {refused} connections for its connection \
             limit, so the runs measured that limit, not the settings. Sweep again with a \
             max_open the server has room for."
        )));
    }
    let clean: Vec<&Run> = runs
        .iter()
        .filter(|r| r.errors == 0 && r.calls > 0)
        .collect();
    if clean.is_empty() {
        return Err(Withheld(
            "No recommendation: every setting had failed calls (see above).".into(),
        ));
    }
    if let Some(note) = diagnose(runs) {
        return Err(Withheld(note));
    }
    let best_opens = clean
        .iter()
        .map(|r| r.opens_per_1000())
        .fold(f64::INFINITY, f64::min);
    let best_p99 = clean
        .iter()
        .map(|r| r.latency(0.99))
        .min()
        .unwrap_or_default();
    let p99_ok = best_p99.mul_f64(1.5) + Duration::from_millis(2);
    let fast: Vec<&Run> = clean
        .iter()
        .copied()
        .filter(|r| r.latency(0.99) <= p99_ok)
        .collect();
    let fast_opens = fast
        .iter()
        .map(|r| r.opens_per_1000())
        .fold(f64::INFINITY, f64::min);
    let opens_ok = fast_opens + (fast_opens * 0.1).max(1.0);
    let Some(pick) = fast
        .iter()
        .filter(|r| r.opens_per_1000() <= opens_ok)
        .min_by(|a, b| {
            a.setting
                .max_idle
                .cmp(&b.setting.max_idle)
                .then(a.opens_per_1000().total_cmp(&b.opens_per_1000()))
        })
    else {
        // Unreachable: the run with the best p99 is fast, and the fewest opens among the
        // fast ones are within reach of themselves.
        return Err(Withheld("No recommendation: no run to compare.".into()));
    };
    let s = &pick.setting;
    let mut why = format!(
        "{:.1} opens per 1,000 calls (the fewest measured: {:.1}) and p99 {} (the best: {}).",
        pick.opens_per_1000(),
        best_opens,
        short(pick.latency(0.99)),
        short(best_p99),
    );
    if pick.opens_per_1000() > best_opens + (best_opens * 0.1).max(1.0) {
        why.push_str(&format!(
            " Settings with fewer opens had a p99 above {} (1.5 x the best + 2 ms): they save \
             connections at the cost of latency.",
            short(p99_ok)
        ));
    }
    if !s.idle_grace.is_zero() {
        why.push_str(&format!(
            " The grace keeps what a burst opened for {} (more than the {} between bursts), so \
             the next burst reuses it; once traffic stops for longer, the pool shrinks to \
             max_idle ({}).",
            humantime::format_duration(s.idle_grace),
            humantime::format_duration(workload.period),
            s.max_idle
        ));
    }
    if let Some(go) = clean
        .iter()
        .find(|r| r.setting.go && r.setting.max_idle == s.max_idle && !s.go)
    {
        why.push_str(&format!(
            " The same max_idle without grace, as Go does it, opens {:.1} per 1,000 calls (p99 \
             {}): every burst closes what max_idle cannot keep and dials it again.",
            go.opens_per_1000(),
            short(go.latency(0.99))
        ));
    }
    let calls = pick.calls as usize;
    if calls < super::quantile::min_count(0.99) {
        why.push_str(&format!(
            " The p99s come from {calls} calls per setting: rough figures (run more bursts to \
             compare them)."
        ));
    }
    why.push_str(
        " Raise max_idle to the connections you want ready after a quiet spell (each is a \
         server session held while idle), and idle_grace above your longest gap between \
         bursts.",
    );
    Ok(Recommendation {
        setting: s.clone(),
        why,
    })
}

/// A note when the measurements say more about the server than the settings: every call
/// opened a connection whatever the setting (the server closes them: HTTP/1.0, `Connection:
/// close`, a proxy in between).
pub fn diagnose(runs: &[Run]) -> Option<String> {
    let clean: Vec<&Run> = runs
        .iter()
        .filter(|r| r.errors == 0 && r.calls > 0)
        .collect();
    (!clean.is_empty() && clean.iter().all(|r| r.opens_per_1000() >= 990.0)).then(|| {
        "Every setting opened a connection for (nearly) every call: the server closes \
         connections after each response (HTTP/1.0, `Connection: close`, or something in \
         between), so no pool setting can reuse them. Fix that first; then sweep again."
            .to_owned()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(max_idle: usize, grace: u64, opened: u64, p99_ms: u64) -> Run {
        let setting = Setting {
            label: format!("max_idle {max_idle}, grace {grace}"),
            max_open: 16,
            max_idle,
            idle_grace: Duration::from_secs(grace),
            go: grace == 0,
        };
        let mut stats = pool_core::Stats::default();
        stats.created = opened;
        Run {
            setting,
            calls: 1000,
            errors: 0,
            refused: 0,
            first_error: None,
            latencies: vec![Duration::from_millis(p99_ms); 100],
            timeline: Vec::new(),
            time_wait: 0,
            stats,
            elapsed: Duration::from_secs(1),
            stopped: false,
        }
    }

    const W: Workload = Workload {
        bursts: 10,
        burst: 100,
        period: Duration::from_millis(500),
    };

    #[test]
    fn the_smallest_max_idle_that_keeps_opens_and_latency_near_the_best_wins() {
        let runs = [
            run(0, 0, 500, 50),  // Go: churns
            run(0, 30, 16, 60),  // grace: few opens, p99 within 1.5x + 2 ms of 40
            run(4, 30, 16, 40),  // the best p99
            run(16, 0, 16, 41),  // all idle
            run(2, 30, 16, 200), // few opens, but slow
        ];
        let rec = recommend(&runs, runs.len(), W).unwrap();
        assert_eq!(
            (rec.setting.max_idle, rec.setting.go),
            (0, false),
            "{rec:?}"
        );
        assert!(
            rec.why.contains("500.0 per 1,000"),
            "Go's churn named: {}",
            rec.why
        );
        assert!(diagnose(&runs).is_none());
    }

    #[test]
    fn a_server_that_closes_every_connection_gets_a_diagnosis_not_a_setting() {
        let runs = [run(0, 0, 1000, 5), run(16, 30, 1000, 5)];
        let withheld = recommend(&runs, runs.len(), W).unwrap_err();
        assert!(withheld.0.contains("closes connections"), "{withheld}");
        assert!(diagnose(&runs).unwrap().contains("closes connections"));
    }
}
