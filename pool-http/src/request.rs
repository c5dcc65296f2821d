//! Requests as they go out: [`RequestBody`] (what a request sends), the origin and the
//! HTTP/1.1 form of a request (`prepare`), the
//! URL userinfo taken out (and turned into Basic credentials, as Go's `http.Client`), the
//! HTTP/2 form, what a retry and the redirects start from (`Snapshot`), and the keep-alive
//! rules of both sides.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONNECTION, HOST, HeaderValue, PROXY_AUTHORIZATION};
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;

use pool_core::KeyedPooled;

use crate::config::Settings;
use crate::manager::{Counters, Dialer, Link, Writing};
use crate::{Body, Error, Origin};

/// Largest frame of a body in memory handed to hyper.
const FRAME: usize = 64 * 1024;

/// Whether hyper has taken a request body whole; wakes the task awaiting that.
#[derive(Default)]
pub(crate) struct Written {
    done: std::sync::atomic::AtomicBool,
    waiter: parking_lot::Mutex<Option<std::task::Waker>>,
}

impl Written {
    /// The body is written (or gone): wakes the task awaiting it.
    fn fire(&self) {
        if self.done.swap(true, std::sync::atomic::Ordering::AcqRel) {
            return;
        }
        let waiter = self.waiter.lock().take();
        if let Some(waiter) = waiter {
            waiter.wake();
        }
    }

