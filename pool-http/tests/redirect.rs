//! Redirects against real servers on loopback, as a demanding caller and a hostile server
//! exercise them: Go's method and body rules, relative Locations, the limit and the
//! policies, credentials kept to the first host, every hop on the pool, the whole-request
//! timeout over every hop, and Locations no client should follow. Each test asserts what
//! the servers saw, not only what the client returned.

mod support;

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use pool_http::redirect::Policy;
use pool_http::{Client, ClientBuilder, Drain, Phase, RequestBody};
use support::{ResBody, Server, chunked, eventually, full};

/// A request as a server got it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    /// Path and query, as on the request line.
    target: String,
    headers: HeaderMap,
    body: Bytes,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// What a route answers.
enum Reply {
    Now(Response<ResBody>),
    /// The response, `Duration` after the request came.
    After(Duration, Response<ResBody>),
    /// Never an answer.
    Never,
}

type Route = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;
type Routes = Arc<Mutex<HashMap<String, Route>>>;
type Log = Arc<Mutex<Vec<Seen>>>;
type Serving = Pin<Box<dyn Future<Output = Response<ResBody>> + Send>>;

/// A hyper server on 127.0.0.1 whose routes are set after it started (so that they can name
/// other sites), and which logs every request, body included, before it answers. A route
/// matches the whole target first, then the path; a target without one gets `200` with the
/// target as its body.
struct Site {
    server: Server,
    scheme: &'static str,
    routes: Routes,
    log: Log,
}

fn serving(routes: Routes, log: Log) -> impl Fn(Request<Incoming>) -> Serving + Send + Sync {
    move |req| Box::pin(serve(req, routes.clone(), log.clone()))
}

async fn serve(req: Request<Incoming>, routes: Routes, log: Log) -> Response<ResBody> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let seen = Seen {
        method: parts.method.clone(),
        target: target.to_owned(),
        headers: parts.headers,
        body,
    };
    let route = {
        let routes = routes.lock().unwrap();
        routes
            .get(target)
            .or_else(|| routes.get(parts.uri.path()))
            .cloned()
    };
    let reply = match route {
        Some(route) => route(&seen),
        None => Reply::Now(text(200, &seen.target)),
    };
    log.lock().unwrap().push(seen);
    match reply {
        Reply::Now(response) => response,
        Reply::After(delay, response) => {
            tokio::time::sleep(delay).await;
            response
        }
        Reply::Never => std::future::pending().await,
    }
}

impl Site {
    async fn start() -> Site {
        let (routes, log) = (Routes::default(), Log::default());
        let server = Server::start(serving(routes.clone(), log.clone())).await;
        Site {
            server,
            scheme: "http",
            routes,
            log,
        }
    }

    /// Over TLS (HTTP/1.1) with a certificate for 127.0.0.1; returns a client config that
    /// trusts it.
    async fn start_tls() -> (Site, rustls::ClientConfig) {
        let (routes, log) = (Routes::default(), Log::default());
        let (server, root) =
            Server::start_tls(&[b"http/1.1"], serving(routes.clone(), log.clone())).await;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(root).unwrap();
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let site = Site {
            server,
            scheme: "https",
            routes,
            log,
        };
        (site, tls)
    }

    fn port(&self) -> u16 {
        self.server.addr.port()
    }

    /// `path` on this site, as `127.0.0.1`.
    fn url(&self, path: &str) -> String {
        self.at("127.0.0.1", path)
    }

    /// `path` on this site, named `host` (`localhost` is another host of the same server).
    fn at(&self, host: &str, path: &str) -> String {
        format!("{}://{host}:{}{path}", self.scheme, self.port())
    }

    fn route(&self, target: &str, route: impl Fn(&Seen) -> Reply + Send + Sync + 'static) {
        let route: Route = Arc::new(route);
        self.routes.lock().unwrap().insert(target.to_owned(), route);
    }

    /// `target` answers `status` with `Location: location` (the raw bytes) and a short body.
    fn redirect(&self, target: &str, status: u16, location: &str) {
        let location = location.to_owned();
        self.route(target, move |_| {
            Reply::Now(moved(status, &location, full(5)))
        });
    }

