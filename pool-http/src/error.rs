//! The one error type of pool-http: an opaque [`Error`] with predicates, and the dial error
//! it carries when a connection could not be made. The message policy is on [`Error`].

mod connect;
mod kind;

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use crate::Origin;

pub use connect::ConnectError;
use kind::Kind;
pub(crate) use kind::redact;

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

impl Error {
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

fn is_io(e: &hyper::Error) -> bool {
    std::iter::successors(StdError::source(e), |e| (*e).source())
        .any(|e| e.downcast_ref::<std::io::Error>().is_some())
}