    /// Ready once the body is written; else `cx` is woken then.
    pub(crate) fn poll_written(&self, cx: &mut Context<'_>) -> Poll<()> {
        use std::sync::atomic::Ordering;
        if self.done.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        let old = self.waiter.lock().replace(cx.waker().clone());
        drop(old);
        // Fired between the load and the registration: its wake may have missed us.
        if self.done.load(Ordering::Acquire) {
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

/// A boxed error: what a stream given to [`RequestBody::stream`] may fail with (any error
/// that converts into it), and the error type of [`RequestBody`] as an [`http_body::Body`].
/// The same alias as tower's and hyper-util's, so their bodies fit as they are.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request's body: empty, bytes in memory (which a retry can send again), or a stream.
///
/// Most callers never name it: `()`, [`Bytes`], `String`, `&'static str`, `Vec<u8>` and
/// `&'static [u8]` convert into it. `Send` (not `Sync`: a stream need not be). Its `Debug`
/// shows the length of a body in memory, never its bytes.
pub struct RequestBody {
    inner: Req,
    /// Told when hyper has taken the last frame (see [`RequestBody::watch_written`]).
    written: Option<Arc<Written>>,
}

enum Req {
    Full(Option<Bytes>),
    /// A stream, and while hyper holds it on a connection, that connection's [`Writing`]
    /// mark.
    Stream(UnsyncBoxBody<Bytes, BoxError>, Option<Writing>),
}

impl RequestBody {
    fn of(inner: Req) -> RequestBody {
        RequestBody {
            inner,
            written: None,
        }
    }

    /// From now on, the returned [`Written`] is told when hyper has taken this body's last
    /// frame (or dropped the body): the request is written then, and the response header
    /// timeout starts (Go's `ResponseHeaderTimeout` counts from there). An empty body is
    /// written at once.
    pub(crate) fn watch_written(&mut self) -> Arc<Written> {
        let written = Arc::new(Written::default());
        if self.is_end_stream() {
            written.fire();
        }
        // An earlier try's watcher is done with: nobody awaits it now.
        self.written = Some(written.clone());
        written
    }

    /// No body.
    pub fn empty() -> Self {
        RequestBody::of(Req::Full(None))
    }

    /// A streaming body. A request with one is never retried after a failure that may have
    /// sent some of it: it cannot be sent twice.
    pub fn stream<B>(body: B) -> Self
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        RequestBody::of(Req::Stream(body.map_err(Into::into).boxed_unsync(), None))
    }

    /// A file's contents from where it stands to its end, read in 64 KiB chunks as hyper
    /// sends them, with its length (`Content-Length`) from its metadata. Like any stream,
    /// it is never sent twice (no retry, no 307/308 redirect).
    ///
    /// # Errors
    /// The file's metadata or position could not be read.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn f(client: pool_http::Client) -> Result<(), Box<dyn std::error::Error>> {
    /// let file = tokio::fs::File::open("upload.bin").await?;
    /// let body = pool_http::RequestBody::file(file).await?;
    /// client.put("http://127.0.0.1:8080/upload").body(body).send().await?;
    /// # Ok(()) }
    /// ```
    pub async fn file(mut file: tokio::fs::File) -> std::io::Result<Self> {
        use tokio::io::AsyncSeekExt as _;
        let len = file.metadata().await?.len();
        let at = file.stream_position().await?;
        Ok(RequestBody::stream(FileBody {
            reader: tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024),
            left: len.saturating_sub(at),
        }))
    }

    /// A copy for a retry: only an in-memory body can be sent again.
    pub(crate) fn try_clone(&self) -> Option<Self> {
        match &self.inner {
            Req::Full(b) => Some(RequestBody::of(Req::Full(b.clone()))),
            Req::Stream(..) => None,
        }
    }

    /// Its bytes when in memory (`Some(None)`: empty), `None` for a stream.
    fn in_memory(&self) -> Option<Option<Bytes>> {
        match &self.inner {
            Req::Full(b) => Some(b.clone()),
            Req::Stream(..) => None,
        }
    }

    /// Marks `link`'s connection as writing this body until hyper drops it. A body in memory
    /// needs no mark: hyper holds all of it at once or within a few frames, and a connection
    /// it still writes is not ready, so its next request closes it after `READY_WAIT`.
    #[inline]
    pub(crate) fn track(&mut self, link: &Arc<Link>) {
        if let Req::Stream(_, writing) = &mut self.inner {
            // The mark of an earlier try (another connection) goes first.
            drop(writing.take());
            *writing = Some(Writing::start(link));
        }
    }
}

/// hyper drops a body once it has taken its last frame, or when the request failed: either
/// way, nothing more of it will be written.
impl Drop for RequestBody {
    fn drop(&mut self) {
        if let Some(written) = &self.written {
            written.fire();
        }
    }
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Req::Full(b) => write!(f, "RequestBody({} bytes)", b.as_ref().map_or(0, Bytes::len)),
            Req::Stream(..) => f.write_str("RequestBody(stream)"),
        }
    }
}

impl HttpBody for RequestBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let polled = match &mut self.inner {
            // In frames of at most `FRAME` bytes (each a cheap slice): hyper takes the next
            // one as it writes, so the last one is taken when the body is nearly written.
            Req::Full(slot) => {
                let frame = slot.take().filter(|b| !b.is_empty()).map(|mut bytes| {
                    if bytes.len() > FRAME {
                        *slot = Some(bytes.split_off(FRAME));
                    }
                    Ok(Frame::data(bytes))
                });
                Poll::Ready(frame)
            }
            Req::Stream(s, _) => Pin::new(s).poll_frame(cx),
        };
        let ended = match &polled {
            Poll::Ready(Some(Ok(_))) => self.is_end_stream(),
            Poll::Ready(_) => true,
            Poll::Pending => false,
        };
        if ended && let Some(written) = &self.written {
            written.fire();
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Req::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            Req::Stream(s, _) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Req::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Req::Stream(s, _) => s.size_hint(),
        }
    }
}

/// A file as a body of exactly the length its metadata gave: a file that grows meanwhile is
/// cut there, one that shrinks fails the request (hyper would otherwise send a body shorter
/// than its `Content-Length`).
struct FileBody {
    reader: tokio_util::io::ReaderStream<tokio::fs::File>,
    left: u64,
}

