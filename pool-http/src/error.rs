//! The one error type of pool-http: an opaque [`Error`] with predicates, and the dial error
//! it carries when a connection could not be made. The message policy is on [`Error`].

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::Origin;

/// Which part of a request ran out of time (see [`Error::timeout_phase`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Phase {
    /// Waiting for a connection of the host: `max_conns_per_host` reached and none came back.
    Acquire,
    /// Resolving the host and connecting (`connect_timeout`, Go's `Dialer.Timeout`).
    Connect,
    /// The TLS handshake (`tls_handshake_timeout`, Go's `TLSHandshakeTimeout`).
    TlsHandshake,
    /// Waiting for the response head after the request was sent (`response_header_timeout`).
    ResponseHeader,
    /// The whole request, body included (`ClientBuilder::timeout`, Go's `Client.Timeout`).
    Request,
    /// [`Client::close_and_wait`](crate::Client::close_and_wait): connections were still in
    /// use at its deadline.
    Close,
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Acquire => "waiting for a connection",
            Phase::Connect => "connecting",
            Phase::TlsHandshake => "in the tls handshake",
            Phase::ResponseHeader => "waiting for the response header",
            Phase::Request => "over the whole request",
            Phase::Close => "closing the client",
        })
    }
}

/// What to do about an `https` URL on a client without TLS, for the features this build has.
const NO_TLS_ADVICE: &str = if cfg!(not(feature = "tls")) {
    "enable pool-http's `rustls` feature (on by default)"
} else if cfg!(not(feature = "rustls")) {
    "enable pool-http's `rustls` feature, or pass a rustls config to ClientBuilder::tls"
} else {
    "enable pool-http's `webpki-roots` or `native-roots` feature for root certificates, or \
     pass a rustls config to ClientBuilder::tls"
};

