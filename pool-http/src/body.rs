//! [`Body`]: a response's streaming body, which gives its connection back to the pool at its
//! end, or drains it when dropped early; [`Upgraded`], the connection of a `101`.
//!
//! # The lease
//!
//! A response body holds its connection (a pool guard) until one of these:
//! - its last frame is read (for a `Content-Length` body the frame with the last byte; an
//!   empty body at once): back to the pool, if the response allowed keep-alive, the request
//!   asked for none of `Connection: close`, and the request was written whole. A response
//!   can end before its request (the server answered early, without reading a streamed
//!   body): the connection then goes back only if hyper is done writing within
//!   [`WRITE_WAIT`](lease::WRITE_WAIT) (Go's `maxWriteWaitBeforeConnReuse`), else it is closed;
//! - an error or the request's deadline: the connection is closed;
//! - it is dropped early: with a [`Drain`] budget, what hyper has already read is dropped or
//!   taken at once (a small body is usually whole by then: the caller is woken only once
//!   hyper's pass that read the head is over, see [`Relay`](crate::manager::Relay)), and the
//!   connection is pooled before the drop returns; otherwise hyper's connection task reads the
//!   rest ([`Draining`]) and pools the connection if the body ends within the budget, else
//!   closes it.
//!
//! A `101 Switching Protocols` response holds no lease: its connection left the pool, and
//! [`Body::upgrade`] hands it to the caller.
//!
//! # Decoding
//!
//! A compressed response the client asked for carries a [`Decoder`] (see
//! [`decompress`](crate::decompress)): the body still reads its connection and keeps the
//! lease as above, and hands each compressed chunk to the decoder, whose decoded chunks are
//! what the caller reads. The lease thus follows the compressed bytes: the connection is
//! back when the last of them is read (the decoder ends only there), and a decoded body
//! dropped early is drained like any other. The request's deadline holds until the decoder
//! ends (a small compressed body may take long to decode and read). A body without a decoder
//! pays one branch.

mod lease;
mod upgrade;

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::time::{Instant, Sleep};

use crate::decompress::Decoder;
use crate::{Error, Phase};

pub(crate) use lease::{Draining, Hold, Lease};
pub use upgrade::Upgraded;

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
///
/// [`Drain`]: crate::Drain
pub struct Body {
    incoming: Option<Incoming>,
    lease: Option<Lease>,
    deadline: Option<Pin<Box<Sleep>>>,
    failed: bool,
    /// A `101 Switching Protocols` response: the connection, once hyper hands it over.
    upgrade: Option<OnUpgrade>,
    /// A compressed body: what the caller reads is what this makes of `incoming`. Gone at
    /// the end of the decoded stream or on an error.
    decoder: Option<Box<Decoder>>,
}

impl Body {
    pub(crate) fn new(incoming: Incoming, lease: Lease, deadline: Option<Instant>) -> Body {
        let mut body = Body {
            incoming: Some(incoming),
            lease: Some(lease),
            deadline: deadline.map(|d| Box::pin(tokio::time::sleep_until(d))),
            failed: false,
            upgrade: None,
            decoder: None,
        };
        if body.at_end() {
            body.finish();
        }
        body
    }

    /// The body of a `101 Switching Protocols` response, whose connection left the pool.
    pub(crate) fn upgrading(incoming: Incoming, upgrade: Option<OnUpgrade>) -> Body {
        Body {
            incoming: Some(incoming),
            lease: None,
            deadline: None,
            failed: false,
            upgrade,
            decoder: None,
        }
    }

    /// From now on, what the caller reads is the body decoded by `decoder`.
    pub(crate) fn decode_with(&mut self, decoder: Box<Decoder>) {
        self.decoder = Some(decoder);
    }