impl HttpBody for FileBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        use futures_core::Stream as _;
        if self.left == 0 {
            return Poll::Ready(None);
        }
        match std::task::ready!(Pin::new(&mut self.reader).poll_next(cx)) {
            Some(Ok(mut chunk)) => {
                if chunk.len() as u64 > self.left {
                    chunk.truncate(self.left as usize);
                }
                self.left -= chunk.len() as u64;
                Poll::Ready(Some(Ok(Frame::data(chunk))))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(e))),
            None => Poll::Ready(Some(Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("the file ended {} bytes before its length", self.left),
            )))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.left)
    }
}

impl From<()> for RequestBody {
    fn from(_: ()) -> Self {
        RequestBody::empty()
    }
}

impl From<Bytes> for RequestBody {
    fn from(b: Bytes) -> Self {
        RequestBody::of(Req::Full(Some(b)))
    }
}

impl From<String> for RequestBody {
    fn from(s: String) -> Self {
        Bytes::from(s).into()
    }
}

impl From<&'static str> for RequestBody {
    fn from(s: &'static str) -> Self {
        Bytes::from_static(s.as_bytes()).into()
    }
}

impl From<Vec<u8>> for RequestBody {
    fn from(v: Vec<u8>) -> Self {
        Bytes::from(v).into()
    }
}

impl From<&'static [u8]> for RequestBody {
    fn from(s: &'static [u8]) -> Self {
        Bytes::from_static(s).into()
    }
}

/// The origin (routed through the settings' proxies), and the request as HTTP/1.1 sends it:
/// origin-form target, `Host` set; to a forward proxy (an `http` URL through a proxy),
/// absolute-form with `Host` and the proxy's `Proxy-Authorization`, never HTTP/2.
pub(crate) fn prepare(
    req: Request<RequestBody>,
    settings: &Settings,
) -> Result<(Origin, Request<RequestBody>), Error> {
    let origin = Origin::routed(req.uri(), &settings.proxies)?;
    let forward = origin.is_proxy_forward();
    let h2 = settings.http2_prior_knowledge && !forward;
    let close = settings.disable_keep_alives && !h2;
    let (mut parts, body) = req.into_parts();
    if parts
        .uri
        .authority()
        .is_some_and(|a| a.as_str().contains('@'))
    {
        strip_userinfo(&mut parts.uri, &mut parts.headers);
    }
    if !parts.headers.contains_key(HOST) && !h2 {
        // From the `String`'s own buffer: no copy.
        let host = HeaderValue::from_maybe_shared(Bytes::from(origin.authority()))
            .map_err(|_| Error::invalid_url(&parts.uri, "has a host that is not a valid header"))?;
        parts.headers.insert(HOST, host);
    }
    if h2 {
        // HTTP/2 carries the authority as a pseudo-header: keep the URI absolute.
        return Ok((origin, Request::from_parts(parts, body)));
    }
    if forward {
        absolute_form(&mut parts.uri);
        if let Some(auth) = origin.proxy().and_then(|p| p.auth()) {
            parts.headers.insert(PROXY_AUTHORIZATION, auth.clone());
        }
    } else {
        parts.uri = parts
            .uri
            .path_and_query()
            .map_or_else(|| Uri::from_static("/"), |pq| Uri::from(pq.clone()));
    }
    if parts.version != Version::HTTP_10 {
        parts.version = Version::HTTP_11;
    }
    if close {
        parts
            .headers
            .insert(CONNECTION, HeaderValue::from_static("close"));
    }
    Ok((origin, Request::from_parts(parts, body)))
}

/// The absolute-form target a forward proxy needs (`http://host[:port]/path?query`): the
/// URI as given (its userinfo already out), with `/` for an empty path.
fn absolute_form(uri: &mut Uri) {
    if uri.path_and_query().is_some() {
        return;
    }
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    if let Ok(absolute) = Uri::from_parts(parts) {
        *uri = absolute;
    }
}

