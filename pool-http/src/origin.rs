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
//! The public getters describe the target a key was made for; `Display` names the key:
//! `scheme://host:port`, with ` via <proxy>` (never its userinfo) through a proxy, and
//! `http://* via <proxy>` for the shared key of a forward proxy. That key is made by whichever
//! `http` target came first, so naming a host there would put one caller's host on every
//! other target's metrics, hooks and logs. A request's own errors name its target
//! ([`Origin::target`]).

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
/// proxy's connections, as in Go. That shared key's `Display` names no target
/// (`http://* via http://proxy:port`): the hooks and the metrics see one key for all of them,
/// whose getters hold whichever target came first. [`from_url`](Origin::from_url) and
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
        Origin::from_uri(&uri).map_err(|e| unless_fragment_hid_userinfo(url, e))
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
        HostPort(self.host(), self.port()).to_string()
    }

    /// The request's own target as a message names it: `scheme://host:port`, and
    /// ` via <proxy>` through a proxy (never its userinfo). The same as `Display` except
    /// for the shared key of a forward proxy, which `Display` shows as `http://*`.
    pub(crate) fn target(&self) -> Target<'_> {
        Target(self)
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

/// The port text of the URL's authority (after the host's `:`), when it has one.
pub(crate) fn port_text(uri: &Uri) -> Option<&str> {
    let authority = uri.authority()?.as_str();
    // Byte scans: this runs for every request, on a few bytes (`str`'s char searchers cost
    // more to set up than to run there).
    let start = authority
        .bytes()
        .rposition(|b| b == b'@')
        .map_or(0, |at| at + 1);
    let host_port = &authority[start..];
    if host_port.starts_with('[') {
        // An IPv6 literal: the port follows the closing bracket.
        host_port
            .find(']')
            .and_then(|end| host_port[end + 1..].strip_prefix(':'))
    } else {
        let colon = host_port.bytes().position(|b| b == b':')?;
        Some(&host_port[colon + 1..])
    }
}

/// The port the URL's authority names: `None` when it has none or an empty one (the scheme's
/// default, RFC 3986 section 3.2.3). `http::Uri` reads a port it cannot parse as absent
/// (`port_u16()` is `None` for `65536`), which would send the request to the default port:
/// here a port that is present must be ASCII digits naming 1 to 65535.
pub(crate) fn explicit_port(uri: &Uri) -> Result<Option<u16>, Error> {
    let Some(port) = port_text(uri).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    match port.parse::<u16>() {
        Ok(n) if n > 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(Some(n)),
        // A path or query with an `@` may mean a password with a `/`, `?` or `#` in it
        // (`http://u:p/w@h/`): what reads as the port is then part of it, never quoted.
        _ if uri
            .path_and_query()
            .is_some_and(|p| p.as_str().contains('@')) =>
        {
            Err(Error::invalid_url(uri, "has a port that is not 1 to 65535"))
        }
        _ => Err(Error::invalid_url(
            uri,
            format!("has the port `{}`: ports are 1 to 65535", bounded(port)),
        )),
    }
}

/// `e`, or when `raw` (the caller's string) has an `@` in its fragment, an error that quotes
/// `raw` (cut to its last `@`) and nothing of the URL parsed from it. That URL lost the `@`
/// with the fragment, so what it reads as a host and port may be a password with a `#` in
/// it (`http://u:p#w@h/`), and redacting it finds no userinfo to cut.
pub(crate) fn unless_fragment_hid_userinfo(raw: &str, e: Error) -> Error {
    if fragment_hid_userinfo(raw) {
        Error::invalid_url(
            raw,
            "is not a URL the client can use (a `#`, `/`, `?` or `@` in a password must be \
             percent-encoded)",
        )
    } else {
        e
    }
}

/// Whether `raw` has an `@` after a `#` (see [`unless_fragment_hid_userinfo`]).
pub(crate) fn fragment_hid_userinfo(raw: &str) -> bool {
    raw.split_once('#')
        .is_some_and(|(_, fragment)| fragment.contains('@'))
}

/// A piece of the caller's URL for a message: at most 20 characters.
pub(crate) fn bounded(s: &str) -> Cow<'_, str> {
    match s.char_indices().nth(20) {
        Some((cut, _)) => Cow::Owned(format!("{}...", &s[..cut])),
        None => Cow::Borrowed(s),
    }
}

/// `host:port`, the port always there and an IPv6 address in brackets.
pub(crate) struct HostPort<'a, P>(pub &'a str, pub P);

impl<P: fmt::Display> fmt::Display for HostPort<'_, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.contains(':') {
            write!(f, "[{}]:{}", self.0, self.1)
        } else {
            write!(f, "{}:{}", self.0, self.1)
        }
    }
}

/// An origin named by its target: see [`Origin::target`].
pub(crate) struct Target<'a>(&'a Origin);

impl fmt::Display for Target<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let origin = self.0;
        let host_port = HostPort(origin.host(), origin.port());
        write!(f, "{}://{host_port}", origin.scheme())?;
        match origin.proxy() {
            Some(proxy) => write!(f, " via {proxy}"),
            None => Ok(()),
        }
    }
}

/// `scheme://host:port`, and ` via scheme://proxy:port` through a proxy (no userinfo); the
/// shared key of a forward proxy names no target: `http://* via scheme://proxy:port`.
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.proxy() {
            Some(proxy) if self.is_proxy_forward() => write!(f, "http://* via {proxy}"),
            _ => fmt::Display::fmt(&self.target(), f),
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
