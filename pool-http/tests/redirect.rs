//! Redirects against real servers on loopback (`support::site`), as a demanding caller and a
//! hostile server exercise them: Go's method and body rules, relative Locations, every hop on
//! the pool, the whole-request timeout over every hop, and Locations no client should follow.
//! Each test asserts what the servers saw, not only what the client returned. The limit and
//! the policies are in `redirect_policy.rs`; credentials, `Referer` and `Host` in
//! `redirect_credentials.rs`.

mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http::Method;
use http::header::HeaderValue;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use pool_http::{Phase, RequestBody};
use support::site::{Reply, Site, builder, chain, client, moved, text};
use support::{ResBody, chunked, eventually, full};

/// A chunked body that never ends.
fn endless() -> ResBody {
    let chunk = Bytes::from(vec![b'z'; 16 * 1024]);
    let frames =
        futures_util::stream::repeat_with(move || Ok::<_, Infallible>(Frame::data(chunk.clone())));
    StreamBody::new(frames).boxed()
}

/// A streamed request body of `parts`.
fn streamed(parts: &[&'static str]) -> RequestBody {
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = parts
        .iter()
        .map(|p| Ok(Frame::data(Bytes::from_static(p.as_bytes()))))
        .collect();
    RequestBody::stream(StreamBody::new(futures_util::stream::iter(frames)))
}

const BODY_HEADERS: [&str; 4] = [
    "content-type",
    "content-length",
    "content-encoding",
    "transfer-encoding",
];

#[tokio::test]
async fn a_post_becomes_a_get_without_its_body_on_301_302_303() {
    let site = Site::start().await;
    let client = client();
    for status in [301, 302, 303] {
        site.redirect(&format!("/form/{status}"), status, "/done");
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            let response = client
                .request_builder(method.clone(), &site.url(&format!("/form/{status}")))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("content-encoding", "identity")
                .header("x-trace", "t-1")
                .body("a=1&b=2")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
            assert_eq!(response.url().to_string(), site.url("/done"));
            assert_eq!(response.text().await.unwrap(), "/done");
            let seen = site.take();
            assert_eq!(seen.len(), 2, "{status} {method}: {seen:?}");
            assert_eq!(seen[0].method, method);
            assert_eq!(seen[0].body, "a=1&b=2");
            assert_eq!(seen[0].header("content-length"), Some("7"));
            let last = &seen[1];
            assert_eq!(last.method, Method::GET, "{status} {method}");
            assert!(last.body.is_empty(), "{status} {method}: {last:?}");
            for name in BODY_HEADERS {
                assert_eq!(last.header(name), None, "{status} {method}: {name} went on");
            }
            assert_eq!(last.header("x-trace"), Some("t-1"), "other headers go on");
        }
    }
}

#[tokio::test]
async fn a_head_stays_a_head_on_every_redirect_status() {
    let site = Site::start().await;
    let client = client();
    for status in [301, 302, 303, 307, 308] {
        site.redirect(&format!("/h/{status}"), status, "/h/done");
        let response = client
            .head(&site.url(&format!("/h/{status}")))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{status}");
        assert_eq!(response.url().to_string(), site.url("/h/done"));
        let seen = site.take();
        let methods: Vec<_> = seen.iter().map(|s| s.method.clone()).collect();
        assert_eq!(methods, [Method::HEAD, Method::HEAD], "{status}");
    }
}

#[tokio::test]
async fn a_307_or_308_sends_the_method_and_the_body_again() {
    let site = Site::start().await;
    let other = Site::start().await;
    site.redirect("/a", 307, "/b");
    site.redirect("/b", 308, &other.url("/c"));
    let client = client();
    for method in [Method::POST, Method::PUT] {
        let response = client
            .request_builder(method.clone(), &site.url("/a"))
            .header("content-type", "text/plain")
            .body("payload-1")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.url().to_string(), other.url("/c"));
        let mut seen = site.take();
        seen.extend(other.take());
        assert_eq!(seen.len(), 3, "{seen:?}");
        for s in &seen {
            assert_eq!(s.method, method, "{s:?}");
            assert_eq!(s.body, "payload-1", "{s:?}");
            assert_eq!(s.header("content-type"), Some("text/plain"));
            assert_eq!(s.header("content-length"), Some("9"));
        }
    }
}