    /// Every request so far, the log emptied.
    fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    /// Requests so far whose target is `target`.
    fn hits(&self, target: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter().filter(|s| s.target == target).count()
    }
}

fn text(status: u16, body: &str) -> Response<ResBody> {
    let mut response = Response::new(
        http_body_util::Full::new(Bytes::from(body.to_owned()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

fn moved(status: u16, location: &str, body: ResBody) -> Response<ResBody> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response.headers_mut().insert(
        "location",
        HeaderValue::from_bytes(location.as_bytes()).unwrap(),
    );
    response
}

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

/// Ten seconds for any request (a hang fails as a timeout), and a drain budget in time that
/// a loaded machine meets (the subject is what is drained, not how fast).
fn builder() -> ClientBuilder {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .drain(Drain::default().with_max_time(Duration::from_secs(5)))
}

fn client() -> Client {
    builder().build().unwrap()
}

/// `n` hops on `site`: `/hop/n` redirects to `/hop/n-1`, ..., `/hop/1` to `/hop/0`.
fn chain(site: &Site, n: usize, status: u16) {
    for i in 1..=n {
        site.redirect(&format!("/hop/{i}"), status, &format!("/hop/{}", i - 1));
    }
}

fn basic(credentials: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    )
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
async fn ten_redirects_are_followed_and_the_eleventh_fails() {
    let site = Site::start().await;
    chain(&site, 12, 302);
    let client = client();
    let response = client.get(&site.url("/hop/10")).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().to_string(), site.url("/hop/0"));
    assert_eq!(site.take().len(), 11);

    let err = client.get(&site.url("/hop/11")).await.unwrap_err();
    assert!(err.is_redirect(), "{err:?}");
    assert!(!err.is_timeout());
    assert_eq!(
        err.to_string(),
        format!(
            "redirect from http://127.0.0.1:{} not followed: stopped after 10 redirects",
            site.port()
        )
    );
    let seen = site.take();
    assert_eq!(seen.len(), 11, "the 11th Location is never requested");
    assert_eq!(seen.last().unwrap().target, "/hop/1");
    assert_eq!(client.stats().requests, 22);
}

#[tokio::test]
async fn policy_limited_follows_that_many() {
    let site = Site::start().await;
    chain(&site, 5, 301);
    for max in [0, 1, 3] {
        let client = builder().redirect(Policy::limited(max)).build().unwrap();
        let response = client.get(&site.url(&format!("/hop/{max}"))).await.unwrap();
        assert_eq!(response.status(), 200, "limited({max})");
        assert_eq!(site.take().len(), max + 1);
        let err = client
            .get(&site.url(&format!("/hop/{}", max + 1)))
            .await
            .unwrap_err();
        assert!(err.is_redirect(), "limited({max}): {err:?}");
        assert!(
            err.to_string()
                .ends_with(&format!("stopped after {max} redirects")),
            "{err}"
        );
        assert_eq!(site.take().len(), max + 1, "limited({max})");
    }
}

#[tokio::test]
async fn policy_none_returns_every_3xx_as_is() {
    let site = Site::start().await;
    let client = builder().redirect(Policy::none()).build().unwrap();
    for status in [301, 302, 303, 307, 308] {
        let target = format!("/none/{status}");
        site.redirect(&target, status, "/elsewhere");
        let response = client.post(&site.url(&target)).body("b").await.unwrap();
        assert_eq!(response.status(), status);
        assert_eq!(response.headers()["location"], "/elsewhere");
        assert_eq!(response.url().to_string(), site.url(&target));
        assert_eq!(response.text().await.unwrap(), "xxxxx");
        assert_eq!(site.take().len(), 1);
    }
    assert_eq!(site.hits("/elsewhere"), 0);
}

#[tokio::test]
async fn a_custom_policy_sees_each_attempt_and_decides() {
    let site = Site::start().await;
    site.redirect("/c/1", 301, "/c/2");
    site.redirect("/c/2", 307, &site.at("localhost", "/c/3"));
    site.redirect("/c/3", 308, "/c/4");
    site.redirect("/c/4", 302, "/c/5");
    type Attempts = Arc<Mutex<Vec<(u16, String, Vec<String>)>>>;
    let attempts = Attempts::default();
    let seen_attempts = attempts.clone();
    let policy = Policy::custom(move |attempt| {
        let previous = attempt.previous().iter().map(|u| u.to_string()).collect();
        let status = attempt.status().as_u16();
        let next = attempt.url().to_string();
        seen_attempts.lock().unwrap().push((status, next, previous));
        if attempt.previous().len() < 3 {
            attempt.follow()
        } else {
            attempt.stop()
        }
    });
    let client = builder().redirect(policy).build().unwrap();
    let response = client.get(&site.url("/c/1")).await.unwrap();
    assert_eq!(response.status(), 308, "stopped at the third");
    assert_eq!(response.url().to_string(), site.at("localhost", "/c/3"));
    let (first, second, third) = (
        site.url("/c/1"),
        site.url("/c/2"),
        site.at("localhost", "/c/3"),
    );
    let want = vec![
        (301, second.clone(), vec![first.clone()]),
        (307, third.clone(), vec![first.clone(), second.clone()]),
        (
            308,
            site.at("localhost", "/c/4"),
            vec![first, second, third],
        ),
    ];
    assert_eq!(*attempts.lock().unwrap(), want);
    assert_eq!(site.hits("/c/4"), 0);

    // An error: the request fails with the policy's reason, and goes nowhere else.
    let policy = Policy::custom(|attempt| match attempt.url().host() {
        Some("localhost") => attempt.error("left the allowed hosts"),
        _ => attempt.follow(),
    });
    site.take();
    let err = client
        .get(&site.url("/c/1"))
        .redirect(policy)
        .await
        .unwrap_err();
    assert!(err.is_redirect(), "{err:?}");
    // This level says a policy refused it; the policy's own error is the source.
    assert!(err.to_string().contains("policy refused"), "{err}");
    let cause = std::error::Error::source(&err).map(ToString::to_string);
    assert_eq!(cause.as_deref(), Some("left the allowed hosts"));
    let targets: Vec<_> = site.take().into_iter().map(|s| s.target).collect();
    assert_eq!(targets, ["/c/1", "/c/2"]);

    // Not asked about what the rules do not follow: a 3xx without Location.
    let calls = Arc::new(Mutex::new(0));
    let counted = calls.clone();
    let policy = Policy::custom(move |attempt| {
        *counted.lock().unwrap() += 1;
        attempt.follow()
    });
    site.route("/no-location", |_| Reply::Now(text(300, "choices")));
    let response = client
        .get(&site.url("/no-location"))
        .redirect(policy)
        .await
        .unwrap();
    assert_eq!(response.status(), 300);
    assert_eq!(*calls.lock().unwrap(), 0);
}

#[tokio::test]
async fn a_request_s_policy_overrides_the_client_s() {
    let site = Site::start().await;
    chain(&site, 3, 302);
    let url = site.url("/hop/3");
    let none = builder().redirect(Policy::none()).build().unwrap();
    assert_eq!(none.get(&url).await.unwrap().status(), 302);
    let response = none.get(&url).redirect(Policy::default()).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.url().to_string(), site.url("/hop/0"));

    let default = client();
    let response = default.get(&url).redirect(Policy::none()).await.unwrap();
    assert_eq!(response.status(), 302);
    assert_eq!(response.url().to_string(), url);
    assert_eq!(default.get(&url).await.unwrap().status(), 200);

    let one = builder().redirect(Policy::limited(1)).build().unwrap();
    assert!(one.get(&url).await.unwrap_err().is_redirect());
    let response = one.get(&url).redirect(Policy::limited(3)).await.unwrap();
    assert_eq!(response.status(), 200);
    // `Client::request` takes the client's.
    let req = http::Request::get(&url).body(()).unwrap();
    assert!(one.request(req).await.unwrap_err().is_redirect());
}

/// The credentials a test sends, and what it checks arrived.
const SENSITIVE: [(&str, &str); 5] = [
    ("cookie", "sid=1"),
    ("cookie2", "$Version=1"),
    ("proxy-authorization", "Basic cHJveHk6cHc="),
    // Go 1.24.4, CVE-2025-4673.
    ("proxy-authenticate", "Basic realm=p"),
    ("www-authenticate", "Basic realm=x"),
];

fn with_credentials(builder: pool_http::RequestBuilder) -> pool_http::RequestBuilder {
    SENSITIVE
        .iter()
        .fold(builder.bearer_auth("t0ken"), |b, (k, v)| b.header(*k, *v))
        .header("x-api-version", "7")
}

#[tokio::test]
async fn credentials_go_to_the_same_host_only() {
    let site = Site::start().await;
    let other_port = Site::start().await;
    let port = site.port();
    site.redirect("/same", 302, "/same-end");
    site.redirect("/same-absolute", 301, &site.url("/same-end"));
    // Go compares host names without the port: another port of the host keeps them.
    site.redirect("/other-port", 302, &other_port.url("/end"));
    site.redirect("/cross", 302, &site.at("localhost", "/cross-end"));
    site.redirect("/cross-307", 307, &site.at("localhost", "/cross-end"));
    let client = client();
    let mut sent_on = 0;
    for path in ["/same", "/same-absolute", "/other-port"] {
        let response = with_credentials(client.get(&site.url(path))).await.unwrap();
        assert_eq!(response.status(), 200);
        let mut seen = site.take();
        seen.extend(other_port.take());
        let last = &seen[1];
        assert_eq!(last.header("authorization"), Some("Bearer t0ken"), "{path}");
        for (name, value) in SENSITIVE {
            assert_eq!(last.header(name), Some(value), "{path}: {name}");
        }
        assert_eq!(last.header("x-api-version"), Some("7"));
    }
    for path in ["/cross", "/cross-307"] {
        let response = with_credentials(client.post(&site.url(path)).body("data"))
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let seen = site.take();
        assert_eq!(seen.len(), 2);
        assert_eq!(seen[0].header("authorization"), Some("Bearer t0ken"));
        let last = &seen[1];
        assert_eq!(last.header("host"), Some(&*format!("localhost:{port}")));
        assert_eq!(last.header("authorization"), None, "{path}");
        for (name, _) in SENSITIVE {
            assert_eq!(
                last.header(name),
                None,
                "{path}: {name} went to another host"
            );
        }
        assert_eq!(
            last.header("x-api-version"),
            Some("7"),
            "other headers go on"
        );
        assert_eq!(last.header("referer"), Some(&*site.url(path)));
        sent_on += usize::from(last.body == "data");
    }
    // The body of a 307 goes on to the other host (Go's rule), without the credentials.
    assert_eq!(sent_on, 1);
}

#[tokio::test]
async fn credentials_stripped_once_never_come_back() {
    let site = Site::start().await;
    site.redirect("/away", 302, &site.at("localhost", "/back"));
    site.redirect("/back", 302, &site.url("/home"));
    let client = client();
    let response = with_credentials(client.get(&site.url("/away")))
        .await
        .unwrap();
    assert_eq!(response.url().to_string(), site.url("/home"));
    let seen = site.take();
    assert_eq!(seen.len(), 3);
    for last in &seen[1..] {
        assert_eq!(last.header("authorization"), None, "{}", last.target);
        assert_eq!(last.header("cookie"), None, "{}", last.target);
    }
}

#[tokio::test]
async fn url_userinfo_credentials_go_on_the_first_request_only() {
    // Go's `send` puts them on its own copy of the request, and a redirect copies the
    // caller's headers: not even the same host gets them again.
    let site = Site::start().await;
    let port = site.port();
    site.redirect("/u/relative", 302, "/u/end");
    site.redirect("/u/absolute", 302, &site.url("/u/end"));
    site.redirect("/u/cross", 302, &site.at("localhost", "/u/end"));
    site.redirect("/u/307", 307, "/u/end");
    let want = basic("user:p@ss");
    let client = client();
    for path in ["/u/relative", "/u/absolute", "/u/cross", "/u/307"] {
        let url = format!("http://user:p%40ss@127.0.0.1:{port}{path}?k=v");
        let response = client.get(&url).await.unwrap();
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            !response.url().to_string().contains("p%40ss"),
            "{path}: the password travels on in the URL: {}",
            response.url()
        );
        let seen = site.take();
        assert_eq!(seen.len(), 2, "{path}");
        assert_eq!(seen[0].header("authorization"), Some(&*want));
        let last = &seen[1];
        assert_eq!(last.header("authorization"), None, "{path}");
        assert_eq!(
            last.header("referer"),
            Some(&*format!("http://127.0.0.1:{port}{path}?k=v")),
            "{path}: the Referer has no userinfo"
        );
    }
}

