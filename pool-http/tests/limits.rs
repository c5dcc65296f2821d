//! Per-host limits counted by the server, the idle limits, and grace against Go's churn.

mod support;

use std::time::Duration;

use hyper::Response;
use pool_http::Client;
use support::{Server, full};

/// A server whose handler holds each request for a moment, so requests overlap.
async fn slow_server() -> Server {
    Server::start(|_| async {
        tokio::time::sleep(Duration::from_millis(2)).await;
        Response::new(full(100))
    })
    .await
}

async fn burst(client: &Client, url: &str, n: usize) {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            tokio::spawn(async move {
                let body = client.get(&url).await.unwrap().into_body();
                assert_eq!(body.bytes().await.unwrap().len(), 100);
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_conns_per_host_holds_under_200_concurrent_requests() {
    let server = slow_server().await;
    let client = Client::builder().max_conns_per_host(8).build().unwrap();
    burst(&client, &server.url("/"), 200).await;
    assert!(
        server.peak() <= 8,
        "server saw {} connections at once",
        server.peak()
    );
    assert!(server.accepts() <= 8, "{} dials", server.accepts());
    let stats = client.stats();
    assert_eq!(stats.requests, 200);
    assert!(
        stats.pool.wait_count > 0,
        "requests queued for the cap: {stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_grace_a_second_burst_dials_nothing_and_go_mode_dials_again() {
    let server = slow_server().await;
    let url = server.url("/");
    let ours = Client::builder().max_conns_per_host(16).build().unwrap();
    burst(&ours, &url, 64).await;
    let first = server.accepts();
    assert!(
        first > 2,
        "the burst needed more than the idle limit: {first}"
    );
    assert_eq!(
        ours.stats().pool.idle,
        first,
        "surplus kept for the grace period"
    );
    burst(&ours, &url, 64).await;
    assert!(
        server.accepts() - first <= 2,
        "the second burst reused the surplus: {} new",
        server.accepts() - first
    );
    drop(ours);

    let go_server = slow_server().await;
    let go = Client::builder()
        .max_conns_per_host(16)
        .go_mode()
        .build()
        .unwrap();
    burst(&go, &go_server.url("/"), 64).await;
    let first = go_server.accepts();
    assert_eq!(go.stats().pool.idle, 2, "Go keeps MaxIdleConnsPerHost");
    burst(&go, &go_server.url("/"), 64).await;
    assert!(
        go_server.accepts() - first > 2,
        "Go dials again for the second burst: {} new",
        go_server.accepts() - first
    );
}
