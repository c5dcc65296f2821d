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
//! - the server's report of `client_encoding` (ParameterStatus): a session a statement
//!   left in another encoding than UTF8 is closed when it comes back (see `params`);
//! - bounds on what the server sends that tokio-postgres would keep: before the session is
//!   ready, 64 KiB a message (a server, or anything on the path, announcing a 1 GiB
//!   message during startup is refused before tokio-postgres buffers it) and 1 MiB in all
//!   (endless small messages); and for the parameters it reports (ParameterStatus), which
//!   tokio-postgres keeps for the session's life, the latest value of each name: 64 KiB a
//!   message, 256 names, 1 MiB for the latest values together (endless new parameters sent
//!   to an idle session), however many messages repeat known names. Past a bound the
//!   session ends with a protocol error (`InvalidData`) saying which, which the connection
//!   task keeps as its exit error: a statement cut by it has it as its cause.
//!
//! And it drops one message that would put tokio-postgres out of step: the second
//! ReadyForQuery of a COPY FROM STDIN whose first Sync the server answered (its Execute
//! failed, or it was cancelled before the server read that Sync; see `answers`).

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};

use parking_lot::Mutex;

mod answers;
mod frames;
mod params;
mod socket;

pub(crate) use frames::Frames;
#[cfg_attr(not(feature = "tls"), allow(unused_imports))]
pub(crate) use socket::Observed;
pub(crate) use socket::{Counted, Socket};

/// The longest message a server may send before the session is ready (authentication,
/// parameters, its key, a notice or an error): PostgreSQL's are a few hundred bytes.
pub(crate) const STARTUP_MESSAGE_LIMIT: u64 = 64 * 1024;

/// The most a server may send before the session is ready, all messages together:
/// PostgreSQL's startup is about a kilobyte (authentication, a dozen parameters, its key);
/// this leaves room for notices (a login event trigger's). tokio-postgres keeps every
/// parameter of the startup, so without it a server sending small messages forever grows
/// the client's memory until the connect timeout.
pub(crate) const STARTUP_LIMIT: u64 = 1024 * 1024;

/// The longest ParameterStatus a server may send (its length field: name, value and
/// framing), at any time: PostgreSQL's are a few dozen bytes. Past it the session ends at
/// the message's header, before tokio-postgres buffers the message.
pub(crate) const PARAMETER_MESSAGE_LIMIT: u64 = 64 * 1024;

/// The most parameter names a server may report in a session's life, startup included:
/// PostgreSQL reports about 15 (those marked `GUC_REPORT`). tokio-postgres keeps the latest
/// value of every name it is told of, so without it a server reporting new names to an
/// idle session (nothing asked, no deadline) grows the client's memory without end.
pub(crate) const PARAMETER_NAMES_LIMIT: usize = 256;

/// The most bytes the latest report of each parameter may come to, all names together (each
/// message counted by its length field): PostgreSQL's come to well under 1 KiB. The same
/// name reported again replaces its last value, so the count of messages does not matter:
/// a PostgreSQL 13 (or older) reports a function's `SET` clause twice for each row that
/// calls it, any number of times before one ReadyForQuery.
pub(crate) const PARAMETER_KEPT_LIMIT: u64 = 1024 * 1024;

/// A protocol error: the session ends with it.
fn invalid(why: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, why)
}

