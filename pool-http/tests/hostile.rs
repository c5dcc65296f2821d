//! Servers that answer before reading the request (issue 17, point 1): a connection goes back
//! to the pool only when both halves are done, the response read and the request written,
//! and a reused connection that cannot take a request promptly is closed, the request sent on
//! another one.

mod support;

use std::time::Duration;

use http::Request;
use pool_http::Client;
use support::{Raw, eventually};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads one request head (up to the blank line) and nothing of its body; `None` at EOF.
async fn read_head(s: &mut TcpStream) -> Option<String> {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match s.read(&mut byte).await {
            Ok(1) => head.push(byte[0]),
            _ => return None,
        }
    }
    Some(String::from_utf8_lossy(&head).into_owned())
}

/// A raw server that answers every POST with `status` and keep-alive as soon as its head is
/// in, then reads nothing more on that connection; a GET gets `ok`.
async fn early_answering(status: u16) -> Raw {
    Raw::start(move |mut s, _| async move {
        while let Some(head) = read_head(&mut s).await {
            if head.starts_with("POST") {
                let answer = format!(
                    "HTTP/1.1 {status} Early\r\nconnection: keep-alive\r\ncontent-length: 5\r\n\
                     \r\nearly"
                );
                let _ = s.write_all(answer.as_bytes()).await;
                // The rest of the upload is never read (until the test ends).
                std::future::pending::<()>().await;
            }
            support::respond(&mut s, "ok").await;
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_early_answer_to_a_streamed_upload_never_poisons_the_pool() {
    for status in [413, 200] {
        let server = early_answering(status).await;
        let client = Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .unwrap();
        let upload = Request::post(server.url("/upload"))
            .body(support::endless_upload())
            .unwrap();
        let response = client.request(upload).await.unwrap();
        assert_eq!(response.status(), status);
        // The caller reads the whole answer while hyper is still writing the upload.
        assert_eq!(response.into_body().text().await.unwrap(), "early");
        for i in 0..3 {
            let got = client.get(&server.url("/")).await;
            let text = got.unwrap_or_else(|e| panic!("{status}, GET {i}: {e:?}"));
            assert_eq!(text.into_body().text().await.unwrap(), "ok");
        }
        assert_eq!(
            server.accepts(),
            2,
            "{status}: one new connection after the upload"
        );
        eventually("the upload's connection closed", || {
            let s = client.stats().pool;
            s.open == 1 && s.idle == 1
        })
        .await;
        assert_eq!(client.stats().retried, 0, "{status}: it was never reused");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reused_connection_not_ready_in_time_is_closed_and_the_request_goes_to_another() {
    // An in-memory upload far beyond what the socket buffers hold: hyper takes it in one
    // frame, so only its readiness tells that the connection is still writing it.
    let server = early_answering(413).await;
    let client = Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .unwrap();
    let upload = Request::post(server.url("/upload"))
        .body(vec![b'u'; 32 << 20])
        .unwrap();
    let response = client.request(upload).await.unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.into_body().text().await.unwrap(), "early");
    let started = tokio::time::Instant::now();
    assert_eq!(support::text(&client, &server.url("/")).await, "ok");
    let took = started.elapsed();
    let s = client.stats();
    assert_eq!(s.retried, 1, "sent again on another connection: {s:?}");
    assert_eq!(server.accepts(), 2);
    assert!(took < Duration::from_secs(1), "served in {took:?}");
    eventually("the stuck connection closed", || {
        client.stats().pool.open == 1
    })
    .await;
    // From then on the new connection serves.
    assert_eq!(support::text(&client, &server.url("/")).await, "ok");
    assert_eq!(server.accepts(), 2);
}
