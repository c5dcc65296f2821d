//! [`Origin`]: what connections are pooled by, Go's `connectMethodKey` without the proxy.

use std::fmt;
use std::sync::Arc;

use http::Uri;
use http::uri::Scheme;

use crate::Error;

/// A (scheme, host, port) triple: the key connections are pooled and limited by.
///
/// Built from a request's absolute URL; the port defaults from the scheme (80 for `http`,
/// 443 for `https`).
/// Host names compare case-insensitively (they are lowercased).
///
/// # Examples
///
/// ```
/// use pool_http::Origin;
///
/// let origin = Origin::from_url("http://Example.COM/a?b=c").unwrap();
/// assert_eq!(origin.host(), "example.com");
/// assert_eq!(origin.port(), 80);
/// assert_eq!(origin.to_string(), "http://example.com:80");
/// assert_eq!(Origin::from_url("https://example.com").unwrap().port(), 443);
/// assert!(Origin::from_url("ftp://example.com/").unwrap_err().is_invalid_url());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    inner: Arc<Parts>,
}

#[derive(PartialEq, Eq, Hash)]
struct Parts {
    https: bool,
    host: Box<str>,
    port: u16,
}

impl Origin {
    /// The origin of an absolute URL.
    ///
    /// # Errors
    /// [`is_invalid_url`](Error::is_invalid_url) for a URL that does not parse, has no host,
    /// or whose scheme is neither `http` nor `https`.
    pub fn from_url(url: &str) -> Result<Origin, Error> {
        let uri: Uri = url
            .parse()
            .map_err(|_| Error::invalid_url(url, "does not parse as a URL"))?;
        Origin::from_uri(&uri)
    }

    /// The origin of an absolute URI (as a request carries it).
    ///
    /// # Errors
    /// As [`from_url`](Origin::from_url).
    pub fn from_uri(uri: &Uri) -> Result<Origin, Error> {
        let scheme = uri
            .scheme()
            .ok_or_else(|| Error::invalid_url(uri, "is not absolute (no scheme)"))?;
        let https = if *scheme == Scheme::HTTP {
            false
        } else if *scheme == Scheme::HTTPS {
            true
        } else {
            return Err(Error::new(crate::error::Kind::UnsupportedScheme(
                scheme.as_str().to_owned(),
            )));
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::invalid_url(uri, "has no host"))?;
        // `[::1]` in a URL is the address `::1`.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        if port == 0 {
            return Err(Error::invalid_url(uri, "has port 0"));
        }
        Ok(Origin {
            inner: Arc::new(Parts {
                https,
                host: host.to_ascii_lowercase().into_boxed_str(),
                port,
            }),
        })
    }

    /// The scheme: `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.inner.https { "https" } else { "http" }
    }

    /// Whether connections to it use TLS.
    pub fn is_https(&self) -> bool {
        self.inner.https
    }

    /// The host name or address, lowercased, without IPv6 brackets.
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// The port, explicit or the scheme's default.
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// The `Host` header value: the host, with the port unless it is the scheme's default.
    pub(crate) fn authority(&self) -> String {
        let host = self.host();
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host.to_owned()
        };
        if self.port() == if self.is_https() { 443 } else { 80 } {
            host
        } else {
            format!("{host}:{}", self.port())
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host().contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme(), self.host(), self.port())
        } else {
            write!(f, "{}://{}:{}", self.scheme(), self.host(), self.port())
        }
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
