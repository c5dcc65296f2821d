//! Proxies as Go's `http.Transport.Proxy` and `http.ProxyFromEnvironment`: a [`Proxy`] per
//! target scheme, [`NoProxy`] exceptions, and by default the environment's `HTTP_PROXY`,
//! `HTTPS_PROXY` and `NO_PROXY`.
//!
//! # How a proxied request travels
//! - An `http` URL goes to the proxy in absolute form (`GET http://host/path HTTP/1.1`, with
//!   `Host` and `Proxy-Authorization`), over HTTP/1.1 even with `http2_prior_knowledge`.
//!   Every `http` target shares the proxy's pooled connections (Go's `connectMethodKey`).
//! - An `https` URL opens a tunnel: the dial connects to the proxy, sends
//!   `CONNECT host:port HTTP/1.1` (with `Host` and `Proxy-Authorization`), reads the answer's
//!   head (at most 8 KiB, within `connect_timeout`, never a byte past it), then runs the TLS
//!   handshake with the target through the tunnel (ALPN may choose HTTP/2 as without a
//!   proxy). Each (proxy, target) has its own pooled tunnels.
//!
//! A `CONNECT` answered with another status than 2xx, a proxy that closes, a malformed or
//! oversized answer, or no answer within `connect_timeout` fails the request with
//! [`Error::is_proxy`] (and [`is_connect`](Error::is_connect)); a forward proxy's own answer
//! to an `http` request (a `407`, a `502`) is the response, as in Go.
//!
//! # Which proxy
//! The [`ClientBuilder::proxy`](crate::ClientBuilder::proxy) list in order: the first proxy
//! that serves the URL's scheme and whose [`NoProxy`] does not exclude the host wins; none:
//! direct. Without any `proxy` (and without
//! [`no_proxy`](crate::ClientBuilder::no_proxy)), the environment's at `build`, as Go's
//! `DefaultTransport` (see [`ClientBuilder::proxy`](crate::ClientBuilder::proxy)).
//!
//! Proxy credentials (URL userinfo or [`Proxy::basic_auth`]) become a sensitive
//! `Proxy-Authorization: Basic` header, and no `Debug`, `Display`, log line or error holds
//! them.

mod env;
mod no_proxy;
#[cfg(feature = "tls")]
mod tunnel;

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::{HeaderValue, Uri};

use crate::auth::{basic, userinfo_basic};
use crate::origin::{HostPort, bounded, explicit_port, port_text};
use crate::{ConnectError, Error};

pub use no_proxy::NoProxy;
#[cfg(feature = "tls")]
pub(crate) use tunnel::tunnel;

/// A proxy for requests of one scheme or both: `http` URLs are sent to it in absolute form
/// (`GET http://host/path`), `https` URLs through a `CONNECT` tunnel (pooled per proxy and
/// target), as Go does.
///
/// The proxy URL is `http://[user:password@]host[:port]`: the port defaults to 80, a URL
/// without a scheme is read as `http://` (as Go reads it), a path is ignored. Its userinfo
/// (percent-decoded) becomes `Proxy-Authorization: Basic`, sent on every forwarded request
/// and every `CONNECT`, and never printed. The client talks plain HTTP to the proxy: an
/// `https://` proxy URL (TLS to the proxy itself) is refused. `https` *targets* are still
/// encrypted end to end, inside the tunnel.
///
/// A proxy serves every host of its scheme, loopback included, unless given a [`NoProxy`]
/// (which, as Go's `NO_PROXY`, never proxies `localhost` and loopback addresses). That is
/// Go's split too: the loopback exception belongs to `ProxyFromEnvironment` (httpproxy's
/// `useProxy`), while `Transport{Proxy: http.ProxyURL(u)}` proxies every request.
///
/// Connections are pooled as Go keys them: all `http` targets of a proxy share its
/// connections (so `max_conns_per_host` and `max_idle_conns_per_host` count them together),
/// and `https` targets have their tunnels per (proxy, target). Two proxies that differ only
/// in their credentials never share a connection.
///
/// Cheap to clone. `Debug` shows the proxy's address and whether it has credentials.
///
/// # Examples
///
/// ```
/// use pool_http::{Client, NoProxy, Proxy};
///
/// # fn main() -> Result<(), pool_http::Error> {
/// let proxy = Proxy::all("http://proxy.corp:3128")?
///     .basic_auth("svc", "s3cret")
///     .no_proxy(NoProxy::from_string("internal.corp,10.0.0.0/8"));
/// assert!(!format!("{proxy:?}").contains("s3cret"));
/// let client = Client::builder().proxy(proxy).build()?;
/// # drop(client);
/// // A URL without a scheme is an http proxy; an https:// proxy is refused.
/// assert!(Proxy::http("proxy.corp:3128").is_ok());
/// assert!(Proxy::https("https://proxy.corp").unwrap_err().is_invalid_url());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Proxy {
    serves: Serves,
    endpoint: Arc<Endpoint>,
    no_proxy: Option<NoProxy>,
}

