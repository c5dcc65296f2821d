//! [`Origin`]: what connections are pooled by, Go's `connectMethodKey`: the target's scheme,
//! host and port, and the proxy a request goes through.
//!
//! # Keys through a proxy
//! - Direct: (scheme, host, port).
//! - `http` through a forward proxy: the proxy alone (with its credentials). Every `http`
//!   target shares the proxy's connections, as Go keys them (`connectMethodKey` with an empty
//!   `addr`): equality and hashing then ignore the target's host and port.
//! - `https` through a proxy: (proxy, host, port): each connection is a `CONNECT` tunnel to
//!   one target, with TLS to that target inside.
//!
//! The public getters always describe the target; `Display` adds ` via <proxy>` (never its
//! userinfo).

use std::borrow::Cow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use http::Uri;
use http::uri::Scheme;

use crate::Error;
use crate::proxy::{Endpoint, Proxies};

/// The longest host name DNS carries (RFC 1035: 253 characters in text form).
const MAX_HOST: usize = 253;

/// A (scheme, host, port) triple: the key connections are pooled and limited by.
///
/// Built from a request's absolute URL; the port defaults from the scheme (80 for `http`,
/// 443 for `https`) when the URL has none or an empty one (`http://h:/`, as RFC 3986 and Go
/// read it). A port that is present must be digits naming 1 to 65535: anything else
/// (`65536`, `-1`, `8a`) is an invalid URL, never the default port, so a check on the URL
/// and the connection agree. Host names compare case-insensitively (they are lowercased).
///
/// A request sent through a [`Proxy`](crate::Proxy) has an origin that also names the proxy:
/// [`host`](Origin::host), [`port`](Origin::port) and [`scheme`](Origin::scheme) still
/// describe the target, and `Display` adds ` via http://proxy:port` (never the proxy's
/// credentials). It is another key than the direct origin (so
/// [`Client::host_stats`](crate::Client::host_stats) takes it as the hooks see it), and all
/// `http` targets of one forward proxy are one key, equal whatever their host: they share the
/// proxy's connections, as in Go. [`from_url`](Origin::from_url) and
/// [`from_uri`](Origin::from_uri) make direct origins.
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
/// assert!(Origin::from_url("http://example.com:65536/").unwrap_err().is_invalid_url());
/// assert_eq!(Origin::from_url("http://example.com:/").unwrap().port(), 80);
/// // A host longer than DNS allows (253 bytes) is refused before any lookup.
/// let long = format!("http://{}.com/", "a".repeat(250));
/// assert!(Origin::from_url(&long).unwrap_err().is_invalid_url());
/// ```
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    inner: Arc<Parts>,
}

/// Equal and hashed as the module docs say: a forward-proxied key ignores the target.
struct Parts {
    https: bool,
    host: Box<str>,
    port: u16,
    /// The proxy connections of this key go through: a forward proxy for `http`, a `CONNECT`
    /// tunnel for `https`.
    proxy: Option<Arc<Endpoint>>,
}

impl Parts {
    fn is_forward(&self) -> bool {
        !self.https && self.proxy.is_some()
    }
}

impl PartialEq for Parts {
    fn eq(&self, other: &Parts) -> bool {
        self.https == other.https
            && self.proxy == other.proxy
            && (self.is_forward() || (self.port == other.port && self.host == other.host))
    }
}

impl Eq for Parts {}

impl Hash for Parts {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.https.hash(state);
        self.proxy.hash(state);
        if !self.is_forward() {
            self.host.hash(state);
            self.port.hash(state);
        }
    }
}