/// Takes the userinfo out of an absolute `uri`; unless `headers` has an `Authorization`
/// already, it becomes `Authorization: Basic` (Go's `http.Client.send`).
pub(crate) fn strip_userinfo(uri: &mut Uri, headers: &mut HeaderMap) {
    if let Some(userinfo) = take_userinfo(uri)
        && !headers.contains_key(AUTHORIZATION)
    {
        headers.insert(AUTHORIZATION, crate::auth::userinfo_basic(&userinfo));
    }
}

/// Takes the userinfo (`user:password`, as written) out of an absolute `uri`, if it has
/// one; an empty path becomes `/`.
pub(crate) fn take_userinfo(uri: &mut Uri) -> Option<String> {
    let authority = uri.authority()?;
    let (userinfo, host) = authority.as_str().rsplit_once('@')?;
    // `host` is a suffix of a valid authority: it parses.
    let host = host.parse().ok();
    let userinfo = userinfo.to_owned();
    let mut parts = std::mem::take(uri).into_parts();
    parts.authority = host;
    if parts.path_and_query.is_none() {
        parts.path_and_query = Some(http::uri::PathAndQuery::from_static("/"));
    }
    if let Ok(stripped) = Uri::from_parts(parts) {
        *uri = stripped;
    }
    Some(userinfo)
}

/// Makes a request prepared for HTTP/1.1 fit HTTP/2: an absolute URI (the authority travels as
/// a pseudo-header), no `Host` or connection-specific headers.
pub(crate) fn as_h2(origin: &Origin, req: &mut Request<RequestBody>) {
    *req.version_mut() = Version::HTTP_2;
    if req.uri().scheme().is_none() {
        let path = req.uri().path_and_query().map_or("/", |pq| pq.as_str());
        let absolute = format!("{}://{}{path}", origin.scheme(), origin.authority());
        if let Ok(uri) = absolute.parse() {
            *req.uri_mut() = uri;
        }
    }
    let headers = req.headers_mut();
    headers.remove(HOST);
    headers.remove(CONNECTION);
}

/// A request as its caller (or a redirect) made it, before what each try adds (the
/// client's `Accept-Encoding`, the jar's cookies, `Host`, the origin-form target): the one
/// copy of a hop, which a retry sends again and redirects start from. Any request whose body
/// is in memory may go again when provably nothing of it ran; only an idempotent one (Go's
/// `isReplayable`) when the connection merely closed before answering.
pub(crate) struct Snapshot {
    method: Method,
    uri: Uri,
    version: Version,
    headers: http::HeaderMap,
    /// The body again, when it is in memory; `None` for a stream (sent once). Bytes, not a
    /// `RequestBody`: a snapshot is shared (`Sync`) across the tries' awaits.
    body: Option<Option<Bytes>>,
    /// The `Cookie` header the jar gave the hop's first try, which its retries send again
    /// (the jar is asked once per hop, as Go's `http.Client` does).
    pub cookie: Option<HeaderValue>,
}

impl Snapshot {
    /// A copy of `req`, its body's too when in memory.
    pub fn of(req: &Request<RequestBody>) -> Snapshot {
        Snapshot {
            method: req.method().clone(),
            uri: req.uri().clone(),
            version: req.version(),
            headers: req.headers().clone(),
            body: req.body().in_memory(),
            cookie: None,
        }
    }

    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The URL as given (with any userinfo).
    pub fn uri(&self) -> &Uri {
        &self.uri
    }

