//! [`Client`]: requests over the keyed pool, with Go's retry rule, redirects, decompression,
//! cookies and a whole-request timeout.
//!
//! # How a request flows
//! 0. `execute`: the request's options over the client's; the whole-request timeout covers
//!    every redirect hop; each hop is kept as given (`Snapshot`: what a retry and the
//!    redirects start from), asks for compression (unless the caller set
//!    `Accept-Encoding`), takes the jar's cookies (once per hop), and runs the steps below;
//!    a 3xx the redirect rules follow is dropped (drained) and the next request made from
//!    it; the last response is decoded.
//! 1. The URL gives the [`Origin`] as routed (direct, through a forward proxy, or through a
//!    `CONNECT` tunnel); the request target becomes origin-form (absolute-form for a forward
//!    proxy) and `Host` is set.
//! 2. A connection of that origin comes from the pool (idle, or dialled within
//!    `max_conns_per_host`), and hyper is asked whether it can take a request.
//! 3. The request is sent; the response head comes back with a [`Body`] that holds the
//!    connection until the body's end (see [`body`](crate::body)).
//! 4. A failure on a *reused* connection is retried on another one when nothing was written,
//!    or when the request is replayable (idempotent method or an idempotency-key header, and
//!    a body in memory) and the server closed the connection before a byte of response.
//!    A fresh connection never retries. This is Go's `shouldRetryRequest`. A reused
//!    HTTP/1.1 connection that is not ready for the request within [`READY_WAIT`] (its last
//!    request may still be being written to a server that stopped reading) is closed and
//!    the request, of which nothing was written, goes to another one.
//!
//! # URL userinfo
//! `http://user:password@host/` never puts `user:password` on the wire: not in the target,
//! not in `Host`, not in HTTP/2's `:authority`. As Go's `http.Client` does, it becomes an
//! `Authorization: Basic` header (the percent-decoded user and password) unless the request
//! has an `Authorization` header already.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use http::{Method, Request, Uri};
use parking_lot::Mutex;
use pool_core::{KeyedBuilder, KeyedPool, Stats};
use tokio::time::Instant;
use tracing::Instrument;

use crate::body::Body;
use crate::builder::RequestBuilder;
use crate::config::{ClientBuilder, Settings};
use crate::h2::H2Conns;
use crate::manager::{Counters, Dialer};
use crate::redirect::{Follow, Policy};
use crate::request::{RequestBody, Snapshot, prepare};
use crate::{Error, Origin, Phase, Response, decompress};

mod exchange;

use exchange::Call;
#[cfg(doc)]
use exchange::READY_WAIT;

/// A response head with its streaming body, before it becomes a [`Response`].
type Head = http::Response<Body>;

/// What one request may set in place of the client's knobs (see [`RequestBuilder`]).
#[derive(Default)]
pub(crate) struct Options {
    /// `Some(None)`: no timeout for this request.
    pub timeout: Option<Option<Duration>>,
    pub redirect: Option<Policy>,
    pub body_limit: Option<usize>,
}

/// An HTTP client (HTTP/1.1, and HTTP/2 where negotiated) over a keyed connection pool, with
/// Go `http.Client`'s and `http.Transport`'s knobs and rules, minus their pitfalls: an unread body is drained (within a budget) instead of killing
/// the connection, and connections released above the idle limit get a grace period instead
/// of being closed in the middle of a burst.
///
/// Cheap to clone (one pool shared by the clones); make one per program, not per request.
/// `Send + Sync`. Its `Debug` shows the pool's stats, never a URL.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pool_http::Error> {
/// let client = pool_http::Client::new()?;
/// let response = client.get("http://127.0.0.1:8080/health").await?;
/// println!("{}", response.status());
/// let text = response.into_body().text().await?; // the connection is back in the pool here
/// # drop(text);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// The pool, once started: at `build` inside a runtime, else at the first request.
    pool: OnceLock<KeyedPool<Dialer>>,
    /// What starts the pool, until it is started (or the error that start met).
    start: Mutex<Start>,
    /// [`Client::close`] ran before the pool started: it starts closed.
    closed: AtomicBool,
    settings: Arc<Settings>,
    counters: Arc<Counters>,
    pub(crate) h2: Arc<H2Conns>,
}

/// A request made outside a tokio runtime.
fn no_runtime() -> Error {
    Error::config(
        "runtime",
        "is missing: send requests inside a tokio runtime (connections are made on the \
         runtime of the request that needs them)",
    )
}

