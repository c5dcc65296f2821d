//! [`Client`]: requests over the keyed pool, with Go's retry rule and a whole-request
//! timeout.
//!
//! # How a request flows
//! 1. The URL gives the [`Origin`]; the request target becomes origin-form and `Host` is set.
//! 2. A connection of that origin comes from the pool (idle, or dialled within
//!    `max_conns_per_host`), and hyper is asked whether it can take a request.
//! 3. The request is sent; the response head comes back with a [`Body`] that holds the
//!    connection until the body's end (see [`body`](crate::body)).
//! 4. A failure on a *reused* connection is retried on another one when nothing was written,
//!    or when the request is replayable (idempotent method or an idempotency-key header, and
//!    a body in memory) and the server closed the connection before a byte of response.
//!    A fresh connection never retries. This is Go's `shouldRetryRequest`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use http::header::{CONNECTION, HOST, HeaderValue};
use http::{Method, Request, Uri, Version};
use pool_core::{KeyedPool, KeyedPooled, Stats};
use tokio::time::Instant;

use crate::body::{Body, Lease, RequestBody};
use crate::config::{ClientBuilder, Settings};
use crate::manager::{Counters, Dialer};
use crate::{Error, Origin, Phase};

/// A response whose body streams and holds its connection until the end.
pub type Response = http::Response<Body>;

/// Most tries of one request: each retry needs another reused connection, so this only bounds
/// a pathological run of dead idle connections.
const MAX_TRIES: u32 = 16;

/// An HTTP/1.1 client over a keyed connection pool, with Go `http.Transport`'s knobs and
/// rules, minus its pitfalls: an unread body is drained (within a budget) instead of killing
/// the connection, and connections released above the idle limit get a grace period instead
/// of being closed in the middle of a burst.
///
/// Cheap to clone (one pool shared by the clones); make one per program, not per request.
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

struct Inner {
    pool: KeyedPool<Dialer>,
    settings: Arc<Settings>,
    counters: Arc<Counters>,
}

/// What a [`Client`] did, beside its pool's [`Stats`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClientStats {
    /// The pool's counters and gauges, over all hosts (`created` counts dials).
    pub pool: Stats,
    /// Requests started.
    pub requests: u64,
    /// Tries repeated on another connection after a reused one failed.
    pub retried: u64,
    /// Bodies that reached their end while read, with a keep-alive response.
    pub body_eof: u64,
    /// Bodies dropped early whose rest was read within the drain budget: their connections
    /// went back to the pool.
    pub drained: u64,
    /// Bodies dropped early that did not fit the drain budget (or with drain off): their
    /// connections were closed.
    pub drain_failed: u64,
    /// Responses that did not allow another request (`Connection: close`, close-delimited
    /// body, HTTP/1.0, `disable_keep_alives`).
    pub not_reusable: u64,
}

/// Holds a connection while a request is on it: dropped (the caller left, or a timeout)
/// after the request started, the connection is closed, never pooled busy.
struct InFlight {
    conn: Option<KeyedPooled<'static, Dialer>>,
    sent: bool,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && self.sent
        {
            KeyedPooled::discard(conn);
        }
    }
}

impl Client {
    /// A client with Go's `DefaultTransport` knobs and our grace and drain defaults.
    ///
    /// # Errors
    /// [`is_config`](Error::is_config) outside a tokio runtime.
    pub fn new() -> Result<Client, Error> {
        ClientBuilder::default().build()
    }

    /// A [`ClientBuilder`] with every knob at its default.
    pub fn builder() -> ClientBuilder {
        ClientBuilder::default()
    }

    pub(crate) fn new_inner(
        pool: KeyedPool<Dialer>,
        settings: Arc<Settings>,
        counters: Arc<Counters>,
    ) -> Client {
        Client {
            inner: Arc::new(Inner {
                pool,
                settings,
                counters,
            }),
        }
    }

    /// `GET url`.
    ///
    /// # Errors
    /// See [`request`](Client::request).
    pub async fn get(&self, url: &str) -> Result<Response, Error> {
        let uri: Uri = url
            .parse()
            .map_err(|_| Error::invalid_url(url, "does not parse as a URL"))?;
        let mut req = Request::new(RequestBody::empty());
        *req.uri_mut() = uri;
        self.request(req).await
    }