    /// The body as it came over the wire has been read to its end.
    fn at_end(&self) -> bool {
        self.incoming.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    /// The body as it came over the wire ended: the lease is over. The request's deadline
    /// is too, unless a decoder still has bytes to give (it goes when the decoder ends).
    fn finish(&mut self) {
        if self.decoder.is_none() {
            self.deadline = None;
        }
        if let Some(lease) = self.lease.take() {
            lease.finish();
        }
    }

    /// Fails the body with `error`, which is told the origin first.
    fn fail_with(&mut self, error: Error) -> Error {
        let error = match &self.lease {
            Some(lease) => error.at(lease.origin()),
            None => error,
        };
        self.fail();
        error
    }

    fn fail(&mut self) {
        self.failed = true;
        self.deadline = None;
        self.incoming = None;
        self.decoder = None;
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

    /// The whole body, failing once it passes `limit` bytes (the connection is then closed,
    /// unless the body had already arrived whole: then it is pooled).
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
                return Err(self.fail_with(Error::too_large(limit)));
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

    /// The connection of a `101 Switching Protocols` response (HTTP/1.1), as the new
    /// protocol's byte stream: Go's `Response.Body` as an `io.ReadWriteCloser`. The connection
    /// left the pool when the `101` arrived (it counts in the pool's `detached`); it closes
    /// when the [`Upgraded`] is dropped.
    ///
    /// # Errors
    /// [`is_body`](Error::is_body) when the response is not a `101` on HTTP/1.1 (hyper's
    /// "no upgrade available" is the source), or when the connection failed before hyper
    /// handed it over.
    ///
    /// # Cancel safety
    /// Dropping the future gives up the connection (it closes).
    ///
    /// # Examples
    ///
    /// A WebSocket-style handshake, then bytes both ways, against a one-shot server on
    /// loopback (hidden below) that switches protocols and echoes.
    ///
    /// ```
    /// # use tokio::io::{AsyncReadExt, AsyncWriteExt};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    /// # let addr = listener.local_addr()?;
    /// # tokio::spawn(async move {
    /// #     let (mut s, _) = listener.accept().await.unwrap();
    /// #     let mut head = Vec::new();
    /// #     while !head.ends_with(b"\r\n\r\n") {
    /// #         let mut b = [0u8; 1];
    /// #         s.read_exact(&mut b).await.unwrap();
    /// #         head.push(b[0]);
    /// #     }
    /// #     s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nconnection: upgrade\r\nupgrade: echo\r\n\r\n").await.unwrap();
    /// #     let mut buf = [0u8; 64];
    /// #     while let Ok(n @ 1..) = s.read(&mut buf).await {
    /// #         s.write_all(&buf[..n]).await.unwrap();
    /// #     }
    /// # });
    /// use tokio::io::{AsyncReadExt, AsyncWriteExt};
    ///
    /// let client = pool_http::Client::new()?;
    /// let request = http::Request::get(format!("http://{addr}/chat"))
    ///     .header("connection", "upgrade")
    ///     .header("upgrade", "echo")
    ///     .body(())?;
    /// let response = client.request(request).await?;
    /// assert_eq!(response.status(), 101);
    /// let mut io = response.into_body().upgrade().await?;
    /// io.write_all(b"ping").await?;
    /// let mut echo = [0u8; 4];
    /// io.read_exact(&mut echo).await?;
    /// assert_eq!(&echo, b"ping");
    /// assert_eq!(client.stats().pool.open, 0, "the connection is the caller's now");
    /// # Ok(()) }
    /// ```
    pub async fn upgrade(mut self) -> Result<Upgraded, Error> {
        // Without one, hyper's own "no upgrade available" error says why.
        let on = self
            .upgrade
            .take()
            .unwrap_or_else(|| hyper::upgrade::on(http::Response::new(())));
        drop(self);
        match on.await {
            Ok(io) => Ok(Upgraded {
                io: TokioIo::new(io),
            }),
            Err(e) => Err(Error::body(e)),
        }
    }
}

impl std::fmt::Debug for Body {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Body")
            .field("holds_connection", &self.lease.is_some())
            .field("decoding", &self.decoder.is_some())
            .field("end", &HttpBody::is_end_stream(self))
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
            let timeout = this.lease.as_ref().and_then(|l| l.timeout);
            let error = this.fail_with(Error::timeout_after(Phase::Request, timeout));
            return Poll::Ready(Some(Err(error)));
        }
        if this.decoder.is_some() {
            return this.poll_decoded(cx);
        }
        this.poll_incoming(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.failed || (self.decoder.is_none() && self.at_end())
    }

    fn size_hint(&self) -> SizeHint {
        if self.decoder.is_some() {
            return SizeHint::default();
        }
        self.incoming
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Body {
    /// The next frame as it came over the wire; the lease ends with the last.
    fn poll_incoming(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        let Some(incoming) = self.incoming.as_mut() else {
            return Poll::Ready(None);
        };
        match ready!(Pin::new(&mut *incoming).poll_frame(cx)) {
            Some(Ok(frame)) => {
                if incoming.is_end_stream() {
                    self.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Some(Err(e)) => Poll::Ready(Some(Err(self.fail_with(Error::body(e))))),
            None => {
                self.finish();
                self.incoming = None;
                Poll::Ready(None)
            }
        }
    }

    /// The next decoded chunk: what the decoder makes of the input it has, and when it has
    /// used it up, the next compressed chunk from the wire (trailers are skipped). Each
    /// chunk is at most [`CHUNK`](crate::decompress::CHUNK) bytes.
    fn poll_decoded(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Error>>> {
        loop {
            let Some(decoder) = self.decoder.as_mut() else {
                return Poll::Ready(None);
            };
            match decoder.poll_chunk(cx) {
                Poll::Ready(Ok(Some(chunk))) => return Poll::Ready(Some(Ok(Frame::data(chunk)))),
                Poll::Ready(Ok(None)) => {
                    // The decoder ends only after the compressed body did: the lease is
                    // over already.
                    debug_assert!(self.at_end(), "decoded to the end before the body ended");
                    self.decoder = None;
                    self.deadline = None;
                    return Poll::Ready(None);
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Some(Err(self.fail_with(e)))),
                Poll::Pending => {}
            }
            let input = match ready!(self.poll_incoming(cx)) {
                Some(Ok(frame)) => match frame.into_data() {
                    Ok(data) => Some(data),
                    Err(_) => continue,
                },
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => None,
            };
            let end = self.at_end();
            let Some(decoder) = self.decoder.as_mut() else {
                return Poll::Ready(None);
            };
            if let Some(data) = input {
                decoder.feed(data);
            }
            // The last compressed byte is in: the decoder can finish without another poll
            // of the connection.
            if end {
                decoder.end_input();
            }
        }
    }
}
