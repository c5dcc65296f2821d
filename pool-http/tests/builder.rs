//! The request builder as a new user reaches for it, each step proved on the wire: a loopback
//! hyper server records what it received (`support::wire`). Mistakes in the chain fail `send`
//! (never panic), and a client made outside any runtime works in one made later.

mod support;

use std::future::{Future, IntoFuture};
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use http::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use http::{Method, Version};
use pool_http::redirect::Policy;
use pool_http::{Client, Error, Phase};
use support::wire::{SECRET, Wire, bytes_body, reply};
use support::{Server, chunked};

#[tokio::test]
async fn every_method_reaches_the_wire_and_awaiting_the_builder_sends_it() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let url = wire.url("/m");
    let builders = [
        (Method::GET, client.get(&url)),
        (Method::POST, client.post(&url)),
        (Method::PUT, client.put(&url)),
        (Method::PATCH, client.patch(&url)),
        (Method::DELETE, client.delete(&url)),
        (Method::HEAD, client.head(&url)),
        (
            Method::OPTIONS,
            client.request_builder(Method::OPTIONS, &url),
        ),
    ];
    for (method, builder) in builders {
        // `IntoFuture`: no `send()`.
        let response = builder.await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.url().to_string(), url);
        response.bytes().await.unwrap();
        let seen = wire.next().await;
        assert_eq!(seen.method, method);
        assert_eq!(seen.target, "/m");
        assert_eq!(seen.version, Version::HTTP_11);
    }
    // The awaited builder is `Send`: it runs in a task of its own.
    let task = tokio::spawn(client.get(&url).into_future());
    assert_eq!(task.await.unwrap().unwrap().text().await.unwrap(), "ok");
    assert_eq!(wire.next().await.method, Method::GET);
    assert_eq!(wire.server.accepts(), 1, "one connection served them all");
}

#[tokio::test]
async fn header_appends_and_headers_replaces_those_of_its_names() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let mut map = HeaderMap::new();
    map.append("x-a", HeaderValue::from_static("3"));
    map.append("x-b", HeaderValue::from_static("4"));
    map.append("x-b", HeaderValue::from_static("5"));
    client
        .get(&wire.url("/"))
        .header("x-a", "1")
        .header("x-a", "2")
        .header("x-c", "kept")
        .headers(map)
        .header("x-b", "6")
        .send()
        .await
        .unwrap();
    let seen = wire.next().await;
    assert_eq!(seen.all("x-a"), ["3"], "replaced by headers()");
    assert_eq!(
        seen.all("x-b"),
        ["4", "5", "6"],
        "all of the map's, then appended"
    );
    assert_eq!(
        seen.all("x-c"),
        ["kept"],
        "a name the map lacks is untouched"
    );
    // Typed names and values go as well.
    client
        .get(&wire.url("/"))
        .header(http::header::ACCEPT, HeaderValue::from_static("text/plain"))
        .header(String::from("x-owned"), String::from("v"))
        .send()
        .await
        .unwrap();
    let seen = wire.next().await;
    assert_eq!(seen.one("accept"), "text/plain");
    assert_eq!(seen.one("x-owned"), "v");
}

#[tokio::test]
async fn query_is_appended_to_the_url_query_form_encoded() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let url = wire.url("/search?page=1");
    let response = client
        .get(&url)
        .query(&[("q", "a b&c=d"), ("é", "ü/?#")])
        .query(&[("n", "2")])
        .await
        .unwrap();
    let expected = "/search?page=1&q=a+b%26c%3Dd&%C3%A9=%C3%BC%2F%3F%23&n=2";
    assert_eq!(response.url().path_and_query().unwrap(), expected);
    assert_eq!(wire.next().await.target, expected);

    // No query yet, no path, a fragment (never sent), owned pairs.
    let cases = [
        ("/plain", "/plain?k=v"),
        ("", "/?k=v"),
        ("?x=1", "/?x=1&k=v"),
        ("/f?x=1#frag", "/f?x=1&k=v"),
    ];
    for (path, target) in cases {
        let pairs = vec![(String::from("k"), String::from("v"))];
        client
            .get(&format!("http://{}{path}", wire.server.addr))
            .query(&pairs)
            .await
            .unwrap();
        assert_eq!(wire.next().await.target, target, "for {path:?}");
    }
    // No pairs: the URL as it was.
    let none: [(&str, &str); 0] = [];
    client.get(&url).query(&none).await.unwrap();
    assert_eq!(wire.next().await.target, "/search?page=1");
}

