//! What crosses a session's socket, as we see it from under tokio-postgres.
//!
//! [`Counted`] is the socket tokio-postgres gets. It counts the bytes written (a statement
//! that failed while the count did not move provably never reached the server: the one case
//! the bad-connection retry may run again, pgx's `SafeToRetry`), and [`Frames`] follows the
//! protocol's message framing in both directions, above TLS when the session is encrypted
//! ([`Observed`] wraps the TLS stream then). From the framing it keeps, in the [`Wire`] the
//! session shares with its connection task:
//! - the server's own word on the session: the transaction status of the last ReadyForQuery
//!   (`I` idle, `T` in a transaction, `E` in a failed one), and whether every request that
//!   asks for one (a simple query, a `Sync`, the startup) has had its ReadyForQuery. Whatever
//!   opened a transaction (our `begin`, `BEGIN` in SQL text, a function), the server says so.
//! - the replies to the current statement, to tell a statement the server never answered
//!   (terminated between commands) from one it may have run;
//! - a bound on messages before the session is ready: a server (or anything on the path)
//!   announcing a 1 GiB message during startup is refused before tokio-postgres buffers it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};

/// The longest message a server may send before the session is ready (authentication,
/// parameters, its key, a notice or an error): PostgreSQL's are a few hundred bytes.
pub(crate) const STARTUP_MESSAGE_LIMIT: u64 = 64 * 1024;

/// What the connection task and its users share: bytes written, what the framing showed,
/// and the task's exit error.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    written: AtomicU64,
    /// Requests written that the server answers with one ReadyForQuery each.
    syncs: AtomicU64,
    /// ReadyForQuery messages received.
    readies: AtomicU64,
    /// The status byte of the last ReadyForQuery (0 before the first).
    status: AtomicU8,
    /// Replies received: every message but the asynchronous ones (notices, notifications,
    /// parameter changes).
    replies: AtomicU64,
    /// The type of the last reply.
    last_reply: AtomicU8,
    /// The server process of the session, from its BackendKeyData (0 before it came).
    pid: AtomicU32,
    exit: Mutex<Option<Arc<tokio_postgres::Error>>>,
    /// Feature `testing`: fail the next write as a reset socket would, writing nothing.
    #[cfg(feature = "testing")]
    pub(crate) fail_next_write: std::sync::atomic::AtomicBool,
}

/// The session's transaction status, as the server last reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxStatus {
    /// Every request answered, and the last ReadyForQuery said `I`: no transaction.
    Idle,
    /// Every request answered, and the server is in a transaction block (`T`) or a failed
    /// one (`E`).
    InTransaction,
    /// A request has not had its ReadyForQuery yet (or the server sent an unknown status):
    /// the status is not known.
    Unsettled,
}

/// Replies seen so far, to compare before and after a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    replies: u64,
}

impl Wire {
    /// Bytes that reached the socket so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Why the connection task ended, when it ended with an error.
    pub fn exit_error(&self) -> Option<Arc<tokio_postgres::Error>> {
        self.exit.lock().clone()
    }

    pub(crate) fn set_exit(&self, e: tokio_postgres::Error) {
        *self.exit.lock() = Some(Arc::new(e));
    }

    /// The server's last word on the session's transaction.
    pub fn tx_status(&self) -> TxStatus {
        let readies = self.readies.load(Ordering::Acquire);
        let status = self.status.load(Ordering::Acquire);
        if readies != self.syncs.load(Ordering::Acquire) {
            return TxStatus::Unsettled;
        }
        match status {
            b'I' => TxStatus::Idle,
            b'T' | b'E' => TxStatus::InTransaction,
            _ => TxStatus::Unsettled,
        }
    }

    /// The server process serving the session (`pg_backend_pid()`), from the
    /// BackendKeyData of its startup; `None` before it came (or behind a pooler that sends
    /// none).
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::Acquire)).filter(|&p| p != 0)
    }

    /// Requests written so far that the server answers with a ReadyForQuery (whatever
    /// sent them: this crate, or the caller through [`PgConn::client`](crate::PgConn::client)).
    pub fn requests(&self) -> u64 {
        self.syncs.load(Ordering::Acquire)
    }

    /// A COPY FROM STDIN started through the extended protocol: the server ignores the
    /// Sync written after its Execute (it is in copy mode by then), so that request gets no
    /// ReadyForQuery of its own.
    pub fn sync_ignored(&self) {
        self.syncs.fetch_sub(1, Ordering::AcqRel);
    }

    /// Where the replies are now.
    pub fn mark(&self) -> Mark {
        Mark {
            replies: self.replies.load(Ordering::Acquire),
        }
    }

    /// Whether nothing but an error message (or nothing at all) came since `mark`: the
    /// error, if any, was the first reply.
    pub fn at_most_an_error_since(&self, mark: Mark) -> bool {
        match self.replies.load(Ordering::Acquire) - mark.replies {
            0 => true,
            1 => self.last_reply.load(Ordering::Acquire) == b'E',
            _ => false,
        }
    }
}

