//! Feature `tower`: [`Client`] as a `tower::Service`, so tower and tower-http layers
//! (timeouts, retries, rate limits, tracing, headers) stack on it.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::Body as HttpBody;

use crate::{Body, BoxError, Client, Error, RequestBody};

/// `Client` as a tower service: an `http::Request` in, an `http::Response<Body>` out (the
/// shape tower-http's layers take).
///
/// Always ready: the pool itself queues a request that waits for a connection (first come,
/// first served), so `poll_ready` never reserves anything and a dropped future gives its
/// place back. The request's body is sent as a stream (a tower body cannot be cloned), so
/// it is retried on another connection only when nothing of it was written, and a 307/308
/// redirect is returned rather than followed; build a [`RequestBody`] from bytes and call
/// [`Client::request`] for those. The client's knobs apply (timeout, redirects, decompression).
///
/// # Examples
///
/// ```no_run
/// # async fn f() -> Result<(), Box<dyn std::error::Error>> {
/// use tower::Service as _;
///
/// let mut client = pool_http::Client::new()?;
/// let request = pool_http::http::Request::get("http://127.0.0.1:8080/").body(String::new())?;
/// let response = client.call(request).await?;
/// println!("{}", response.status());
/// # Ok(()) }
/// ```
impl<B> tower_service::Service<http::Request<B>> for Client
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    type Response = http::Response<Body>;
    type Error = Error;
    type Future = Pin<Box<dyn Future<Output = Result<http::Response<Body>, Error>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        let client = self.clone();
        let req = req.map(|body| {
            // An empty body stays empty (no `Transfer-Encoding: chunked` on a GET).
            if body.is_end_stream() {
                RequestBody::empty()
            } else {
                RequestBody::stream(body)
            }
        });
        Box::pin(async move { Ok(client.request(req).await?.into_http()) })
    }
}