    pub fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }

    /// The body again, `None` when it was a stream.
    pub fn body(&self) -> Option<RequestBody> {
        let bytes = self.body.clone()?;
        Some(RequestBody::of(Req::Full(bytes)))
    }

    /// Idempotent, or marked with an idempotency key: may go again after the connection
    /// closed before answering. Asked only then.
    pub fn idempotent(&self) -> bool {
        matches!(
            self.method,
            Method::GET | Method::HEAD | Method::OPTIONS | Method::TRACE
        ) || self.headers.contains_key("idempotency-key")
            || self.headers.contains_key("x-idempotency-key")
    }

    /// The request again, as its caller made it; `None` for a streamed body.
    pub fn request(&self) -> Option<Request<RequestBody>> {
        let mut req = Request::new(self.body()?);
        *req.method_mut() = self.method.clone();
        *req.uri_mut() = self.uri.clone();
        *req.version_mut() = self.version;
        *req.headers_mut() = self.headers.clone();
        Some(req)
    }

    /// Its URL without userinfo (the password went out as `Authorization`).
    pub fn into_url(self) -> Uri {
        let mut uri = self.uri;
        if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
            take_userinfo(&mut uri);
        }
        uri
    }
}

/// The connection ended before the response: Go's `errServerClosedIdle` and
/// `transportReadFromServerError`.
pub(crate) fn closed_early(e: &hyper::Error) -> bool {
    e.is_incomplete_message() || e.is_canceled() || e.is_closed() || {
        std::iter::successors(std::error::Error::source(e), |e| (*e).source())
            .any(|e| e.downcast_ref::<std::io::Error>().is_some())
    }
}

/// HTTP/2: the server refused the stream or said in a graceful GOAWAY that it will not
/// process it (RFC 9113, 8.7): it never ran.
pub(crate) fn unprocessed(e: &hyper::Error) -> bool {
    std::iter::successors(std::error::Error::source(e), |e| (*e).source())
        .filter_map(|e| e.downcast_ref::<h2::Error>())
        .any(|e| {
            e.reason() == Some(h2::Reason::REFUSED_STREAM)
                || (e.is_go_away() && e.is_remote() && e.reason() == Some(h2::Reason::NO_ERROR))
        })
}

/// The response to a `101 Switching Protocols`: its connection leaves the pool for good
/// (counted in `detached`) without its connection task being aborted, which hands the socket
/// over to [`Body::upgrade`] and ends.
pub(crate) fn upgrading(
    response: http::Response<hyper::body::Incoming>,
    conn: KeyedPooled<'static, Dialer>,
    counters: &Counters,
) -> http::Response<Body> {
    Counters::bump(&counters.not_reusable);
    let mut http = KeyedPooled::detach(conn);
    http.task = None;
    drop(http);
    // A clone: `hyper::upgrade::on(&mut response)` works too.
    let on = response
        .extensions()
        .get::<hyper::upgrade::OnUpgrade>()
        .cloned();
    response.map(|incoming| Body::upgrading(incoming, on))
}

/// Whether the request forbids another request on its connection: `Connection: close`, or
/// HTTP/1.0 without `Connection: keep-alive`.
pub(crate) fn asks_close(headers: &HeaderMap, version: Version) -> bool {
    has_token(headers, "close")
        || (version == Version::HTTP_10 && !has_token(headers, "keep-alive"))
}

/// Whether a `Connection` header of `headers` lists `token`.
pub(crate) fn has_token(headers: &HeaderMap, token: &str) -> bool {
    headers.get_all(CONNECTION).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    })
}

/// Whether the connection may carry another request after this response (Go's
/// `persistConn.readLoop` alive check): not after `Connection: close`, an HTTP/1.0 response
/// without keep-alive, a body delimited by the connection's close, or an upgrade.
pub(crate) fn keeps_alive<B>(response: &http::Response<B>, head: bool) -> bool {
    let headers = response.headers();
    if response.status() == http::StatusCode::SWITCHING_PROTOCOLS || has_token(headers, "close") {
        return false;
    }
    if response.version() == Version::HTTP_10 && !has_token(headers, "keep-alive") {
        return false;
    }
    let status = response.status();
    let bodiless = head
        || status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED;
    bodiless
        || headers.contains_key(http::header::CONTENT_LENGTH)
        || headers.contains_key(http::header::TRANSFER_ENCODING)
}