#[tokio::test]
async fn a_streamed_body_is_not_sent_twice_so_its_307_or_308_is_returned_as_is() {
    let site = Site::start().await;
    let client = client();
    for status in [307, 308] {
        site.redirect(&format!("/up/{status}"), status, "/again");
        let url = site.url(&format!("/up/{status}"));
        let response = client
            .post(&url)
            .body(streamed(&["part-1,", "part-2"]))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["location"], "/again");
        assert_eq!(response.url().to_string(), url);
        assert_eq!(
            response.text().await.unwrap(),
            "xxxxx",
            "the 3xx body is there"
        );
        let seen = site.take();
        assert_eq!(seen.len(), 1, "not followed: {seen:?}");
        assert_eq!(seen[0].body, "part-1,part-2");
    }
    // A 303 needs no body again: followed, as a GET.
    site.redirect("/up/303", 303, "/after-upload");
    let response = client
        .post(&site.url("/up/303"))
        .body(streamed(&["part-1"]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = site.take();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[1].method, Method::GET);
    assert!(seen[1].body.is_empty());
}

#[tokio::test]
async fn relative_absolute_and_scheme_relative_locations_resolve_against_the_request_url() {
    let site = Site::start().await;
    let port = site.port();
    let cases = [
        ("/x", "127.0.0.1", "/x"),
        ("x", "127.0.0.1", "/N/b/x"),
        ("../x", "127.0.0.1", "/N/x"),
        ("./y/../z", "127.0.0.1", "/N/b/z"),
        ("../../../../up", "127.0.0.1", "/up"),
        ("?q=2", "127.0.0.1", "/N/b/c?q=2"),
        ("x#fragment", "127.0.0.1", "/N/b/x"),
        ("x?k=a%20b&k=c", "127.0.0.1", "/N/b/x?k=a%20b&k=c"),
        (
            &format!("http://127.0.0.1:{port}/abs?k=v"),
            "127.0.0.1",
            "/abs?k=v",
        ),
        (
            &format!("HTTP://127.0.0.1:{port}/upper"),
            "127.0.0.1",
            "/upper",
        ),
        (&format!("//127.0.0.1:{port}/sr"), "127.0.0.1", "/sr"),
        (&format!("//localhost:{port}/sr2"), "localhost", "/sr2"),
        (&format!("http://localhost:{port}"), "localhost", "/"),
    ];
    let client = client();
    for (i, (location, host, want)) in cases.iter().enumerate() {
        let dir = format!("/{i}");
        site.redirect(&format!("{dir}/b/c?x=1"), 302, location);
        let want = want.replace("/N", &dir);
        let response = client
            .get(&site.url(&format!("{dir}/b/c?x=1")))
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{location}");
        assert_eq!(
            response.url().to_string(),
            site.at(host, &want),
            "{location}"
        );
        assert_eq!(response.text().await.unwrap(), want, "{location}");
        let seen = site.take();
        assert_eq!(seen.len(), 2, "{location}: {seen:?}");
        assert_eq!(seen[1].target, want, "{location}");
        assert_eq!(
            seen[1].header("host"),
            Some(&*format!("{host}:{port}")),
            "{location}"
        );
    }
}

