//! Feature `cookies`: a cookie jar, as Go's `http.Client.Jar`. With one set
//! ([`ClientBuilder::cookie_store`](crate::ClientBuilder::cookie_store)), every request
//! (each redirect hop too) carries the jar's cookies for its URL, and every response's
//! `Set-Cookie` headers go into the jar. Without one (the default), cookies are only those a
//! request sets itself, as in Go.

use std::fmt;

use bytes::Bytes;
use http::{HeaderValue, Uri};
use parking_lot::RwLock;

/// What a client keeps cookies in: [`Jar`], or your own (shared between clients, persisted,
/// filtered). Go's `http.CookieJar`.
pub trait CookieStore: Send + Sync + 'static {
    /// Stores the `Set-Cookie` header values of a response to a request for `url`.
    fn set_cookies(&self, url: &Uri, set_cookie: &mut dyn Iterator<Item = &HeaderValue>);

    /// The `Cookie` header value a request for `url` sends, or `None` for none. Asked once
    /// per request and redirect hop, as Go's `http.Client`: a retry on another connection
    /// sends what the first try sent.
    fn cookies(&self, url: &Uri) -> Option<HeaderValue>;
}

/// An in-memory cookie jar with RFC 6265's rules (domain and path matching, `Secure`,
/// expiry, `Max-Age`), through the `cookie_store` crate. Public suffixes are not checked: a
/// server may set a cookie for its parent domain, as in most clients without a suffix list.
///
/// Its `Debug` shows how many cookies it holds, never their names or values.
#[derive(Default)]
pub struct Jar {
    store: RwLock<cookie_store::CookieStore>,
}

impl Jar {
    /// An empty jar.
    pub fn new() -> Jar {
        Jar::default()
    }

    /// Adds a cookie in `Set-Cookie` syntax (`name=value; Path=/; ...`) as if a response to
    /// a request for `url` had set it. A cookie that does not parse, or that `url` may not
    /// set, is ignored (as a browser ignores it).
    pub fn add_cookie_str(&self, cookie: &str, url: &Uri) {
        let Some(url) = to_url(url) else { return };
        if let Ok(cookie) = cookie::Cookie::parse(cookie) {
            // `insert_raw`, not `store_response_cookies`: that one logs each cookie's value.
            let _ = self.store.write().insert_raw(&cookie, &url);
        }
    }

    /// How many unexpired cookies the jar holds.
    pub fn len(&self) -> usize {
        self.store.read().iter_unexpired().count()
    }

    /// Whether the jar holds no unexpired cookie.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forgets every cookie.
    pub fn clear(&self) {
        self.store.write().clear();
    }
}

impl CookieStore for Jar {
    fn set_cookies(&self, url: &Uri, set_cookie: &mut dyn Iterator<Item = &HeaderValue>) {
        let Some(url) = to_url(url) else { return };
        let cookies: Vec<_> = set_cookie
            .filter_map(|value| value.to_str().ok())
            .filter_map(|text| cookie::Cookie::parse(text).ok())
            .collect();
        if !cookies.is_empty() {
            // `insert_raw`, not `store_response_cookies`: that one logs each cookie's value
            // (at `debug`, through the `log` facade).
            let mut store = self.store.write();
            for cookie in &cookies {
                let _ = store.insert_raw(cookie, &url);
            }
        }
    }

    fn cookies(&self, url: &Uri) -> Option<HeaderValue> {
        let url = to_url(url)?;
        let store = self.store.read();
        let mut header = String::new();
        for (name, value) in store.get_request_values(&url) {
            if !header.is_empty() {
                header.push_str("; ");
            }
            header.push_str(name);
            header.push('=');
            header.push_str(value);
        }
        if header.is_empty() {
            return None;
        }
        let mut value = HeaderValue::from_maybe_shared(Bytes::from(header)).ok()?;
        value.set_sensitive(true);
        Some(value)
    }
}

impl fmt::Debug for Jar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jar").field("cookies", &self.len()).finish()
    }
}

/// Adds `jar`'s cookies for the request's URL to its `Cookie` header (after the request's
/// own, in the same header: HTTP/1.1 wants one); the header's value when it set one.
pub(crate) fn add_to(
    jar: &dyn CookieStore,
    req: &mut http::Request<crate::RequestBody>,
) -> Option<HeaderValue> {
    let cookies = jar.cookies(req.uri())?;
    let headers = req.headers_mut();
    let value = if headers.contains_key(http::header::COOKIE) {
        // Every `Cookie` header of the request's own, then the jar's, in one header.
        let mut joined = Vec::new();
        for own in headers.get_all(http::header::COOKIE) {
            joined.extend_from_slice(own.as_bytes());
            joined.extend_from_slice(b"; ");
        }
        joined.extend_from_slice(cookies.as_bytes());
        match HeaderValue::from_maybe_shared(Bytes::from(joined)) {
            Ok(mut value) => {
                value.set_sensitive(true);
                value
            }
            Err(_) => return None,
        }
    } else {
        cookies
    };
    headers.insert(http::header::COOKIE, value.clone());
    Some(value)
}

/// `uri` as the `url` crate's URL (what `cookie_store` matches on).
fn to_url(uri: &Uri) -> Option<url::Url> {
    url::Url::parse(&uri.to_string()).ok()
}