enum Start {
    Pending(Box<KeyedBuilder<Dialer>>),
    Started,
    Failed(Error),
}

impl Inner {
    /// The pool, started on first use inside a runtime.
    ///
    /// # Errors
    /// A config error (knob `runtime`) outside a tokio runtime, or the pool's own config
    /// error.
    #[inline]
    pub(crate) fn pool(&self) -> Result<&KeyedPool<Dialer>, Error> {
        match self.pool.get() {
            Some(pool) => Ok(pool),
            None => self.start_pool(),
        }
    }

    /// The pool if it was started.
    pub(crate) fn started_pool(&self) -> Option<&KeyedPool<Dialer>> {
        self.pool.get()
    }

    #[cold]
    fn start_pool(&self) -> Result<&KeyedPool<Dialer>, Error> {
        let mut start = self.start.lock();
        if let Some(pool) = self.pool.get() {
            return Ok(pool);
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(no_runtime());
        }
        // Failed until it starts: a panic in the pool's start leaves an error, not a state
        // that claims a pool.
        let panicked = Error::config("runtime", "the pool's start panicked");
        let builder = match std::mem::replace(&mut *start, Start::Failed(panicked)) {
            Start::Pending(builder) => builder,
            Start::Failed(e) => {
                *start = Start::Failed(e.clone());
                return Err(e);
            }
            Start::Started => unreachable!("the pool is set when started"),
        };
        match builder.build() {
            Ok(pool) => {
                // Under the start lock, which `close` takes too: a close either came before
                // (seen here) or comes after (and sees the pool).
                if self.closed.load(Ordering::Acquire) {
                    pool.close();
                }
                *start = Start::Started;
                Ok(self.pool.get_or_init(|| pool))
            }
            Err(e) => {
                let e = Error::pool(e);
                *start = Start::Failed(e.clone());
                Err(e)
            }
        }
    }
}

/// What a [`Client`] did, beside its pool's [`Stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// The pool's counters and gauges, over all hosts (`created` counts dials).
    pub pool: Stats,
    /// Requests started, each redirect hop counted.
    pub requests: u64,
    /// Tries repeated on another connection after a reused one failed.
    pub retried: u64,
    /// Bodies that reached their end with a keep-alive response: read to the end, or
    /// dropped early and then drained (those count in `drained` too).
    pub body_eof: u64,
    /// Bodies dropped early whose rest was read within the drain budget: their connections
    /// went back to the pool.
    pub drained: u64,
    /// Bodies dropped early that did not fit the drain budget (or with drain off): their
    /// connections were closed.
    pub drain_failed: u64,
    /// HTTP/2 streams open now, over all hosts (an HTTP/2 connection is `in_use` while it
    /// carries at least one).
    pub streams: usize,
    /// Responses that did not allow another request (`Connection: close` on the response or
    /// the request, close-delimited body, HTTP/1.0, `disable_keep_alives`, a `101` whose
    /// connection went to the caller).
    pub not_reusable: u64,
    /// Requests abandoned while their response was awaited (a timeout, or the caller left)
    /// whose response still came within the drain budget: the connection was kept (and its
    /// body drained) instead of closed.
    pub rescued: u64,
}

/// Sends `req` (or returns the builder's error) with `options` in place of the client's
/// knobs: the whole-request timeout over every redirect, each hop through `Client::one`,
/// decompression of the last. One future for [`RequestBuilder::send`] and
/// [`Client::request`], owning its client: no layer of futures between the caller and the
/// request (each would copy the whole request's state when made).
pub(crate) async fn execute(
    client: Client,
    req: Result<Request<RequestBody>, Error>,
    options: Options,
) -> Result<Response, Error> {
    let req = req?;
    if tokio::runtime::Handle::try_current().is_err() {
        return Err(no_runtime());
    }
    let settings = &client.inner.settings;
    let timeout = options.timeout.unwrap_or(settings.timeout);
    let body_limit = options.body_limit.or(settings.body_limit);
    let policy = options.redirect.as_ref().unwrap_or(&settings.redirect);
    // A deadline past what an `Instant` holds is no deadline (`Instant + Duration` panics
    // on overflow; the builder caps `timeout` at `MAX_DURATION`).
    let timeout = timeout.and_then(|t| Some((t, Instant::now().checked_add(t)?)));
    let (head, url, origin) = match timeout {
        None => client.hops(req, policy, None, None, None).await?,
        Some((t, deadline)) => {
            // For the timeout's message: the origin (as routed) of the hop under way, which
            // `hops` keeps here as it follows redirects.
            let mut hop = req.uri().clone();
            // Made in place (a future in a local would be held twice: the local, then the
            // timeout's).
            match tokio::time::timeout_at(
                deadline,
                client.hops(req, policy, Some(deadline), Some(t), Some(&mut hop)),
            )
            .await
            {
                Ok(hops) => hops?,
                Err(_) => {
                    let e = Error::timeout_after(Phase::Request, t);
                    return Err(match Origin::routed(&hop, &settings.proxies) {
                        Ok(origin) => e.at(&origin),
                        Err(_) => e,
                    });
                }
            }
        }
    };
    Ok(Response::new(head, url, origin, body_limit))
}

