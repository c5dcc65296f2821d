//! Bodies: [`RequestBody`] (what a request sends) and [`Body`] (a response's streaming body,
//! which gives its connection back to the pool at its end, or drains it when dropped early).
//!
//! # The lease
//!
//! A response body holds its connection (a pool guard) until one of these:
//! - its last frame is read (for a `Content-Length` body the frame with the last byte; an
//!   empty body at once): back to the pool, if the response allowed keep-alive;
//! - an error or the request's deadline: the connection is closed;
//! - it is dropped early: with a [`Drain`] budget, a task reads the rest and pools the
//!   connection if the body ends within the budget, else closes it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use http_body_util::combinators::UnsyncBoxBody;
use hyper::body::Incoming;
use pool_core::KeyedPooled;
use tokio::time::{Instant, Sleep};

use crate::config::Drain;
use crate::h2::StreamLease;
use crate::manager::{Counters, Dialer, DrainTicket};
use crate::{Error, Phase};

/// A boxed error, as request bodies report them.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A request's body: empty, bytes in memory (which a retry can send again), or a stream.
///
/// Most callers never name it: `()`, [`Bytes`], `String`, `&'static str`, `Vec<u8>` and
/// `&'static [u8]` convert into it.
pub struct RequestBody {
    inner: Req,
}

enum Req {
    Full(Option<Bytes>),
    Stream(UnsyncBoxBody<Bytes, BoxError>),
}

impl RequestBody {
    /// No body.
    pub fn empty() -> Self {
        RequestBody {
            inner: Req::Full(None),
        }
    }

    /// A streaming body. A request with one is never retried after a failure that may have
    /// sent some of it: it cannot be sent twice.
    pub fn stream<B>(body: B) -> Self
    where
        B: HttpBody<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        RequestBody {
            inner: Req::Stream(body.map_err(Into::into).boxed_unsync()),
        }
    }

    /// A copy for a retry: only an in-memory body can be sent again.
    pub(crate) fn try_clone(&self) -> Option<Self> {
        match &self.inner {
            Req::Full(b) => Some(RequestBody {
                inner: Req::Full(b.clone()),
            }),
            Req::Stream(_) => None,
        }
    }
}

impl std::fmt::Debug for RequestBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.inner {
            Req::Full(b) => write!(f, "RequestBody({} bytes)", b.as_ref().map_or(0, Bytes::len)),
            Req::Stream(_) => f.write_str("RequestBody(stream)"),
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
        match &mut self.inner {
            Req::Full(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(Frame::data(b))),
            ),
            Req::Stream(s) => Pin::new(s).poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Req::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            Req::Stream(s) => s.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Req::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Req::Stream(s) => s.size_hint(),
        }
    }
}

impl From<()> for RequestBody {
    fn from(_: ()) -> Self {
        RequestBody::empty()
    }
}