#[tokio::test]
async fn auth_reaches_the_wire_and_no_debug_shows_it() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let basic = "Basic dXNlcjp0b2szbi1TM0NSRVQ="; // base64("user:tok3n-S3CRET")
    let shown = |builder: &pool_http::RequestBuilder| format!("{builder:?} {builder:#?}");

    let builder = client.get(&wire.url("/")).bearer_auth(SECRET);
    let debug = shown(&builder);
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(
        debug.contains("authorization"),
        "the names are shown: {debug}"
    );
    let request = client
        .get(&wire.url("/"))
        .bearer_auth(SECRET)
        .build()
        .unwrap();
    assert!(request.headers()[AUTHORIZATION].is_sensitive());
    let debug = format!("{request:?}");
    assert!(!debug.contains(SECRET), "{debug}");
    builder.send().await.unwrap();
    assert_eq!(
        wire.next().await.one("authorization"),
        format!("Bearer {SECRET}")
    );

    let builder = client.get(&wire.url("/")).basic_auth("user", Some(SECRET));
    let debug = shown(&builder);
    assert!(
        !debug.contains(SECRET) && !debug.contains(&basic[6..]),
        "{debug}"
    );
    let request = client
        .get(&wire.url("/"))
        .basic_auth("user", Some(SECRET))
        .build()
        .unwrap();
    let debug = format!("{request:?}");
    assert!(!debug.contains(&basic[6..]), "{debug}");
    builder.send().await.unwrap();
    assert_eq!(wire.next().await.one("authorization"), basic);

    // No password: `user:`.
    client
        .get(&wire.url("/"))
        .basic_auth("user", None::<&str>)
        .await
        .unwrap();
    assert_eq!(wire.next().await.one("authorization"), "Basic dXNlcjo=");

    // The last credentials win, and they beat the URL's userinfo.
    let url = format!("http://u:p@{}/", wire.server.addr);
    client
        .get(&url)
        .basic_auth("user", Some("x"))
        .bearer_auth(SECRET)
        .await
        .unwrap();
    assert_eq!(
        wire.next().await.one("authorization"),
        format!("Bearer {SECRET}")
    );

    // A token that cannot be a header value fails `send`, and the error does not quote it.
    let err = client
        .get(&wire.url("/"))
        .bearer_auth(format!("{SECRET}\r\nx-injected: 1"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_builder(), "{err:?}");
    let report = format!("{err} {err:?} {}", shown_chain(&err));
    assert!(!report.contains(SECRET), "{report}");
    wire.nothing_more();
}

/// The error's causes, joined.
fn shown_chain(err: &Error) -> String {
    let mut out = String::new();
    let mut cause = std::error::Error::source(err);
    while let Some(e) = cause {
        out.push_str(&format!("{e}: {e:?}; "));
        cause = e.source();
    }
    out
}

#[tokio::test]
async fn invalid_header_names_and_values_fail_send_without_a_panic() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let url = wire.url("/");
    let builders = [
        client.get(&url).header("bad name", "v"),
        client.get(&url).header("", "v"),
        client.get(&url).header("x-ok", "a\r\nx-injected: 1"),
        client.get(&url).header("x-ok", String::from("nul\0")),
        client.get(&url).header(&b"x-\xff"[..], "v"),
        client.get(&url).header("x-ok", &b"v\n"[..]),
        // A later mistake after an earlier one: the first is kept.
        client
            .get(&url)
            .header("bad name", "v")
            .header("x-ok", "a\nb"),
    ];
    for builder in builders {
        let shown = format!("{builder:?}");
        let err = builder.send().await.unwrap_err();
        assert!(err.is_builder(), "{err:?} from {shown}");
        assert!(err.to_string().starts_with("invalid request: "), "{err}");
        assert!(
            !err.to_string().contains("injected"),
            "no value quoted: {err}"
        );
    }
    let err = client.get(&url).header("x-ok", "a\nb").build().unwrap_err();
    assert!(
        err.to_string().contains("`x-ok`"),
        "names the header: {err}"
    );
    assert_eq!(
        client
            .get(&url)
            .header("bad name", "v")
            .header("x", "\n")
            .build()
            .unwrap_err()
            .to_string(),
        "invalid request: invalid header name"
    );
    wire.nothing_more();
    assert_eq!(wire.server.accepts(), 0);
    assert_eq!(client.stats().requests, 0);
}