#[tokio::test]
async fn every_hop_of_a_same_origin_chain_is_pooled_on_one_connection() {
    let site = Site::start().await;
    for n in 1..=5usize {
        let location = format!("/p/{}", n - 1);
        site.route(&format!("/p/{n}"), move |_| {
            let body = match n % 3 {
                0 => full(300),
                1 => chunked(16, 2048),
                _ => full(64 * 1024),
            };
            Reply::Now(moved(302, &location, body))
        });
    }
    let client = client();
    let response = client.get(&site.url("/p/5")).await.unwrap();
    assert_eq!(response.url().to_string(), site.url("/p/0"));
    assert_eq!(response.text().await.unwrap(), "/p/0");
    assert_eq!(site.take().len(), 6);
    let stats = client.stats();
    assert_eq!(stats.pool.created, 1, "{stats:?}");
    assert_eq!(site.server.accepts(), 1);
    assert_eq!(stats.requests, 6, "{stats:?}");
    assert_eq!(stats.retried, 0, "{stats:?}");
    assert_eq!(stats.drained, 5, "each 3xx body drained: {stats:?}");
    // `body_eof` counts every body that reached its end, the drained ones too.
    assert_eq!(stats.body_eof, 6, "{stats:?}");
    assert_eq!(stats.drain_failed, 0, "{stats:?}");
    assert_eq!(stats.not_reusable, 0, "{stats:?}");
    assert_eq!((stats.pool.idle, stats.pool.in_use), (1, 0), "{stats:?}");
}

#[tokio::test]
async fn a_3xx_with_a_huge_body_is_given_up_and_the_chain_goes_on() {
    let site = Site::start().await;
    site.route("/huge/length", |_| {
        let mut response = moved(302, "/after", endless());
        response
            .headers_mut()
            .insert("content-length", HeaderValue::from(64u64 << 20));
        Reply::Now(response)
    });
    site.route("/huge/endless", |_| {
        Reply::Now(moved(302, "/after", endless()))
    });
    let client = client();
    for (i, path) in ["/huge/length", "/huge/endless"].into_iter().enumerate() {
        let response = client.get(&site.url(path)).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(response.text().await.unwrap(), "/after");
        let stats = client.stats();
        assert_eq!(stats.drain_failed, i as u64 + 1, "{path}: {stats:?}");
        assert_eq!(stats.drained, 0, "{path}: {stats:?}");
    }
    // Each huge body's connection was closed, not pooled.
    eventually("the huge bodies' connections closed", || {
        site.server.live() <= 1
    })
    .await;
    assert_eq!(client.stats().pool.open, 1);
}

#[tokio::test]
async fn the_whole_request_timeout_covers_every_hop() {
    let site = Site::start().await;
    chain(&site, 3, 302);
    site.route("/hop/0", |_| Reply::Never);
    let timeout = Duration::from_millis(300);
    let client = builder().timeout(timeout).build().unwrap();
    let started = tokio::time::Instant::now();
    let err = client.get(&site.url("/hop/3")).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    assert_eq!(err.timeout_phase(), Some(Phase::Request));
    assert!(started.elapsed() >= timeout);
    assert_eq!(site.take().len(), 4, "every hop went out, the last stalled");

    // Each hop within the timeout, all of them past it: the timeout is the request's, not
    // each hop's. A per-request timeout too.
    for n in 1..=4 {
        let location = format!("/slow/{}", n - 1);
        site.route(&format!("/slow/{n}"), move |_| {
            Reply::After(Duration::from_millis(150), moved(302, &location, full(5)))
        });
    }
    let err = client.get(&site.url("/slow/4")).await.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(Phase::Request), "{err:?}");
    let err = client
        .get(&site.url("/slow/4"))
        .timeout(Duration::from_millis(400))
        .await
        .unwrap_err();
    assert_eq!(err.timeout_phase(), Some(Phase::Request), "{err:?}");
    assert_eq!(site.hits("/slow/0"), 0);
}