impl Client {
    /// A client with Go's `DefaultTransport` knobs and our grace and drain defaults, with
    /// HTTPS (feature `rustls`, default), redirects and gzip as Go's `http.Client`.
    ///
    /// Works outside a tokio runtime too (in a `static`, before the runtime starts): the
    /// pool then starts at the first request, on that request's runtime.
    ///
    /// # Errors
    /// None with the default knobs today; the `Result` leaves room for a default that can
    /// fail (see [`ClientBuilder::build`]).
    pub fn new() -> Result<Client, Error> {
        ClientBuilder::default().build()
    }

    /// A [`ClientBuilder`] with every knob at its default.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    /// A client whose pool `pool` builds: now when inside a runtime (so a config error
    /// shows at `build`), else at the first request.
    pub(crate) fn new_inner(
        settings: Arc<Settings>,
        pool: impl FnOnce(Dialer) -> KeyedBuilder<Dialer>,
    ) -> Result<Client, Error> {
        let client = Client {
            inner: Arc::new_cyclic(|me: &Weak<Inner>| {
                let dialer = Dialer::new(settings.clone());
                dialer.serve(me.clone());
                Inner {
                    pool: OnceLock::new(),
                    start: Mutex::new(Start::Pending(Box::new(pool(dialer)))),
                    closed: AtomicBool::new(false),
                    settings,
                    counters: Arc::default(),
                    h2: Arc::default(),
                }
            }),
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            client.inner.pool()?;
        }
        Ok(client)
    }

    /// A request of `method` to `url`, to build and send (see [`RequestBuilder`]).
    pub fn request_builder(&self, method: Method, url: &str) -> RequestBuilder {
        RequestBuilder::new(self.clone(), method, url)
    }

    /// `GET url`: await it, or add to it first (it is a [`RequestBuilder`]).
    ///
    /// ```no_run
    /// # async fn f(client: pool_http::Client) -> Result<(), pool_http::Error> {
    /// let page = client.get("https://example.com/").await?.text().await?;
    /// let items = client.get("https://example.com/items").query(&[("page", "2")]).send().await?;
    /// # Ok(()) }
    /// ```
    pub fn get(&self, url: &str) -> RequestBuilder {
        self.request_builder(Method::GET, url)
    }

    /// `POST url`, to build and send (see [`RequestBuilder`]).
    pub fn post(&self, url: &str) -> RequestBuilder {
        self.request_builder(Method::POST, url)
    }

    /// `PUT url`, to build and send (see [`RequestBuilder`]).
    pub fn put(&self, url: &str) -> RequestBuilder {
        self.request_builder(Method::PUT, url)
    }

    /// `PATCH url`, to build and send (see [`RequestBuilder`]).
    pub fn patch(&self, url: &str) -> RequestBuilder {
        self.request_builder(Method::PATCH, url)
    }

    /// `DELETE url`, to build and send (see [`RequestBuilder`]).
    pub fn delete(&self, url: &str) -> RequestBuilder {
        self.request_builder(Method::DELETE, url)
    }

    /// `HEAD url`, to build and send (see [`RequestBuilder`]).
    pub fn head(&self, url: &str) -> RequestBuilder {
        self.request_builder(Method::HEAD, url)
    }