/// What a [`Frames`] looks at in one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Nothing: TLS runs above this layer, which sees only ciphertext.
    Off,
    /// Reading: the one-byte answer to an SSLRequest.
    SslAnswer,
    /// Writing: an untyped message (SSLRequest or startup) comes next.
    Untyped,
    /// Typed messages: a type byte, a 4-byte length (itself included), the body.
    Messages,
}

/// Where one direction is within the current message.
#[derive(Debug, Clone, Copy)]
struct Cursor {
    phase: Phase,
    head: [u8; 8],
    have: usize,
    /// Body bytes of the current message still to come.
    left: u64,
    /// The next body byte is a ReadyForQuery's status.
    status_next: bool,
    /// Bytes of a BackendKeyData's process id still to come, and those seen so far.
    pid_left: u8,
    pid: u32,
}

impl Cursor {
    /// Passes over what `data` holds of the current message's body; returns the rest.
    fn skip_body<'d>(&mut self, data: &'d [u8]) -> &'d [u8] {
        let n = usize::try_from(self.left)
            .unwrap_or(usize::MAX)
            .min(data.len());
        self.left -= n as u64;
        &data[n..]
    }

    fn new(phase: Phase) -> Self {
        Cursor {
            phase,
            head: [0; 8],
            have: 0,
            left: 0,
            status_next: false,
            pid_left: 0,
            pid: 0,
        }
    }
}

/// The SSLRequest code (its untyped message is 8 bytes: length, then this).
const SSL_REQUEST: u32 = 80_877_103;

/// Follows the message framing of one session in both directions (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frames {
    read: Cursor,
    write: Cursor,
    /// The first ReadyForQuery came: startup is over.
    ready: bool,
}

impl Frames {
    /// A session without TLS: the startup message, then typed messages.
    pub fn plain() -> Self {
        Frames {
            read: Cursor::new(Phase::Messages),
            write: Cursor::new(Phase::Untyped),
            ready: false,
        }
    }

    /// The socket under a session that asks for TLS first: the SSLRequest and its answer;
    /// then nothing if the server said yes (the TLS layer's [`Observed`] takes over), or the
    /// plain session if it said no.
    #[cfg_attr(not(any(feature = "tls", test)), allow(dead_code))]
    pub fn before_ssl() -> Self {
        Frames {
            read: Cursor::new(Phase::SslAnswer),
            write: Cursor::new(Phase::Untyped),
            ready: false,
        }
    }

    /// Sees nothing (a socket under direct TLS, a cancel request).
    pub fn off() -> Self {
        Frames {
            read: Cursor::new(Phase::Off),
            write: Cursor::new(Phase::Off),
            ready: false,
        }
    }

