//! [`ConnectError`]: why a dial failed, the source of an error whose `is_connect` is true.

use std::net::SocketAddr;
use std::time::Duration;

/// What to do about an `https` URL on a client without TLS, for the features this build has.
const NO_TLS_ADVICE: &str = if cfg!(not(feature = "tls")) {
    "enable pool-http's `rustls` feature (on by default)"
} else if cfg!(not(feature = "rustls")) {
    "enable pool-http's `rustls` feature, or pass a rustls config to ClientBuilder::tls"
} else {
    "enable pool-http's `webpki-roots` or `native-roots` feature for root certificates, or \
     pass a rustls config to ClientBuilder::tls"
};

/// Why a connection could not be made: the source of an [`Error`](crate::Error) whose
/// [`is_connect`](crate::Error::is_connect) is true, reached with
/// [`Error::connect_error`](crate::Error::connect_error).
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
    /// The HTTP/2 server allows no stream on its connection: its SETTINGS say
    /// `SETTINGS_MAX_CONCURRENT_STREAMS` 0 (RFC 9113 asks a server to close the connection
    /// instead, or to say 0 only briefly). The connection is closed; the next request dials
    /// again.
    #[non_exhaustive]
    #[error("the http/2 server {host} allows no stream (SETTINGS_MAX_CONCURRENT_STREAMS 0)")]
    NoStreams {
        /// The host.
        host: String,
    },
    /// The proxy did not open the way to the target (see [`Proxy`](crate::Proxy)): it
    /// answered `CONNECT` with another status than 2xx (`status`, e.g. `407`), closed the
    /// connection, sent a malformed answer or one with a head over 8 KiB, or did not answer
    /// within `connect_timeout` (then `source` is an `io::Error` of kind `TimedOut` and
    /// [`Error::timeout_phase`](crate::Error::timeout_phase) is
    /// [`Phase::Connect`](crate::Phase::Connect)); or it has a scheme pool-http does
    /// not speak (an `https://` or `socks5://` proxy from the environment), or came from an
    /// environment variable whose value is no URL (`proxy` is then `$HTTP_PROXY`, the
    /// variable's name, never its value). A proxy that
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