#[tokio::test]
async fn a_hostile_location_fails_the_request_cleanly() {
    let site = Site::start().await;
    let long = format!("http://{}:99999/", "a".repeat(10 * 1024));
    let cases = [
        "http://",
        "http:///path",
        "http://exa mple.com/",
        "ftp://127.0.0.1/file",
        "javascript:alert(1)",
        "data:text/html,<script>alert(1)</script>",
        "file:///etc/passwd",
        "mailto:a@example.com",
        "http://[::1",
        "http://127.0.0.1:99999/",
        &long,
    ];
    let client = client();
    for (i, location) in cases.iter().enumerate() {
        let path = format!("/bad/{i}");
        site.redirect(&path, 302, location);
        let err = client.get(&site.url(&path)).await.unwrap_err();
        assert!(err.is_redirect(), "{location:.40}: {err:?}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!(
                "redirect from http://127.0.0.1:{} not followed",
                site.port()
            )),
            "{message}"
        );
        assert!(
            message.len() < 700,
            "{} bytes: {message:.100}",
            message.len()
        );
        assert_eq!(
            site.take().len(),
            1,
            "{location:.40}: nothing else requested"
        );
    }
}

#[tokio::test]
async fn a_location_with_bytes_a_url_cannot_hold_is_followed_percent_encoded() {
    let site = Site::start().await;
    let cases: [(&[u8], &str); 4] = [
        (b"/caf\xc3\xa9", "/caf%C3%A9"),
        (b"/caf\xe9", "/caf%E9"),
        (b"/a b?c d", "/a%20b?c%20d"),
        (b"/x/\\evil.example/{y}", "/x/%5Cevil.example/%7By%7D"),
    ];
    let client = client();
    for (i, (location, want)) in cases.into_iter().enumerate() {
        let path = format!("/raw/{i}");
        site.route(&path, move |_| {
            let mut response = text(302, "");
            let location = HeaderValue::from_bytes(location).unwrap();
            response.headers_mut().insert("location", location);
            Reply::Now(response)
        });
        let response = client.get(&site.url(&path)).await.unwrap();
        assert_eq!(response.status(), 200, "{want}");
        assert_eq!(response.url().to_string(), site.url(want));
        assert_eq!(site.take()[1].target, want);
    }
}

#[tokio::test]
async fn a_long_location_is_followed() {
    let site = Site::start().await;
    let long = format!("/{}", "l".repeat(10 * 1024));
    site.redirect("/to-long", 302, &long);
    let response = client().get(&site.url("/to-long")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().path(), long);
    assert_eq!(site.take()[1].target, long);
}

#[tokio::test]
async fn a_3xx_without_a_location_is_returned_as_is() {
    let site = Site::start().await;
    let client = client();
    for status in [300, 301, 302, 303, 304, 307, 308] {
        let path = format!("/nl/{status}");
        site.route(&path, move |_| Reply::Now(text(status, "as is")));
        let response = client.get(&site.url(&path)).await.unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(response.url().to_string(), site.url(&path));
        let body = if status == 304 { "" } else { "as is" };
        assert_eq!(response.text().await.unwrap(), body);
        assert_eq!(site.take().len(), 1);
    }
    // An empty Location is no Location (Go's rule), not a loop back to the same URL.
    site.redirect("/nl/empty", 302, "");
    let response = client.get(&site.url("/nl/empty")).await.unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(site.take().len(), 1);
    // And the connection served all of it.
    assert_eq!(client.stats().pool.created, 1);
}

/// A request that times out after a redirect to another origin names the origin of the hop
/// that stalled, not the first one's (the message says where it was waiting).
#[tokio::test]
async fn a_timeout_after_a_redirect_names_the_stalled_hops_origin() {
    let site = Site::start().await;
    site.redirect("/x/1", 302, &site.at("localhost", "/x/2"));
    site.route("/x/2", |_| Reply::Never);
    let client = builder()
        .timeout(Duration::from_millis(200))
        .build()
        .unwrap();
    let err = client.get(&site.url("/x/1")).await.unwrap_err();
    assert!(err.is_timeout(), "{err:?}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("localhost:{}", site.port())),
        "{message}"
    );
    assert!(!message.contains("127.0.0.1"), "{message}");
}
