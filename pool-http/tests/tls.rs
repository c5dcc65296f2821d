//! HTTPS through rustls with a certificate made in the test: HTTP/1.1 and HTTP/2 chosen by
//! ALPN, and each way of getting TLS wrong has its clear error.

mod support;

use std::time::Duration;

use hyper::Response;
use pool_http::{Client, Phase};
use support::{Raw, Server, full};

fn https(server: &Server, path: &str) -> String {
    format!("https://{}{path}", server.addr)
}

#[tokio::test]
async fn https_over_http1_reuses_its_connection() {
    let (server, root) = Server::start_tls(&[b"http/1.1"], |req| async move {
        assert_eq!(req.version(), hyper::Version::HTTP_11);
        Response::new(full(2048))
    })
    .await;
    let client = Client::builder()
        .tls(support::trusting(root))
        .build()
        .unwrap();
    for _ in 0..5 {
        let response = client.get(&https(&server, "/")).await.unwrap();
        assert_eq!(response.version(), hyper::Version::HTTP_11);
        assert_eq!(response.into_body().bytes().await.unwrap().len(), 2048);
    }
    drop(client.get(&https(&server, "/")).await.unwrap()); // dropped: drained, reused
    support::eventually("drained", || client.stats().drained == 1).await;
    support::bytes(&client, &https(&server, "/")).await;
    assert_eq!(server.accepts(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alpn_h2_shares_one_connection_between_concurrent_requests() {
    let (server, root) = Server::start_tls(&[b"h2", b"http/1.1"], |req| async move {
        assert_eq!(req.version(), hyper::Version::HTTP_2);
        tokio::time::sleep(Duration::from_millis(5)).await;
        Response::new(full(100))
    })
    .await;
    let client = Client::builder()
        .tls(support::trusting(root))
        .build()
        .unwrap();
    // The first request learns that the server speaks HTTP/2.
    let first = client.get(&https(&server, "/")).await.unwrap();
    assert_eq!(first.version(), hyper::Version::HTTP_2);
    first.into_body().bytes().await.unwrap();
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (client, url) = (client.clone(), https(&server, "/"));
            tokio::spawn(async move { client.get(&url).await.unwrap().into_body().bytes().await })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap().len(), 100);
    }
    assert_eq!(
        server.accepts(),
        1,
        "one HTTP/2 connection carried all 33 requests"
    );
    assert_eq!(client.stats().pool.created, 1);
}

#[tokio::test]
async fn an_untrusted_certificate_is_a_tls_error() {
    let (server, _root) =
        Server::start_tls(&[b"http/1.1"], |_| async { Response::new(full(1)) }).await;
    let (_other, other_root) =
        Server::start_tls(&[b"http/1.1"], |_| async { Response::new(full(1)) }).await;
    let client = Client::builder()
        .tls(support::trusting(other_root))
        .build()
        .unwrap();
    let err = client.get(&https(&server, "/")).await.unwrap_err();
    assert!(err.is_tls(), "{err:?}");
    assert!(err.is_connect(), "{err:?}");
    assert!(!err.is_timeout());
}

/// Only without feature `rustls` (which gives every client TLS): `scripts/test.sh` runs this
/// file once more with `--no-default-features --features tls,testing`.
#[cfg(not(feature = "rustls"))]
#[tokio::test]
async fn https_without_a_tls_config_says_so_at_once() {
    let client = Client::new().unwrap();
    let err = client.get("https://127.0.0.1:1/").await.unwrap_err();
    assert!(err.is_tls(), "{err:?}");
    // `Display` says this level's fact; the cause, in the source chain, says why (once).
    assert_eq!(err.to_string(), "could not connect to https://127.0.0.1:1");
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert!(
        cause.as_deref().is_some_and(|c| c.contains("TLS")),
        "{cause:?}"
    );
    // The advice names the feature this build lacks.
    assert!(
        cause
            .as_deref()
            .is_some_and(|c| c.contains("`rustls` feature") && c.contains("ClientBuilder::tls")),
        "{cause:?}"
    );
    assert_eq!(client.stats().pool.created, 0, "nothing dialled");
}

#[tokio::test]
async fn a_server_that_never_finishes_the_handshake_is_a_tls_timeout() {
    // Accepts TCP, reads the ClientHello, never answers.
    let server = Raw::start(|mut s, _| async move {
        let mut buf = [0u8; 1024];
        while tokio::io::AsyncReadExt::read(&mut s, &mut buf)
            .await
            .is_ok_and(|n| n > 0)
        {}
    })
    .await;
    let (_unused, root) =
        Server::start_tls(&[b"http/1.1"], |_| async { Response::new(full(1)) }).await;
    let client = Client::builder()
        .tls(support::trusting(root))
        .tls_handshake_timeout(Duration::from_millis(150))
        .build()
        .unwrap();
    let err = client
        .get(&format!("https://{}/", server.addr))
        .await
        .unwrap_err();
    assert_eq!(err.timeout_phase(), Some(Phase::TlsHandshake), "{err:?}");
    assert!(err.is_tls(), "{err:?}");
}
