//! Tracing spans: each request is a `request` span (target `pool_http`, level DEBUG) with
//! `method`, `origin` and, once it is answered, `status` (`error` when it fails); the pool's
//! `checkout` span (target `pool_core`) sits inside it with the origin as its `key`, and a
//! dial is a `create` span inside that. No span field carries a URL's userinfo, path or query.

mod support;

use pool_core::testing::spans::CapturedSpan;
use pool_http::{Client, Origin};
use support::Server;

fn parent<'s>(spans: &'s [CapturedSpan], child: &CapturedSpan) -> Option<&'s CapturedSpan> {
    spans.iter().find(|s| Some(s.id) == child.parent)
}

#[tokio::test]
async fn a_request_span_holds_its_checkout_and_the_dial_and_no_secret() {
    let capture = support::span_capture();
    let server = Server::sized(1024).await;
    let origin = Origin::from_url(&server.url("/")).unwrap().to_string();
    let client = Client::new().unwrap();
    let url = server
        .url("/orders?token=t0psecret")
        .replace("http://", "http://alice:s3cr3tpw@");
    for _ in 0..2 {
        let response = client.get(&url).await.unwrap();
        assert_eq!(response.status(), 200);
        response.into_body().bytes().await.unwrap();
    }

    let spans = capture.spans();
    let requests: Vec<_> = spans
        .iter()
        .filter(|s| s.target == "pool_http" && s.name == "request")
        .collect();
    assert_eq!(requests.len(), 2, "{spans:#?}");
    for r in &requests {
        assert_eq!(r.field("method"), Some("GET"));
        assert_eq!(r.field("origin"), Some(origin.as_str()));
        assert_eq!(r.field("status"), Some("200"));
        assert_eq!(r.field("error"), None);
        assert_eq!(r.field("retries"), None, "no retry: the field stays empty");
    }
    assert_eq!(requests[0].field("reused"), Some("false"));
    assert_eq!(requests[1].field("reused"), Some("true"));
    let checkouts = capture.spans_named("pool_core", "checkout");
    assert_eq!(checkouts.len(), 2);
    for (c, r) in checkouts.iter().zip(&requests) {
        assert_eq!(parent(&spans, c).map(|p| p.id), Some(r.id));
        assert_eq!(c.field("key"), Some(origin.as_str()));
    }
    assert_eq!(checkouts[0].field("via"), Some("created"));
    assert_eq!(checkouts[1].field("via"), Some("idle"));
    assert_eq!(checkouts[0].field("conn"), checkouts[1].field("conn"));
    let dials = capture.spans_named("pool_core", "create");
    assert_eq!(dials.len(), 1);
    assert_eq!(dials[0].parent, None);
    assert_eq!(dials[0].follows, [checkouts[0].id]);

    for s in &spans {
        for (name, value) in &s.fields {
            for secret in ["alice", "s3cr3tpw", "t0psecret", "/orders"] {
                assert!(
                    !value.contains(secret),
                    "span {} field {name} = {value}",
                    s.name
                );
            }
        }
    }
}

#[tokio::test]
async fn a_failed_request_records_its_error_in_its_span_and_its_checkout() {
    let capture = support::span_capture();
    // A port nothing listens on: bound, then closed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let client = Client::new().unwrap();
    let err = client.get(&format!("http://{addr}/")).await.unwrap_err();
    assert!(err.is_connect(), "{err:?}");

    let requests = capture.spans_named("pool_http", "request");
    assert_eq!(requests.len(), 1);
    assert_eq!(requests[0].field("error"), Some(err.to_string().as_str()));
    assert_eq!(requests[0].field("status"), None);
    let checkouts = capture.spans_named("pool_core", "checkout");
    assert_eq!(checkouts.len(), 1);
    assert_eq!(checkouts[0].parent, Some(requests[0].id));
    assert!(checkouts[0].field("error").is_some());
    assert_eq!(checkouts[0].field("conn"), None);
}

#[tokio::test]
async fn a_retried_request_records_how_many_retries_and_the_connection_it_ended_on() {
    let capture = support::span_capture();
    let server = Server::sized(16).await;
    let client = Client::new().unwrap();
    let url = server.url("/");
    client.get(&url).await.unwrap().bytes().await.unwrap();
    // The next write fails before a byte leaves: the request goes again on a new connection.
    client.fail_next_writes(1);
    client.get(&url).await.unwrap().bytes().await.unwrap();
    assert_eq!(client.stats().retried, 1);

    let requests = capture.spans_named("pool_http", "request");
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1].field("retries"), Some("1"));
    assert_eq!(
        requests[1].field("reused"),
        Some("false"),
        "it ended on a new connection"
    );
    assert_eq!(requests[1].field("status"), Some("200"));
}