impl From<Bytes> for RequestBody {
    fn from(b: Bytes) -> Self {
        RequestBody {
            inner: Req::Full(Some(b)),
        }
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

/// What a response body holds while it streams.
pub(crate) enum Hold {
    /// An HTTP/1.1 connection, whole.
    Conn(KeyedPooled<'static, Dialer>),
    /// One stream of a shared HTTP/2 connection.
    Stream(StreamLease),
}

/// A connection (or a stream of one) lent to a response body.
pub(crate) struct Lease {
    pub hold: Hold,
    /// The response allows another request on this connection.
    pub keep: bool,
    pub drain: Drain,
    pub counters: Arc<Counters>,
}

impl Lease {
    /// The body ended: back to the pool, or closed when the response said so.
    fn finish(self) {
        if self.keep {
            Counters::bump(&self.counters.body_eof);
        } else {
            Counters::bump(&self.counters.not_reusable);
        }
        match self.hold {
            Hold::Conn(mut conn) => {
                conn.reusable &= self.keep;
                drop(conn);
            }
            Hold::Stream(stream) => drop(stream),
        }
    }

    /// The body failed or was abandoned: an HTTP/1.1 connection is closed; an HTTP/2 stream
    /// is reset by hyper and its connection goes on.
    fn close(self) {
        match self.hold {
            Hold::Conn(conn) => KeyedPooled::discard(conn),
            Hold::Stream(stream) => drop(stream),
        }
    }

    /// Marks a drain of this connection as in flight (HTTP/1.1 only).
    fn ticket(&self) -> Option<DrainTicket> {
        match &self.hold {
            Hold::Conn(conn) => Some(DrainTicket::new(&self.counters, KeyedPooled::key(conn))),
            Hold::Stream(_) => None,
        }
    }

    /// A dropped HTTP/2 body costs only its stream: nothing to drain.
    fn is_stream(&self) -> bool {
        matches!(self.hold, Hold::Stream(_))
    }
}

/// A response's body: streams as it arrives, and gives the connection back to the pool as
/// soon as its end is read.
///
/// Read it with [`bytes`](Body::bytes), [`text`](Body::text), [`chunk`](Body::chunk), or as
/// any [`http_body::Body`]. Dropping it early is fine: within the client's [`Drain`] budget
/// the connection is still reused (Go would close it).
///
/// # Cancel safety
/// Dropping a read future loses nothing but the chunk it was reading; dropping the body
/// starts the drain.
pub struct Body {
    incoming: Option<Incoming>,
    lease: Option<Lease>,
    deadline: Option<Pin<Box<Sleep>>>,
    failed: bool,
}

impl Body {
    pub(crate) fn new(incoming: Incoming, lease: Lease, deadline: Option<Instant>) -> Body {
        let mut body = Body {
            incoming: Some(incoming),
            lease: Some(lease),
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            failed: false,
        };
        if body.at_end() {
            body.finish();
        }
        body
    }

    fn at_end(&self) -> bool {
        self.incoming.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn finish(&mut self) {
        self.deadline = None;
        if let Some(lease) = self.lease.take() {
            lease.finish();
        }
    }

    fn fail(&mut self) {
        self.failed = true;
        self.deadline = None;
        self.incoming = None;
        if let Some(lease) = self.lease.take() {
            lease.close();
        }
    }

    /// The next chunk of data, or `None` at the end (trailers are skipped).
    ///
    /// # Errors
    /// [`is_body`](Error::is_body) when the connection broke mid-body;
    /// [`is_timeout`](Error::is_timeout) when the client's `timeout` ran out.
    pub async fn chunk(&mut self) -> Result<Option<Bytes>, Error> {
        loop {
            match self.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(e),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The whole body.
    ///
    /// # Errors
    /// As [`chunk`](Body::chunk).
    pub async fn bytes(self) -> Result<Bytes, Error> {
        self.bytes_limited(usize::MAX).await
    }

    /// The whole body, failing once it passes `limit` bytes (the connection is then closed).
    ///
    /// # Errors
    /// [`is_too_large`](Error::is_too_large) past the limit; otherwise as
    /// [`chunk`](Body::chunk).
    pub async fn bytes_limited(mut self, limit: usize) -> Result<Bytes, Error> {
        // A body of one chunk is returned as it is; one of several is copied into a buffer
        // sized once from its length (a few MiB at most up front).
        let expected = self.size_hint().exact().unwrap_or(0);
        let capacity = usize::try_from(expected)
            .unwrap_or(0)
            .min(limit)
            .min(4 << 20);
        let mut all = BytesMut::new();
        while let Some(chunk) = self.chunk().await? {
            if all.len() + chunk.len() > limit {
                self.fail();
                return Err(Error::new(crate::error::Kind::TooLarge(limit)));
            }
            if all.is_empty() {
                if HttpBody::is_end_stream(&self) {
                    return Ok(chunk);
                }
                all.reserve(capacity.max(chunk.len()));
            }
            all.extend_from_slice(&chunk);
        }
        Ok(all.freeze())
    }

    /// The whole body as text (invalid UTF-8 replaced).
    ///
    /// # Errors
    /// As [`chunk`](Body::chunk).
    pub async fn text(self) -> Result<String, Error> {
        let bytes = self.bytes().await?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("holds_connection", &self.lease.is_some())
            .field("end", &self.at_end())
            .finish()
    }
}

impl HttpBody for Body {
    type Data = Bytes;
    type Error = Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let this = &mut *self;
        if let Some(sleep) = this.deadline.as_mut()
            && sleep.as_mut().poll(cx).is_ready()
        {
            this.fail();
            return Poll::Ready(Some(Err(Error::timeout(Phase::Request))));
        }
        let Some(incoming) = this.incoming.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(&mut *incoming).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if incoming.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => {
                this.fail();
                Poll::Ready(Some(Err(Error::new(crate::error::Kind::Body(e)))))
            }
            None => {
                this.finish();
                this.incoming = None;
                Poll::Ready(None)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.failed || self.at_end()
    }

    fn size_hint(&self) -> SizeHint {
        self.incoming
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for Body {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        if self.at_end() {
            lease.finish();
            return;
        }
        let Some(mut incoming) = self.incoming.take() else {
            return lease.close();
        };
        if lease.is_stream() {
            return lease.close();
        }
        if !lease.keep || lease.drain.is_off() {
            Counters::bump(&lease.counters.drain_failed);
            return lease.close();
        }
        // What hyper has already buffered is read here, so a small body needs no task and
        // its connection is idle before the next request looks.
        let mut left = lease.drain.max_bytes;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        loop {
            match Pin::new(&mut incoming).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let n = frame.data_ref().map_or(0, Bytes::len);
                    if n > left {
                        break;
                    }
                    left -= n;
                    if incoming.is_end_stream() {
                        Counters::bump(&lease.counters.drained);
                        return lease.finish();
                    }
                }
                Poll::Ready(None) => {
                    Counters::bump(&lease.counters.drained);
                    return lease.finish();
                }
                Poll::Ready(Some(Err(_))) => break,
                Poll::Pending => match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        let ticket = lease.ticket();
                        drop(rt.spawn(drain(incoming, lease, left, ticket)));
                        return;
                    }
                    Err(_) => break,
                },
            }
        }
        Counters::bump(&lease.counters.drain_failed);
        lease.close();
    }
}

/// Reads what is left of a dropped body within the budget (`left` bytes, the drain time);
/// the connection is pooled if the body ends, closed otherwise.
///
/// `_ticket` marks the drain as in flight until the connection is back (or closed).
async fn drain(mut body: Incoming, lease: Lease, mut left: usize, _ticket: Option<DrainTicket>) {
    let deadline = Instant::now() + lease.drain.max_time;
    loop {
        match tokio::time::timeout_at(deadline, body.frame()).await {
            Ok(Some(Ok(frame))) => {
                let n = frame.data_ref().map_or(0, Bytes::len);
                if n > left {
                    break;
                }
                left -= n;
                if body.is_end_stream() {
                    Counters::bump(&lease.counters.drained);
                    lease.finish();
                    return;
                }
            }
            Ok(None) => {
                Counters::bump(&lease.counters.drained);
                lease.finish();
                return;
            }
            Ok(Some(Err(_))) | Err(_) => break,
        }
    }
    Counters::bump(&lease.counters.drain_failed);
    lease.close();
}
