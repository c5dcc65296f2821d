//! Chaos through the fault-injecting proxy, with many tasks sending requests under random
//! cancellation:
//! - the backend flaps (refusing and resetting everything, then serving);
//! - the network black-holes (nothing fails, everything hangs);
//! - latency spikes past the request timeout of the callers waiting for a connection.
//!
//! Checked each time: the per-host cap is never exceeded (the pool's high-water mark), no call
//! outlives its timeout, dials while the backend is down stay bounded, the client serves again
//! soon after recovery, and nothing leaks (pool counts, proxy and server connections, fds).
//!
//! And against a hostile server (no proxy): it answers streamed uploads before reading them
//! and never reads on, and closes idle connections at random (some with an unasked `408`).
//! Checked: no request stuck until its timeout, and at rest the pool's `idle` equals the live
//! connections.
//!
//! Bounded in CI (2 s of flapping); `SOAK=full` flaps for 30 s (`CHAOS_SECS=n` any number).

mod support;

use std::ops::Range;
use std::time::Duration;

use hyper::Response;
use pool_core::testing::load::{Load, chaos_secs};
use pool_core::testing::proxy::{FaultProxy, Faults};
use pool_http::Client;
use support::{CAP, Hostile, Hostility, Server, full, get, recovery, settle};

/// `tasks` callers GETting `url` in a loop, each call under a random patience; a call that
/// fails must fail by a timeout (`under` names the fault for the message).
fn timing_out_gets(
    client: &Client,
    url: &str,
    tasks: u64,
    patience_ms: Range<u64>,
    under: &'static str,
) -> Load {
    let (client, url) = (client.clone(), url.to_owned());
    Load::start(tasks, patience_ms, None, move |_| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            get(&client, &url, false).await.inspect_err(|e| {
                assert!(e.is_timeout(), "only timeouts {under}: {e:?}");
            })
        }
    })
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
    let proxy = FaultProxy::start(server.addr).await.unwrap();
    let fds_before = support::open_fds();
    let client = Client::builder()
        .max_conns_per_host(CAP)
        .connect_timeout(Duration::from_millis(200))
        .timeout(Duration::from_millis(400))
        .build()
        .unwrap();
    let url = |path: &str| format!("http://{}{path}", proxy.addr());
    let load = Load::start(64, 5..600, None, {
        let (client, fast, slow) = (client.clone(), url("/"), url("/slow"));
        move |rng| {
            let client = client.clone();
            let target = if rng.bool() {
                fast.clone()
            } else {
                slow.clone()
            };
            let unread = rng.u8(..4) == 0;
            async move { get(&client, &target, unread).await }
        }
    });

    // Flap: 100 ms down (new connections refused, open ones reset), 300 ms up.
    let flaps = chaos_secs() * 1000 / 400;
    let dials_while_down = proxy
        .flap(
            flaps,
            Duration::from_millis(100),
            Duration::from_millis(300),
            || {
                let s = client.stats().pool;
                s.created + s.create_errors
            },
        )
        .await
        .during_outages;
    let recovered = recovery(&client, &url("/")).await;
    let tally = load.stop().await;
    eprintln!(
        "chaos: {flaps} flaps, {tally:?}; dials while down per flap {dials_while_down:?}; peak \
         open {}; recovered in {recovered:?}",
        client.stats().pool.peak_open
    );
    assert!(tally.ok > 0 && tally.failed > 0, "{tally:?}");
    // While down, dials are bounded by the breaker: the creates in flight when the outage
    // starts (up to the cap), the few before it trips, then one probe per backoff; not a hot
    // loop (64 busy tasks without a breaker dial thousands of times a second). Measured: 11-20.
    let worst = dials_while_down.iter().copied().max().unwrap_or(0);
    assert!(
        worst <= 4 * CAP as u64,
        "{worst} dials in one 100 ms outage: {dials_while_down:?}"
    );
    // The client's own deadline (400 ms) bounds every call; margin for a loaded machine.
    let bound = Duration::from_millis(1000);
    settle(client, &tally, bound, &proxy, &server, fds_before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_black_holed_network_times_calls_out_and_the_client_recovers_after() {
    let server = Server::sized(1024).await;
    let proxy = FaultProxy::start(server.addr).await.unwrap();
    let fds_before = support::open_fds();
    let client = Client::builder()
        .max_conns_per_host(CAP)
        .connect_timeout(Duration::from_millis(200))
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let url = format!("http://{}/", proxy.addr());
    let load = timing_out_gets(&client, &url, 32, 10_000..10_001, "in a black hole");
    load.wait_for(|t| t.ok, 100).await;
    proxy.set(Faults::black_hole());
    load.wait_for(|t| t.failed, 64).await;
    let during = load.tally();
    proxy.set(Faults::none());
    let recovered = recovery(&client, &url).await;
    load.wait_for(|t| t.ok, during.ok + 100).await;
    let tally = load.stop().await;
    eprintln!(
        "black hole: {tally:?}; peak open {}; recovered in {recovered:?}",
        client.stats().pool.peak_open
    );
    // The request deadline (200 ms) bounds every call; margin for load.
    let bound = Duration::from_millis(800);
    settle(client, &tally, bound, &proxy, &server, fds_before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn latency_past_the_timeout_of_waiting_callers_times_them_out_and_passes() {
    let server = Server::sized(1024).await;
    let proxy = FaultProxy::start(server.addr).await.unwrap();
    let fds_before = support::open_fds();
    let client = Client::builder()
        .max_conns_per_host(CAP)
        .timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let url = format!("http://{}/", proxy.addr());
    let load = timing_out_gets(&client, &url, 64, 5..2_000, "under latency");
    load.wait_for(|t| t.ok, 500).await;
    // 100 ms each way: a request holds its connection about 200 ms, so 64 callers on 8
    // connections wait far past their 500 ms deadline; the ones holding one still finish.
    proxy.set(Faults::latency(Duration::from_millis(100)));
    let before = load.tally();
    load.wait_for(|t| t.failed, before.failed + 100).await;
    let during = load.tally();
    proxy.set(Faults::none());
    let recovered = recovery(&client, &url).await;
    load.wait_for(|t| t.ok, during.ok + 500).await;
    let tally = load.stop().await;
    let s = client.stats();
    eprintln!(
        "latency: {tally:?}; ok during the spike {}; peak open {}, dials {}; recovered in \
         {recovered:?}",
        during.ok - before.ok,
        s.pool.peak_open,
        s.pool.created
    );
    assert!(
        during.ok > before.ok,
        "the slow connections still served: {during:?}"
    );
    // The request deadline (500 ms) bounds every call, waiting included; margin for load.
    let bound = Duration::from_millis(1200);
    settle(client, &tally, bound, &proxy, &server, fds_before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn early_answers_and_random_idle_closes_strand_no_request_and_idle_stays_true() {
    let server = Hostile::start(Hostility {
        early_answers: true,
        idle_close: 0.3,
    })
    .await;
    let client = Client::builder()
        .max_conns_per_host(CAP)
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let base = format!("http://{}", server.addr);
    // As many callers as connections, so connections sit idle between calls (and the server
    // closes some); patience far past the timeout: a stuck request shows as a timeout.
    let load = Load::start(CAP as u64, 10_000..10_001, None, {
        let client = client.clone();
        move |rng| {
            let (client, base, seed) = (client.clone(), base.clone(), rng.u64(..));
            async move { support::hostile_call(&client, &base, seed).await }
        }
    });
    tokio::time::sleep(Duration::from_secs(chaos_secs())).await;
    let tally = load.stop().await;
    let s = client.stats();
    eprintln!(
        "hostile chaos: {tally:?}; {} early answers, {} idle closes by the server; {s:?}",
        server.early_answers(),
        server.idle_closed()
    );
    assert!(tally.ok > tally.failed * 10, "mostly served: {tally:?}");
    assert!(server.early_answers() > 0 && server.idle_closed() > 0);
    support::hostile_run_ends_clean(client, &server, tally.slowest_failure).await;
}
