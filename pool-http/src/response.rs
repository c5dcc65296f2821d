//! [`Response`]: a response head and its streaming [`Body`], with the helpers a caller
//! reaches for (`bytes`, `text`, `json`, `error_for_status`).

use bytes::Bytes;
use http::{HeaderMap, StatusCode, Uri, Version};

use crate::{Body, Error, Origin};

/// A response whose body streams and holds its connection until the end.
///
/// The head is here at once ([`status`](Response::status),
/// [`headers`](Response::headers)); the body arrives as it is read:
/// [`bytes`](Response::bytes), [`text`](Response::text), [`json`](Response::json) (feature
/// `json`) collect it, within the request's [`body_limit`](crate::RequestBuilder::body_limit);
/// [`into_body`](Response::into_body) streams it. The connection goes back to the pool at
/// the body's last byte, or, when the response is dropped unread, once the rest is drained
/// (within the client's drain budget).
///
/// Converts to and from `http::Response<Body>` (for tower and hyper code).
/// `Send + Sync`. Its `Debug` shows the status, the version, the URL without userinfo and
/// the header names, never header values (they may hold cookies or tokens).
pub struct Response {
    head: http::response::Parts,
    body: Body,
    url: Uri,
    origin: Option<Origin>,
    limit: Option<usize>,
}

impl Response {
    pub(crate) fn new(
        response: http::Response<Body>,
        url: Uri,
        origin: Origin,
        limit: Option<usize>,
    ) -> Response {
        let (head, body) = response.into_parts();
        Response {
            head,
            body,
            url,
            origin: Some(origin),
            limit,
        }
    }

    /// The status code.
    pub fn status(&self) -> StatusCode {
        self.head.status
    }

    /// The HTTP version the server answered with.
    pub fn version(&self) -> Version {
        self.head.version
    }

    /// The response headers. With transparent decompression, `Content-Encoding` and
    /// `Content-Length` of a decoded body are gone (they described the compressed bytes).
    pub fn headers(&self) -> &HeaderMap {
        &self.head.headers
    }

    /// The response headers, to change.
    pub fn headers_mut(&mut self) -> &mut HeaderMap {
        &mut self.head.headers
    }

    /// The response's extensions (hyper's, and what layers add).
    pub fn extensions(&self) -> &http::Extensions {
        &self.head.extensions
    }

    /// The response's extensions, to change.
    pub fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.head.extensions
    }

    /// The URL this response came from: the request's, or the last redirect's.
    pub fn url(&self) -> &Uri {
        &self.url
    }

    /// The `Content-Length` the server announced, when it did (none for a decoded body).
    pub fn content_length(&self) -> Option<u64> {
        self.head
            .headers
            .get(http::header::CONTENT_LENGTH)?
            .to_str()
            .ok()?
            .parse()
            .ok()
    }

    /// The body.
    pub fn body(&self) -> &Body {
        &self.body
    }

    /// The body, to read as it streams.
    pub fn body_mut(&mut self) -> &mut Body {
        &mut self.body
    }

    /// The body, to stream (see [`Body`]).
    pub fn into_body(self) -> Body {
        self.body
    }

    /// The head and the body apart.
    pub fn into_parts(self) -> (http::response::Parts, Body) {
        (self.head, self.body)
    }

    /// As an `http::Response`, for code that takes one.
    pub fn into_http(self) -> http::Response<Body> {
        http::Response::from_parts(self.head, self.body)
    }

    /// The whole body, within the request's body limit.
    ///
    /// # Errors
    /// [`is_too_large`](Error::is_too_large) past the limit (the connection is closed, unless
    /// the body had already arrived whole);
    /// [`is_body`](Error::is_body) when the connection broke mid-body;
    /// [`is_decode`](Error::is_decode) for a corrupt compressed body;
    /// [`is_timeout`](Error::is_timeout) when the request's timeout ran out.
    pub async fn bytes(self) -> Result<Bytes, Error> {
        let limit = self.limit.unwrap_or(usize::MAX);
        let origin = self.origin;
        self.body
            .bytes_limited(limit)
            .await
            .map_err(|e| at(e, origin.as_ref()))
    }

    /// The whole body, failing past `limit` bytes (whatever the request's body limit).
    ///
    /// # Errors
    /// As [`bytes`](Response::bytes).
    pub async fn bytes_limited(self, limit: usize) -> Result<Bytes, Error> {
        let origin = self.origin;
        self.body
            .bytes_limited(limit)
            .await
            .map_err(|e| at(e, origin.as_ref()))
    }

    /// The whole body as text. The charset is UTF-8 (invalid sequences replaced), as
    /// JSON and most APIs use; decode other charsets from [`bytes`](Response::bytes).
    ///
    /// # Errors
    /// As [`bytes`](Response::bytes).
    pub async fn text(self) -> Result<String, Error> {
        let bytes = self.bytes().await?;
        Ok(match String::from_utf8(bytes.into()) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// Feature `json`: the whole body parsed as JSON into `T`, within the request's body
    /// limit.
    ///
    /// # Errors
    /// [`is_decode`](Error::is_decode) when the body is not JSON of that shape (the cause
    /// says where); otherwise as [`bytes`](Response::bytes).
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    pub async fn json<T: serde::de::DeserializeOwned>(self) -> Result<T, Error> {
        let origin = self.origin.clone();
        let bytes = self.bytes().await?;
        serde_json::from_slice(&bytes).map_err(|e| at(Error::decode("json", e), origin.as_ref()))
    }

    /// This response, or an [`is_status`](Error::is_status) error when its status is 4xx
    /// or 5xx (the body is then dropped: drained, so the connection is kept).
    ///
    /// # Errors
    /// [`is_status`](Error::is_status), with [`Error::status`] the status.
    pub fn error_for_status(self) -> Result<Response, Error> {
        match self.status_error() {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }

    /// As [`error_for_status`](Response::error_for_status), keeping the response.
    ///
    /// # Errors
    /// As [`error_for_status`](Response::error_for_status).
    pub fn error_for_status_ref(&self) -> Result<&Response, Error> {
        match self.status_error() {
            Some(e) => Err(e),
            None => Ok(self),
        }
    }

    fn status_error(&self) -> Option<Error> {
        let status = self.status();
        (status.is_client_error() || status.is_server_error())
            .then(|| at(Error::bad_status(status), self.origin.as_ref()))
    }
}

fn at(e: Error, origin: Option<&Origin>) -> Error {
    match origin {
        Some(origin) => e.at(origin),
        None => e,
    }
}

impl From<Response> for http::Response<Body> {
    fn from(response: Response) -> http::Response<Body> {
        response.into_http()
    }
}

impl From<http::Response<Body>> for Response {
    /// A response made elsewhere (a test double, a tower layer): its URL is empty (`/`),
    /// and it has no body limit.
    fn from(response: http::Response<Body>) -> Response {
        let (head, body) = response.into_parts();
        Response {
            head,
            body,
            url: Uri::from_static("/"),
            origin: None,
            limit: None,
        }
    }
}

impl std::fmt::Debug for Response {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        struct Names<'a>(&'a HeaderMap);
        impl std::fmt::Debug for Names<'_> {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_list().entries(self.0.keys()).finish()
            }
        }
        f.debug_struct("Response")
            .field("status", &self.head.status)
            .field("version", &self.head.version)
            .field("url", &crate::error::redact(&self.url.to_string()))
            .field("headers", &Names(&self.head.headers))
            .field("body", &self.body)
            .finish()
    }
}
