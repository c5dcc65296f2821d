//! Chaos through the fault-injecting proxy: the backend flaps (refusing and resetting
//! everything, then serving) while 64 tasks send requests with random timeouts and random
//! cancellation. The laws are checked while it runs and at the end: the per-host cap is never
//! exceeded, no call outlives its timeout, dials while the backend is down stay bounded, the
//! client serves again soon after recovery, and nothing leaks.
//!
//! Bounded by default (2 s of flapping); `CHAOS_SECS=60` runs it longer.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use hyper::Response;
use pool_core::testing::proxy::{FaultProxy, Faults};
use pool_http::Client;
use support::{Server, eventually, full};

const CAP: usize = 8;

fn chaos_secs() -> u64 {
    std::env::var("CHAOS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flapping_backend_under_64_tasks_keeps_every_law() {
    let server = Server::start(|req| async move {
        // Some requests take a while, so cancellations land mid-response too.
        if req.uri().path() == "/slow" {
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        Response::new(full(4096))
    })
    .await;
    let proxy = Arc::new(FaultProxy::start(server.addr).await.unwrap());
    let fds_before = support::open_fds();
    let client = Client::builder()
        .max_conns_per_host(CAP)
        .connect_timeout(Duration::from_millis(200))
        .timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let url = |path: &str| format!("http://{}{path}", proxy.addr());

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, cancelled) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut tasks = Vec::new();
    for t in 0..64u64 {
        let (client, stop) = (client.clone(), stop.clone());
        let (ok, failed, cancelled) = (ok.clone(), failed.clone(), cancelled.clone());
        let (fast, slow) = (url("/"), url("/slow"));
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(t);
            while !stop.load(Ordering::Relaxed) {
                let target = if rng.bool() { &fast } else { &slow };
                let drop_unread = rng.u8(..4) == 0;
                let patience = Duration::from_millis(rng.u64(5..600));
                let call = async {
                    let response = client.get(target).await?;
                    if drop_unread {
                        drop(response); // the pitfall, under faults
                        Ok(0)
                    } else {
                        response.into_body().bytes().await.map(|b| b.len())
                    }
                };
                // Random cancellation: some calls are abandoned early by the caller.
                let started = tokio::time::Instant::now();
                match tokio::time::timeout(patience, call).await {
                    Ok(Ok(_)) => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(Err(e)) => {
                        // The client's own deadline (400 ms) bounds every call; the margin
                        // is for a loaded machine.
                        assert!(
                            started.elapsed() < Duration::from_millis(400 + 600),
                            "a call took {:?}: {e:?}",
                            started.elapsed()
                        );
                        // As a real caller would, pause before trying again.
                        tokio::time::sleep(Duration::from_millis(rng.u64(1..20))).await;
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                    Err(_) => cancelled.fetch_add(1, Ordering::Relaxed),
                };
                tokio::task::yield_now().await;
            }
        }));
    }

    // Flap: 100 ms down (new connections refused, open ones reset), 300 ms up.
    let flaps = chaos_secs() * 1000 / 400;
    let flapped = proxy
        .flap(
            flaps,
            Duration::from_millis(100),
            Duration::from_millis(300),
            || client.stats().pool.open,
            || {
                let s = client.stats().pool;
                s.created + s.create_errors
            },
        )
        .await;
    let (peak_open, dials_while_down) = (flapped.peak, flapped.during_outages);

    // Recovery: the client serves again within a bounded time, without manual action.
    let recovered = tokio::time::Instant::now();
    loop {
        if let Ok(r) = client.get(&url("/")).await
            && r.into_body().bytes().await.is_ok()
        {
            break;
        }
        assert!(
            recovered.elapsed() < Duration::from_secs(10),
            "no recovery within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }

    let (ok, failed, cancelled) = (
        ok.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
        cancelled.load(Ordering::Relaxed),
    );
    eprintln!(
        "chaos: {flaps} flaps, {ok} ok, {failed} failed, {cancelled} cancelled; dials while \
         down per flap {dials_while_down:?}; peak open {peak_open}; recovered in {:?}",
        recovered.elapsed()
    );
    assert!(
        ok > 0 && failed > 0,
        "both outcomes happened: {ok} ok, {failed} failed"
    );
    assert!(
        peak_open <= CAP,
        "open reached {peak_open} with a cap of {CAP}"
    );
    // While down, dials are bounded by the breaker: the creates in flight when the outage
    // starts (up to the cap), the few before it trips, then one probe per backoff; not a hot
    // loop (64 busy tasks without a breaker dial thousands of times a second). Measured: 11-20.
    let worst = dials_while_down.iter().copied().max().unwrap_or(0);
    assert!(
        worst <= 4 * CAP as u64,
        "{worst} dials in one 100 ms outage: {dials_while_down:?}"
    );

    // Nothing leaked: the pool's counts, the proxy's connections, the server's, fds.
    let stats = client.stats();
    assert_eq!(stats.pool.in_use, 0, "{stats:?}");
    assert_eq!(stats.pool.open, stats.pool.idle, "{stats:?}");
    drop(client);
    eventually("proxy connections closed", || proxy.live() == 0).await;
    eventually("server connections closed", || server.live() == 0).await;
    eventually("fds back to baseline", || support::open_fds() <= fds_before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_network_times_calls_out_and_the_client_recovers_after() {
    let server = Server::sized(1024).await;
    let proxy = FaultProxy::start(server.addr).await.unwrap();
    let client = Client::builder()
        .max_conns_per_host(CAP)
        .connect_timeout(Duration::from_millis(200))
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let url = format!("http://{}/", proxy.addr());
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, timed_out) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
            let (ok, timed_out) = (ok.clone(), timed_out.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let started = tokio::time::Instant::now();
                    let result = async { client.get(&url).await?.into_body().bytes().await }.await;
                    match result {
                        Ok(_) => ok.fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            assert!(e.is_timeout(), "{e:?}");
                            // The request deadline (200 ms) bounds it; margin for load.
                            assert!(started.elapsed() < Duration::from_millis(800), "{e:?}");
                            timed_out.fetch_add(1, Ordering::Relaxed)
                        }
                    };
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    eventually("traffic flows", || ok.load(Ordering::Relaxed) > 100).await;
    proxy.set(Faults::black_hole());
    let mut peak = 0;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(10)).await;
        peak = peak.max(client.stats().pool.open);
    }
    let during = ok.load(Ordering::Relaxed);
    proxy.set(Faults::none());
    eventually("served again after the black hole", || {
        ok.load(Ordering::Relaxed) > during + 100
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    eprintln!(
        "black hole: {} ok, {} timed out; peak open {peak}",
        ok.load(Ordering::Relaxed),
        timed_out.load(Ordering::Relaxed)
    );
    assert!(
        timed_out.load(Ordering::Relaxed) >= 32,
        "every task timed out at least once"
    );
    assert!(peak <= CAP, "open reached {peak}");
    assert_eq!(client.stats().pool.in_use, 0);
    drop(client);
    eventually("proxy connections closed", || proxy.live() == 0).await;
    eventually("server connections closed", || server.live() == 0).await;
}
