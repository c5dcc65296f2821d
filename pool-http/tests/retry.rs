//! Go's retry rule in both directions: a reused connection that the server closed before
//! answering is retried for a replayable request; a POST (whose bytes may have been
//! processed) and anything on a fresh connection are not.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Request, Uri};
use http_body_util::StreamBody;
use hyper::body::Frame;
use pool_http::cookie::{CookieStore, Jar};
use pool_http::{Client, RequestBody};
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

/// The head (request line and every header line, in order) of each request a server read,
/// with the connection it came on.
type Heads = Arc<Mutex<Vec<(usize, Vec<String>)>>>;

/// [`closes_after_one`], recording every request head it reads.
async fn closes_after_one_recording() -> (Raw, Heads) {
    let heads = Heads::default();
    let record = heads.clone();
    let server = Raw::start(move |mut s, n| {
        let record = record.clone();
        async move {
            let mut i = 0;
            while let Some(head) = read_request(&mut s).await {
                let lines = head.lines().filter(|l| !l.is_empty()).map(str::to_owned);
                record.lock().unwrap().push((n, lines.collect()));
                if n == 0 && i == 1 {
                    return;
                }
                respond(&mut s, "ok").await;
                i += 1;
            }
        }
    })
    .await;
    (server, heads)
}

/// The value of the one `name` line of `head` (header names compared ignoring case).
fn one_header<'h>(head: &'h [String], name: &str) -> &'h str {
    let values: Vec<&str> = head[1..]
        .iter()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then_some(v.trim())
        })
        .collect();
    assert_eq!(values.len(), 1, "one {name} line: {head:#?}");
    values[0]
}

/// `GET http://user:pw@ADDR/p?q=1` with `Host: app.internal`, twice: the second goes on
/// the reused connection the server closes before answering, and is retried on a new
/// connection. Returns the heads the server read: the first GET, then the second GET's two
/// tries.
async fn get_twice_across_a_retry(client: &Client) -> Vec<(usize, Vec<String>)> {
    let (server, heads) = closes_after_one_recording().await;
    let url = format!("http://user:pw@{}/p?q=1", server.addr);
    for _ in 0..2 {
        let response = client.get(&url).header("host", "app.internal").await;
        let text = response.unwrap().into_body().text().await.unwrap();
        assert_eq!(text, "ok");
    }
    assert_eq!(client.stats().retried, 1);
    assert_eq!(server.accepts(), 2);
    let heads = heads.lock().unwrap().clone();
    let conns: Vec<usize> = heads.iter().map(|(n, _)| *n).collect();
    assert_eq!(
        conns,
        [0, 0, 1],
        "the second GET went again on a new connection"
    );
    heads
}

#[tokio::test]
async fn a_retry_sends_the_same_head_as_the_first_try() {
    let jar = Arc::new(Jar::new());
    let client = Client::builder().cookie_store(jar.clone()).build().unwrap();
    // The jar holds one cookie for the server's host (any port of 127.0.0.1).
    jar.add_cookie_str("sid=1; Path=/", &"http://127.0.0.1/".parse().unwrap());
    assert_eq!(jar.len(), 1);
    let heads = get_twice_across_a_retry(&client).await;
    let (first_try, retry) = (&heads[1].1, &heads[2].1);
    assert_eq!(first_try[0], "GET /p?q=1 HTTP/1.1");
    one_header(first_try, "accept-encoding");
    assert_eq!(one_header(first_try, "host"), "app.internal");
    assert_eq!(
        one_header(first_try, "authorization"),
        "Basic dXNlcjpwdw==",
        "base64(\"user:pw\")"
    );
    assert_eq!(one_header(first_try, "cookie"), "sid=1");
    assert!(
        !first_try.iter().any(|l| l.contains("user:pw")),
        "{first_try:#?}"
    );
    for (i, (a, b)) in first_try.iter().zip(retry).enumerate() {
        assert_eq!(a, b, "line {i} of the retry differs from the first try's");
    }
    assert_eq!(first_try.len(), retry.len(), "{first_try:#?} {retry:#?}");
}

/// A cookie store whose `cookies` is `n=<how many times it was asked, this time included>`.
#[derive(Default)]
struct Counting {
    asked: AtomicUsize,
}

impl CookieStore for Counting {
    fn set_cookies(&self, _: &Uri, _: &mut dyn Iterator<Item = &HeaderValue>) {}

    fn cookies(&self, _: &Uri) -> Option<HeaderValue> {
        let n = self.asked.fetch_add(1, Ordering::SeqCst) + 1;
        Some(HeaderValue::from_str(&format!("n={n}")).unwrap())
    }
}

#[tokio::test]
async fn a_retry_asks_the_cookie_jar_once_per_hop() {
    // Go adds the jar's cookies once per hop (`Client.send`); the transport's retry sends
    // the same request again, the jar not asked again.
    let jar = Arc::new(Counting::default());
    let client = Client::builder().cookie_store(jar.clone()).build().unwrap();
    let heads = get_twice_across_a_retry(&client).await;
    assert_eq!(one_header(&heads[0].1, "cookie"), "n=1");
    assert_eq!(one_header(&heads[1].1, "cookie"), "n=2");
    assert_eq!(
        one_header(&heads[2].1, "cookie"),
        "n=2",
        "the retry carries its first try's cookies"
    );
    assert_eq!(
        jar.asked.load(Ordering::SeqCst),
        2,
        "the jar asked once per request"
    );
}

#[tokio::test]
async fn a_streamed_body_is_never_sent_again() {
    let seen = Arc::new(AtomicUsize::new(0));
    let server = closes_after_one(seen.clone()).await;
    let client = Client::new().unwrap();
    support::text(&client, &server.url("/")).await;
    // Replayable by its key, but its body is a stream: it cannot go twice.
    let frames = ["one,", "two"]
        .map(|s| Ok::<_, std::io::Error>(Frame::data(Bytes::from_static(s.as_bytes()))));
    let stream = RequestBody::stream(StreamBody::new(futures_util::stream::iter(frames)));
    let err = client
        .put(&server.url("/up"))
        .header("idempotency-key", "k")
        .body(stream)
        .await
        .unwrap_err();
    assert!(err.is_closed_before_response(), "{err:?}");
    assert_eq!(client.stats().retried, 0);
    assert_eq!(seen.load(Ordering::SeqCst), 2, "the GET, then the PUT once");
    assert_eq!(server.accepts(), 1, "no second dial");
}