/// Why a connection could not be made: the source of an [`Error`] whose
/// [`is_connect`](Error::is_connect) is true, reached with
/// [`Error::connect_error`].
///
/// Each variant is `#[non_exhaustive]` (as the enum): match with `{ host, .. }`. Hosts
/// and addresses never hold URL userinfo.
///
/// # Examples
///
/// ```
/// use pool_http::ConnectError;
///
/// fn advice(e: &pool_http::Error) -> &'static str {
///     match e.connect_error() {
///         Some(ConnectError::Refused { .. }) => "is the server running?",
///         Some(ConnectError::Dns { .. } | ConnectError::NoAddress { .. }) => "check the host name",
///         Some(ConnectError::Tls { .. }) => "check the certificate and the roots",
///         Some(_) => "could not connect",
///         None => "not a connection problem",
///     }
/// }
/// # let _ = advice;
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The host name did not resolve.
    #[non_exhaustive]
    #[error("dns lookup of `{host}` failed")]
    Dns {
        /// The host name looked up.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The host name resolved to no address.
    #[non_exhaustive]
    #[error("dns lookup of `{host}` found no address")]
    NoAddress {
        /// The host name looked up.
        host: String,
    },
    /// Every address refused the connection (nothing listens there).
    #[non_exhaustive]
    #[error("connect to {addr} refused")]
    Refused {
        /// The last address tried.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (certificate not trusted, wrong name, no common protocol).
    #[non_exhaustive]
    #[error("tls handshake with {host} failed")]
    Tls {
        /// The host.
        host: String,
        /// The TLS error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake took longer than `tls_handshake_timeout`.
    #[non_exhaustive]
    #[error("tls handshake with {host} timed out after {timeout:?}")]
    TlsTimeout {
        /// The host.
        host: String,
        /// The `tls_handshake_timeout` in force.
        timeout: Duration,
    },
    /// An `https` URL, but the client has no TLS configuration: the message says which
    /// feature to enable (`rustls`, on by default, or a roots feature), or to pass
    /// `ClientBuilder::tls`.
    #[non_exhaustive]
    #[error("https to {host} needs TLS: {advice}", advice = NO_TLS_ADVICE)]
    NoTls {
        /// The host.
        host: String,
    },
    /// Resolving and connecting took longer than `connect_timeout`.
    #[non_exhaustive]
    #[error("connect to {host} timed out after {timeout:?}")]
    Timeout {
        /// The host.
        host: String,
        /// The `connect_timeout` in force.
        timeout: Duration,
    },
    /// Another socket error while connecting.
    #[non_exhaustive]
    #[error("connect to {addr} failed")]
    Io {
        /// The last address tried.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP handshake on a new connection failed.
    #[non_exhaustive]
    #[error("http handshake with {host} failed")]
    Handshake {
        /// The host.
        host: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
    /// The proxy did not open the way to the target (see [`Proxy`](crate::Proxy)): it
    /// answered `CONNECT` with another status than 2xx (`status`, e.g. `407`), closed the
    /// connection, sent a malformed answer or one with a head over 8 KiB, or did not answer
    /// within `connect_timeout` (then `source` is an `io::Error` of kind `TimedOut` and
    /// [`Error::timeout_phase`] is [`Phase::Connect`]); or it has a scheme pool-http does
    /// not speak (an `https://` or `socks5://` proxy from the environment). A proxy that
    /// cannot be reached at all is a [`Refused`](ConnectError::Refused),
    /// [`Dns`](ConnectError::Dns) or [`Timeout`](ConnectError::Timeout) naming the proxy.
    /// No field holds the proxy's credentials.
    #[non_exhaustive]
    #[error("proxy {proxy} failed for {target}: {reason}")]
    Proxy {
        /// The proxy, `scheme://host:port` (never its userinfo).
        proxy: String,
        /// The target, `host:port`.
        target: String,
        /// The proxy's status when it answered with another than 2xx.
        status: Option<http::StatusCode>,
        /// What went wrong.
        reason: String,
        /// The socket error, if one caused it.
        #[source]
        source: Option<std::io::Error>,
    },
}

/// An error from a [`Client`](crate::Client): a bad URL, the pool, the connection, the
/// server, or a timeout.
///
/// The kind is private; ask with the predicates ([`is_timeout`](Error::is_timeout) and
/// [`timeout_phase`](Error::timeout_phase), [`is_connect`](Error::is_connect),
/// [`is_connect_refused`](Error::is_connect_refused), [`is_tls`](Error::is_tls),
/// [`is_proxy`](Error::is_proxy), [`is_invalid_url`](Error::is_invalid_url), ...). Cheap to
/// clone; `Send + Sync`.
///
/// # Messages
///
/// As hyper's errors: `Display` says what failed at this level, with its context (the
/// origin, the phase, the duration waited), and never the cause, which is the
/// [`source`](std::error::Error::source) chain (the pool's error, the [`ConnectError`] of a
/// dial, hyper's error, the socket's). A report that walks the chain (`{:#}` in anyhow, an
/// error reporter) prints each fact once. Rendered that way (levels joined with `": "`):
///
/// ```text
/// # nothing listens on the port
/// could not connect to http://127.0.0.1:1: pool failed to create a connection: connect to
/// 127.0.0.1:1 refused: Connection refused (os error 111)
///
/// # the server is silent past `response_header_timeout` (one level: nothing caused it)
/// request to http://127.0.0.1:8080 timed out after 2s waiting for the response header
///
/// # the same past `timeout`, the whole request
/// request to http://127.0.0.1:8080 timed out after 10s over the whole request
///
/// # the dial past `connect_timeout`
/// could not connect to http://10.255.255.1:80: pool failed to create a connection: connect
/// to 10.255.255.1 timed out after 30s
///
/// # an untrusted certificate (feature `tls`)
/// could not connect to https://127.0.0.1:8443: pool failed to create a connection: tls
/// handshake with 127.0.0.1:8443 failed: invalid peer certificate: UnknownIssuer
///
/// # a URL the client cannot use (its userinfo is never quoted)
/// invalid url `http://example.com:99999/`: has the port `99999`: ports are 1 to 65535
/// ```
///
/// No message, and no `Debug`, holds URL userinfo (`user:password@`): a URL is quoted
/// without it (and cut at 512 bytes), and an [`Origin`] has none.
///
/// # Examples
///
/// Walking the chain by hand, as anyhow's `{:#}` does:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use std::error::Error as _;
///
/// // A port where nothing listens.
/// let port = tokio::net::TcpListener::bind("127.0.0.1:0").await?.local_addr()?.port();
/// let client = pool_http::Client::new()?;
/// let err = client.get(&format!("http://127.0.0.1:{port}/")).await.unwrap_err();
/// assert!(err.is_connect_refused());
///
/// let mut chain = vec![err.to_string()];
/// let mut cause = err.source();
/// while let Some(e) = cause {
///     chain.push(e.to_string());
///     cause = e.source();
/// }
/// assert_eq!(chain[0], format!("could not connect to http://127.0.0.1:{port}"));
/// assert_eq!(chain[2], format!("connect to 127.0.0.1:{port} refused"));
/// println!("{}", chain.join(": "));
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Arc<Kind>,
    /// Where the request went, when known: the context of the message (an `Origin` holds no
    /// userinfo).
    origin: Option<Origin>,
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// `url` is already without userinfo (see [`redact`]).
    InvalidUrl {
        url: String,
        reason: Cow<'static, str>,
    },
    Pool(pool_core::Error),
    Dial(ConnectError),
    /// `host` names the server when the error has no origin.
    Request {
        host: String,
        source: hyper::Error,
    },
    Body(hyper::Error),
    Timeout {
        phase: Phase,
        after: Option<Duration>,
    },
    TooLarge(usize),
    Config {
        knob: &'static str,
        reason: String,
    },
    /// [`Response::error_for_status`](crate::Response::error_for_status) on a 4xx or 5xx.
    Status(http::StatusCode),
    /// A redirect could not be followed (too many, a `Location` that is not a URL, a policy
    /// that said stop with an error).
    Redirect {
        reason: Cow<'static, str>,
        source: Option<crate::BoxError>,
    },
    /// The body could not be decoded (`what`: `json`, `gzip`, `br`, `zstd`, ...).
    #[cfg_attr(
        not(any(
            feature = "json",
            feature = "gzip",
            feature = "brotli",
            feature = "zstd"
        )),
        allow(dead_code)
    )]
    Decode {
        what: &'static str,
        source: crate::BoxError,
    },
    /// A [`RequestBuilder`](crate::RequestBuilder) was given something a request cannot
    /// hold (a header name or value, a body that does not serialise).
    Builder {
        reason: Cow<'static, str>,
        source: Option<crate::BoxError>,
    },
}

/// Longest URL a message quotes; the rest is cut (a URL is the caller's input, and may be
/// huge).
const MAX_URL_IN_MESSAGE: usize = 512;

/// `url` as a message may quote it: without userinfo (`user:password@`), at most
/// [`MAX_URL_IN_MESSAGE`] bytes.
///
/// Everything from after `://` (or the start, for a string without it) to the last `@`
/// anywhere is cut. RFC 3986 ends the authority at the first `/`, `?` or `#`, but a URL
/// that failed to parse may hold a password with those (`http://u:p/w@h/`), and the strings
/// quoted here are the ones that failed: over-cutting a path or query with an `@` costs a
/// vaguer message, under-cutting leaks a secret.
pub(crate) fn redact(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[start..];
    let host_at = rest.rfind('@').map_or(0, |i| i + 1);
    let mut out = String::with_capacity(url.len().min(MAX_URL_IN_MESSAGE + 3));
    out.push_str(&url[..start]);
    out.push_str(&rest[host_at..]);
    if out.len() > MAX_URL_IN_MESSAGE {
        let mut cut = MAX_URL_IN_MESSAGE;
        while !out.is_char_boundary(cut) {
            cut -= 1;
        }
        out.truncate(cut);
        out.push_str("...");
    }
    out
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Error {
            inner: Arc::new(kind),
            origin: None,
        }
    }

    /// The URL is printed without its userinfo.
    pub(crate) fn invalid_url(
        url: impl fmt::Display,
        reason: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(Kind::InvalidUrl {
            url: redact(&url.to_string()),
            reason: reason.into(),
        })
    }

    pub(crate) fn pool(e: pool_core::Error) -> Self {
        if e.is_timeout() && !e.is_create() {
            return Self::timeout(Phase::Acquire);
        }
        Self::new(Kind::Pool(e))
    }

    /// A dial that failed before the pool was asked (an `https` URL without TLS).
    pub(crate) fn dial(e: ConnectError) -> Self {
        Self::new(Kind::Dial(e))
    }

    /// hyper failed the request. `host` names the server until [`at`](Error::at) gives the
    /// origin.
    pub(crate) fn request(host: &str, source: hyper::Error) -> Self {
        Self::new(Kind::Request {
            host: host.to_owned(),
            source,
        })
    }

    /// Reading the response body failed.
    pub(crate) fn body(source: hyper::Error) -> Self {
        Self::new(Kind::Body(source))
    }

    /// A body collected with a limit passed it.
    pub(crate) fn too_large(limit: usize) -> Self {
        Self::new(Kind::TooLarge(limit))
    }

    /// `phase` ran out of time; prefer [`timeout_after`](Error::timeout_after), which says
    /// how long it waited.
    pub(crate) fn timeout(phase: Phase) -> Self {
        Self::new(Kind::Timeout { phase, after: None })
    }

    /// `phase` ran out of time after `after` (a `Duration`, or `None` when not known).
    pub(crate) fn timeout_after(phase: Phase, after: impl Into<Option<Duration>>) -> Self {
        Self::new(Kind::Timeout {
            phase,
            after: after.into(),
        })
    }

    pub(crate) fn config(knob: &'static str, reason: impl Into<String>) -> Self {
        Self::new(Kind::Config {
            knob,
            reason: reason.into(),
        })
    }

    /// A 4xx or 5xx status, from [`Response::error_for_status`](crate::Response::error_for_status).
    pub(crate) fn bad_status(status: http::StatusCode) -> Self {
        Self::new(Kind::Status(status))
    }

    /// A redirect that could not be followed.
    pub(crate) fn redirect(reason: impl Into<Cow<'static, str>>) -> Self {
        Self::new(Kind::Redirect {
            reason: reason.into(),
            source: None,
        })
    }

    /// A redirect policy stopped the request with its own error, kept as the source.
    pub(crate) fn redirect_policy(source: crate::BoxError) -> Self {
        Self::new(Kind::Redirect {
            reason: "the redirect policy refused it".into(),
            source: Some(source),
        })
    }

    /// A body that could not be decoded as `what` (`json`, `gzip`, ...).
    #[cfg_attr(
        not(any(
            feature = "json",
            feature = "gzip",
            feature = "brotli",
            feature = "zstd"
        )),
        allow(dead_code)
    )]
    pub(crate) fn decode(what: &'static str, source: impl Into<crate::BoxError>) -> Self {
        Self::new(Kind::Decode {
            what,
            source: source.into(),
        })
    }

    /// Something a request builder could not turn into a request.
    pub(crate) fn builder(
        reason: impl Into<Cow<'static, str>>,
        source: Option<crate::BoxError>,
    ) -> Self {
        Self::new(Kind::Builder {
            reason: reason.into(),
            source,
        })
    }

    /// Names the origin the request went to in the message, unless one is named already.
    pub(crate) fn at(mut self, origin: &Origin) -> Self {
        if self.origin.is_none() {
            self.origin = Some(origin.clone());
        }
        self
    }

    fn kind(&self) -> &Kind {
        &self.inner
    }

    /// Every error in the source chain, this one's cause first.
    fn chain(&self) -> impl Iterator<Item = &(dyn StdError + 'static)> {
        std::iter::successors(StdError::source(self), |e| (*e).source())
    }

    fn find<E: StdError + 'static>(&self) -> Option<&E> {
        self.chain().find_map(|e| e.downcast_ref::<E>())
    }

    fn hyper(&self) -> Option<&hyper::Error> {
        self.find::<hyper::Error>()
    }

    /// The dial error, when a connection could not be made.
    pub fn connect_error(&self) -> Option<&ConnectError> {
        self.find::<ConnectError>()
    }

    /// Something ran out of time; [`timeout_phase`](Error::timeout_phase) says what.
    pub fn is_timeout(&self) -> bool {
        self.timeout_phase().is_some()
    }

    /// Which phase timed out: waiting for a connection, connecting, the response header or
    /// the whole request.
    pub fn timeout_phase(&self) -> Option<Phase> {
        match self.kind() {
            Kind::Timeout { phase, .. } => Some(*phase),
            _ if matches!(self.connect_error(), Some(ConnectError::Timeout { .. })) => {
                Some(Phase::Connect)
            }
            _ if matches!(self.connect_error(), Some(ConnectError::TlsTimeout { .. })) => {
                Some(Phase::TlsHandshake)
            }
            _ if matches!(
                self.connect_error(),
                Some(ConnectError::Proxy { source: Some(e), .. })
                    if e.kind() == std::io::ErrorKind::TimedOut
            ) =>
            {
                Some(Phase::Connect)
            }
            Kind::Pool(e) if e.is_timeout() => Some(Phase::Connect),
            _ => None,
        }
    }

    /// No connection could be made (DNS, refused, timeout, handshake); the
    /// [`connect_error`](Error::connect_error) says which. Also true while the host's breaker
    /// is open after repeated failures (then the last dial error is the cause).
    pub fn is_connect(&self) -> bool {
        self.connect_error().is_some() || matches!(self.kind(), Kind::Pool(e) if e.is_create())
    }

    /// A proxy did not open the way to the target: a `CONNECT` answered with another status
    /// than 2xx (a `407`: the [`ConnectError::Proxy`] has the status, and the message says
    /// it), a proxy that closed, sent a malformed or oversized answer, or was silent past
    /// `connect_timeout`. [`is_connect`](Error::is_connect) is true too. A forward proxy's
    /// answer to an `http` request is a response, not this error; a proxy that cannot be
    /// reached is [`is_connect_refused`](Error::is_connect_refused) or
    /// [`is_dns`](Error::is_dns), its message naming the origin ` via ` the proxy.
    pub fn is_proxy(&self) -> bool {
        matches!(self.connect_error(), Some(ConnectError::Proxy { .. }))
    }

    /// The host refused the connection (nothing listens on that port).
    pub fn is_connect_refused(&self) -> bool {
        matches!(self.connect_error(), Some(ConnectError::Refused { .. }))
    }

    /// The host name did not resolve.
    pub fn is_dns(&self) -> bool {
        matches!(
            self.connect_error(),
            Some(ConnectError::Dns { .. } | ConnectError::NoAddress { .. })
        )
    }

    /// TLS failed: the handshake (an untrusted certificate, a wrong name), its timeout, or an
    /// `https` URL on a client without TLS.
    pub fn is_tls(&self) -> bool {
        matches!(
            self.connect_error(),
            Some(
                ConnectError::Tls { .. }
                    | ConnectError::TlsTimeout { .. }
                    | ConnectError::NoTls { .. }
            )
        )
    }

    /// The host's breaker is open: its last dials failed, so requests fail fast (with the last
    /// dial error as cause) until a retry after a backoff succeeds.
    pub fn is_unavailable(&self) -> bool {
        matches!(self.kind(), Kind::Pool(e) if e.is_unavailable())
    }

    /// The connection closed before a whole response arrived (the server closed it, reset
    /// it, or answered with less than it announced).
    pub fn is_closed_before_response(&self) -> bool {
        matches!(self.kind(), Kind::Request { .. } | Kind::Body(_))
            && self.hyper().is_some_and(|e| {
                e.is_incomplete_message() || e.is_canceled() || e.is_closed() || is_io(e)
            })
    }

    /// Reading the response body failed (the connection broke mid-body).
    pub fn is_body(&self) -> bool {
        matches!(self.kind(), Kind::Body(_))
    }

    /// The URL could not be parsed, has no host, has a port that is not 1 to 65535, or its
    /// scheme is not supported.
    pub fn is_invalid_url(&self) -> bool {
        matches!(self.kind(), Kind::InvalidUrl { .. })
    }

    /// A body collected with a limit was larger than the limit.
    pub fn is_too_large(&self) -> bool {
        matches!(self.kind(), Kind::TooLarge(_))
    }

    /// The client was closed.
    pub fn is_closed(&self) -> bool {
        matches!(self.kind(), Kind::Pool(e) if e.is_closed())
    }

    /// The configuration was rejected; [`knob`](Error::knob) names the setting.
    pub fn is_config(&self) -> bool {
        matches!(self.kind(), Kind::Config { .. })
            || matches!(self.kind(), Kind::Pool(e) if e.is_config())
    }

    /// [`Response::error_for_status`](crate::Response::error_for_status) found a 4xx or 5xx
    /// status; [`status`](Error::status) says which.
    pub fn is_status(&self) -> bool {
        matches!(self.kind(), Kind::Status(_))
    }

    /// The status of an [`is_status`](Error::is_status) error.
    pub fn status(&self) -> Option<http::StatusCode> {
        match self.kind() {
            Kind::Status(s) => Some(*s),
            _ => None,
        }
    }

    /// A redirect could not be followed: more than the policy allows, a `Location` that is
    /// not a URL, or the policy's own error.
    pub fn is_redirect(&self) -> bool {
        matches!(self.kind(), Kind::Redirect { .. })
    }

    /// The response body could not be decoded: invalid JSON for
    /// [`Response::json`](crate::Response::json), or a corrupt compressed body.
    pub fn is_decode(&self) -> bool {
        matches!(self.kind(), Kind::Decode { .. })
    }

    /// A [`RequestBuilder`](crate::RequestBuilder) was given what a request cannot hold: an
    /// invalid header name or value, a body or query that does not serialise.
    pub fn is_builder(&self) -> bool {
        matches!(self.kind(), Kind::Builder { .. })
    }

    /// For a configuration error, the name of the offending knob.
    pub fn knob(&self) -> Option<&'static str> {
        match self.kind() {
            Kind::Config { knob, .. } => Some(knob),
            Kind::Pool(e) => e.knob(),
            _ => None,
        }
    }
}

