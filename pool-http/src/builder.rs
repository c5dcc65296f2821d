//! [`RequestBuilder`]: a request built step by step from [`Client::get`](crate::Client::get)
//! and its siblings, sent with [`send`](RequestBuilder::send) or by awaiting it.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

#[cfg(feature = "json")]
use http::header::CONTENT_TYPE;
use http::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Uri};

use crate::client::{Client, Options};
use crate::redirect::Policy;
use crate::{Error, RequestBody, Response};

/// A request being built: made by [`Client::get`](crate::Client::get),
/// [`post`](crate::Client::post), [`put`](crate::Client::put),
/// [`patch`](crate::Client::patch), [`delete`](crate::Client::delete),
/// [`head`](crate::Client::head) and [`Client::request_builder`](crate::Client::request_builder).
///
/// Send it with [`send`](RequestBuilder::send), or await it (it is `IntoFuture`). A
/// mistake along the way (a URL that does not parse, a header value with a newline, a body
/// that does not serialise) is kept and returned by `send`, so the chain never panics.
/// Its `Debug` shows the method and the URL without userinfo, never header values.
///
/// # Examples
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pool_http::Error> {
/// use std::time::Duration;
///
/// let client = pool_http::Client::new()?;
/// let response = client
///     .post("http://127.0.0.1:8080/items")
///     .bearer_auth("s3cr3t")
///     .header("x-request-id", "42")
///     .query(&[("dry_run", "true")])
///     .body("hello")
///     .timeout(Duration::from_secs(5))
///     .send()
///     .await?
///     .error_for_status()?;
/// println!("{}", response.text().await?);
/// # Ok(()) }
/// ```
#[must_use = "a request builder does nothing until it is sent or awaited"]
pub struct RequestBuilder {
    client: Client,
    request: Result<Request<RequestBody>, Error>,
    options: Options,
}

impl RequestBuilder {
    pub(crate) fn new(client: Client, method: Method, url: &str) -> RequestBuilder {
        let request = url
            .parse::<Uri>()
            .map_err(|_| Error::invalid_url(url, "does not parse as a URL"))
            .and_then(|uri| {
                if crate::origin::fragment_hid_userinfo(url) {
                    // Checked now, while the caller's string is here to quote.
                    crate::Origin::from_uri(&uri)
                        .map_err(|e| crate::origin::unless_fragment_hid_userinfo(url, e))?;
                }
                Ok(uri)
            })
            .map(|uri| {
                let mut req = Request::new(RequestBody::empty());
                *req.method_mut() = method;
                *req.uri_mut() = uri;
                req
            });
        RequestBuilder {
            client,
            request,
            options: Options::default(),
        }
    }

    /// Applies `f` to the request unless an earlier step failed.
    fn with(
        mut self,
        f: impl FnOnce(&mut Request<RequestBody>) -> Result<(), Error>,
    ) -> RequestBuilder {
        if let Ok(req) = &mut self.request
            && let Err(e) = f(req)
        {
            self.request = Err(e);
        }
        self
    }

    /// Adds a header, after any of the same name: `header` appends (to replace, use
    /// [`headers`](RequestBuilder::headers)). Names and values are checked: an invalid one
    /// makes [`send`](RequestBuilder::send) fail with [`is_builder`](Error::is_builder).
    /// [`json`](RequestBuilder::json) and [`form`](RequestBuilder::form) set `Content-Type`
    /// only when no header set it first.
    pub fn header<K, V>(self, name: K, value: V) -> RequestBuilder
    where
        K: TryInto<HeaderName>,
        K::Error: Into<http::Error>,
        V: TryInto<HeaderValue>,
        V::Error: Into<http::Error>,
    {
        self.with(|req| {
            let name = name
                .try_into()
                .map_err(|e| Error::builder("invalid header name", Some(e.into().into())))?;
            let value = value.try_into().map_err(|e| {
                Error::builder(
                    format!("invalid value for header `{name}`"),
                    Some(e.into().into()),
                )
            })?;
            req.headers_mut().append(name, value);
            Ok(())
        })
    }

    /// Adds every header of `headers` (replacing those of the same names set before).
    pub fn headers(self, headers: HeaderMap) -> RequestBuilder {
        self.with(|req| {
            let mut last = None;
            for (name, value) in headers {
                let name = match name {
                    Some(name) => {
                        req.headers_mut().remove(&name);
                        last = Some(name.clone());
                        name
                    }
                    None => last.clone().expect("a HeaderMap's first entry has a name"),
                };
                req.headers_mut().append(name, value);
            }
            Ok(())
        })
    }

    /// `Authorization: Bearer <token>`, marked sensitive (HTTP/2 never indexes it; no
    /// `Debug` prints it).
    pub fn bearer_auth(self, token: impl std::fmt::Display) -> RequestBuilder {
        self.with(|req| {
            let value = sensitive(format!("Bearer {token}"))?;
            req.headers_mut().insert(AUTHORIZATION, value);
            Ok(())
        })
    }

    /// `Authorization: Basic base64(user:password)`, marked sensitive.
    pub fn basic_auth(
        self,
        user: impl std::fmt::Display,
        password: Option<impl std::fmt::Display>,
    ) -> RequestBuilder {
        self.with(|req| {
            let password = password.map(|p| p.to_string()).unwrap_or_default();
            let value = crate::auth::basic(user.to_string().as_bytes(), password.as_bytes());
            req.headers_mut().insert(AUTHORIZATION, value);
            Ok(())
        })
    }

    /// Appends `pairs` to the URL's query, form-encoded (`a=1&b=x+y`), after what the URL
    /// already has.
    pub fn query<K: AsRef<str>, V: AsRef<str>>(self, pairs: &[(K, V)]) -> RequestBuilder {
        self.with(|req| {
            let existing = req.uri().query().unwrap_or_default().to_owned();
            // `for_suffix` puts a `&` between what is there and the new pairs.
            let mut encoder = form_urlencoded::Serializer::for_suffix(existing, 0);
            for (k, v) in pairs {
                encoder.append_pair(k.as_ref(), v.as_ref());
            }
            let query = encoder.finish();
            set_query(req, &query)
        })
    }

    /// The body: bytes, a string, `()` for none, or [`RequestBody::stream`]. A body in
    /// memory can be sent again (a retry, a 307/308 redirect); a stream cannot.
    pub fn body(self, body: impl Into<RequestBody>) -> RequestBuilder {
        self.with(|req| {
            *req.body_mut() = body.into();
            Ok(())
        })
    }

    /// Feature `json`: `value` as a JSON body, with `Content-Type: application/json` unless
    /// one is set.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn json<T: serde::Serialize + ?Sized>(self, value: &T) -> RequestBuilder {
        self.with(|req| {
            let body = serde_json::to_vec(value)
                .map_err(|e| Error::builder("the JSON body did not serialise", Some(e.into())))?;
            *req.body_mut() = body.into();
            req.headers_mut()
                .entry(CONTENT_TYPE)
                .or_insert(HeaderValue::from_static("application/json"));
            Ok(())
        })
    }

    /// Feature `json`: `value` as an `application/x-www-form-urlencoded` body (a struct, a
    /// map or a slice of pairs), with that `Content-Type` unless one is set.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub fn form<T: serde::Serialize + ?Sized>(self, value: &T) -> RequestBuilder {
        self.with(|req| {
            let body = serde_urlencoded::to_string(value)
                .map_err(|e| Error::builder("the form body did not serialise", Some(e.into())))?;
            *req.body_mut() = body.into();
            req.headers_mut()
                .entry(CONTENT_TYPE)
                .or_insert(HeaderValue::from_static(
                    "application/x-www-form-urlencoded",
                ));
            Ok(())
        })
    }

    /// The HTTP version to ask for (HTTP/1.1 by default; HTTP/2 is negotiated per origin).
    pub fn version(self, version: http::Version) -> RequestBuilder {
        self.with(|req| {
            *req.version_mut() = version;
            Ok(())
        })
    }

    /// Longest this request may take, body included, in place of the client's
    /// [`timeout`](crate::ClientBuilder::timeout); zero means none. At most
    /// [`MAX_DURATION`](pool_core::MAX_DURATION).
    pub fn timeout(mut self, timeout: Duration) -> RequestBuilder {
        if timeout > pool_core::MAX_DURATION {
            self.request = Err(Error::config(
                "timeout",
                format!("is {timeout:?}, above the longest accepted: 365 days"),
            ));
        }
        self.options.timeout = Some((!timeout.is_zero()).then_some(timeout));
        self
    }

    /// This request's redirect policy, in place of the client's.
    pub fn redirect(mut self, policy: Policy) -> RequestBuilder {
        self.options.redirect = Some(policy);
        self
    }

    /// Largest body [`Response::bytes`](crate::Response::bytes), `text` and `json` collect
    /// for this request, in place of the client's
    /// [`body_limit`](crate::ClientBuilder::body_limit).
    pub fn body_limit(mut self, bytes: usize) -> RequestBuilder {
        self.options.body_limit = Some(bytes);
        self
    }

    /// The request as built, without sending it (for tower services, or to inspect it).
    ///
    /// # Errors
    /// The first mistake of the chain ([`is_invalid_url`](Error::is_invalid_url),
    /// [`is_builder`](Error::is_builder), [`is_config`](Error::is_config)).
    pub fn build(self) -> Result<Request<RequestBody>, Error> {
        self.request
    }

    /// Sends the request; the response comes back once its head arrived.
    ///
    /// # Errors
    /// The first mistake of the chain, then as [`Client::request`](crate::Client::request),
    /// plus [`is_redirect`](Error::is_redirect).
    ///
    /// # Cancel safety
    /// As [`Client::request`](crate::Client::request): dropped before the request was
    /// written, its connection goes back; after, it is closed or its answer drained.
    pub fn send(self) -> impl Future<Output = Result<Response, Error>> + Send + 'static {
        crate::client::execute(self.client, self.request, self.options)
    }
}

