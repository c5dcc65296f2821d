//! [`Follow`]: the machinery that turns a 3xx response into the next request, by the rules
//! of the [module docs](super): `Location` escaping and RFC 3986 resolution, and which
//! headers go on to the next host.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode, Uri};

use super::{ActionKind, Attempt, Kind, MAX_REDIRECTS, Policy};
use crate::Error;
use crate::request::{RequestBody, Snapshot};

/// Headers that go only where the first request went (or its subdomains). Go's
/// `shouldCopyHeaderOnRedirect` list, `Proxy-Authenticate` since Go 1.24.4 (CVE-2025-4673).
const SENSITIVE: [HeaderName; 6] = [
    header::AUTHORIZATION,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::COOKIE,
    HeaderName::from_static("cookie2"),
    header::WWW_AUTHENTICATE,
];

/// Headers that describe a body, dropped with it.
const BODY_HEADERS: [HeaderName; 4] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_ENCODING,
    header::TRANSFER_ENCODING,
];

/// A request's redirects, from its first response to its last.
///
/// Made for every request, so [`new`](Follow::new) copies and allocates nothing: what the
/// redirects need of the first request is taken from its [`Snapshot`] at the first 3xx.
pub(crate) struct Follow<'p> {
    policy: &'p Policy,
    /// Since the first redirect.
    hops: Option<Box<Hops>>,
}

/// What following needs once a redirect came: the first request's parts, the URLs so far.
struct Hops {
    method: Method,
    /// The caller's headers: never the `Authorization` of the first URL's userinfo.
    headers: HeaderMap,
    /// The body again, when it is in memory.
    body: Option<RequestBody>,
    /// A streamed body was sent: a 307/308 cannot be followed.
    streamed: bool,
    /// The first URL, without its userinfo.
    first: Uri,
    /// Every URL requested, the first one's first.
    urls: Vec<Uri>,
    /// A sensitive header was dropped already (a later hop back to the first host does not
    /// get it again, as in Go, which copies from the initial request only while allowed).
    stripped: bool,
    /// The caller's own `Referer`, which every hop but a downgrade sends as it is.
    referer: Option<HeaderValue>,
    /// The caller's own `Host`, while every `Location` so far was relative.
    host: Option<HeaderValue>,
}

impl<'p> Follow<'p> {
    /// The redirects `policy` allows; nothing is copied before one comes.
    pub(crate) fn new(policy: &'p Policy) -> Follow<'p> {
        Follow { policy, hops: None }
    }

    /// The request to send after `response` to the request `sent`, or `None` when
    /// `response` is the answer.
    ///
    /// # Errors
    /// [`is_redirect`](Error::is_redirect): more redirects than the policy allows, a
    /// `Location` that is not a URL, or the policy's own error.
    pub(crate) fn next<B>(
        &mut self,
        sent: &Snapshot,
        response: &http::Response<B>,
    ) -> Result<Option<Request<RequestBody>>, Error> {
        if self.policy.is_none() {
            return Ok(None);
        }
        let keeps_body = match response.status() {
            StatusCode::MOVED_PERMANENTLY | StatusCode::FOUND | StatusCode::SEE_OTHER => false,
            StatusCode::TEMPORARY_REDIRECT | StatusCode::PERMANENT_REDIRECT => true,
            _ => return Ok(None),
        };
        // The first 3xx: `sent` is the first request.
        let hops = self
            .hops
            .get_or_insert_with(|| Box::new(Hops::from_first(sent)));
        hops.next(self.policy, keeps_body, response)
    }
}

impl Hops {
    fn from_first(first: &Snapshot) -> Hops {
        let mut headers = first.headers().clone();
        let mut url = first.uri().clone();
        if url.authority().is_some_and(|a| a.as_str().contains('@')) {
            // Its `Authorization` goes on the first request only (`prepare` makes it there).
            crate::request::take_userinfo(&mut url);
        }
        let body = first.body();
        Hops {
            method: first.method().clone(),
            streamed: body.is_none(),
            body,
            first: url,
            urls: Vec::new(),
            stripped: false,
            referer: headers.get(header::REFERER).cloned(),
            host: headers.remove(header::HOST),
            headers,
        }
    }