    /// Bytes the server sent.
    fn on_read(&mut self, mut data: &[u8], wire: &Wire) -> io::Result<()> {
        if self.read.phase == Phase::SslAnswer {
            let Some((&answer, rest)) = data.split_first() else {
                return Ok(());
            };
            data = rest;
            if answer == b'S' {
                self.read.phase = Phase::Off;
                self.write.phase = Phase::Off;
                return Ok(());
            }
            self.read.phase = Phase::Messages;
        }
        if self.read.phase != Phase::Messages {
            return Ok(());
        }
        let c = &mut self.read;
        while !data.is_empty() {
            if c.left > 0 {
                if c.status_next {
                    c.status_next = false;
                    wire.status.store(data[0], Ordering::Release);
                    wire.readies.fetch_add(1, Ordering::AcqRel);
                    self.ready = true;
                }
                if c.pid_left > 0 {
                    let n = usize::from(c.pid_left).min(data.len());
                    for &b in &data[..n] {
                        c.pid = c.pid << 8 | u32::from(b);
                    }
                    c.pid_left -= n as u8;
                    c.left -= n as u64;
                    data = &data[n..];
                    if c.pid_left == 0 {
                        wire.pid.store(c.pid, Ordering::Release);
                    }
                    continue;
                }
                data = c.skip_body(data);
                continue;
            }
            if c.have == 0 {
                let kind = data[0];
                if !matches!(kind, b'N' | b'A' | b'S') {
                    wire.last_reply.store(kind, Ordering::Release);
                    wire.replies.fetch_add(1, Ordering::AcqRel);
                }
            }
            let n = (5 - c.have).min(data.len());
            c.head[c.have..c.have + n].copy_from_slice(&data[..n]);
            c.have += n;
            data = &data[n..];
            if c.have < 5 {
                continue;
            }
            c.have = 0;
            let kind = c.head[0];
            let len = be32(&c.head[1..5]);
            if len < 4 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "the server sent a message with an invalid length",
                ));
            }
            if !self.ready && len > STARTUP_MESSAGE_LIMIT {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "the server announced a {len}-byte message before the session was \
                         ready; at most {STARTUP_MESSAGE_LIMIT} bytes are accepted then"
                    ),
                ));
            }
            c.left = len - 4;
            c.status_next = kind == b'Z' && c.left > 0;
            if kind == b'K' && c.left >= 4 {
                (c.pid_left, c.pid) = (4, 0);
            }
        }
        Ok(())
    }

    /// Bytes that reached the server.
    fn on_write(&mut self, mut data: &[u8], wire: &Wire) {
        let c = &mut self.write;
        while !data.is_empty() && c.phase != Phase::Off {
            if c.left > 0 {
                data = c.skip_body(data);
                continue;
            }
            let typed = c.phase == Phase::Messages;
            if typed && c.have == 0 && matches!(data[0], b'Q' | b'S' | b'F') {
                // A simple query, a Sync or a function call: answered by one ReadyForQuery.
                wire.syncs.fetch_add(1, Ordering::AcqRel);
            }
            // A typed header is the type and the length; an untyped one (SSLRequest,
            // startup) the length and a code.
            let size = if typed { 5 } else { 8 };
            let n = (size - c.have).min(data.len());
            c.head[c.have..c.have + n].copy_from_slice(&data[..n]);
            c.have += n;
            data = &data[n..];
            if c.have < size {
                continue;
            }
            c.have = 0;
            if typed {
                c.left = be32(&c.head[1..5]).saturating_sub(4);
            } else {
                c.left = be32(&c.head[0..4]).saturating_sub(8);
                if be32(&c.head[4..8]) != u64::from(SSL_REQUEST) {
                    // The startup message: the session's first ReadyForQuery answers it.
                    wire.syncs.fetch_add(1, Ordering::AcqRel);
                    c.phase = Phase::Messages;
                }
            }
        }
    }
}

