//! Go's retry rule in both directions: a reused connection that the server closed before
//! answering is retried for a replayable request; a POST (whose bytes may have been
//! processed) and anything on a fresh connection are not.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::Request;
use pool_http::Client;
use support::{Raw, read_request, respond};

/// Connection 0 answers its first request, then reads the second and closes without an
/// answer (a server closing an idle connection as the request arrives). Every later
/// connection answers everything. Counts the requests the server read.
async fn closes_after_one(seen: Arc<AtomicUsize>) -> Raw {
    Raw::start(move |mut s, n| {
        let seen = seen.clone();
        async move {
            let mut i = 0;
            while read_request(&mut s).await.is_some() {
                seen.fetch_add(1, Ordering::SeqCst);
                if n == 0 && i == 1 {
                    return;
                }
                respond(&mut s, "ok").await;
                i += 1;
            }
        }
    })
    .await
}

#[tokio::test]
async fn a_get_on_a_reused_connection_closed_before_answering_is_retried_once() {
    let seen = Arc::new(AtomicUsize::new(0));
    let server = closes_after_one(seen.clone()).await;
    let client = Client::new().unwrap();
    for _ in 0..2 {
        let text = support::text(&client, &server.url("/")).await;
        assert_eq!(text, "ok");
    }
    assert_eq!(client.stats().retried, 1);
    assert_eq!(server.accepts(), 2);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        3,
        "the second GET reached the server twice"
    );
}

fn post(url: &str, key: Option<&str>) -> Request<&'static str> {
    let mut req = Request::post(url);
    if let Some(key) = key {
        req = req.header("idempotency-key", key);
    }
    req.body("payload").unwrap()
}

#[tokio::test]
async fn a_post_that_may_have_been_processed_is_not_retried() {
    let seen = Arc::new(AtomicUsize::new(0));
    let server = closes_after_one(seen.clone()).await;
    let client = Client::new().unwrap();
    client
        .request(post(&server.url("/"), None))
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    let err = client
        .request(post(&server.url("/"), None))
        .await
        .unwrap_err();
    assert!(err.is_closed_before_response(), "{err:?}");
    assert_eq!(client.stats().retried, 0);
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "the POST reached the server once"
    );
    assert_eq!(server.accepts(), 1);
}

#[tokio::test]
async fn a_post_with_an_idempotency_key_is_retried() {
    let seen = Arc::new(AtomicUsize::new(0));
    let server = closes_after_one(seen.clone()).await;
    let client = Client::new().unwrap();
    for _ in 0..2 {
        let req = post(&server.url("/"), Some("k-1"));
        client
            .request(req)
            .await
            .unwrap()
            .into_body()
            .bytes()
            .await
            .unwrap();
    }
    assert_eq!(client.stats().retried, 1);
    assert_eq!(seen.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_fresh_connection_is_never_retried() {
    let seen = Arc::new(AtomicUsize::new(0));
    let s2 = seen.clone();
    let server = Raw::start(move |mut s, _| {
        let seen = s2.clone();
        async move {
            if read_request(&mut s).await.is_some() {
                seen.fetch_add(1, Ordering::SeqCst);
            }
        }
    })
    .await;
    let client = Client::new().unwrap();
    let err = client.get(&server.url("/")).await.unwrap_err();
    assert!(err.is_closed_before_response(), "{err:?}");
    assert_eq!(server.accepts(), 1, "no second dial");
    assert_eq!(seen.load(Ordering::SeqCst), 1);
    assert_eq!(client.stats().retried, 0);
}

#[tokio::test]
async fn a_post_whose_bytes_never_left_is_sent_again_on_another_connection() {
    let server = Raw::answering("ok").await;
    let client = Client::new().unwrap();
    client
        .request(post(&server.url("/"), None))
        .await
        .unwrap()
        .into_body()
        .bytes()
        .await
        .unwrap();
    // The pooled connection's next write fails before a byte leaves: the POST provably never
    // reached the server, so even a POST goes again (on a new connection).
    client.fail_next_writes(1);
    let text = client
        .request(post(&server.url("/"), None))
        .await
        .unwrap()
        .into_body()
        .text()
        .await;
    assert_eq!(text.unwrap(), "ok");
    assert_eq!(client.stats().retried, 1);
    assert_eq!(server.requests(), 2, "each POST reached the server once");
    assert_eq!(server.accepts(), 2);
}

#[tokio::test]
async fn a_write_failure_on_a_fresh_connection_is_not_retried() {
    let server = Raw::answering("ok").await;
    let client = Client::new().unwrap();
    client.fail_next_writes(1);
    let err = client.get(&server.url("/")).await.unwrap_err();
    assert!(!err.is_timeout(), "{err:?}");
    assert_eq!(client.stats().retried, 0);
    assert_eq!(server.accepts(), 1);
}
