//! The socket under a session: [`Socket`] (TCP or Unix), [`Counted`] (what tokio-postgres
//! gets) and [`Observed`] (the layer whose plain text [`Frames`] follows).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

use super::frames::Read;
use super::{Frames, Wire};

/// A TCP or Unix socket.
pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl AsyncRead for Socket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Socket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// The socket tokio-postgres gets: it counts the bytes written into its [`Wire`], and its
/// [`Observed`] layer follows the framing of what passes in plain text.
pub(crate) struct Counted {
    io: Observed<Socket>,
    /// For cancel requests: a shutdown completes only once the server has closed its side.
    until_eof: Option<Shutdown>,
}

/// Where a shutdown that waits for the peer's EOF is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    NotYet,
    Sent,
}

impl Counted {
    pub fn new(socket: Socket, wire: Arc<Wire>, frames: Frames) -> Self {
        Counted {
            io: Observed {
                inner: socket,
                wire,
                frames,
            },
            until_eof: None,
        }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        #[cfg(feature = "testing")]
        if self.io.wire.fail_next_write.swap(false, Ordering::AcqRel) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let polled = Pin::new(&mut self.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            self.io.wire.written.fetch_add(n as u64, Ordering::AcqRel);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.until_eof != Some(Shutdown::Sent) {
            std::task::ready!(Pin::new(&mut self.io).poll_shutdown(cx))?;
            if self.until_eof.is_none() {
                return Poll::Ready(Ok(()));
            }
            self.until_eof = Some(Shutdown::Sent);
        }
        // A cancel request: PostgreSQL closes the connection once it has signalled the
        // statement's backend. Returning earlier would let the caller's next statement race
        // the signal (and be cancelled instead).
        let mut scratch = [0u8; 64];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            std::task::ready!(Pin::new(&mut self.io.inner).poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
    }
}

impl Socket {
    /// The socket of a cancel request: not counted, and its shutdown waits until the server
    /// has closed the connection, which it does once it has acted on the request.
    pub fn for_cancel(self) -> Counted {
        Counted {
            until_eof: Some(Shutdown::NotYet),
            ..Counted::new(self, Arc::new(Wire::default()), Frames::off())
        }
    }
}

/// A stream whose plain text [`Frames`] follows: the socket of a plain session, or the TLS
/// stream of an encrypted one (the socket under it sees only ciphertext then).
pub(crate) struct Observed<S> {
    inner: S,
    wire: Arc<Wire>,
    frames: Frames,
}

#[cfg_attr(not(feature = "tls"), allow(dead_code))]
impl<S> Observed<S> {
    /// A TLS stream that carries the session from its startup message on.
    pub fn new(inner: S, wire: Arc<Wire>) -> Self {
        Observed {
            inner,
            wire,
            frames: Frames::plain(),
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Observed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        loop {
            std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
            let end = buf.filled().len();
            if end == before {
                return Poll::Ready(Ok(())); // The end of the stream.
            }
            let mut at = before;
            while let Read::Elide { from, to } =
                this.frames.on_read(&buf.filled()[at..], &this.wire)?
            {
                // A message the client must not see (see `Frames`): the bytes after it
                // move down over it.
                let (from, to, end) = (at + from, at + to, buf.filled().len());
                buf.filled_mut().copy_within(to..end, from);
                buf.set_filled(end - (to - from));
                at = from;
            }
            if buf.filled().len() > before {
                return Poll::Ready(Ok(()));
            }
            // All of it was dropped: an empty read would say the stream ended.
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Observed<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.frames.on_write(&buf[..n], &this.wire);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<S: tokio_postgres::tls::TlsStream + Unpin> tokio_postgres::tls::TlsStream for Observed<S> {
    fn channel_binding(&self) -> tokio_postgres::tls::ChannelBinding {
        self.inner.channel_binding()
    }
}