/// The target schemes a proxy serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Serves {
    Http,
    Https,
    All,
}

impl Proxy {
    /// A proxy for `http` URLs (forwarded in absolute form).
    ///
    /// # Errors
    /// [`is_invalid_url`](Error::is_invalid_url) for a proxy URL that does not parse, has no
    /// host or a bad port, or whose scheme is not `http` (`https://` proxies are not
    /// supported). The message quotes the URL without its userinfo.
    pub fn http(url: &str) -> Result<Proxy, Error> {
        Proxy::new(Serves::Http, url)
    }

    /// A proxy for `https` URLs (through `CONNECT` tunnels).
    ///
    /// # Errors
    /// As [`http`](Proxy::http).
    pub fn https(url: &str) -> Result<Proxy, Error> {
        Proxy::new(Serves::Https, url)
    }

    /// A proxy for `http` and `https` URLs.
    ///
    /// # Errors
    /// As [`http`](Proxy::http).
    pub fn all(url: &str) -> Result<Proxy, Error> {
        Proxy::new(Serves::All, url)
    }

    fn new(serves: Serves, url: &str) -> Result<Proxy, Error> {
        Ok(Proxy {
            serves,
            endpoint: Arc::new(Endpoint::parse(url, true)?),
            no_proxy: None,
        })
    }

    /// Sends `Proxy-Authorization: Basic` with `user` and `password` (as given, not
    /// percent-decoded), in place of the URL's userinfo.
    #[must_use = "returns a new `Proxy`; `self` is unchanged"]
    pub fn basic_auth(mut self, user: &str, password: &str) -> Proxy {
        let mut endpoint = (*self.endpoint).clone();
        endpoint.auth = Some(basic(user.as_bytes(), password.as_bytes()));
        self.endpoint = Arc::new(endpoint);
        self
    }

    /// Hosts this proxy does not serve: they go direct (or to the next proxy of the list
    /// that takes them). Default: none excluded.
    #[must_use = "returns a new `Proxy`; `self` is unchanged"]
    pub fn no_proxy(mut self, no_proxy: NoProxy) -> Proxy {
        self.no_proxy = Some(no_proxy);
        self
    }

    /// Whether this proxy takes a target of this scheme, host and port.
    fn takes(&self, https: bool, host: &str, port: u16) -> bool {
        let scheme = match self.serves {
            Serves::All => true,
            Serves::Http => !https,
            Serves::Https => https,
        };
        scheme
            && !self
                .no_proxy
                .as_ref()
                .is_some_and(|n| n.bypasses(host, port))
    }
}

/// The scheme it serves, its address, whether it has credentials (never them) and its
/// exceptions.
impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Proxy")
            .field("serves", &self.serves)
            .field("url", &format_args!("{}", self.endpoint))
            .field("credentials", &self.endpoint.auth.is_some())
            .field("no_proxy", &self.no_proxy)
            .finish()
    }
}

/// Where a proxy is and how to authenticate to it: part of the pool key of proxied origins
/// (so two credentials never share a tunnel, as Go keys by the proxy URL with its userinfo).
#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) struct Endpoint {
    /// `http`, or another scheme read from the environment, refused when dialled.
    scheme: Box<str>,
    /// Lowercased, without IPv6 brackets.
    host: Box<str>,
    port: u16,
    /// An environment proxy's port of digits outside 1 to 65535 (`port` is then 0): Go's
    /// `url.Parse` takes it and the dial fails, so the proxy is kept and its requests fail
    /// ([`unsupported`](Endpoint::unsupported)) rather than go direct.
    bad_port: Option<Box<str>>,
    /// `Basic ...`, marked sensitive.
    auth: Option<HeaderValue>,
    /// The environment variable whose value is no URL (nothing else of it is kept): the
    /// proxy stands for it so that its requests fail, naming the variable, rather than go
    /// direct.
    not_a_url: Option<&'static str>,
}

impl Endpoint {
    /// Reads a proxy URL; `strict` (the builder's) accepts only `http`, the environment's
    /// keeps another scheme for the dial to refuse with a clear error.
    fn parse(url: &str, strict: bool) -> Result<Endpoint, Error> {
        Endpoint::parse_raw(url, strict)
            .map_err(|e| crate::origin::unless_fragment_hid_userinfo(url, e))
    }