/// hyper's client says "too large" only in its message (`is_parse_too_large` exists with its
/// `server` feature alone): a response head over its buffer or with too many headers.
fn is_head_too_large(e: &hyper::Error) -> bool {
    e.is_parse() && e.to_string() == "message head is too large"
}

fn is_io(e: &hyper::Error) -> bool {
    std::iter::successors(StdError::source(e), |e| (*e).source())
        .any(|e| e.downcast_ref::<std::io::Error>().is_some())
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", self.kind());
        if let Some(origin) = &self.origin {
            d.field("origin", &format_args!("{}", origin.target()));
        }
        d.finish()
    }
}

/// " to <origin>", " from <origin>", or nothing when the origin is not known.
struct Place<'a>(&'static str, Option<&'a dyn fmt::Display>);

impl fmt::Display for Place<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(place) => write!(f, " {} {place}", self.0),
            None => Ok(()),
        }
    }
}

/// " after <duration>", or nothing.
struct After(Option<Duration>);

impl fmt::Display for After {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => write!(f, " after {d:?}"),
            None => Ok(()),
        }
    }
}

impl fmt::Display for Error {
    /// This level only: the cause is the [`source`](StdError::source).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The request's own target, even on the shared key of a forward proxy.
        let target = self.origin.as_ref().map(Origin::target);
        let origin = target.as_ref().map(|o| o as &dyn fmt::Display);
        let to = Place("to", origin);
        let from = Place("from", origin);
        match self.kind() {
            Kind::InvalidUrl { url, reason } => write!(f, "invalid url `{url}`: {reason}"),
            Kind::Pool(e) if e.is_closed() => f.write_str("the client is closed"),
            Kind::Pool(e) if e.is_config() => f.write_str("invalid client config"),
            Kind::Pool(e) if e.is_create() || e.is_unavailable() => {
                write!(f, "could not connect{to}")
            }
            Kind::Pool(_) => write!(f, "request{to} failed"),
            Kind::Dial(_) => write!(f, "could not connect{to}"),
            Kind::Request { host, source } => {
                let host = host as &dyn fmt::Display;
                let to = Place("to", origin.or(Some(host)));
                let from = Place("from", origin.or(Some(host)));
                if is_head_too_large(source) {
                    write!(f, "response header{from} too large")
                } else if source.is_parse_status() {
                    write!(f, "invalid response status{from}")
                } else if source.is_parse() {
                    write!(f, "invalid response{from}")
                } else if source.is_incomplete_message() {
                    write!(f, "connection{to} closed before a whole response")
                } else if source.is_body_write_aborted() {
                    write!(f, "sending the request body{to} failed")
                } else {
                    write!(f, "request{to} failed")
                }
            }
            Kind::Body(_) => write!(f, "reading the response body{from} failed"),
            Kind::Timeout {
                phase: Phase::Close,
                after,
            } => write!(
                f,
                "closing the client timed out{}: connections still in use",
                After(*after)
            ),
            Kind::Timeout { phase, after } => {
                write!(f, "request{to} timed out{} {phase}", After(*after))
            }
            Kind::TooLarge(limit) => {
                write!(f, "response body{from} is larger than {limit} bytes")
            }
            Kind::Config { knob, reason } => {
                write!(f, "pool-http config error: `{knob}` {reason}")
            }
            Kind::Status(status) => write!(f, "http status {status}{from}"),
            Kind::Redirect { reason, .. } => {
                write!(f, "redirect{from} not followed: {reason}")
            }
            Kind::Decode { what, .. } => {
                write!(f, "decoding the response body{from} as {what} failed")
            }
            Kind::Builder { reason, .. } => write!(f, "invalid request: {reason}"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self.kind() {
            Kind::Pool(e) => Some(e),
            Kind::Dial(e) => Some(e),
            Kind::Request { source, .. } | Kind::Body(source) => Some(source),
            Kind::Decode { source, .. } => Some(&**source),
            Kind::Builder { source, .. } | Kind::Redirect { source, .. } => {
                source.as_deref().map(|e| e as _)
            }
            Kind::InvalidUrl { .. }
            | Kind::Timeout { .. }
            | Kind::TooLarge(_)
            | Kind::Config { .. }
            | Kind::Status(_) => None,
        }
    }
}