    /// The URL of the last request sent (without the first one's userinfo).
    fn url(&self) -> &Uri {
        self.urls.last().unwrap_or(&self.first)
    }

    /// How many requests were sent so far.
    fn sent(&self) -> usize {
        self.urls.len().max(1)
    }

    /// The request after the redirect `response` (a 301, 302, 303, or with `keeps_body` a
    /// 307 or 308), or `None` when it is the answer.
    fn next<B>(
        &mut self,
        policy: &Policy,
        keeps_body: bool,
        response: &http::Response<B>,
    ) -> Result<Option<Request<RequestBody>>, Error> {
        if keeps_body && self.streamed {
            return Ok(None);
        }
        let status = response.status();
        let Some(location) = response.headers().get(header::LOCATION) else {
            return Ok(None);
        };
        let location = escape(location.as_bytes());
        if location.is_empty() {
            // Go: "3xx responses without a Location have been observed in the wild".
            return Ok(None);
        }
        let mut next = resolve(self.url(), &location).ok_or_else(|| {
            Error::redirect(format!(
                "Location `{}` is not an http or https URL",
                crate::error::redact(&location)
            ))
        })?;
        // Userinfo counts on the first request only: a Location's own is dropped here, so
        // neither the wire nor a policy nor a `Debug` of the attempt ever carries it.
        if next.authority().is_some_and(|a| a.as_str().contains('@')) {
            crate::request::take_userinfo(&mut next);
        }
        if self.sent() > MAX_REDIRECTS {
            return Err(Error::redirect(format!(
                "stopped after {MAX_REDIRECTS} redirects"
            )));
        }
        if self.urls.is_empty() {
            self.urls.push(self.first.clone());
        }
        let follow = match &policy.kind {
            Kind::None => return Ok(None),
            Kind::Limited(max) => {
                if self.sent() > *max {
                    return Err(Error::redirect(format!("stopped after {max} redirects")));
                }
                ActionKind::Follow
            }
            Kind::Custom(decide) => {
                let attempt = Attempt {
                    status,
                    next: &next,
                    previous: &self.urls,
                };
                decide(attempt).kind
            }
        };
        match follow {
            ActionKind::Follow => {}
            ActionKind::Stop => return Ok(None),
            ActionKind::Error(e) => {
                return Err(Error::redirect_policy(e));
            }
        }
        // Go's method rule: 301/302/303 turn anything but GET and HEAD into a GET.
        if !keeps_body && self.method != Method::GET && self.method != Method::HEAD {
            self.method = Method::GET;
        }
        if !keeps_body {
            self.body = Some(RequestBody::empty());
            for name in &BODY_HEADERS {
                self.headers.remove(name);
            }
        }
        let previous = self.url().clone();
        let downgrade = previous.scheme() == Some(&http::uri::Scheme::HTTPS)
            && next.scheme() == Some(&http::uri::Scheme::HTTP);
        let host = next.host().unwrap_or_default();
        let first_host = self.first.host().unwrap_or_default();
        if !self.stripped && (downgrade || !is_domain_or_subdomain(host, first_host)) {
            for name in &SENSITIVE {
                self.headers.remove(name);
            }
            self.stripped = true;
        }
        // Go's `refererForURL`: the downgrade first, then the caller's, then the computed one.
        let referer = if downgrade {
            None
        } else {
            self.referer.clone().or_else(|| referer(&previous))
        };
        match referer {
            Some(referer) => self.headers.insert(header::REFERER, referer),
            // Not the one an earlier hop set either.
            None => self.headers.remove(header::REFERER),
        };
        if !is_relative(&location) {
            self.host = None;
        }
        let body = self
            .body
            .as_ref()
            .and_then(RequestBody::try_clone)
            .unwrap_or_else(RequestBody::empty);
        let mut req = Request::new(body);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = next.clone();
        *req.headers_mut() = self.headers.clone();
        // Else the next hop's `Host` comes from its URL.
        if let Some(host) = &self.host {
            req.headers_mut().insert(header::HOST, host.clone());
        }
        self.urls.push(next);
        Ok(Some(req))
    }
}

/// Go's `isDomainOrSubdomain`, ASCII case-insensitive and without allocating: `sub` is
/// `parent` or ends with `.parent`. An IP address matches only itself, on either side.
fn is_domain_or_subdomain(sub: &str, parent: &str) -> bool {
    if sub.eq_ignore_ascii_case(parent) {
        return true;
    }
    let is_ip = |h: &str| h.starts_with('[') || h.parse::<std::net::Ipv4Addr>().is_ok();
    if parent.is_empty() || is_ip(sub) || is_ip(parent) {
        return false;
    }
    let (sub, parent) = (sub.as_bytes(), parent.as_bytes());
    let Some(dot) = sub.len().checked_sub(parent.len() + 1) else {
        return false;
    };
    sub[dot] == b'.' && sub[dot + 1..].eq_ignore_ascii_case(parent)
}

/// The `Referer` for a request that followed a redirect from `previous` (not a downgrade):
/// its URL without userinfo and fragment.
fn referer(previous: &Uri) -> Option<HeaderValue> {
    let scheme = previous.scheme_str()?;
    let authority = previous.authority()?;
    let host_port = authority
        .as_str()
        .rsplit_once('@')
        .map_or(authority.as_str(), |(_, h)| h);
    let path = previous.path_and_query().map_or("/", |p| p.as_str());
    HeaderValue::try_from(format!("{scheme}://{host_port}{path}")).ok()
}

/// A `Location` value as a URL reference: without surrounding whitespace, and with every
/// byte a URL cannot hold (non-ASCII, controls, spaces, `"`, `<`, `>`, `\`, `^`, a
/// backtick, `{`, `|`, `}`) percent-encoded.
fn escape(raw: &[u8]) -> String {
    let mut out = String::with_capacity(raw.len());
    for &b in raw.trim_ascii() {
        if b.is_ascii_graphic() && !b"\"<>\\^`{|}".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Where the scheme of `reference` ends (its `:`), when it has one.
fn scheme_end(reference: &str) -> Option<usize> {
    reference.find(':').filter(|&i| {
        let s = &reference[..i];
        !s.is_empty()
            && s.starts_with(|c: char| c.is_ascii_alphabetic())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    })
}

/// Whether `reference` is relative to its base's authority: no scheme, no `//authority`.
fn is_relative(reference: &str) -> bool {
    scheme_end(reference).is_none() && !reference.starts_with("//")
}

/// `reference` resolved against `base` (RFC 3986, section 5.2), or `None` when the result is
/// not an absolute `http`/`https` URL the client can use ([`Origin::from_uri`]). The
/// fragment is dropped.
///
/// [`Origin::from_uri`]: crate::Origin::from_uri
pub(crate) fn resolve(base: &Uri, reference: &str) -> Option<Uri> {
    let reference = reference.trim();
    let reference = reference.split_once('#').map_or(reference, |(r, _)| r);
    let target = if let Some(i) = scheme_end(reference) {
        // Absolute: its own scheme, authority and path (dot segments removed).
        let (scheme, rest) = (&reference[..i], &reference[i + 1..]);
        let (authority, path, query) = split_hier(rest)?;
        format!(
            "{scheme}://{}{}{}",
            authority?,
            remove_dot_segments(path),
            query
        )
    } else {
        let scheme = base.scheme_str()?;
        let base_authority = base.authority()?.as_str();
        if let Some(rest) = reference.strip_prefix("//") {
            let hier = format!("//{rest}");
            let (authority, path, query) = split_hier(&hier)?;
            format!(
                "{scheme}://{}{}{}",
                authority?,
                remove_dot_segments(path),
                query
            )
        } else {
            let base_path = base.path();
            let base_query = base.query().map(|q| format!("?{q}")).unwrap_or_default();
            let (path, query) = match reference.split_once('?') {
                Some((p, q)) => (p, format!("?{q}")),
                None => (reference, String::new()),
            };
            let (path, query) = if path.is_empty() {
                let query = if query.is_empty() { base_query } else { query };
                (base_path.to_owned(), query)
            } else if path.starts_with('/') {
                (remove_dot_segments(path), query)
            } else {
                let dir = base_path.rfind('/').map_or("/", |i| &base_path[..=i]);
                (remove_dot_segments(&format!("{dir}{path}")), query)
            };
            format!("{scheme}://{base_authority}{path}{query}")
        }
    };
    let uri: Uri = target.parse().ok()?;
    crate::Origin::from_uri(&uri).ok()?;
    Some(uri)
}

/// `//authority/path?query` (or `path?query` with no authority) split into its parts.
fn split_hier(rest: &str) -> Option<(Option<&str>, &str, String)> {
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (rest, String::new()),
    };
    match before_query.strip_prefix("//") {
        Some(after) => {
            let end = after.find('/').unwrap_or(after.len());
            let path = if end == after.len() {
                "/"
            } else {
                &after[end..]
            };
            Some((Some(&after[..end]), path, query))
        }
        None => Some((None, before_query, query)),
    }
}

/// RFC 3986's `remove_dot_segments`, on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    let segments: Vec<&str> = path.split('/').collect();
    let last = segments.len().saturating_sub(1);
    for (i, seg) in segments.iter().enumerate() {
        match *seg {
            "." => {
                if i == last {
                    out.push("");
                }
            }
            ".." => {
                if out.len() > 1 {
                    out.pop();
                }
                if i == last {
                    out.push("");
                }
            }
            s => out.push(s),
        }
    }
    let joined = out.join("/");
    if joined.starts_with('/') {
        joined
    } else {
        format!("/{joined}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(base: &str, reference: &str) -> Option<String> {
        resolve(&base.parse().unwrap(), reference).map(|u| u.to_string())
    }

    #[test]
    fn references_resolve_as_rfc_3986_says() {
        let base = "http://a/b/c/d;p?q";
        // RFC 3986 section 5.4.1 (those an http URL can take).
        let cases = [
            ("g", "http://a/b/c/g"),
            ("./g", "http://a/b/c/g"),
            ("g/", "http://a/b/c/g/"),
            ("/g", "http://a/g"),
            ("//g", "http://g/"),
            ("?y", "http://a/b/c/d;p?y"),
            ("g?y", "http://a/b/c/g?y"),
            ("#s", "http://a/b/c/d;p?q"),
            ("g#s", "http://a/b/c/g"),
            ("", "http://a/b/c/d;p?q"),
            (".", "http://a/b/c/"),
            ("./", "http://a/b/c/"),
            ("..", "http://a/b/"),
            ("../", "http://a/b/"),
            ("../g", "http://a/b/g"),
            ("../..", "http://a/"),
            ("../../", "http://a/"),
            ("../../g", "http://a/g"),
            ("../../../g", "http://a/g"),
            ("/./g", "http://a/g"),
            ("/../g", "http://a/g"),
            ("g.", "http://a/b/c/g."),
            ("..g", "http://a/b/c/..g"),
            ("./../g", "http://a/b/g"),
            ("g/./h", "http://a/b/c/g/h"),
            ("g/../h", "http://a/b/c/h"),
            ("https://other:8443/x?y", "https://other:8443/x?y"),
        ];
        for (reference, want) in cases {
            assert_eq!(r(base, reference).as_deref(), Some(want), "{reference}");
        }
    }

    #[test]
    fn only_http_and_https_urls_with_a_host_are_followed() {
        let base = "http://a/b";
        assert_eq!(r(base, "ftp://a/b"), None);
        assert_eq!(r(base, "javascript:alert(1)"), None);
        assert_eq!(r(base, "http://"), None);
        assert_eq!(r(base, "http://a b/"), None);
    }

    #[test]
    fn sensitive_headers_follow_subdomains_only() {
        assert!(is_domain_or_subdomain("example.com", "example.com"));
        assert!(is_domain_or_subdomain("api.example.com", "example.com"));
        assert!(!is_domain_or_subdomain("badexample.com", "example.com"));
        assert!(!is_domain_or_subdomain("example.com", "api.example.com"));
        assert!(!is_domain_or_subdomain("1.127.0.0.1", "127.0.0.1"));
        assert!(!is_domain_or_subdomain("x", ""));
        assert!(!is_domain_or_subdomain(".", ""));
        assert!(is_domain_or_subdomain("API.Example.com", "example.COM"));
        assert!(is_domain_or_subdomain("[::1]", "[::1]"));
        assert!(!is_domain_or_subdomain("a.[::1]", "[::1]"));
        assert!(!is_domain_or_subdomain("com", "example.com"));
    }
}
