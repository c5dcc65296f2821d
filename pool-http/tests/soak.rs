//! Soak: many requests through `Client` to a real hyper server behind the fault-injecting
//! proxy, by 32 tasks under random cancellation, while a chaos monkey resets a random
//! connection every few milliseconds. The mix: GETs whose bodies are checked against the
//! request (so a connection reused after a fault can never answer for another request), bodies
//! dropped unread or half read (the drain), POSTs echoed back (the retry of a body in memory),
//! slow responses, and responses that close their connection. At the end nothing may be lost:
//! the cap held, every connection back in the pool, and once the client is dropped no
//! connection at the proxy or the server and no fd left.
//!
//! A second soak runs the hostile mix (see `chaos.rs`) against a server that answers uploads
//! before reading them and closes idle connections at random, under random cancellation:
//! echoes checked, no request stuck until its timeout, and at rest `idle` equals the live
//! connections.
//!
//! Bounded in CI (10,000 operations, 4,000 hostile); `SOAK=full` runs 100,000 (40,000)
//! (`SOAK_OPS=n` any number, for both).

mod support;

use std::time::Duration;

use http_body_util::BodyExt;
use hyper::{Request, Response};
use pool_core::testing::load::{Load, soak_ops};
use pool_http::{Client, Error};
use support::{CAP, Hostile, Hostility, Server, full, settle};

/// Answers `/echo/N` with `N` as the body, `/big` with 64 KiB, `/slow` after 20 ms,
/// `/close` with `Connection: close`, and a POST with its own body.
async fn serve(req: Request<hyper::body::Incoming>) -> Response<support::ResBody> {
    let path = req.uri().path().to_owned();
    if req.method() == hyper::Method::POST {
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        return Response::new(http_body_util::Full::new(body.unwrap_or_default()).boxed());
    }
    if let Some(n) = path.strip_prefix("/echo/") {
        return Response::new(http_body_util::Full::new(bytes::Bytes::from(n.to_owned())).boxed());
    }
    match path.as_str() {
        "/big" => Response::new(full(64 * 1024)),
        "/slow" => {
            tokio::time::sleep(Duration::from_millis(20)).await;
            Response::new(full(1024))
        }
        "/close" => Response::builder()
            .header("connection", "close")
            .body(full(1024))
            .unwrap(),
        _ => Response::new(full(16)),
    }
}

async fn one(client: &Client, base: &str, seed: u64) -> Result<(), Error> {
    let mut rng = fastrand::Rng::with_seed(seed);
    match rng.u32(..100) {
        0..50 => {
            let n = rng.u64(..);
            let body = client.get(&format!("{base}/echo/{n}")).await?;
            let got = body.into_body().bytes().await?;
            assert_eq!(got, n.to_string(), "a response answered another request");
            Ok(())
        }
        // Dropped unread: drained in the background, the connection reused.
        50..62 => client.get(&format!("{base}/big")).await.map(drop),
        // Half read, then dropped.
        62..70 => {
            let mut body = client.get(&format!("{base}/big")).await?.into_body();
            body.chunk().await?;
            Ok(())
        }
        70..85 => {
            let sent = format!("post {}", rng.u64(..));
            let req = Request::post(format!("{base}/post"))
                .body(sent.clone())
                .unwrap();
            let got = client.request(req).await?.into_body().bytes().await?;
            assert_eq!(got, sent, "a response answered another request");
            Ok(())
        }
        85..95 => client
            .get(&format!("{base}/slow"))
            .await?
            .into_body()
            .bytes()
            .await
            .map(drop),
        _ => client
            .get(&format!("{base}/close"))
            .await?
            .into_body()
            .bytes()
            .await
            .map(drop),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_under_resets_and_cancellation_lose_nothing() {
    let ops = soak_ops(10_000, 100_000);
    let server = Server::start(serve).await;
    let proxy = pool_core::testing::proxy::FaultProxy::start(server.addr)
        .await
        .unwrap();
    let fds_before = support::open_fds();
    let client = Client::builder()
        .max_conns_per_host(CAP)
        .max_idle_conns_per_host(4)
        .idle_grace(Duration::from_millis(50))
        .connect_timeout(Duration::from_millis(500))
        .timeout(Duration::from_millis(1000))
        .build()
        .unwrap();
    let base = format!("http://{}", proxy.addr());
    let started = std::time::Instant::now();
    let load = Load::start(32, 1..300, Some(ops), {
        let client = client.clone();
        move |rng| {
            let (client, base, seed) = (client.clone(), base.clone(), rng.u64(..));
            async move { one(&client, &base, seed).await }
        }
    });
    let (tally, resets) = proxy.with_monkey(13, 5..30, load.finish()).await;
    let s = client.stats();
    eprintln!(
        "http soak: {} requests in {:?}: {tally:?}; {} connections reset; {s:?}",
        tally.calls(),
        started.elapsed(),
        resets
    );
    assert_eq!(tally.calls(), ops);
    assert!(tally.ok > ops / 2, "mostly served: {tally:?}");
    assert!(resets > 0);
    assert!(s.drained > 0 && s.retried > 0, "{s:?}");
    // The client's deadline (1 s) bounds every call; margin for a loaded machine.
    let bound = Duration::from_millis(2000);
    settle(client, &tally, bound, &proxy, &server, fds_before).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_servers_under_cancellation_strand_nothing_and_idle_stays_true() {
    let ops = soak_ops(4_000, 40_000);
    let server = Hostile::start(Hostility {
        early_answers: true,
        idle_close: 0.2,
    })
    .await;
    let client = Client::builder()
        .max_conns_per_host(CAP)
        .max_idle_conns_per_host(4)
        .idle_grace(Duration::from_millis(50))
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let base = format!("http://{}", server.addr);
    let started = std::time::Instant::now();
    // Patience from 1 ms to 3 s: cancelled at every point, and past the 1 s timeout too, so
    // a stuck request would show as a timeout.
    let load = Load::start(CAP as u64, 1..3_000, Some(ops), {
        let client = client.clone();
        move |rng| {
            let (client, base, seed) = (client.clone(), base.clone(), rng.u64(..));
            async move { support::hostile_call(&client, &base, seed).await }
        }
    });
    let tally = load.finish().await;
    let s = client.stats();
    eprintln!(
        "hostile soak: {} calls in {:?}: {tally:?}; {} early answers, {} idle closes; {s:?}",
        tally.calls(),
        started.elapsed(),
        server.early_answers(),
        server.idle_closed()
    );
    assert_eq!(tally.calls(), ops);
    assert!(tally.ok > ops / 2, "mostly served: {tally:?}");
    support::hostile_run_ends_clean(client, &server, tally.slowest_failure).await;
}