#[tokio::test]
async fn a_bad_url_is_an_invalid_url_error_whatever_follows() {
    let client = Client::new().unwrap();
    for url in [
        "not a url",
        "http://exa mple.com/",
        "",
        "http://",
        "/relative/only",
        "ftp://example.com/",
        "http://127.0.0.1:99999/",
    ] {
        let err = client.get(url).send().await.unwrap_err();
        assert!(err.is_invalid_url(), "{url:?}: {err:?}");
        // The rest of a chain does not hide it.
        let err = client
            .post(url)
            .query(&[("a", "b")])
            .timeout(Duration::from_secs(1))
            .body("x")
            .await
            .unwrap_err();
        assert!(err.is_invalid_url(), "{url:?}: {err:?}");
    }
    // A URL that does not parse is the first mistake: a later one does not replace it.
    for url in ["not a url", "http://exa mple.com/", ""] {
        let err = client.get(url).header("bad name", "v").await.unwrap_err();
        assert!(err.is_invalid_url(), "{url:?}: {err:?}");
    }
    let err = client
        .get(&format!("http://user:{SECRET}@exa mple.com/"))
        .send()
        .await
        .unwrap_err();
    assert!(err.is_invalid_url());
    let report = format!("{err} {err:?}");
    assert!(!report.contains(SECRET), "{report}");
    assert_eq!(client.stats().pool.created, 0);
}

#[tokio::test]
async fn a_per_request_timeout_overrides_the_clients() {
    let wire = Wire::start().await;
    // Shorter than the client's: a server that never answers fails after it.
    let client = Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let started = tokio::time::Instant::now();
    let err = client
        .get(&wire.url("/never"))
        .timeout(Duration::from_millis(100))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert_eq!(err.timeout_phase(), Some(Phase::Request), "{err:?}");
    assert!(err.to_string().contains("after 100ms"), "{err}");
    assert!(
        took >= Duration::from_millis(100) && took < Duration::from_secs(10),
        "{took:?}"
    );

    // Longer than the client's, and zero (none): a server 300 ms late is waited for.
    let client = Client::builder()
        .timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    let err = client.get(&wire.url("/slow")).await.unwrap_err();
    assert_eq!(
        err.timeout_phase(),
        Some(Phase::Request),
        "the control: {err:?}"
    );
    for timeout in [Duration::from_secs(30), Duration::ZERO] {
        let response = client
            .get(&wire.url("/slow"))
            .timeout(timeout)
            .await
            .unwrap_or_else(|e| panic!("with {timeout:?}: {e:?}"));
        assert_eq!(response.text().await.unwrap(), "late");
    }

    // The timeout covers the body too, and says which timeout it was.
    let client = Client::new().unwrap();
    let response = client
        .get(&wire.url("/stall"))
        .timeout(Duration::from_millis(100))
        .await
        .unwrap();
    let err = response.bytes().await.unwrap_err();
    assert_eq!(err.timeout_phase(), Some(Phase::Request), "{err:?}");
    assert!(err.to_string().contains("after 100ms"), "{err}");

    // Above the longest accepted: a config error, nothing sent.
    let err = client
        .get(&wire.url("/"))
        .timeout(Duration::from_secs(366 * 24 * 3600))
        .await
        .unwrap_err();
    assert!(err.is_config(), "{err:?}");
    assert_eq!(err.knob(), Some("timeout"), "{err:?}");
}

#[tokio::test]
async fn version_and_redirect_apply_to_one_request() {
    let mut wire = Wire::start().await;
    let client = Client::new().unwrap();
    let response = client
        .get(&wire.url("/"))
        .version(Version::HTTP_10)
        .await
        .unwrap();
    response.bytes().await.unwrap();
    assert_eq!(wire.next().await.version, Version::HTTP_10);

    // The client follows (the default); one request does not, and the other way round.
    let response = client.get(&wire.url("/redirect")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().path(), "/");
    assert_eq!(wire.next().await.target, "/redirect");
    assert_eq!(wire.next().await.target, "/");
    let response = client
        .get(&wire.url("/redirect"))
        .redirect(Policy::none())
        .await
        .unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(wire.next().await.target, "/redirect");
    let err = client
        .get(&wire.url("/redirect"))
        .redirect(Policy::limited(0))
        .await
        .unwrap_err();
    assert!(err.is_redirect(), "{err:?}");
    wire.next().await;
    let client = Client::builder().redirect(Policy::none()).build().unwrap();
    let response = client
        .get(&wire.url("/redirect"))
        .redirect(Policy::limited(1))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Polls `fut` once, outside any runtime, catching a panic.
fn poll_once<F: Future>(fut: F) -> Result<Poll<F::Output>, String> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| fut.as_mut().poll(&mut cx))).map_err(
        |panic| {
            panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default()
        },
    )
}