#[tokio::test]
async fn a_callers_authorization_beats_the_userinfo_and_follows_the_same_host() {
    let site = Site::start().await;
    let port = site.port();
    site.redirect("/a/same", 302, "/a/end");
    site.redirect("/a/cross", 302, &site.at("localhost", "/a/end"));
    let client = client();
    for (path, expected) in [("/a/same", Some("Bearer t0ken")), ("/a/cross", None)] {
        let url = format!("http://user:pw@127.0.0.1:{port}{path}");
        client.get(&url).bearer_auth("t0ken").await.unwrap();
        let seen = site.take();
        assert_eq!(seen[0].header("authorization"), Some("Bearer t0ken"));
        assert_eq!(seen[1].header("authorization"), expected, "{path}");
    }
}

#[tokio::test]
async fn the_referer_is_the_previous_url_and_the_caller_s_own_stays() {
    let site = Site::start().await;
    site.redirect("/r/1", 302, "/r/2?page=2");
    site.redirect("/r/2", 302, "/r/3");
    let client = client();
    client.get(&site.url("/r/1?page=1")).await.unwrap();
    let seen = site.take();
    let referers: Vec<_> = seen.iter().map(|s| s.header("referer")).collect();
    let (first, second) = (site.url("/r/1?page=1"), site.url("/r/2?page=2"));
    assert_eq!(referers, [None, Some(&*first), Some(&*second)]);

    client
        .get(&site.url("/r/1"))
        .header("referer", "https://app.example/page")
        .await
        .unwrap();
    let seen = site.take();
    for s in &seen {
        assert_eq!(
            s.header("referer"),
            Some("https://app.example/page"),
            "the caller's Referer on every hop: {}",
            s.target
        );
    }
}

