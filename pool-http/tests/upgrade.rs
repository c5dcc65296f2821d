//! Protocol upgrades (issue 17, point 4): a `101 Switching Protocols` connection leaves the
//! pool and is handed to the caller as a byte stream, as Go hands back an `io.ReadWriteCloser`.

mod support;

use http::header::{CONNECTION, UPGRADE};
use hyper::{Response, StatusCode};
use hyper_util::rt::TokioIo;
use pool_http::Client;
use support::{Server, eventually, full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A hyper server that switches `Upgrade: websocket` requests to an echo of every byte, and
/// answers others `ok`.
async fn echo_server() -> Server {
    Server::start(|mut req| async move {
        if !req.headers().contains_key(UPGRADE) {
            return Response::new(full(2));
        }
        let on = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let io = TokioIo::new(on.await.expect("the client upgraded"));
            let (mut r, mut w) = tokio::io::split(io);
            let _ = tokio::io::copy(&mut r, &mut w).await;
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(CONNECTION, "upgrade")
            .header(UPGRADE, "websocket")
            .header("sec-websocket-accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
            .body(full(0))
            .unwrap()
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_handshake_hands_the_connection_to_the_caller_end_to_end() {
    let server = echo_server().await;
    let client = Client::new().unwrap();
    // A connection made and pooled first: the upgrade must not take it from the pool's books
    // twice, nor give the upgraded one back.
    assert_eq!(support::bytes(&client, &server.url("/")).await.len(), 2);
    let handshake = http::Request::get(server.url("/chat"))
        .header(CONNECTION, "upgrade")
        .header(UPGRADE, "websocket")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .header("sec-websocket-version", "13")
        .body(())
        .unwrap();
    let response = client.request(handshake).await.unwrap();
    assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
    let mut io = response.into_body().upgrade().await.unwrap();
    for message in [
        &b"hello"[..],
        b"over the upgraded connection",
        &[0u8, 255, 7],
    ] {
        io.write_all(message).await.unwrap();
        let mut echo = vec![0u8; message.len()];
        io.read_exact(&mut echo).await.unwrap();
        assert_eq!(echo, message);
    }
    let s = client.stats();
    assert_eq!(
        (s.pool.open, s.pool.detached, s.not_reusable),
        (0, 1, 1),
        "the upgraded connection left the pool: {s:?}"
    );
    // The next request dials: the upgraded connection is the caller's.
    assert_eq!(support::bytes(&client, &server.url("/")).await.len(), 2);
    assert_eq!(server.accepts(), 2);
    drop(io);
    eventually("the upgraded connection closed", || server.live() == 1).await;
    client
        .close_and_wait(std::time::Duration::from_secs(5))
        .await
        .unwrap();
    eventually("every connection closed", || server.live() == 0).await;
}

#[tokio::test]
async fn upgrading_a_response_that_did_not_switch_says_why() {
    let server = echo_server().await;
    let client = Client::new().unwrap();
    let response = client.get(&server.url("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let err = response.into_body().upgrade().await.unwrap_err();
    assert!(err.is_body(), "{err:?}");
    // Its connection was not lost: the body was drained and pooled.
    eventually("pooled", || client.stats().pool.idle == 1).await;
}