    /// Sends a request (its URI must be absolute: `http://host[:port]/path`) and returns the
    /// response once its head arrived; the body streams.
    ///
    /// # Errors
    /// [`is_invalid_url`](Error::is_invalid_url), [`is_connect`](Error::is_connect) (with
    /// [`is_connect_refused`](Error::is_connect_refused), [`is_dns`](Error::is_dns)),
    /// [`is_timeout`](Error::is_timeout) with its [`Phase`],
    /// [`is_closed_before_response`](Error::is_closed_before_response),
    /// [`is_closed`](Error::is_closed) after [`close`](Client::close).
    ///
    /// # Cancel safety
    /// Dropping the future before the request was written gives the connection back; after,
    /// the connection is closed (a half-sent request never reaches another caller).
    pub async fn request<B: Into<RequestBody>>(&self, req: Request<B>) -> Result<Response, Error> {
        let req = req.map(Into::into);
        Counters::bump(&self.inner.counters.requests);
        match self.inner.settings.timeout {
            None => self.send(req, None).await,
            Some(t) => {
                let deadline = Instant::now() + t;
                tokio::time::timeout_at(deadline, self.send(req, Some(deadline)))
                    .await
                    .unwrap_or_else(|_| Err(Error::timeout(Phase::Request)))
            }
        }
    }

    async fn send(
        &self,
        req: Request<RequestBody>,
        deadline: Option<Instant>,
    ) -> Result<Response, Error> {
        let settings = &self.inner.settings;
        let (origin, mut req) = prepare(req, settings.disable_keep_alives)?;
        let replay = Replay::of(&req);
        let head = req.method() == Method::HEAD;
        let mut tries = 0;
        loop {
            tries += 1;
            let conn = self
                .inner
                .pool
                .get_owned(&origin)
                .await
                .map_err(Error::pool)?;
            let mut flight = InFlight {
                conn: Some(conn),
                sent: false,
            };
            let conn = flight.conn.as_mut().expect("just set");
            let reused = conn.uses > 0;
            conn.uses += 1;
            if let Err(e) = conn.sender.ready().await {
                // The connection died while idle; nothing was written.
                flight.sent = true;
                drop(flight);
                if reused && tries < MAX_TRIES {
                    Counters::bump(&self.inner.counters.retried);
                    continue;
                }
                return Err(Error::request(&origin.authority(), e));
            }
            let (written, read) = (conn.wire.written(), conn.wire.read());
            flight.sent = true;
            let sending = conn.sender.try_send_request(req);
            let result = match settings.response_header_timeout {
                None => sending.await,
                Some(t) => match tokio::time::timeout(t, sending).await {
                    Ok(r) => r,
                    Err(_) => return Err(Error::timeout(Phase::ResponseHeader)),
                },
            };
            match result {
                Ok(response) => {
                    let keep = !settings.disable_keep_alives && keeps_alive(&response, head);
                    let conn = flight.conn.take().expect("still held");
                    let lease = Lease {
                        conn,
                        keep,
                        drain: settings.drain,
                        counters: self.inner.counters.clone(),
                    };
                    return Ok(response.map(|incoming| Body::new(incoming, lease, deadline)));
                }
                Err(mut e) => {
                    let conn = flight.conn.as_ref().expect("still held");
                    let nothing_written = conn.wire.written() == written;
                    let nothing_read = conn.wire.read() == read;
                    drop(flight);
                    let back = e.take_message();
                    let e = e.into_error();
                    let again = if !reused || tries >= MAX_TRIES {
                        None
                    } else if let Some(back) = back.filter(|_| nothing_written) {
                        Some(back)
                    } else if nothing_read && closed_early(&e) {
                        replay.as_ref().map(Replay::request)
                    } else {
                        None
                    };
                    match again {
                        Some(next) => {
                            Counters::bump(&self.inner.counters.retried);
                            tracing::debug!(%origin, error = %e, "retrying on another connection");
                            req = next;
                        }
                        None => return Err(Error::request(&origin.authority(), e)),
                    }
                }
            }
        }
    }

