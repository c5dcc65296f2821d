//! The response helpers on a loopback server that records what it received: body limits that
//! close the connection, `json`, `text`, `error_for_status` keeping the connection, and a
//! `Debug` that shows no header value.

mod support;

use http::StatusCode;
use pool_http::Client;
use pool_http::redirect::Policy;
use support::wire::{Item, SECRET, Wire};

/// Whether the next request of `client` dials (the last connection was closed).
async fn dials_again(client: &Client, wire: &mut Wire) -> bool {
    let before = wire.server.accepts();
    let response = client.get(&wire.url("/")).await.unwrap();
    assert_eq!(response.text().await.unwrap(), "ok");
    wire.next().await;
    wire.server.accepts() > before
}

#[tokio::test]
async fn a_body_past_the_limit_fails_and_its_connection_is_closed() {
    let mut wire = Wire::start().await;
    // 64 chunks of 1 KiB, far past the limit: the rest must never be read by a reuse.
    let big = wire.url("/chunked/64/1024");

    let client = Client::builder().body_limit(1024).build().unwrap();
    for how in ["bytes", "text", "json"] {
        let response = client.get(&big).await.unwrap();
        wire.next().await;
        let err = match how {
            "bytes" => response.bytes().await.map(drop),
            "text" => response.text().await.map(drop),
            _ => response.json::<Item>().await.map(drop),
        }
        .unwrap_err();
        assert!(err.is_too_large(), "{how}: {err:?}");
        assert!(err.to_string().contains("1024 bytes"), "{err}");
        assert!(
            err.to_string().contains(&wire.server.addr.to_string()),
            "{err}"
        );
        assert!(
            dials_again(&client, &mut wire).await,
            "{how}: the connection was reused"
        );
    }
    // The request's limit in place of the client's: lower, and higher.
    let response = client
        .get(&wire.url("/sized/1024"))
        .body_limit(100)
        .await
        .unwrap();
    wire.next().await;
    assert!(response.bytes().await.unwrap_err().is_too_large());
    let response = client.get(&big).body_limit(64 * 1024).await.unwrap();
    wire.next().await;
    assert_eq!(response.bytes().await.unwrap().len(), 64 * 1024);
    assert!(
        !dials_again(&client, &mut wire).await,
        "a body read whole is reused"
    );

    // Per request on a client without a limit; exactly the limit is fine.
    let client = Client::new().unwrap();
    let response = client.get(&big).body_limit(64 * 1024 - 1).await.unwrap();
    wire.next().await;
    assert!(response.text().await.unwrap_err().is_too_large());
    assert!(dials_again(&client, &mut wire).await);
    let response = client.get(&big).body_limit(64 * 1024).await.unwrap();
    wire.next().await;
    assert_eq!(response.text().await.unwrap().len(), 64 * 1024);
    // `bytes_limited` names its own limit, whatever the request's.
    let response = client.get(&big).body_limit(1).await.unwrap();
    wire.next().await;
    assert_eq!(
        response.bytes_limited(1 << 20).await.unwrap().len(),
        64 * 1024
    );
}

#[tokio::test]
async fn a_small_body_past_the_limit_fails_and_the_next_request_is_served() {
    let mut wire = Wire::start().await;
    let client = Client::builder().body_limit(100).build().unwrap();
    let response = client.get(&wire.url("/sized/2048")).await.unwrap();
    wire.next().await;
    assert!(response.bytes().await.unwrap_err().is_too_large());
    // The whole body was read before the limit was checked: reusing the connection is
    // harmless, and whichever happened, the next answer is the right one.
    let reused = !dials_again(&client, &mut wire).await;
    eprintln!("a one-chunk body past the limit: connection reused = {reused}");
}

#[tokio::test]
async fn json_decodes_and_invalid_json_is_a_decode_error_naming_the_origin() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let item: Item = client
        .get(&wire.url("/json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        item,
        Item {
            name: "a".into(),
            n: 7
        }
    );
    wire.next().await;
    for path in ["/not-json", "/wrong-shape", "/bad-utf8"] {
        let err = client
            .get(&wire.url(path))
            .await
            .unwrap()
            .json::<Item>()
            .await
            .unwrap_err();
        wire.next().await;
        assert!(err.is_decode(), "{path}: {err:?}");
        let origin = format!("http://{}", wire.server.addr);
        assert_eq!(
            err.to_string(),
            format!("decoding the response body from {origin} as json failed")
        );
        assert!(
            std::error::Error::source(&err).is_some(),
            "serde's cause: {err:?}"
        );
    }
    assert_eq!(
        wire.server.accepts(),
        1,
        "a body read whole keeps its connection"
    );
}

#[tokio::test]
async fn error_for_status_fails_on_4xx_and_5xx_and_the_connection_is_reused() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    for (path, status) in [
        ("/status/404", StatusCode::NOT_FOUND),
        ("/status-chunked/500", StatusCode::INTERNAL_SERVER_ERROR),
        ("/status/400", StatusCode::BAD_REQUEST),
        ("/status/503", StatusCode::SERVICE_UNAVAILABLE),
    ] {
        let response = client.get(&wire.url(path)).await.unwrap();
        wire.next().await;
        assert!(response.error_for_status_ref().is_err());
        let err = response.error_for_status().unwrap_err();
        assert!(err.is_status(), "{err:?}");
        assert_eq!(err.status(), Some(status));
        assert_eq!(
            err.to_string(),
            format!("http status {status} from http://{}", wire.server.addr)
        );
        // The unread 10 KiB were drained: the connection serves the next request.
        assert!(
            !dials_again(&client, &mut wire).await,
            "{path}: the connection was closed"
        );
    }
    for path in ["/status/200", "/status/204", "/status/302", "/status/399"] {
        let response = client
            .get(&wire.url(path))
            .redirect(Policy::none())
            .await
            .unwrap();
        wire.next().await;
        let status = response.status();
        assert!(response.error_for_status_ref().is_ok(), "{path}");
        assert_eq!(response.error_for_status().unwrap().status(), status);
    }
    assert_eq!(wire.server.accepts(), 1);
    assert!(client.stats().drained >= 1, "{:?}", client.stats());
    // Only a status error has a status.
    assert_eq!(client.get("").await.unwrap_err().status(), None);
}

#[tokio::test]
async fn text_replaces_invalid_utf8() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let text = client
        .get(&wire.url("/bad-utf8"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(text, "ok \u{FFFD}\u{FFFD} end");
    wire.next().await;
}

#[tokio::test]
async fn response_debug_shows_header_names_never_values() {
    let wire = Wire::start().await;
    let client = Client::new().unwrap();
    let response = client.get(&wire.url("/cookie")).await.unwrap();
    assert!(
        response.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains(SECRET)
    );
    let shown = format!("{response:?} {response:#?}");
    assert!(shown.contains("set-cookie"), "{shown}");
    assert!(!shown.contains(SECRET), "{shown}");
}