fn be32(b: &[u8]) -> u64 {
    u64::from(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

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
        std::task::ready!(Pin::new(&mut this.inner).poll_read(cx, buf))?;
        this.frames.on_read(&buf.filled()[before..], &this.wire)?;
        Poll::Ready(Ok(()))
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

/// A second handle on a session's socket (a `dup`), to look at it without reading: the
/// connection task owns the socket and may not have noticed yet that the server hung up.
#[derive(Debug)]
pub(crate) struct Probe(pub(crate) socket2::Socket);

/// What a [`Probe`] saw on an idle session's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Nothing to read: as alive as a socket can tell.
    Quiet,
    /// The server sent something nobody asked for (a notice, or its last words).
    Pending,
    /// The server closed the socket, or the socket failed.
    Closed,
}

impl Probe {
    /// A non-blocking peek (pgx's `CheckConn`, without consuming anything).
    pub fn look(&self) -> Liveness {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match self.0.peek(&mut buf) {
            Ok(0) => Liveness::Closed,
            Ok(_) => Liveness::Pending,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Liveness::Quiet,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Liveness::Pending,
            Err(_) => Liveness::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![kind];
        m.extend_from_slice(&(body.len() as u32 + 4).to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn startup() -> Vec<u8> {
        let body = b"\0\x03\0\0user\0me\0\0";
        let mut m = (body.len() as u32 + 4).to_be_bytes().to_vec();
        m.extend_from_slice(body);
        m
    }

    /// Feeds `data` one split at a time: every way of cutting it in two, and byte by byte.
    fn splits(data: &[u8]) -> Vec<Vec<&[u8]>> {
        let mut all: Vec<Vec<&[u8]>> = (0..=data.len())
            .map(|i| vec![&data[..i], &data[i..]])
            .collect();
        all.push(data.chunks(1).collect());
        all
    }

    #[test]
    fn the_status_follows_ready_for_query_however_the_bytes_are_cut() {
        let mut server = Vec::new();
        server.extend(msg(b'R', &[0, 0, 0, 0]));
        server.extend(msg(b'S', b"a\0b\0"));
        server.extend(msg(b'K', &[0, 1, 0xE2, 0x40, 9, 9, 9, 9]));
        server.extend(msg(b'Z', b"I"));
        server.extend(msg(b'C', b"BEGIN\0"));
        server.extend(msg(b'Z', b"T"));
        let mut client = startup();
        client.extend(msg(b'Q', b"BEGIN\0"));
        for cut in splits(&server) {
            let wire = Wire::default();
            let mut f = Frames::plain();
            f.on_write(&client, &wire);
            assert_eq!(wire.tx_status(), TxStatus::Unsettled);
            for part in cut {
                f.on_read(part, &wire).unwrap();
            }
            assert_eq!(wire.tx_status(), TxStatus::InTransaction);
            assert_eq!(wire.pid(), Some(123_456), "the BackendKeyData's process id");
        }
        for cut in splits(&client) {
            let wire = Wire::default();
            let mut f = Frames::plain();
            for part in cut {
                f.on_write(part, &wire);
            }
            assert_eq!(
                wire.syncs.load(Ordering::Relaxed),
                2,
                "startup and one query"
            );
        }
    }

    #[test]
    fn a_request_not_yet_answered_leaves_the_status_unsettled() {
        let wire = Wire::default();
        let mut f = Frames::plain();
        f.on_write(&startup(), &wire);
        f.on_read(&msg(b'Z', b"I"), &wire).unwrap();
        assert_eq!(wire.tx_status(), TxStatus::Idle);
        let mut ext = msg(b'P', b"\0SELECT 1\0\0\0");
        ext.extend(msg(b'B', b"\0\0\0\0\0\0\0\0"));
        ext.extend(msg(b'E', b"\0\0\0\0\0"));
        ext.extend(msg(b'S', b""));
        f.on_write(&ext, &wire);
        assert_eq!(wire.tx_status(), TxStatus::Unsettled);
        let mark = wire.mark();
        f.on_read(&msg(b'1', b""), &wire).unwrap();
        assert!(!wire.at_most_an_error_since(mark));
        f.on_read(&msg(b'Z', b"I"), &wire).unwrap();
        assert_eq!(wire.tx_status(), TxStatus::Idle);
    }

    #[test]
    fn an_error_as_the_first_reply_is_told_apart_from_one_after_rows() {
        let wire = Wire::default();
        let mut f = Frames::plain();
        f.on_write(&startup(), &wire);
        f.on_read(&msg(b'Z', b"I"), &wire).unwrap();
        let mark = wire.mark();
        assert!(wire.at_most_an_error_since(mark), "nothing came");
        f.on_read(&msg(b'N', b"notice\0"), &wire).unwrap();
        f.on_read(&msg(b'E', b"SFATAL\0C57P01\0\0"), &wire).unwrap();
        assert!(wire.at_most_an_error_since(mark), "a notice does not count");
        let mark = wire.mark();
        f.on_read(&msg(b'D', b"\0\0"), &wire).unwrap();
        f.on_read(&msg(b'E', b"SFATAL\0C57P01\0\0"), &wire).unwrap();
        assert!(!wire.at_most_an_error_since(mark));
    }

    #[test]
    fn a_huge_message_before_the_session_is_ready_is_refused() {
        let wire = Wire::default();
        let mut f = Frames::plain();
        f.on_write(&startup(), &wire);
        let mut huge = vec![b'E'];
        huge.extend_from_slice(&(1u32 << 30).to_be_bytes());
        let err = f.on_read(&huge, &wire).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        // Once ready, large messages (rows) are the client's business.
        let mut f = Frames::plain();
        f.on_read(&msg(b'Z', b"I"), &wire).unwrap();
        f.on_read(&huge, &wire).unwrap();
    }

    #[test]
    fn after_an_ssl_request_a_yes_hands_over_and_a_no_reads_plain_text() {
        let mut ssl = 8u32.to_be_bytes().to_vec();
        ssl.extend_from_slice(&SSL_REQUEST.to_be_bytes());
        let wire = Wire::default();
        let mut f = Frames::before_ssl();
        f.on_write(&ssl, &wire);
        f.on_read(b"S", &wire).unwrap();
        f.on_read(&[0x16, 3, 3, 0xff, 0xff, 0xff], &wire).unwrap();
        assert_eq!(
            wire.syncs.load(Ordering::Relaxed),
            0,
            "ciphertext is not framed"
        );

        let wire = Wire::default();
        let mut f = Frames::before_ssl();
        f.on_write(&ssl, &wire);
        let mut answer = b"N".to_vec();
        answer.extend(msg(b'R', &[0, 0, 0, 0]));
        f.on_write(&startup(), &wire);
        f.on_read(&answer, &wire).unwrap();
        f.on_read(&msg(b'Z', b"I"), &wire).unwrap();
        assert_eq!(wire.tx_status(), TxStatus::Idle);
    }
}
