//! The one error type of pool-http: an opaque [`Error`] with predicates, and the dial error
//! it carries when a connection could not be made.

use std::error::Error as StdError;
use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

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
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Phase::Acquire => "waiting for a connection",
            Phase::Connect => "connecting",
            Phase::TlsHandshake => "in the tls handshake",
            Phase::ResponseHeader => "waiting for the response header",
            Phase::Request => "the whole request",
        })
    }
}

/// Why a connection could not be made: the source of an [`Error`] whose
/// [`is_connect`](Error::is_connect) is true.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The host name did not resolve.
    #[error("dns lookup of `{host}` failed")]
    Dns {
        /// The host name looked up.
        host: String,
        /// The resolver's error.
        #[source]
        source: std::io::Error,
    },
    /// The host name resolved to no address.
    #[error("dns lookup of `{host}` found no address")]
    NoAddress {
        /// The host name looked up.
        host: String,
    },
    /// Every address refused the connection (nothing listens there).
    #[error("connect to {addr} refused")]
    Refused {
        /// The last address tried.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake failed (certificate not trusted, wrong name, no common protocol).
    #[error("tls handshake with {host} failed")]
    Tls {
        /// The host.
        host: String,
        /// The TLS error.
        #[source]
        source: std::io::Error,
    },
    /// The TLS handshake took longer than `tls_handshake_timeout`.
    #[error("tls handshake with {host} timed out after {timeout:?}")]
    TlsTimeout {
        /// The host.
        host: String,
        /// The `tls_handshake_timeout` in force.
        timeout: Duration,
    },
    /// An `https` URL, but the client has no TLS configuration (feature `tls` and
    /// `ClientBuilder::tls`).
    #[error("https to {host} needs TLS: enable the `tls` feature and set ClientBuilder::tls")]
    NoTls {
        /// The host.
        host: String,
    },
    /// Resolving and connecting took longer than `connect_timeout`.
    #[error("connect to {host} timed out after {timeout:?}")]
    Timeout {
        /// The host.
        host: String,
        /// The `connect_timeout` in force.
        timeout: Duration,
    },
    /// Another socket error while connecting.
    #[error("connect to {addr} failed")]
    Io {
        /// The last address tried.
        addr: SocketAddr,
        /// The socket error.
        #[source]
        source: std::io::Error,
    },
    /// The HTTP handshake on a new connection failed.
    #[error("http handshake with {host} failed")]
    Handshake {
        /// The host.
        host: String,
        /// hyper's error.
        #[source]
        source: hyper::Error,
    },
}

/// An error from a [`Client`](crate::Client): a bad URL, the pool, the connection, the
/// server, or a timeout.
///
/// The kind is private; ask with the predicates. The cause is kept in the
/// [`source`](std::error::Error::source) chain: hyper's error, the [`ConnectError`] of a dial,
/// the pool's error.
#[derive(Clone)]
pub struct Error {
    inner: Arc<Kind>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Kind {
    #[error("invalid url `{url}`: {reason}")]
    InvalidUrl { url: String, reason: &'static str },
    #[error("unsupported url scheme `{0}` (http and https are supported)")]
    UnsupportedScheme(String),
    #[error("{0}")]
    Pool(#[source] pool_core::Error),
    #[error("{0}")]
    Dial(#[source] ConnectError),
    #[error("request to {host} failed")]
    Request {
        host: String,
        #[source]
        source: hyper::Error,
    },
    #[error("reading the response body failed")]
    Body(#[source] hyper::Error),
    #[error("request timed out {0}")]
    Timeout(Phase),
    #[error("response body is larger than {0} bytes")]
    TooLarge(usize),
    #[error("pool-http config error: `{knob}` {reason}")]
    Config { knob: &'static str, reason: String },
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Error {
            inner: Arc::new(kind),
        }
    }

    pub(crate) fn invalid_url(url: impl fmt::Display, reason: &'static str) -> Self {
        Self::new(Kind::InvalidUrl {
            url: url.to_string(),
            reason,
        })
    }

    pub(crate) fn pool(e: pool_core::Error) -> Self {
        if e.is_timeout() && !e.is_create() {
            return Self::new(Kind::Timeout(Phase::Acquire));
        }
        Self::new(Kind::Pool(e))
    }

    pub(crate) fn request(host: &str, source: hyper::Error) -> Self {
        Self::new(Kind::Request {
            host: host.to_owned(),
            source,
        })
    }

    pub(crate) fn timeout(phase: Phase) -> Self {
        Self::new(Kind::Timeout(phase))
    }

    pub(crate) fn config(knob: &'static str, reason: impl Into<String>) -> Self {
        Self::new(Kind::Config {
            knob,
            reason: reason.into(),
        })
    }

    fn kind(&self) -> &Kind {
        &self.inner
    }

    /// Every error in the source chain, this one's cause first.
    fn chain(&self) -> impl Iterator<Item = &(dyn StdError + 'static)> {
        std::iter::successors(StdError::source(self.kind()), |e| (*e).source())
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
            Kind::Timeout(phase) => Some(*phase),
            _ if matches!(self.connect_error(), Some(ConnectError::Timeout { .. })) => {
                Some(Phase::Connect)
            }
            _ if matches!(self.connect_error(), Some(ConnectError::TlsTimeout { .. })) => {
                Some(Phase::TlsHandshake)
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

    /// The URL could not be parsed, has no host, or its scheme is not supported.
    pub fn is_invalid_url(&self) -> bool {
        matches!(
            self.kind(),
            Kind::InvalidUrl { .. } | Kind::UnsupportedScheme(_)
        )
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

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.kind(), f)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.kind(), f)?;
        // The cause says what actually happened; a caller that prints only `{}` should see it.
        if let Kind::Pool(e) = self.kind()
            && let Some(cause) = StdError::source(e)
        {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        StdError::source(self.kind())
    }
}