    /// Counters and gauges over all hosts.
    pub fn stats(&self) -> ClientStats {
        let c = &self.inner.counters;
        let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
        ClientStats {
            pool: self.inner.pool.stats(),
            requests: load(&c.requests),
            retried: load(&c.retried),
            body_eof: load(&c.body_eof),
            drained: load(&c.drained),
            drain_failed: load(&c.drain_failed),
            not_reusable: load(&c.not_reusable),
        }
    }

    /// The pool's stats for one host, or `None` when it has no connection and nobody waits.
    pub fn host_stats(&self, origin: &Origin) -> Option<Stats> {
        self.inner.pool.key_stats(origin)
    }

    /// Closes the client: idle connections close now, the others when their bodies end;
    /// requests that wait or start later fail with [`is_closed`](Error::is_closed).
    pub fn close(&self) {
        self.inner.pool.close();
    }

    /// [`close`](Client::close), then waits up to `timeout` for every connection to close.
    ///
    /// # Errors
    /// [`is_timeout`](Error::is_timeout) when connections were still open at the deadline.
    pub async fn close_and_wait(&self, timeout: Duration) -> Result<(), Error> {
        self.inner
            .pool
            .close_and_wait(timeout)
            .await
            .map_err(|_| Error::timeout(Phase::Request))
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("pool", &self.inner.pool)
            .finish_non_exhaustive()
    }
}

/// The origin, and the request as HTTP/1.1 sends it: origin-form target, `Host` set.
fn prepare(
    req: Request<RequestBody>,
    close: bool,
) -> Result<(Origin, Request<RequestBody>), Error> {
    let origin = Origin::from_uri(req.uri())?;
    let (mut parts, body) = req.into_parts();
    if !parts.headers.contains_key(HOST) {
        let host = HeaderValue::from_str(&origin.authority())
            .map_err(|_| Error::invalid_url(&parts.uri, "has a host that is not a valid header"))?;
        parts.headers.insert(HOST, host);
    }
    parts.uri = parts
        .uri
        .path_and_query()
        .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    if parts.version != Version::HTTP_10 {
        parts.version = Version::HTTP_11;
    }
    if close {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok((origin, Request::from_parts(parts, body)))
}

/// What is needed to send a replayable request again (Go's `isReplayable`).
struct Replay {
    method: Method,
    uri: Uri,
    version: Version,
    headers: http::HeaderMap,
    body: RequestBody,
}

impl Replay {
    fn of(req: &Request<RequestBody>) -> Option<Replay> {
        let idempotent = matches!(
            *req.method(),
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        ) || req.headers().contains_key("idempotency-key")
            || req.headers().contains_key("x-idempotency-key");
        if !idempotent {
            return None;
        }
        Some(Replay {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
            body: req.body().try_clone()?,
        })
    }

    fn request(&self) -> Request<RequestBody> {
        let mut req = Request::new(self.body.try_clone().expect("replayable bodies clone"));
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        req
    }
}

/// The connection ended before the response: Go's `errServerClosedIdle` and
/// `transportReadFromServerError`.
fn closed_early(e: &hyper::Error) -> bool {
    e.is_incomplete_message() || e.is_canceled() || e.is_closed() || {
        std::iter::successors(std::error::Error::source(e), |e| (*e).source())
            .any(|e| e.downcast_ref::<std::io::Error>().is_some())
    }
}

/// Whether the connection may carry another request after this response (Go's
/// `persistConn.readLoop` alive check): not after `Connection: close`, an HTTP/1.0 response
/// without keep-alive, a body delimited by the connection's close, or an upgrade.
fn keeps_alive<B>(response: &http::Response<B>, head: bool) -> bool {
    let headers = response.headers();
    let has_token = |token: &str| {
        headers.get_all(CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    if response.status() == http::StatusCode::SWITCHING_PROTOCOLS || has_token("close") {
        return false;
    }
    if response.version() == Version::HTTP_10 && !has_token("keep-alive") {
        return false;
    }
    let status = response.status();
    let bodiless = head
        || status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED;
    bodiless
        || headers.contains_key(http::header::CONTENT_LENGTH)
        || headers.contains_key(http::header::TRANSFER_ENCODING)
}