#[tokio::test]
async fn from_https_to_http_neither_credentials_nor_referer_go() {
    let (secure, tls) = Site::start_tls().await;
    let plain = Site::start().await;
    secure.redirect("/down", 302, &plain.url("/plain"));
    secure.redirect("/s1", 302, "/s2");
    secure.redirect("/s2", 302, &plain.url("/plain"));
    let client = builder().tls(tls).build().unwrap();
    for path in ["/down", "/s1"] {
        let response = with_credentials(client.get(&secure.url(path)))
            .await
            .unwrap();
        assert_eq!(response.url().to_string(), plain.url("/plain"));
        let secure_seen = secure.take();
        if path == "/s1" {
            assert_eq!(secure_seen[1].header("referer"), Some(&*secure.url("/s1")));
            assert_eq!(secure_seen[1].header("authorization"), Some("Bearer t0ken"));
        }
        let last = plain.take().pop().unwrap();
        assert_eq!(last.header("authorization"), None, "{path}: sent in clear");
        assert_eq!(last.header("cookie"), None, "{path}: sent in clear");
        assert_eq!(
            last.header("referer"),
            None,
            "{path}: an https URL leaked to http"
        );
    }
}

#[tokio::test]
async fn a_callers_referer_is_not_sent_from_https_to_http_and_comes_back_on_https() {
    // Go's refererForURL returns "" on a downgrade before it looks at the caller's Referer.
    let (secure, tls) = Site::start_tls().await;
    let plain = Site::start().await;
    secure.redirect("/cr/down", 302, &plain.url("/cr/plain"));
    plain.redirect("/cr/plain", 302, &secure.url("/cr/up"));
    secure.redirect("/cr/up", 302, "/cr/end");
    let client = builder().tls(tls).build().unwrap();
    let response = client
        .get(&secure.url("/cr/down"))
        .header("referer", "https://app.example/page")
        .await
        .unwrap();
    assert_eq!(response.url().to_string(), secure.url("/cr/end"));
    let on_plain = plain.take();
    assert_eq!(on_plain.len(), 1);
    assert_eq!(
        on_plain[0].header("referer"),
        None,
        "the caller's https Referer leaked to http"
    );
    let on_secure = secure.take();
    let referers: Vec<_> = on_secure.iter().map(|s| s.header("referer")).collect();
    let callers = Some("https://app.example/page");
    assert_eq!(referers, [callers, callers, callers], "{on_secure:?}");
}