impl IntoFuture for RequestBuilder {
    type Output = Result<Response, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Result<Response, Error>> + Send>>;

    /// `client.get(url).await` is `client.get(url).send().await`.
    fn into_future(self) -> Self::IntoFuture {
        Box::pin(self.send())
    }
}

impl std::fmt::Debug for RequestBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("RequestBuilder");
        match &self.request {
            Ok(req) => d
                .field("method", req.method())
                .field("url", &crate::error::redact(&req.uri().to_string()))
                .field("headers", &req.headers().keys().collect::<Vec<_>>()),
            Err(e) => d.field("error", e),
        };
        d.finish_non_exhaustive()
    }
}

fn sensitive(text: String) -> Result<HeaderValue, Error> {
    let mut value = HeaderValue::try_from(text)
        .map_err(|e| Error::builder("invalid credentials", Some(e.into())))?;
    value.set_sensitive(true);
    Ok(value)
}

/// Replaces the query of `req`'s URL with `query` (none when empty).
fn set_query(req: &mut Request<RequestBody>, query: &str) -> Result<(), Error> {
    let uri = std::mem::take(req.uri_mut());
    let mut parts = uri.into_parts();
    let path = parts
        .path_and_query
        .as_ref()
        .map_or("/", |p| p.path())
        .to_owned();
    let pq = if query.is_empty() {
        path
    } else {
        format!("{path}?{query}")
    };
    parts.path_and_query = Some(
        pq.parse()
            .map_err(|e: http::uri::InvalidUri| Error::builder("invalid query", Some(e.into())))?,
    );
    *req.uri_mut() = Uri::from_parts(parts)
        .map_err(|e| Error::builder("invalid URL after the query", Some(e.into())))?;
    Ok(())
}