    /// Sends a request (its URI must be absolute: `http://host[:port]/path`) and returns the
    /// response once its head arrived; the body streams. The client's knobs apply as to a
    /// [`RequestBuilder`]: redirects are followed by its policy, the body is decoded when
    /// the client asked for an encoding, the jar's cookies go with it.
    ///
    /// # Errors
    /// [`is_invalid_url`](Error::is_invalid_url), [`is_connect`](Error::is_connect) (with
    /// [`is_connect_refused`](Error::is_connect_refused), [`is_dns`](Error::is_dns),
    /// [`is_proxy`](Error::is_proxy)), [`is_timeout`](Error::is_timeout) with its [`Phase`],
    /// [`is_closed_before_response`](Error::is_closed_before_response),
    /// [`is_redirect`](Error::is_redirect), [`is_closed`](Error::is_closed) after
    /// [`close`](Client::close); reading the body, [`is_decode`](Error::is_decode).
    ///
    /// # Cancel safety
    /// Dropping the future before the request was written gives the connection back; after,
    /// the connection is closed (a half-sent request never reaches another caller).
    pub fn request<B: Into<RequestBody>>(
        &self,
        req: Request<B>,
    ) -> impl Future<Output = Result<Response, Error>> + Send + 'static {
        execute(self.clone(), Ok(req.map(Into::into)), Options::default())
    }

    /// The request and the redirects it is sent on to; the last response, its URL (without
    /// userinfo) and origin. `hop`, when given, follows the URL of the hop under way (for a
    /// timeout's message).
    async fn hops(
        &self,
        mut req: Request<RequestBody>,
        policy: &Policy,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
        mut hop: Option<&mut Uri>,
    ) -> Result<(Head, Uri, Origin), Error> {
        let mut follow = Follow::new(policy);
        loop {
            // The hop as given: what a retry sends again and the redirects start from.
            let mut sent = Snapshot::of(&req);
            let (origin, mut head, decoding) = self.one(req, &mut sent, deadline, timeout).await?;
            #[cfg(feature = "cookies")]
            if let Some(jar) = &self.inner.settings.cookies {
                jar.set_cookies(
                    sent.uri(),
                    &mut head.headers().get_all(http::header::SET_COOKIE).iter(),
                );
            }
            match follow.next(&sent, &head).map_err(|e| e.at(&origin))? {
                // Dropped: drained within the budget, its connection pooled.
                Some(next) => {
                    if let Some(hop) = hop.as_deref_mut() {
                        hop.clone_from(next.uri());
                    }
                    req = next;
                }
                None => {
                    if decoding {
                        decompress::decode(&mut head);
                    }
                    return Ok((head, sent.into_url(), origin));
                }
            }
        }
    }

    /// What the first try of a hop adds to it: the client's `Accept-Encoding` (the returned
    /// flag: the response is to be decoded), the jar's cookies (kept in `sent` for the
    /// hop's retries: the jar is asked once per hop, as Go), then the wire form (`prepare`).
    fn on_wire(
        &self,
        mut req: Request<RequestBody>,
        sent: &mut Snapshot,
    ) -> Result<(Origin, Request<RequestBody>, bool), Error> {
        let settings = &self.inner.settings;
        let decoding = decompress::ask(settings, &mut req);
        #[cfg(feature = "cookies")]
        if let Some(jar) = &settings.cookies {
            sent.cookie = crate::cookie::add_to(&**jar, &mut req);
        }
        #[cfg(not(feature = "cookies"))]
        let _ = sent;
        let (origin, req) = prepare(req, settings)?;
        Ok((origin, req, decoding))
    }

    /// The hop again for a retry, as its first try sent it; `None` for a streamed body.
    fn again(&self, sent: &Snapshot) -> Option<Request<RequestBody>> {
        let settings = &self.inner.settings;
        let mut req = sent.request()?;
        decompress::ask(settings, &mut req);
        if let Some(cookie) = &sent.cookie {
            req.headers_mut()
                .insert(http::header::COOKIE, cookie.clone());
        }
        // It was prepared once: the same URL and settings prepare again.
        prepare(req, settings).ok().map(|(_, req)| req)
    }

    /// One request on the wire (with Go's retries on another connection), in its span; the
    /// origin, the response, and whether it is to be decoded.
    async fn one(
        &self,
        req: Request<RequestBody>,
        sent: &mut Snapshot,
        deadline: Option<Instant>,
        timeout: Option<Duration>,
    ) -> Result<(Origin, Head, bool), Error> {
        Counters::bump(&self.inner.counters.requests);
        let (origin, req, decoding) = self.on_wire(req, sent)?;
        let span = tracing::debug_span!(
            target: "pool_http",
            "request",
            method = %req.method(),
            origin = %origin.target(),
            status = tracing::field::Empty,
            reused = tracing::field::Empty,
            retries = tracing::field::Empty,
            error = tracing::field::Empty,
        );
        let call = Call {
            deadline,
            timeout,
            span: &span,
        };
        // Every error of the request names its origin (never the URL's userinfo).
        let result = self
            .send(&origin, req, sent, call)
            .instrument(span.clone())
            .await
            .map_err(|e| e.at(&origin));
        if !span.is_disabled() {
            match &result {
                Ok(response) => span.record("status", response.status().as_u16()),
                Err(e) => span.record("error", tracing::field::display(e)),
            };
        }
        result.map(|head| (origin, head, decoding))
    }

    /// Counters and gauges over all hosts.
    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            pool: self
                .inner
                .started_pool()
                .map(KeyedPool::stats)
                .unwrap_or_default(),
            requests: load(&c.requests),
            retried: load(&c.retried),
            body_eof: load(&c.body_eof),
            drained: load(&c.drained),
            drain_failed: load(&c.drain_failed),
            not_reusable: load(&c.not_reusable),
            rescued: load(&c.rescued),
            streams: self.inner.h2.total_streams(),
        }
    }

    /// Feature `metrics`: records the client's stats through the `metrics` facade, labelled
    /// `pool = name`. Call it periodically (each scrape, or every few seconds). It exports
    /// the pool's series as pool-core's `KeyedPool::record_metrics` does (totals, the 20
    /// hosts with the most open connections labelled `key = <origin>`, the rest summed under
    /// `key = "other"`: a client that meets many hosts keeps a bounded number of series),
    /// and the client's own: the counters `http_client_requests`, `http_client_retried`,
    /// `http_client_body_eof`, `http_client_drained`, `http_client_drain_failed`,
    /// `http_client_not_reusable`, `http_client_rescued`, and the gauge
    /// `http_client_streams`. Origins are `scheme://host:port`: never userinfo, path or
    /// query. Nothing is recorded before the first request started the pool but the
    /// client's counters.
    #[cfg(feature = "metrics")]
    #[cfg_attr(docsrs, doc(cfg(feature = "metrics")))]
    pub fn record_metrics(&self, name: &str) {
        if let Some(pool) = self.inner.started_pool() {
            pool.record_metrics(name);
        }
        let s = self.stats();
        let labels = [("pool", name.to_owned())];
        let counters = [
            ("http_client_requests", s.requests),
            ("http_client_retried", s.retried),
            ("http_client_body_eof", s.body_eof),
            ("http_client_drained", s.drained),
            ("http_client_drain_failed", s.drain_failed),
            ("http_client_not_reusable", s.not_reusable),
            ("http_client_rescued", s.rescued),
        ];
        for (series, value) in counters {
            metrics::counter!(series, &labels).absolute(value);
        }
        metrics::gauge!("http_client_streams", &labels).set(s.streams as f64);
    }

    /// Feature `testing`: the next `n` socket writes of this client's connections fail as
    /// writes to a socket the server reset do (`EPIPE`), before a byte of them leaves. For
    /// tests of what happens to a request that provably never reached the server.
    #[cfg(feature = "testing")]
    pub fn fail_next_writes(&self, n: usize) {
        self.inner
            .settings
            .fail_writes
            .store(n, std::sync::atomic::Ordering::Release);
    }

    /// HTTP/2 streams open now on `origin`'s shared connection.
    pub fn host_streams(&self, origin: &Origin) -> usize {
        self.inner.h2.streams(origin)
    }

    /// The pool's stats for one host, or `None` when it has no connection and nobody waits.
    pub fn host_stats(&self, origin: &Origin) -> Option<Stats> {
        self.inner.started_pool()?.key_stats(origin)
    }

    /// Closes the client, for HTTP/1.1 and HTTP/2 alike: requests that wait or start later
    /// fail with [`is_closed`](Error::is_closed); idle connections close now; requests in
    /// flight (HTTP/2 streams included) finish, and their connections close when their
    /// bodies end.
    pub fn close(&self) {
        {
            // The start lock orders this against a pool starting now (see `start_pool`).
            let _start = self.inner.start.lock();
            self.inner.closed.store(true, Ordering::Release);
        }
        if let Some(pool) = self.inner.started_pool() {
            pool.close();
        }
        self.inner.h2.close();
    }

    /// [`close`](Client::close), then waits up to `timeout` for every connection to close.
    ///
    /// # Errors
    /// [`is_timeout`](Error::is_timeout) when connections were still open at the deadline.
    pub async fn close_and_wait(&self, timeout: Duration) -> Result<(), Error> {
        self.close();
        let Some(pool) = self.inner.started_pool() else {
            return Ok(());
        };
        pool.close_and_wait(timeout)
            .await
            .map_err(|_| Error::timeout_after(Phase::Close, timeout))
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("pool", &self.inner.started_pool())
            .finish_non_exhaustive()
    }
}
