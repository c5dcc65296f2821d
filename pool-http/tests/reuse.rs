//! When a connection goes back to the pool: at the body's end, at once for an empty body,
//! after a drain within budget; never after `Connection: close` or a drain over budget.

mod support;

use http_body_util::BodyExt;
use hyper::Response;
use pool_http::{Client, Drain, Origin};
use support::{Server, chunked, eventually, full};

fn idle(client: &Client, url: &str) -> usize {
    let origin = Origin::from_url(url).unwrap();
    client.host_stats(&origin).map_or(0, |s| s.idle)
}

#[tokio::test]
async fn bodies_read_to_their_end_give_the_connection_back() {
    let server = Server::start(|req| async move {
        if req.uri().path() == "/chunked" {
            Response::new(chunked(4, 1000))
        } else {
            Response::new(full(1024))
        }
    })
    .await;
    let client = Client::new().unwrap();
    for i in 0..20 {
        let path = if i % 2 == 0 { "/full" } else { "/chunked" };
        let body = client.get(&server.url(path)).await.unwrap().into_body();
        let bytes = body.bytes().await.unwrap();
        assert_eq!(bytes.len(), if i % 2 == 0 { 1024 } else { 4000 });
    }
    assert_eq!(server.accepts(), 1, "one connection served all 20 requests");
    let stats = client.stats();
    assert_eq!(stats.body_eof, 20, "{stats:?}");
    assert_eq!(stats.pool.created, 1, "{stats:?}");
}