impl Origin {
    /// The origin of an absolute URL.
    ///
    /// # Errors
    /// [`is_invalid_url`](Error::is_invalid_url) for a URL that does not parse, has no host,
    /// has a port that is not 1 to 65535, or whose scheme is neither `http` nor `https`. The
    /// message quotes the URL without its userinfo.
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
        Ok(Origin {
            inner: Arc::new(Origin::parts(uri)?),
        })
    }

    /// The origin of an absolute URI as the client sends it: through the first of `proxies`
    /// that takes the target, if any (none configured: no more work than
    /// [`from_uri`](Origin::from_uri)).
    pub(crate) fn routed(uri: &Uri, proxies: &Proxies) -> Result<Origin, Error> {
        let mut parts = Origin::parts(uri)?;
        if !proxies.is_empty() {
            parts.proxy = proxies.route(parts.https, &parts.host, parts.port);
        }
        Ok(Origin {
            inner: Arc::new(parts),
        })
    }

    fn parts(uri: &Uri) -> Result<Parts, Error> {
        let scheme = uri
            .scheme()
            .ok_or_else(|| Error::invalid_url(uri, "is not absolute (no scheme)"))?;
        let https = if *scheme == Scheme::HTTP {
            false
        } else if *scheme == Scheme::HTTPS {
            true
        } else {
            return Err(Error::invalid_url(
                uri,
                format!(
                    "has the scheme `{}`: http and https are supported",
                    bounded(scheme.as_str())
                ),
            ));
        };
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::invalid_url(uri, "has no host"))?;
        if host.len() > MAX_HOST {
            // A host no resolver takes; and one a server could make us quote at any length
            // (a redirect's `Location`) in every message and span that names the origin.
            return Err(Error::invalid_url(
                uri,
                format!(
                    "has a host of {} bytes: DNS names are at most {MAX_HOST}",
                    host.len()
                ),
            ));
        }
        // `[::1]` in a URL is the address `::1`.
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = explicit_port(uri)?.unwrap_or(if https { 443 } else { 80 });
        Ok(Parts {
            https,
            host: host.to_ascii_lowercase().into_boxed_str(),
            port,
            proxy: None,
        })
    }

    /// Whether connections of this key go to a forward proxy (plain `http` targets sent in
    /// absolute form, over HTTP/1.1 whatever `http2_prior_knowledge` says).
    #[inline]
    pub(crate) fn is_proxy_forward(&self) -> bool {
        self.inner.is_forward()
    }

    /// The proxy connections of this key go through, if any.
    #[inline]
    pub(crate) fn proxy(&self) -> Option<&Endpoint> {
        self.inner.proxy.as_deref()
    }

    /// `host:port`, the port always there and IPv6 in brackets: the target of a `CONNECT`.
    pub(crate) fn host_port(&self) -> String {
        if self.host().contains(':') {
            format!("[{}]:{}", self.host(), self.port())
        } else {
            format!("{}:{}", self.host(), self.port())
        }
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
        // Built by hand: this runs for every request (its `Host` header), and `format!` cost
        // a third of the client's own work per request.
        let host = self.host();
        let mut authority = String::with_capacity(host.len() + 8);
        let v6 = host.contains(':');
        if v6 {
            authority.push('[');
        }
        authority.push_str(host);
        if v6 {
            authority.push(']');
        }
        if self.port() != if self.is_https() { 443 } else { 80 } {
            authority.push(':');
            let mut digits = [0u8; 5];
            let mut at = digits.len();
            let mut port = self.port();
            loop {
                at -= 1;
                digits[at] = b'0' + (port % 10) as u8;
                port /= 10;
                if port == 0 {
                    break;
                }
            }
            digits[at..]
                .iter()
                .for_each(|&d| authority.push(char::from(d)));
        }
        authority
    }
}

/// The port the URL's authority names: `None` when it has none or an empty one (the scheme's
/// default, RFC 3986 section 3.2.3). `http::Uri` reads a port it cannot parse as absent
/// (`port_u16()` is `None` for `65536`), which would send the request to the default port:
/// here a port that is present must be ASCII digits naming 1 to 65535.
pub(crate) fn explicit_port(uri: &Uri) -> Result<Option<u16>, Error> {
    let Some(authority) = uri.authority() else {
        return Ok(None);
    };
    let authority = authority.as_str();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let port = if host_port.starts_with('[') {
        // An IPv6 literal: the port follows the closing bracket.
        host_port
            .find(']')
            .and_then(|end| host_port[end + 1..].strip_prefix(':'))
    } else {
        host_port.split_once(':').map(|(_, port)| port)
    };
    let Some(port) = port.filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    match port.parse::<u16>() {
        Ok(n) if n > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
        _ => Err(Error::invalid_url(
            uri,
            format!("has the port `{}`: ports are 1 to 65535", bounded(port)),
        )),
    }
}

/// A piece of the caller's URL for a message: at most 20 characters.
pub(crate) fn bounded(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(20) {
        Some((cut, _)) => Cow::Owned(format!("{}...", &s[..cut])),
        None => Cow::Borrowed(s),
    }
}

/// `scheme://host:port`, and ` via scheme://proxy:port` through a proxy (no userinfo).
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host().contains(':') {
            write!(f, "{}://[{}]:{}", self.scheme(), self.host(), self.port())?;
        } else {
            write!(f, "{}://{}:{}", self.scheme(), self.host(), self.port())?;
        }
        match self.proxy() {
            Some(proxy) => write!(f, " via {proxy}"),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_authority_has_the_port_unless_it_is_the_default_and_brackets_ipv6() {
        for (url, authority) in [
            ("http://Example.COM/", "example.com"),
            ("http://example.com:80/", "example.com"),
            ("https://example.com:443/", "example.com"),
            ("https://example.com:80/", "example.com:80"),
            ("http://example.com:443/", "example.com:443"),
            ("http://h:1/", "h:1"),
            ("http://h:8080/", "h:8080"),
            ("http://h:65535/", "h:65535"),
            ("http://[::1]/", "[::1]"),
            ("http://[::1]:10000/", "[::1]:10000"),
            ("http://user:pw@h:9/", "h:9"),
        ] {
            let origin = Origin::from_url(url).unwrap();
            assert_eq!(origin.authority(), authority, "{url}");
        }
    }
}