    fn parse_raw(url: &str, strict: bool) -> Result<Endpoint, Error> {
        let with_scheme;
        let full = if url.contains("://") {
            url
        } else {
            with_scheme = format!("http://{url}");
            &with_scheme
        };
        let uri: Uri = full.parse().map_err(|_| {
            Error::invalid_url(
                url,
                "is not a proxy URL (`http://[user:password@]host[:port]`)",
            )
        })?;
        let scheme = uri.scheme_str().unwrap_or("http").to_ascii_lowercase();
        if strict && scheme != "http" {
            return Err(Error::invalid_url(
                url,
                if scheme == "https" {
                    Cow::Borrowed(
                        "is an https:// proxy: pool-http speaks plain http to proxies (https \
                         targets are still encrypted, through a CONNECT tunnel)",
                    )
                } else {
                    Cow::Owned(format!(
                        "has the scheme `{}`: proxies are http://",
                        bounded(&scheme)
                    ))
                },
            ));
        }
        let host = uri
            .host()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| Error::invalid_url(url, "has no host"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let default = match scheme.as_str() {
            "https" => 443,
            "http" => 80,
            _ => 1080,
        };
        let (port, bad_port) = match explicit_port(&uri) {
            Ok(port) => (port.unwrap_or(default), None),
            Err(_)
                if !strict
                    && port_text(&uri).is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())) =>
            {
                (
                    0,
                    port_text(&uri).map(|p| bounded(p).into_owned().into_boxed_str()),
                )
            }
            Err(e) => return Err(e),
        };
        let auth = uri
            .authority()
            .and_then(|a| a.as_str().rsplit_once('@'))
            .map(|(userinfo, _)| userinfo_basic(userinfo));
        Ok(Endpoint {
            scheme: scheme.into_boxed_str(),
            host: host.to_ascii_lowercase().into_boxed_str(),
            port,
            bad_port,
            auth,
            not_a_url: None,
        })
    }

    /// The stand-in for the environment variable `variable`, whose value is no URL: every
    /// request it would carry fails ([`unsupported`](Endpoint::unsupported)).
    fn not_a_url(variable: &'static str) -> Endpoint {
        Endpoint {
            scheme: "http".into(),
            host: "".into(),
            port: 0,
            bad_port: None,
            auth: None,
            not_a_url: Some(variable),
        }
    }

    /// The host to dial.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The port to dial.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `host:port`, IPv6 in brackets: what a dial error names.
    pub fn host_port(&self) -> String {
        match &self.bad_port {
            Some(port) => HostPort(&self.host, port).to_string(),
            None => HostPort(&self.host, self.port).to_string(),
        }
    }

    /// The `Proxy-Authorization` value, if any (sensitive).
    pub fn auth(&self) -> Option<&HeaderValue> {
        self.auth.as_ref()
    }

    /// The error for a proxy the client cannot speak to (an environment proxy that is no
    /// URL, with another scheme than `http`, or with a port outside 1 to 65535), before
    /// anything is dialled.
    pub fn unsupported(&self, target: impl FnOnce() -> String) -> Option<ConnectError> {
        let reason = if let Some(variable) = self.not_a_url {
            format!(
                "the environment variable {variable} is not a proxy URL \
                 (`http://[user:password@]host[:port]`); fix or unset it"
            )
        } else if &*self.scheme != "http" {
            format!(
                "has the scheme `{}`, which pool-http does not speak (http:// proxies only)",
                bounded(&self.scheme)
            )
        } else if let Some(port) = &self.bad_port {
            format!("has the port `{port}`: ports are 1 to 65535")
        } else {
            return None;
        };
        Some(ConnectError::Proxy {
            proxy: self.to_string(),
            target: target(),
            status: None,
            reason,
            source: None,
        })
    }
}

/// `scheme://host:port`, never the credentials; `$HTTP_PROXY` for a variable that is no URL
/// (never its value).
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(variable) = self.not_a_url {
            return write!(f, "${variable}");
        }
        write!(f, "{}://{}", self.scheme, self.host_port())
    }
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// The proxies of a client: what the builder set, or the environment's (see
/// [`Proxies::from_env`]). Empty: every request goes direct, at the cost of one length check.
#[derive(Clone, Default)]
pub(crate) struct Proxies {
    list: Vec<Proxy>,
    from_env: bool,
}

impl Proxies {
    /// Adds a proxy after the others.
    pub fn push(&mut self, proxy: Proxy) {
        self.list.push(proxy);
    }

    /// No proxy at all.
    pub fn clear(&mut self) {
        self.list.clear();
        self.from_env = false;
    }