#[tokio::test]
async fn the_last_byte_of_a_content_length_body_is_enough() {
    let server = Server::sized(3000).await;
    let url = server.url("/");
    let client = Client::new().unwrap();
    let mut body = client.get(&url).await.unwrap().into_body();
    let mut got = 0;
    while got < 3000 {
        got += body.chunk().await.unwrap().expect("more data").len();
    }
    // The end was never polled for, yet the connection is idle already.
    assert_eq!(idle(&client, &url), 1, "pooled at the last byte");
    assert!(body.chunk().await.unwrap().is_none());
    drop(body);
    support::bytes(&client, &url).await;
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn an_empty_body_gives_the_connection_back_at_once() {
    let server = Server::start(|_| async {
        let mut r = Response::new(full(0));
        *r.status_mut() = hyper::StatusCode::NO_CONTENT;
        r
    })
    .await;
    let url = server.url("/");
    let client = Client::new().unwrap();
    let response = client.get(&url).await.unwrap();
    assert_eq!(response.status(), 204);
    assert_eq!(idle(&client, &url), 1, "pooled before the body is touched");
    let again = client.get(&url).await.unwrap();
    drop((response, again));
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn connection_close_is_never_reused() {
    let server = Server::start(|_| async {
        let mut r = Response::new(full(10));
        r.headers_mut()
            .insert("connection", "close".parse().unwrap());
        r
    })
    .await;
    let client = Client::new().unwrap();
    for _ in 0..3 {
        let body = client.get(&server.url("/")).await.unwrap().into_body();
        assert_eq!(body.bytes().await.unwrap().len(), 10);
    }
    assert_eq!(server.accepts(), 3);
    let stats = client.stats();
    assert_eq!(stats.not_reusable, 3, "{stats:?}");
    eventually("every connection closed", || client.stats().pool.open == 0).await;
}

#[tokio::test]
async fn disable_keep_alives_dials_for_every_request() {
    let server = Server::sized(10).await;
    let client = Client::builder().disable_keep_alives(true).build().unwrap();
    for _ in 0..3 {
        support::bytes(&client, &server.url("/")).await;
    }
    assert_eq!(server.accepts(), 3);
    eventually("server saw every connection close", || server.live() == 0).await;
}

#[tokio::test]
async fn a_body_dropped_unread_within_the_drain_budget_keeps_its_connection() {
    let server = Server::sized(64 * 1024).await;
    let url = server.url("/");
    // The subject is what is drained, not how fast: a time budget a loaded machine meets.
    let client = Client::builder()
        .drain(Drain::default().with_max_time(std::time::Duration::from_secs(5)))
        .build()
        .unwrap();
    for i in 1..=10 {
        let response = client.get(&url).await.unwrap();
        assert!(response.status().is_success());
        drop(response); // Go's pitfall: status checked, body never read.
        eventually("drained and pooled", || client.stats().drained == i).await;
    }
    assert_eq!(server.accepts(), 1, "one connection for ten unread bodies");
    assert_eq!(client.stats().drain_failed, 0);
}

#[tokio::test]
async fn a_body_dropped_after_a_few_bytes_is_drained_too() {
    let server = Server::start(|_| async { Response::new(chunked(64, 1024)) }).await;
    let url = server.url("/");
    // The subject is what is drained, not how fast: a time budget a loaded machine meets.
    let client = Client::builder()
        .drain(Drain::default().with_max_time(std::time::Duration::from_secs(5)))
        .build()
        .unwrap();
    for i in 1..=5 {
        let mut body = client.get(&url).await.unwrap().into_body();
        let first = body.frame().await.unwrap().unwrap();
        assert_eq!(
            first.data_ref().map(|d| d.len()),
            Some(1024),
            "one chunk of 64"
        );
        drop(body);
        eventually("drained and pooled", || client.stats().drained == i).await;
    }
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn a_body_beyond_the_drain_budget_closes_its_connection() {
    let server = Server::sized(1024 * 1024).await;
    let url = server.url("/");
    let client = Client::builder()
        .drain(Drain::default().with_max_bytes(16 * 1024))
        .build()
        .unwrap();
    drop(client.get(&url).await.unwrap());
    // Its Content-Length says more is left than the budget: no drain is even tried, so the
    // next request never waits for one.
    assert_eq!(client.stats().drain_failed, 1, "given up at the drop");
    eventually("the connection closed", || server.live() == 0).await;
    support::bytes(&client, &url).await;
    assert_eq!(server.accepts(), 2);
    assert_eq!(client.stats().drained, 0);
}

#[tokio::test]
async fn go_mode_closes_every_connection_whose_body_was_dropped() {
    let server = Server::sized(1024).await;
    let client = Client::builder().go_mode().build().unwrap();
    for _ in 0..5 {
        drop(client.get(&server.url("/")).await.unwrap());
    }
    assert_eq!(
        server.accepts(),
        5,
        "Go dials again after every unread body"
    );
    assert_eq!(client.stats().drain_failed, 5);
}

#[tokio::test]
async fn a_small_body_dropped_unread_is_idle_again_before_the_next_request() {
    let server = Server::sized(1024).await;
    let url = server.url("/");
    let client = Client::new().unwrap();
    for _ in 0..50 {
        drop(client.get(&url).await.unwrap());
        // What hyper had buffered was read in the drop itself: no drain task to wait for.
        assert_eq!(idle(&client, &url), 1);
    }
    assert_eq!(server.accepts(), 1);
    assert_eq!(client.stats().drained, 50);
}

/// The caller on a thread of its own (the test's, in `block_on`), the connection's task on the
/// runtime's worker. hyper wakes the caller at the response head, in the middle of the pass
/// that then moves the body it read with the head into the body's channel and readies the
/// connection. Woken there, the caller preempted that pass, dropped the body before it was in
/// the channel and handed the rest to the connection task: the connection was not idle after
/// the drop (one request in two on two CPUs), and the next request waited for the drain. The
/// wake now comes when the pass is over: the body is whole at the drop, every time.
#[tokio::test(flavor = "multi_thread", worker_threads = 1)]
async fn a_caller_on_another_thread_is_woken_once_hyper_has_buffered_the_body() {
    let server = Server::sized(1024).await;
    let url = server.url("/");
    let client = Client::new().unwrap();
    for i in 1..=300 {
        drop(client.get(&url).await.unwrap());
        assert_eq!(
            idle(&client, &url),
            1,
            "request {i}: the body was not whole at the drop (its rest went to a drain)"
        );
    }
    assert_eq!(server.accepts(), 1);
    assert_eq!(client.stats().drained, 300);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn back_to_back_dropped_bodies_wait_for_the_drain_instead_of_dialling() {
    let server = Server::sized(64 * 1024).await;
    let url = server.url("/");
    // A generous time budget: what is tested is waiting for the drain, not its deadline.
    let client = Client::builder()
        .drain(Drain::default().with_max_time(std::time::Duration::from_secs(5)))
        .build()
        .unwrap();
    for _ in 0..100 {
        // No pause: the next request starts while the last body is still being drained.
        drop(client.get(&url).await.unwrap());
    }
    assert_eq!(
        server.accepts(),
        1,
        "the drained connection served every request"
    );
    eventually("the last drain ended", || client.stats().drained == 100).await;
}

/// A server whose `/slow/N` answers after N ms, and `/` at once; 1 KiB each.
async fn slow_server() -> Server {
    Server::start(|req| async move {
        if let Some(ms) = req.uri().path().strip_prefix("/slow/") {
            let ms = ms.parse().unwrap_or(0);
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
        }
        Response::new(full(1024))
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timed_out_request_keeps_its_connection_when_the_answer_comes_within_the_drain_budget() {
    let server = slow_server().await;
    let client = Client::builder()
        .response_header_timeout(std::time::Duration::from_millis(10))
        .build()
        .unwrap();
    // Answered 20 ms after the timeout: within the 50 ms drain budget.
    let err = client.get(&server.url("/slow/30")).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    eventually("the connection was rescued", || {
        client.stats().rescued == 1 && idle(&client, &server.url("/")) == 1
    })
    .await;
    assert_eq!(support::bytes(&client, &server.url("/")).await.len(), 1024);
    assert_eq!(
        server.accepts(),
        1,
        "the next request reused the rescued connection"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_that_leaves_mid_request_does_not_cost_its_connection() {
    let server = slow_server().await;
    let client = Client::new().unwrap();
    let url = server.url("/slow/30");
    let abandoned = tokio::spawn({
        let client = client.clone();
        async move { client.get(&url).await.map(drop) }
    });
    eventually("the request is on the wire", || {
        client.stats().pool.in_use == 1 && server.accepts() == 1
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    abandoned.abort();
    assert!(abandoned.await.unwrap_err().is_cancelled());
    eventually("the connection was rescued", || client.stats().rescued == 1).await;
    assert_eq!(support::bytes(&client, &server.url("/")).await.len(), 1024);
    assert_eq!(server.accepts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_drain_budget_or_in_go_mode_a_timed_out_request_closes_its_connection() {
    for (go, path) in [(false, "/slow/400"), (true, "/slow/30")] {
        let server = slow_server().await;
        let mut builder =
            Client::builder().response_header_timeout(std::time::Duration::from_millis(10));
        if go {
            builder = builder.go_mode();
        }
        let client = builder.build().unwrap();
        assert!(
            client
                .get(&server.url(path))
                .await
                .unwrap_err()
                .is_timeout()
        );
        eventually("the connection is closed", || client.stats().pool.open == 0).await;
        assert_eq!(client.stats().rescued, 0, "go mode {go}, {path}");
        assert_eq!(support::bytes(&client, &server.url("/")).await.len(), 1024);
        assert_eq!(
            server.accepts(),
            2,
            "go mode {go}, {path}: a new connection"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_asking_for_close_is_never_pooled() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // A server that answers with keep-alive whatever the request said, counts the requests
    // that asked for close, and the connections the client hung up.
    let (asked, hung_up) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let (a, h) = (asked.clone(), hung_up.clone());
    let server = support::Raw::start(move |mut s, _| {
        let (a, h) = (a.clone(), h.clone());
        async move {
            while let Some(head) = support::read_request(&mut s).await {
                if head.to_ascii_lowercase().contains("connection: close") {
                    a.fetch_add(1, Ordering::SeqCst);
                }
                support::respond(&mut s, "bye").await;
            }
            h.fetch_add(1, Ordering::SeqCst);
        }
    })
    .await;
    let url = server.url("/");
    let client = Client::new().unwrap();
    for round in 1..=25 {
        let req = http::Request::get(&url)
            .header("connection", "close")
            .body(())
            .unwrap();
        let body = client.request(req).await.unwrap().into_body();
        assert_eq!(body.bytes().await.unwrap(), "bye");
        assert_eq!(idle(&client, &url), 0, "round {round}: never idle");
        assert_eq!(
            server.accepts(),
            round,
            "round {round}: every request dials"
        );
    }
    assert_eq!(client.stats().not_reusable, 25);
    eventually("every connection closed", || {
        client.stats().pool.open == 0 && hung_up.load(Ordering::SeqCst) == 25
    })
    .await;
    assert_eq!(asked.load(Ordering::SeqCst), 25, "the server saw the close");
}

/// A raw server: each response says `Content-Length: 10000` and sends 100 bytes; then the
/// connection closes when `cut` is notified, or stalls.
async fn half_body_server(cut: std::sync::Arc<tokio::sync::Notify>) -> support::Raw {
    support::Raw::start(move |mut s, _| {
        let cut = cut.clone();
        async move {
            use tokio::io::AsyncWriteExt;
            if support::read_request(&mut s).await.is_none() {
                return;
            }
            let head = "HTTP/1.1 200 OK\r\ncontent-length: 10000\r\n\r\n";
            s.write_all(head.as_bytes()).await.unwrap();
            s.write_all(&[b'x'; 100]).await.unwrap();
            cut.notified().await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_the_server_cuts_short_closes_the_connection_and_strands_nothing() {
    let cut = std::sync::Arc::new(tokio::sync::Notify::new());
    let server = half_body_server(cut.clone()).await;
    let client = Client::builder()
        .drain(Drain::default().with_max_time(std::time::Duration::from_secs(30)))
        .build()
        .unwrap();
    let response = client.get(&server.url("/")).await.unwrap();
    drop(response); // 9,900 bytes still to come: handed to the connection's task.
    assert_eq!(
        client.stats().pool.in_use,
        1,
        "the drain holds the connection"
    );
    cut.notify_one(); // The server closes mid-body.
    eventually("the drain failed and the connection closed", || {
        let stats = client.stats();
        stats.drain_failed == 1 && stats.pool.open == 0
    })
    .await;
    assert_eq!(client.stats().drained, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drain_that_outlives_its_time_closes_the_connection() {
    let server = half_body_server(std::sync::Arc::new(tokio::sync::Notify::new())).await;
    let client = Client::builder()
        .drain(Drain::default().with_max_time(std::time::Duration::from_millis(50)))
        .build()
        .unwrap();
    let response = client.get(&server.url("/")).await.unwrap();
    drop(response); // The server stalls after 100 of 10,000 bytes.
    eventually("the drain gave up and the connection closed", || {
        let stats = client.stats();
        stats.drain_failed == 1 && stats.pool.open == 0
    })
    .await;
    // The next request dials again, and is not held up by the failed drain.
    let response = client.get(&server.url("/")).await.unwrap();
    assert!(response.status().is_success());
    assert_eq!(server.accepts(), 2);
}