#[tokio::test]
async fn a_custom_policy_that_always_follows_stops_at_the_hard_limit() {
    let site = Site::start().await;
    site.redirect("/forever", 302, "/forever");
    let client = builder()
        .redirect(Policy::custom(|attempt| attempt.follow()))
        .build()
        .unwrap();
    let err = client.get(&site.url("/forever")).await.unwrap_err();
    assert!(err.is_redirect(), "{err:?}");
    assert!(
        err.to_string().ends_with("stopped after 100 redirects"),
        "{err}"
    );
    assert_eq!(pool_http::redirect::MAX_REDIRECTS, 100);
    assert_eq!(
        site.take().len(),
        101,
        "the first request and 100 redirects"
    );
    // A limit above it is cut to it too.
    let err = client
        .get(&site.url("/forever"))
        .redirect(Policy::limited(1000))
        .await
        .unwrap_err();
    assert!(err.to_string().ends_with("stopped after 100 redirects"));
    assert_eq!(site.take().len(), 101);
}

#[tokio::test]
async fn a_callers_host_header_stays_on_relative_redirects_only() {
    let site = Site::start().await;
    site.redirect("/vhost", 301, "/vhost/");
    site.redirect("/vhost/", 302, &site.at("localhost", "/elsewhere"));
    let client = client();
    let response = client
        .get(&site.url("/vhost"))
        .header("host", "app.internal")
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let hosts: Vec<_> = site
        .take()
        .iter()
        .map(|s| s.header("host").unwrap().to_owned())
        .collect();
    let localhost = format!("localhost:{}", site.port());
    assert_eq!(hosts, ["app.internal", "app.internal", &localhost]);
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
async fn a_location_with_userinfo_never_gets_the_callers_credentials_nor_shows_its_own() {
    let site = Site::start().await;
    let port = site.port();
    site.redirect("/ui/next", 302, "/ui/end");
    // Its own password; and the first host's name as userinfo, to look like it.
    let locations = [
        format!("http://evil:S3cr3t@localhost:{port}/ui/next"),
        format!("http://127.0.0.1:{port}@localhost:{port}/ui/next"),
    ];
    let client = client();
    for (i, location) in locations.iter().enumerate() {
        site.redirect(&format!("/ui/{i}"), 302, location);
        let response = client
            .get(&site.url(&format!("/ui/{i}")))
            .bearer_auth("t0ken")
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert!(!format!("{response:?}").contains("S3cr3t"));
        let seen = site.take();
        assert_eq!(seen.len(), 3);
        for s in &seen[1..] {
            let auth = s.header("authorization");
            assert_ne!(auth, Some("Bearer t0ken"), "{location}: {}", s.target);
            assert_eq!(s.header("host"), Some(&*format!("localhost:{port}")));
            assert!(!s.target.contains("S3cr3t"));
        }
        assert_eq!(
            seen[2].header("referer"),
            Some(&*format!("http://localhost:{port}/ui/next")),
            "no userinfo in the Referer"
        );
    }
}

#[tokio::test]
async fn a_redirect_loop_ends_at_the_limit() {
    let site = Site::start().await;
    site.redirect("/loop/a", 302, &site.at("localhost", "/loop/b"));
    site.redirect("/loop/b", 302, &site.url("/loop/a"));
    site.redirect("/loop/self", 307, "/loop/self");
    let client = client();
    for path in ["/loop/a", "/loop/self"] {
        let err = client.get(&site.url(path)).await.unwrap_err();
        assert!(err.is_redirect(), "{path}: {err:?}");
        assert!(err.to_string().ends_with("stopped after 10 redirects"));
        assert_eq!(site.take().len(), 11, "{path}");
    }
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
