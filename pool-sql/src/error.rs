//! The one error type of pool-sql: an opaque [`Error`] with predicates.

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use tokio_postgres::error::{DbError, SqlState};

/// An error from a [`Db`](crate::Db): the pool, the connection or the server.
///
/// The kind is private; ask with the predicates. The server's error, with its SQLSTATE and
/// message, is kept whole ([`code`](Error::code), [`db_error`](Error::db_error)); so is the
/// pool's error and the connection's. Messages never contain credentials: the connection
/// string is not part of any error.
///
/// When a statement fails because the server ended the session (say `pg_terminate_backend`),
/// the statement itself only sees "connection closed"; the reason arrived on the connection.
/// This error carries both, so `code()` says `57P01` and
/// [`is_server_shutdown`](Error::is_server_shutdown) is true.
///
/// Output is bounded: `Display` prints at most 1,024 bytes of the server's message (then
/// `… (N more bytes)`), and `Debug` at most 4 KiB of each part, since a server may send
/// megabytes of error text; [`db_error`](Error::db_error) keeps it whole.
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: Kind,
    /// Why the connection ended, when the statement died with it.
    exit: Option<Arc<tokio_postgres::Error>>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum Kind {
    #[error("{0}")]
    Pool(#[source] pool_core::Error),
    #[error("postgres statement failed")]
    Statement(#[source] tokio_postgres::Error),
    #[error(
        "postgres statement still running after {0:?} (query_timeout): its session was closed and \
         a cancel request sent"
    )]
    QueryTimeout(std::time::Duration),
    #[error("postgres transaction failed and was rolled back; nothing was committed")]
    TxAborted,
    #[error("query returned {0} rows where one was expected")]
    RowCount(usize),
    #[error("pool-sql config error: `{knob}` {reason}")]
    Config { knob: &'static str, reason: String },
}

impl Error {
    pub(crate) fn new(kind: Kind) -> Self {
        Error {
            inner: Arc::new(Inner { kind, exit: None }),
        }
    }

    pub(crate) fn statement(
        e: tokio_postgres::Error,
        exit: Option<Arc<tokio_postgres::Error>>,
    ) -> Self {
        let exit = if e.is_closed() { exit } else { None };
        Error {
            inner: Arc::new(Inner {
                kind: Kind::Statement(e),
                exit,
            }),
        }
    }

    pub(crate) fn pool(e: pool_core::Error) -> Self {
        Self::new(Kind::Pool(e))
    }

    pub(crate) fn config(knob: &'static str, reason: impl Into<String>) -> Self {
        Self::new(Kind::Config {
            knob,
            reason: reason.into(),
        })
    }

    /// Every error in the chain: this one's cause, its causes, then the connection's exit
    /// error and its causes.
    fn chain(&self) -> impl Iterator<Item = &(dyn StdError + 'static)> {
        let first: Option<&(dyn StdError + 'static)> = StdError::source(&self.inner.kind);
        let exit: Option<&(dyn StdError + 'static)> = self
            .inner
            .exit
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static));
        walk(first).chain(walk(exit))
    }

    /// The server's error: from the statement, else the one that ended the connection.
    pub fn db_error(&self) -> Option<&DbError> {
        self.chain().find_map(|e| e.downcast_ref::<DbError>())
    }

    /// The SQLSTATE of the server's error ([`db_error`](Error::db_error)).
    pub fn code(&self) -> Option<&SqlState> {
        self.db_error().map(DbError::code)
    }

    fn has_code(&self, codes: &[SqlState]) -> bool {
        self.chain()
            .filter_map(|e| e.downcast_ref::<DbError>())
            .any(|d| codes.contains(d.code()))
    }

    fn io_kind(&self, kind: std::io::ErrorKind) -> bool {
        self.chain()
            .filter_map(|e| e.downcast_ref::<std::io::Error>())
            .any(|e| e.kind() == kind)
    }

    /// The pool's error, when the failure was the pool's (timeout, closed, create failed).
    pub fn pool_error(&self) -> Option<&pool_core::Error> {
        match &self.inner.kind {
            Kind::Pool(e) => Some(e),
            _ => None,
        }
    }

    /// Waiting for a connection, connecting, the bounded session reset, or a statement past
    /// [`query_timeout`](crate::DbBuilder::query_timeout) ran out of time. A statement the
    /// server cancelled for its own `statement_timeout` is
    /// [`is_query_canceled`](Error::is_query_canceled).
    pub fn is_timeout(&self) -> bool {
        matches!(self.inner.kind, Kind::QueryTimeout(_))
            || self.pool_error().is_some_and(pool_core::Error::is_timeout)
            || self.io_kind(std::io::ErrorKind::TimedOut)
            || matches!(
                self.connect_error(),
                Some(crate::connect::ConnectError::Timeout { .. })
            )
    }

    /// Why connecting failed, when it did. (The box is transparent: walking the chain
    /// passes from it straight to the cause of the error inside.)
    fn connect_error(&self) -> Option<&crate::connect::ConnectError> {
        self.chain().find_map(|e| {
            e.downcast_ref::<crate::manager::ConnectErrorBox>()
                .map(|b| &b.0)
                .or_else(|| e.downcast_ref::<crate::connect::ConnectError>())
        })
    }

    /// The `Db` was closed, or the connection closed under the statement.
    pub fn is_closed(&self) -> bool {
        match &self.inner.kind {
            Kind::Pool(e) => e.is_closed(),
            Kind::Statement(e) => e.is_closed(),
            _ => false,
        }
    }

    /// The server refused the TCP connection (nothing listens there).
    pub fn is_connect_refused(&self) -> bool {
        self.io_kind(std::io::ErrorKind::ConnectionRefused)
    }

    /// The TLS handshake failed: the server's certificate is not trusted or names another
    /// host, or the server does not speak TLS though the connection string requires it.
    pub fn is_tls(&self) -> bool {
        matches!(
            self.connect_error(),
            Some(crate::connect::ConnectError::Tls { .. })
        )
    }

    /// Authentication failed: wrong password or no such role (SQLSTATE 28P01, 28000).
    pub fn is_auth_failed(&self) -> bool {
        self.has_code(&[
            SqlState::INVALID_PASSWORD,
            SqlState::INVALID_AUTHORIZATION_SPECIFICATION,
        ])
    }

    /// The server has no free connection slot (SQLSTATE 53300, `max_connections`).
    pub fn is_too_many_connections(&self) -> bool {
        self.has_code(&[SqlState::TOO_MANY_CONNECTIONS])
    }

    /// The statement was cancelled: `statement_timeout`, a cancel request or
    /// `pg_cancel_backend` (SQLSTATE 57014). The connection stays usable.
    pub fn is_query_canceled(&self) -> bool {
        self.has_code(&[SqlState::QUERY_CANCELED])
    }

    /// The server ended the session: administrator command (`pg_terminate_backend`, fast
    /// shutdown), crash shutdown, or still starting up (SQLSTATE 57P01, 57P02, 57P03).
    pub fn is_server_shutdown(&self) -> bool {
        self.has_code(&[
            SqlState::ADMIN_SHUTDOWN,
            SqlState::CRASH_SHUTDOWN,
            SqlState::CANNOT_CONNECT_NOW,
        ])
    }

    /// A transaction's statement failed, so its commit rolled back instead.
    pub fn is_tx_aborted(&self) -> bool {
        matches!(self.inner.kind, Kind::TxAborted)
    }

    /// `query_one` found no row (Go's `sql.ErrNoRows`).
    pub fn is_no_rows(&self) -> bool {
        matches!(self.inner.kind, Kind::RowCount(0))
    }

    /// How many rows `query_one` or `query_opt` found when that was the error.
    pub fn row_count(&self) -> Option<usize> {
        match self.inner.kind {
            Kind::RowCount(n) => Some(n),
            _ => None,
        }
    }

    /// A bad connection string or knob; [`knob`](Error::knob) names it.
    pub fn is_config(&self) -> bool {
        matches!(self.inner.kind, Kind::Config { .. })
            || self.pool_error().is_some_and(pool_core::Error::is_config)
    }

    /// The knob a configuration error is about.
    pub fn knob(&self) -> Option<&'static str> {
        match &self.inner.kind {
            Kind::Config { knob, .. } => Some(knob),
            Kind::Pool(e) => e.knob(),
            _ => None,
        }
    }
}

