//! Feature `tower`: `Client` is a `tower::Service<http::Request<B>>`, so tower's layers stack
//! on it and act on real requests.

mod support;

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use pool_http::http::{HeaderValue, Request};
use support::Server;
use tower::{Service as _, ServiceBuilder, ServiceExt};

fn text_body(text: String) -> support::ResBody {
    Full::new(Bytes::from(text))
        .map_err(|never| match never {})
        .boxed()
}

#[tokio::test]
async fn a_layer_that_sets_a_header_reaches_the_wire() {
    let server = Server::start(|req| async move {
        let seen = req
            .headers()
            .get("x-layer")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        hyper::Response::new(text_body(seen))
    })
    .await;
    let client = pool_http::Client::new().unwrap();
    let service = ServiceBuilder::new()
        .map_request(|mut req: Request<String>| {
            req.headers_mut()
                .insert("x-layer", HeaderValue::from_static("stamped"));
            req
        })
        .service(client.clone());
    let request = Request::get(server.url("/")).body(String::new()).unwrap();
    let response = service.oneshot(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(&response.into_body().bytes().await.unwrap()[..], b"stamped");
}

#[tokio::test]
async fn a_post_body_of_any_http_body_type_is_sent_whole() {
    let server = Server::start(|req| async move {
        let body = req.into_body().collect().await.unwrap().to_bytes();
        hyper::Response::new(text_body(format!("{} bytes", body.len())))
    })
    .await;
    let mut client = pool_http::Client::new().unwrap();
    let request = Request::post(server.url("/"))
        .body(Full::new(Bytes::from(vec![7u8; 100_000])))
        .unwrap();
    let response = client.call(request).await.unwrap();
    assert_eq!(
        &response.into_body().bytes().await.unwrap()[..],
        b"100000 bytes"
    );
}

#[tokio::test]
async fn tower_timeout_and_concurrency_limit_act_on_the_client() {
    // A server that answers `/slow` only when the test says so.
    let (release, released) = tokio::sync::watch::channel(false);
    let server = Server::start(move |req| {
        let mut released = released.clone();
        async move {
            if req.uri().path() == "/slow" {
                let _ = released.wait_for(|r| *r).await;
            }
            hyper::Response::new(support::full(8))
        }
    })
    .await;
    let client = pool_http::Client::new().unwrap();

    // tower's timeout cuts a stalled request (and the client closes its connection).
    let mut timed = ServiceBuilder::new()
        .timeout(Duration::from_millis(100))
        .service(client.clone());
    let stalled = Request::get(server.url("/slow"))
        .body(String::new())
        .unwrap();
    let err = ServiceExt::<Request<String>>::ready(&mut timed)
        .await
        .unwrap()
        .call(stalled)
        .await
        .unwrap_err();
    assert!(err.is::<tower::timeout::error::Elapsed>(), "{err:?}");

    // A concurrency limit of 1 over 8 concurrent calls, each reading its body inside the
    // limit: one connection serves them all, where the bare client dials one per concurrent
    // call.
    let limited = ServiceBuilder::new()
        .concurrency_limit(1)
        .and_then(
            |response: pool_http::http::Response<pool_http::Body>| async move {
                Ok::<_, pool_http::Error>(response.into_body().bytes().await?.len())
            },
        )
        .service(client.clone());
    let before = client.stats().pool.created;
    let calls: Vec<_> = (0..8)
        .map(|_| {
            let svc = limited.clone();
            let req = Request::get(server.url("/fast"))
                .body(String::new())
                .unwrap();
            tokio::spawn(async move { svc.oneshot(req).await.unwrap() })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 8);
    }
    assert_eq!(
        client.stats().pool.created - before,
        1,
        "{:?}",
        client.stats()
    );
    release.send(true).unwrap();
}
