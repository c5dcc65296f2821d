//! `pool-lab replay --url`: the trace in real time against the user's server, one setting
//! after the other, measured from the pool's own stats.
//!
//! PostgreSQL (`postgres://`): each call runs `SELECT pg_sleep(duration)`, so the session
//! is held for the trace's duration. HTTP (`http://`): each call GETs the URL and reads the
//! body; the server's response time, not the trace's duration, holds the connection.
//! `max_idle` 0 without grace keeps nothing idle (`disable_keep_alives`: in Go, and in
//! pool-http, `MaxIdleConnsPerHost` 0 means the default of 2).
//! Opens are the pool's `created` counter; idle connection-seconds integrate the pool's
//! idle count sampled every 10 ms (so they are approximate, unlike the simulation's);
//! latencies are whole calls, and `waited` is the pool's `wait_count` (checkouts that
//! queued at `max_open`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pool_core::{Binding, Stats};
use tokio::time::Instant;

use super::LabError;
use super::frontier::Analysis;
use super::http::HttpTarget;
use super::sim::{Measured, PoolSetting};
use super::sql::{SqlTarget, error_chain};
use super::trace::Trace;

/// The URL as messages show it: without passwords.
pub fn shown(url: &str) -> String {
    if url.starts_with("http") {
        url.to_owned()
    } else {
        pool_sql::Db::builder(url).redacted_url()
    }
}

/// Replays `trace` against `url` with each of `fixed` and analyses them at `b`.
///
/// # Errors
/// [`LabError`] for a URL of another scheme, one the client refuses, or a server that
/// cannot be reached (checked once before any replay).
pub async fn replay(
    url: &str,
    trace: &Trace,
    fixed: &[PoolSetting],
    others: &[PoolSetting],
    b: Duration,
) -> Result<Analysis, LabError> {
    let sql = url.starts_with("postgres://") || url.starts_with("postgresql://");
    if sql {
        SqlTarget::new(url, "SELECT 1")?.probe().await?;
    } else if url.starts_with("http://") {
        HttpTarget::new(url, true)?.probe().await?;
    } else {
        return Err(LabError::BadInput(format!(
            "`{}`: replay measures postgres:// and http:// URLs",
            shown(url)
        )));
    }
    let mut measured = Vec::new();
    let all = (fixed.iter().map(|s| (s, true))).chain(others.iter().map(|s| (s, false)));
    for (s, is_fixed) in all {
        eprintln!(
            "pool-lab: replaying {} ({:.0} s) ...",
            s.label,
            trace.end.as_secs_f64()
        );
        let m = if sql {
            replay_sql(url, trace, s).await?
        } else {
            replay_http(url, trace, s).await?
        };
        measured.push((m, is_fixed));
    }
    Ok(Analysis::new(measured, b))
}

async fn replay_sql(url: &str, trace: &Trace, s: &PoolSetting) -> Result<Measured, LabError> {
    let db = pool_sql::Db::builder(url)
        .pool(s.config.clone())
        .build()
        .map_err(|e| LabError::BadInput(error_chain(&e)))?;
    let stats = {
        let db = db.clone();
        move || db.stats()
    };
    let call = move |hold: Duration| {
        let db = db.clone();
        async move {
            let secs = hold.as_secs_f64();
            db.execute("SELECT pg_sleep($1)", &[&secs])
                .await
                .map(drop)
                .map_err(|e| error_chain(&e))
        }
    };
    Ok(drive(trace, s, call, stats).await)
}

async fn replay_http(url: &str, trace: &Trace, s: &PoolSetting) -> Result<Measured, LabError> {
    let c = &s.config;
    let mut builder = pool_http::Client::builder();
    if c.binding == Binding::Caller {
        builder = builder.go_mode();
    }
    if c.max_idle == 0 && c.idle_grace.is_zero() {
        // Keep nothing idle. `max_idle_conns_per_host(0)` means Go's default of 2, as in Go,
        // whose way to keep none is a negative `MaxIdleConnsPerHost` or `DisableKeepAlives`.
        builder = builder.disable_keep_alives(true);
    }
    let client = builder
        .max_conns_per_host(c.max_open)
        .max_idle_conns_per_host(c.max_idle)
        .idle_grace(c.idle_grace)
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| LabError::BadInput(error_chain(&e)))?;
    let stats = {
        let client = client.clone();
        move || client.stats().pool
    };
    let url = url.to_owned();
    let call = move |_hold: Duration| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let response = client.get(&url).await.map_err(|e| error_chain(&e))?;
            response
                .into_body()
                .bytes()
                .await
                .map(drop)
                .map_err(|e| error_chain(&e))
        }
    };
    Ok(drive(trace, s, call, stats).await)
}

/// Starts each call at its offset in real time, samples the pool every 10 ms until the
/// trace's end, and integrates its idle count.
async fn drive<F, Fut>(
    trace: &Trace,
    s: &PoolSetting,
    call: F,
    stats: impl Fn() -> Stats + Send + Sync + 'static,
) -> Measured
where
    F: Fn(Duration) -> Fut,
    Fut: std::future::Future<Output = Result<(), String>> + Send + 'static,
{
    let stats = Arc::new(stats);
    let t0 = Instant::now();
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let (stats, sampling) = (stats.clone(), sampling.clone());
        async move {
            let (mut area, mut last) = (0.0, Instant::now());
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            let mut idle = 0usize;
            while sampling.load(Ordering::SeqCst) {
                tick.tick().await;
                let now = Instant::now();
                area += idle as f64 * (now - last).as_secs_f64();
                (idle, last) = (stats().idle, now);
            }
            area
        }
    });
    let mut calls = tokio::task::JoinSet::new();
    for c in &trace.calls {
        tokio::time::sleep_until(t0 + c.start).await;
        let fut = call(c.duration);
        calls.spawn(async move {
            let asked = Instant::now();
            let ok = fut.await.is_ok();
            (asked.elapsed(), ok)
        });
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    while let Some(done) = calls.join_next().await {
        match done {
            Ok((took, ok)) => {
                latencies.push(took);
                errors += u64::from(!ok);
            }
            Err(_) => errors += 1,
        }
    }
    tokio::time::sleep_until(t0 + trace.end).await;
    sampling.store(false, Ordering::SeqCst);
    let idle_conn_s = sampler.await.unwrap_or(0.0);
    let end = stats();
    latencies.sort();
    Measured {
        label: s.label.clone(),
        calls: trace.calls.len() as u64,
        errors,
        opens: end.created,
        idle_conn_s,
        waited: end.wait_count,
        latencies,
        peak_open: end.peak_open,
        span: t0.elapsed(),
    }
}