/// A request polled outside any runtime fails at once with knob `runtime`.
fn fails_for_the_runtime(
    what: &str,
    fut: impl Future<Output = Result<pool_http::Response, Error>>,
) {
    match poll_once(fut) {
        Ok(Poll::Ready(Err(e))) => {
            assert!(e.is_config(), "{what}: {e:?}");
            assert_eq!(e.knob(), Some("runtime"), "{what}: {e:?}");
        }
        Ok(Poll::Ready(Ok(_))) => panic!("{what}: served outside a runtime"),
        Ok(Poll::Pending) => panic!("{what}: pending outside a runtime, where nothing wakes it"),
        Err(panic) => panic!("{what}: panicked instead of failing: {panic}"),
    }
}

#[test]
fn a_request_outside_any_runtime_fails_with_knob_runtime() {
    let client = Client::new().unwrap();
    let url = "http://127.0.0.1:9/";
    fails_for_the_runtime("send", client.get(url).send());
    fails_for_the_runtime("await", client.get(url).into_future());
    fails_for_the_runtime(
        "request",
        client.request(http::Request::get(url).body(()).unwrap()),
    );
}

#[test]
fn a_request_with_a_timeout_outside_any_runtime_fails_with_knob_runtime() {
    let url = "http://127.0.0.1:9/";
    let client = Client::new().unwrap();
    fails_for_the_runtime(
        "per-request timeout",
        client.get(url).timeout(Duration::from_secs(1)).send(),
    );
    let client = Client::builder()
        .timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    fails_for_the_runtime("client timeout", client.get(url).send());
}

/// A server on a runtime of its own, on its own threads: it outlives the client's runtimes.
fn server_elsewhere() -> (tokio::runtime::Runtime, Server) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let server = rt.block_on(Server::start(|req| async move {
        match req.uri().path() {
            "/big" => reply(200, chunked(64, 1024)),
            _ => reply(200, bytes_body(b"ok")),
        }
    }));
    (rt, server)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn clients_built_outside_a_runtime_work_in_one_made_later() {
    let (_server_rt, server) = server_elsewhere();
    let a = Client::new().unwrap();
    let b = Client::builder()
        .max_conns_per_host(2)
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    assert_eq!(a.stats().pool.created, 0);
    assert!(format!("{a:?}").contains("Client"));
    runtime().block_on(async {
        for client in [&a, &b] {
            let response = client.get(&server.url("/")).await.unwrap();
            assert_eq!(response.text().await.unwrap(), "ok");
            assert_eq!(client.stats().pool.created, 1);
        }
    });
    assert_eq!(server.accepts(), 2);
}

/// The pattern of a `static CLIENT: LazyLock<Client>` shared by `#[tokio::test]`s: each
/// test has a runtime of its own, and the pool started on the first one's.
#[test]
fn a_client_outlives_the_runtime_of_its_first_request() {
    let (_server_rt, server) = server_elsewhere();
    let client = Client::new().unwrap();
    let get = |client: &Client| {
        let url = server.url("/");
        let client = client.clone();
        async move {
            let outcome = tokio::time::timeout(Duration::from_secs(10), async {
                client.get(&url).await?.text().await
            })
            .await;
            outcome.unwrap_or_else(|_| panic!("stuck for 10 s"))
        }
    };
    assert_eq!(runtime().block_on(get(&client)).unwrap(), "ok");
    // That runtime is gone, and the pool's tasks with it.
    let second = runtime().block_on(get(&client));
    match second {
        Ok(text) => assert_eq!(text, "ok"),
        Err(e) => panic!("the second runtime's request failed: {e:?}"),
    }
}

#[test]
fn close_before_the_first_request_fails_later_requests_as_closed() {
    let (_server_rt, server) = server_elsewhere();
    let client = Client::new().unwrap();
    client.close();
    runtime().block_on(async {
        client.close_and_wait(Duration::from_secs(1)).await.unwrap();
        for _ in 0..2 {
            let err = client.get(&server.url("/")).await.unwrap_err();
            assert!(err.is_closed(), "{err:?}");
            assert_eq!(err.to_string(), "the client is closed");
        }
    });
    assert_eq!(server.accepts(), 0);
}

#[test]
fn a_response_dropped_outside_its_runtime_does_not_panic() {
    let (_server_rt, server) = server_elsewhere();
    let client = Client::new().unwrap();
    let rt = runtime();
    // Unread bodies, with a deadline (a timer) and without, dropped outside `block_on`.
    let with_deadline = rt
        .block_on(
            client
                .get(&server.url("/"))
                .timeout(Duration::from_secs(5))
                .send(),
        )
        .unwrap();
    let plain = rt.block_on(client.get(&server.url("/")).send()).unwrap();
    drop(with_deadline);
    drop(plain);
    let text = rt
        .block_on(async { client.get(&server.url("/")).await?.text().await })
        .unwrap();
    assert_eq!(text, "ok");
    let stats = client.stats();
    assert_eq!(stats.drained + stats.drain_failed, 2, "{stats:?}");
}