/// What the connection task and its users share: bytes written, what the framing showed,
/// and the task's exit error.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    written: AtomicU64,
    /// Requests written that the server answers with one ReadyForQuery each.
    syncs: AtomicU64,
    /// Requests answered: a ReadyForQuery each, one dropped from the stream included, and
    /// two for a COPY FROM STDIN's when the server ignored its first Sync.
    readies: AtomicU64,
    /// COPYs the server started (CopyInResponse and CopyOutResponse messages).
    copies: AtomicU64,
    /// The status byte of the last ReadyForQuery (0 before the first).
    status: AtomicU8,
    /// The status byte of the ReadyForQuery before it.
    prev_status: AtomicU8,
    /// Replies received: every message but the asynchronous ones (notices, notifications,
    /// parameter changes).
    replies: AtomicU64,
    /// The type of the last reply.
    last_reply: AtomicU8,
    /// The server process of the session, from its BackendKeyData (0 before it came).
    pid: AtomicU32,
    /// The server's last report of `client_encoding` was not UTF8 (see `params`).
    foreign_encoding: AtomicBool,
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

    /// A ReadyForQuery's status byte, as the framing reads it.
    fn set_status(&self, status: u8) {
        let prev = self.status.swap(status, Ordering::AcqRel);
        self.prev_status.store(prev, Ordering::Release);
    }

    /// Whether the server's last ReadyForQuery said the session is in a transaction block
    /// (`T`) or a failed one (`E`), whether or not later requests are answered yet.
    pub fn in_block(&self) -> bool {
        matches!(self.status.load(Ordering::Acquire), b'T' | b'E')
    }

    /// Whether the last request (a `COMMIT`, answered) found the session in a failed
    /// transaction block (`E`) and left it out of one: the server rolled back instead of
    /// committing (its tag says `ROLLBACK`, which is no error).
    pub fn rolled_back(&self) -> bool {
        self.tx_status() == TxStatus::Idle && self.prev_status.load(Ordering::Acquire) == b'E'
    }

    /// The server process serving the session (`pg_backend_pid()`), from the
    /// BackendKeyData of its startup; `None` before it came (or behind a pooler that sends
    /// none).
    pub fn pid(&self) -> Option<u32> {
        Some(self.pid.load(Ordering::Acquire)).filter(|&p| p != 0)
    }

    /// Whether the server's last report of the session's `client_encoding` was something
    /// other than UTF8, which tokio-postgres cannot read (set by a statement of the
    /// caller's): such a session must reach nobody else.
    pub fn foreign_encoding(&self) -> bool {
        self.foreign_encoding.load(Ordering::Acquire)
    }

    /// Requests written so far that the server answers with a ReadyForQuery (whatever
    /// sent them: this crate, or the caller through [`PgConn::client`](crate::PgConn::client)).
    pub fn requests(&self) -> u64 {
        self.syncs.load(Ordering::Acquire)
    }

    /// COPYs the server started so far (`COPY ... FROM STDIN` or `TO STDOUT`).
    pub fn copies(&self) -> u64 {
        self.copies.load(Ordering::Acquire)
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

/// A second handle on a session's socket (a `dup`), to look at it without reading: the
/// connection task owns the socket and may not have noticed yet that the server hung up.
///
/// Shared with the connection task, which gives the descriptor up when it ends (see
/// [`Probe::close`]): otherwise the socket would stay open, unread, as long as the pool
/// keeps the dead session, and a server that keeps sending would fill its buffers instead
/// of seeing the session closed.
#[derive(Debug, Clone)]
pub(crate) struct Probe(Arc<Mutex<Option<socket2::Socket>>>);

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
    /// A probe on `dup`, a duplicate of the session's socket.
    pub fn new(dup: socket2::Socket) -> Self {
        Probe(Arc::new(Mutex::new(Some(dup))))
    }

    /// Gives the descriptor up: the socket closes once the connection's own is gone too.
    /// A closed probe looks [`Liveness::Closed`].
    pub fn close(&self) {
        let dup = self.0.lock().take();
        drop(dup);
    }

    /// A non-blocking peek (pgx's `CheckConn`, without consuming anything).
    pub fn look(&self) -> Liveness {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        let dup = self.0.lock();
        let Some(dup) = dup.as_ref() else {
            return Liveness::Closed;
        };
        match dup.peek(&mut buf) {
            Ok(0) => Liveness::Closed,
            Ok(_) => Liveness::Pending,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Liveness::Quiet,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Liveness::Pending,
            Err(_) => Liveness::Closed,
        }
    }
}