    /// The environment's proxies (see [`env`]); `var` reads a variable (`None`: unset).
    pub fn from_env(var: impl Fn(&str) -> Option<String>) -> Proxies {
        Proxies {
            list: env::proxies(var),
            from_env: true,
        }
    }

    /// Whether no request is proxied.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The proxy for a target: the first that takes it.
    pub fn route(&self, https: bool, host: &str, port: u16) -> Option<Arc<Endpoint>> {
        self.list
            .iter()
            .find(|p| p.takes(https, host, port))
            .map(|p| p.endpoint.clone())
    }
}

impl fmt::Debug for Proxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.from_env {
            f.write_str("environment ")?;
        }
        f.debug_list().entries(&self.list).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(url: &str) -> Endpoint {
        Endpoint::parse(url, true).unwrap()
    }

    #[test]
    fn a_proxy_url_defaults_to_http_and_port_80_and_its_userinfo_becomes_basic() {
        let e = endpoint("proxy.corp");
        assert_eq!(e.to_string(), "http://proxy.corp:80");
        assert!(e.auth().is_none());
        assert_eq!(
            endpoint("Proxy.Corp:3128/ignored").to_string(),
            "http://proxy.corp:3128"
        );
        assert_eq!(endpoint("http://[::1]:8").host(), "::1");
        assert_eq!(endpoint("http://[::1]:8").to_string(), "http://[::1]:8");
        let e = endpoint("http://us%20er:p%40ss@h:1");
        // "us er:p@ss"
        assert_eq!(e.auth().unwrap(), "Basic dXMgZXI6cEBzcw==");
        assert!(e.auth().unwrap().is_sensitive());
        assert!(!format!("{e} {e:?}").contains("us"));
        // A user without a password, as Go: `user:`.
        assert_eq!(endpoint("u@h").auth().unwrap(), "Basic dTo=");
    }

    #[test]
    fn bad_proxy_urls_are_invalid_urls_without_their_userinfo() {
        for (url, says) in [
            ("https://u:secret@h:1", "https:// proxy"),
            ("socks5://u:secret@h", "`socks5`"),
            ("http://u:secret@h:99999", "ports are 1 to 65535"),
            ("http://u:secret@", "proxy URL"),
            ("http:// bad", "proxy URL"),
        ] {
            let e = Endpoint::parse(url, true).unwrap_err();
            assert!(e.is_invalid_url(), "{url}");
            let shown = format!("{e} {e:?}");
            assert!(shown.contains(says), "{url}: {shown}");
            assert!(!shown.contains("secret"), "{url}: {shown}");
        }
        // The environment's other schemes are kept, for the dial to refuse.
        let e = Endpoint::parse("socks5://h", false).unwrap();
        assert!(e.unsupported(String::new).is_some());
        assert!(endpoint("h").unsupported(String::new).is_none());
    }

    #[test]
    fn basic_auth_replaces_the_urls_credentials_and_debug_hides_both() {
        let proxy = Proxy::all("http://old:secret1@h")
            .unwrap()
            .basic_auth("new", "secret2");
        assert_eq!(proxy.endpoint.auth().unwrap(), "Basic bmV3OnNlY3JldDI=");
        let shown = format!("{proxy:?}");
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("credentials: true"), "{shown}");
    }

    #[test]
    fn the_first_proxy_that_takes_a_target_wins() {
        let mut proxies = Proxies::default();
        assert!(proxies.route(false, "a.com", 80).is_none());
        proxies.push(Proxy::https("h1:1").unwrap());
        proxies.push(
            Proxy::all("h2:2")
                .unwrap()
                .no_proxy(NoProxy::from_string("skip.com")),
        );
        proxies.push(Proxy::http("h3:3").unwrap());
        let via = |https, host| proxies.route(https, host, 80).map(|e| e.to_string());
        assert_eq!(via(true, "a.com").as_deref(), Some("http://h1:1"));
        assert_eq!(via(false, "a.com").as_deref(), Some("http://h2:2"));
        assert_eq!(via(false, "skip.com").as_deref(), Some("http://h3:3"));
        // A proxy without a NoProxy takes loopback targets too.
        assert_eq!(via(false, "127.0.0.1").as_deref(), Some("http://h3:3"));
        assert_eq!(via(true, "localhost").as_deref(), Some("http://h1:1"));
    }

    #[test]
    fn two_credentials_are_two_keys() {
        let a = Proxy::http("http://a:1@h").unwrap();
        let b = Proxy::http("http://b:2@h").unwrap();
        assert_ne!(a.endpoint, b.endpoint);
        assert_eq!(a.endpoint, Proxy::http("http://a:1@h:80").unwrap().endpoint);
    }
}
