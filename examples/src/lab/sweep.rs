//! The settings a sweep measures, and the recommendation drawn from their runs.

use std::time::Duration;

use super::{Run, Setting, Workload, short};

/// The settings to sweep at a fixed `max_open`: each `max_idle` of `idles` (by default 0, 2,
/// a quarter, half and all of `max_open`) with Go's behaviour (no grace) and with
/// `idle_grace = grace`; `max_idle = max_open` once (nothing is ever above it). With
/// `max_open = 0` (unlimited), `reference` (the burst size) stands in for it.
pub fn settings(
    max_open: usize,
    idles: Option<&[usize]>,
    grace: Duration,
    reference: usize,
) -> Vec<Setting> {
    let top = if max_open == 0 { reference } else { max_open };
    let mut idles: Vec<usize> = match idles {
        Some(list) => list.to_vec(),
        None => vec![0, 2, top / 4, top / 2, top],
    };
    idles.retain(|&i| i <= top);
    idles.sort_unstable();
    idles.dedup();
    let mut out = Vec::new();
    for idle in idles {
        if idle >= top {
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
    out
}

/// The setting pool-lab recommends, and why.
#[derive(Debug, Clone)]
pub struct Recommendation {
    /// The recommended setting.
    pub setting: Setting,
    /// The trade, in a few sentences.
    pub why: String,
}

/// Of the runs without errors, those within reach of the fewest opens per 1,000 calls (the
/// best plus 10 %, at least 1) and of the best p99 (times 1.5 plus 2 ms: a shared machine is
/// noisy), the one with the smallest `max_idle` (what stays open once traffic stops), and of
/// two with the same, the one with fewer opens. `None` when no run was clean, or when the
/// server closed every connection after one call (see [`diagnose`]).
pub fn recommend(runs: &[Run], workload: Workload) -> Option<Recommendation> {
    let clean: Vec<&Run> = runs
        .iter()
        .filter(|r| r.errors == 0 && r.calls > 0)
        .collect();
    let best_opens = clean
        .iter()
        .map(|r| r.opens_per_1000())
        .fold(f64::INFINITY, f64::min);
    let best_p99 = clean.iter().map(|r| r.latency(0.99)).min()?;
    if best_opens >= 990.0 {
        return None;
    }
    let opens_ok = best_opens + (best_opens * 0.1).max(1.0);
    let p99_ok = best_p99.mul_f64(1.5) + Duration::from_millis(2);
    let pick = clean
        .iter()
        .filter(|r| r.opens_per_1000() <= opens_ok && r.latency(0.99) <= p99_ok)
        .min_by(|a, b| {
            a.setting
                .max_idle
                .cmp(&b.setting.max_idle)
                .then(a.opens_per_1000().total_cmp(&b.opens_per_1000()))
        })?;
    let s = &pick.setting;
    let mut why = format!(
        "{:.1} opens per 1,000 calls (the fewest measured: {:.1}) and p99 {} (the best: {}).",
        pick.opens_per_1000(),
        best_opens,
        short(pick.latency(0.99)),
        short(best_p99),
    );
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
    why.push_str(
        " Raise max_idle to the connections you want ready after a quiet spell (each is a \
         server session held while idle), and idle_grace above your longest gap between \
         bursts.",
    );
    Some(Recommendation {
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
        let rec = recommend(&runs, W).unwrap();
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
        assert!(recommend(&runs, W).is_none());
        assert!(diagnose(&runs).unwrap().contains("closes connections"));
    }
}
