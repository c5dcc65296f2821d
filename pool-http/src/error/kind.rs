//! The private kind of an [`Error`], the constructors the crate makes one with, and its
//! messages: `Debug`, and `Display` at this level only (see [`Error`]'s docs).

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use super::{ConnectError, Error, Phase};
use crate::Origin;

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
}

/// hyper's client says "too large" only in its message (`is_parse_too_large` exists with its
/// `server` feature alone): a response head over its buffer or with too many headers.
fn is_head_too_large(e: &hyper::Error) -> bool {
    e.is_parse() && e.to_string() == "message head is too large"
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