fn walk<'a>(
    start: Option<&'a (dyn StdError + 'static)>,
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(start, |e: &&'a (dyn StdError + 'static)| {
        let e: &'a (dyn StdError + 'static) = *e;
        e.source()
    })
}

/// Most bytes of the server's message that `Display` prints.
const DISPLAY_SERVER_TEXT: usize = 1024;

/// Most bytes `Debug` prints of each part (the kind with its causes, the connection's exit
/// error).
const DEBUG_PART: usize = 4096;

impl fmt::Display for Error {
    /// This level's message and, when the server answered with an error, its message and
    /// SQLSTATE: `postgres statement failed: relation "t" does not exist (42P01)`. The
    /// server's message is cut after 1,024 bytes (on a character boundary) with
    /// `… (N more bytes)`: a server can send megabytes (`RAISE` with a large text), which no
    /// log line should carry. [`db_error`](Error::db_error) has it whole.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.inner.kind, f)?;
        // The one detail people need in a log line without walking the chain.
        if let Some(db) = self.db_error() {
            write!(
                f,
                ": {} ({})",
                Clipped(db.message(), DISPLAY_SERVER_TEXT),
                db.code().code()
            )?;
        } else if self.is_closed() && !matches!(self.inner.kind, Kind::Pool(_)) {
            f.write_str(": connection closed")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    /// The kind with its causes and the connection's exit error, each cut after 4 KiB: the
    /// server's text in them can be megabytes long.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &CappedDebug(&self.inner.kind));
        if let Some(exit) = &self.inner.exit {
            d.field("connection_exit", &CappedDebug(exit));
        }
        d.finish()
    }
}

