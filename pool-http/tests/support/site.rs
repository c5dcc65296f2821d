//! [`Site`], the servers of the redirect tests (`redirect.rs`, `redirect_policy.rs`,
//! `redirect_credentials.rs`): a hyper server on loopback whose routes are set after it
//! started, and which logs every request, body included; the responses its routes give; and
//! the client the tests use.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::HeaderValue;
use http::{HeaderMap, Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::{Request, Response};
use pool_http::{Client, ClientBuilder, Drain};

use super::{ResBody, Server, full, trusting};

/// A request as a server got it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: Method,
    /// Path and query, as on the request line.
    pub target: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.to_str().unwrap())
    }
}

/// What a route answers.
pub enum Reply {
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
pub struct Site {
    pub server: Server,
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
    pub async fn start() -> Site {
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
    pub async fn start_tls() -> (Site, rustls::ClientConfig) {
        let (routes, log) = (Routes::default(), Log::default());
        let (server, root) =
            Server::start_tls(&[b"http/1.1"], serving(routes.clone(), log.clone())).await;
        let tls = trusting(root);
        let site = Site {
            server,
            scheme: "https",
            routes,
            log,
        };
        (site, tls)
    }

    pub fn port(&self) -> u16 {
        self.server.addr.port()
    }

    /// `path` on this site, as `127.0.0.1`.
    pub fn url(&self, path: &str) -> String {
        self.at("127.0.0.1", path)
    }

    /// `path` on this site, named `host` (`localhost` is another host of the same server).
    pub fn at(&self, host: &str, path: &str) -> String {
        format!("{}://{host}:{}{path}", self.scheme, self.port())
    }

    pub fn route(&self, target: &str, route: impl Fn(&Seen) -> Reply + Send + Sync + 'static) {
        let route: Route = Arc::new(route);
        self.routes.lock().unwrap().insert(target.to_owned(), route);
    }

    /// `target` answers `status` with `Location: location` (the raw bytes) and a short body.
    pub fn redirect(&self, target: &str, status: u16, location: &str) {
        let location = location.to_owned();
        self.route(target, move |_| {
            Reply::Now(moved(status, &location, full(5)))
        });
    }

    /// Every request so far, the log emptied.
    pub fn take(&self) -> Vec<Seen> {
        std::mem::take(&mut *self.log.lock().unwrap())
    }

    /// Requests so far whose target is `target`.
    pub fn hits(&self, target: &str) -> usize {
        let log = self.log.lock().unwrap();
        log.iter().filter(|s| s.target == target).count()
    }
}

pub fn text(status: u16, body: &str) -> Response<ResBody> {
    let mut response = Response::new(
        http_body_util::Full::new(Bytes::from(body.to_owned()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response
}

pub fn moved(status: u16, location: &str, body: ResBody) -> Response<ResBody> {
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(status).unwrap();
    response.headers_mut().insert(
        "location",
        HeaderValue::from_bytes(location.as_bytes()).unwrap(),
    );
    response
}

/// Ten seconds for any request (a hang fails as a timeout), and a drain budget in time that
/// a loaded machine meets (the subject is what is drained, not how fast).
pub fn builder() -> ClientBuilder {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .drain(Drain::default().with_max_time(Duration::from_secs(5)))
}

pub fn client() -> Client {
    builder().build().unwrap()
}

/// `n` hops on `site`: `/hop/n` redirects to `/hop/n-1`, ..., `/hop/1` to `/hop/0`.
pub fn chain(site: &Site, n: usize, status: u16) {
    for i in 1..=n {
        site.redirect(&format!("/hop/{i}"), status, &format!("/hop/{}", i - 1));
    }
}