/// Text cut after a number of bytes, on a character boundary, saying how much was left out.
struct Clipped<'a>(&'a str, usize);

impl fmt::Display for Clipped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Clipped(text, limit) = *self;
        if text.len() <= limit {
            return f.write_str(text);
        }
        let cut = char_floor(text, limit);
        write!(f, "{}… ({} more bytes)", &text[..cut], text.len() - cut)
    }
}

/// The largest character boundary of `text` at or below `at`.
fn char_floor(text: &str, at: usize) -> usize {
    let mut cut = at.min(text.len());
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

/// A value's `Debug`, cut after [`DEBUG_PART`] bytes; the rest is counted, not kept.
struct CappedDebug<'a, T: ?Sized>(&'a T);

impl<T: fmt::Debug + ?Sized> fmt::Debug for CappedDebug<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let alternate = f.alternate();
        let mut out = Capped {
            f,
            left: DEBUG_PART,
            dropped: 0,
        };
        if alternate {
            fmt::write(&mut out, format_args!("{:#?}", self.0))?;
        } else {
            fmt::write(&mut out, format_args!("{:?}", self.0))?;
        }
        let dropped = out.dropped;
        if dropped > 0 {
            write!(f, "… ({dropped} more bytes)")?;
        }
        Ok(())
    }
}

/// Passes text on to a formatter until `left` bytes are used up, then only counts it.
struct Capped<'a, 'b> {
    f: &'a mut fmt::Formatter<'b>,
    left: usize,
    dropped: usize,
}

impl fmt::Write for Capped<'_, '_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if s.len() <= self.left {
            self.left -= s.len();
            return self.f.write_str(s);
        }
        let cut = char_floor(s, self.left);
        self.left = 0;
        self.dropped += s.len() - cut;
        self.f.write_str(&s[..cut])
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        StdError::source(&self.inner.kind).or_else(|| {
            self.inner
                .exit
                .as_deref()
                .map(|e| e as &(dyn StdError + 'static))
        })
    }
}
