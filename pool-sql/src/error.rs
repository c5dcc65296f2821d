//! The one error type of pool-sql: an opaque [`Error`] with predicates. The message policy
//! is on [`Error`]; the private [`Kind`] says what failed, and each kind's cause is the
//! [`source`](StdError::source).

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::error::{DbError, SqlState};

use crate::connect::ConnectError;

/// An error from a [`Db`](crate::Db): the pool, the connection or the server.
///
/// The kind is private; ask with the predicates ([`is_timeout`](Error::is_timeout),
/// [`is_auth_failed`](Error::is_auth_failed), [`code`](Error::code), ...). The server's
/// error, with its SQLSTATE and message, is kept whole ([`as_db_error`](Error::as_db_error));
/// so is the pool's error ([`pool_error`](Error::pool_error)) and the connection's.
///
/// When a statement fails because the server ended the session (say `pg_terminate_backend`),
/// the statement itself only sees "connection closed"; the reason arrived on the connection.
/// This error carries both, so `code()` says `57P01` and
/// [`is_server_shutdown`](Error::is_server_shutdown) is true.
///
/// # Messages
///
/// As hyper's errors: `Display` says what failed at this level, with its context (where the
/// sessions go as `user@host:port/database`, the phase, how long the call waited, the
/// SQLSTATE), and never the cause, which is the [`source`](std::error::Error::source) chain:
/// the pool's error, the connect error, the server's [`DbError`], the socket's error. A
/// report that walks the chain (`{:#}` in anyhow, an error reporter) prints each fact once:
///
/// ```text
/// could not connect to app@127.0.0.1:5432/app: pool failed to create a connection:
/// connect to 127.0.0.1:5432 refused: Connection refused (os error 111)
///
/// could not connect to app@127.0.0.1:5432/app: pool failed to create a connection:
/// 127.0.0.1:5432 refused the session (SQLSTATE 28P01): FATAL: password authentication
/// failed for user "app"
///
/// postgres statement failed (SQLSTATE 42601): ERROR: syntax error at or near "SELEC"
///
/// timed out after 2s waiting for a session with app@127.0.0.1:5432/app: pool timed out
/// while waiting for an open connection
/// ```
///
/// No message holds a password: the connection string is never quoted (its
/// [`redacted_url`](crate::DbBuilder::redacted_url) is for logs), and the SQL text of a
/// statement is not either (it may hold one: `ALTER ROLE ... PASSWORD`).
///
/// The server's message is the [`DbError`] in the chain, as the server sent it: it can be
/// megabytes long (`RAISE` with a large text), so a reporter that prints whole chains
/// should bound what it prints. `Display` of this type never holds it, and `Debug` prints at
/// most 4 KiB of each part.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(db: pool_sql::Db) {
/// match db.execute("INSERT INTO kv VALUES ($1, $2)", &[&"a", &1i32]).await {
///     Ok(_) => {}
///     Err(e) if e.code() == Some(&pool_sql::SqlState::UNIQUE_VIOLATION) => {
///         // The server's words, whole: e.as_db_error().unwrap().message()
///     }
///     Err(e) => {
///         let mut line = e.to_string();
///         let mut cause = std::error::Error::source(&e);
///         while let Some(c) = cause {
///             line = format!("{line}: {c}");
///             cause = c.source();
///         }
///         eprintln!("{line}");
///     }
/// }
/// # }
/// ```
#[derive(Clone)]
pub struct Error {
    inner: Arc<Inner>,
}

struct Inner {
    kind: Kind,
    /// Why the connection ended, when the statement died with it.
    exit: Option<Arc<tokio_postgres::Error>>,
}

/// What a [`Db`](crate::Db) asked of its pool when the pool failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PoolOp {
    /// Building it: its knobs were rejected.
    Build,
    /// A session for a call.
    Acquire,
    /// Closing it, waiting for every session.
    Close,
}

#[derive(Debug)]
pub(crate) enum Kind {
    /// The pool failed. `target` names where the sessions go (`user@host:port/db`, never a
    /// password); `waited` is how long the call waited, when that is known.
    Pool {
        source: pool_core::Error,
        op: PoolOp,
        target: Arc<str>,
        waited: Option<Duration>,
    },
    /// A statement failed (with the connection's exit error in [`Inner::exit`] when the
    /// connection closed under it).
    Statement(tokio_postgres::Error),
    QueryTimeout(Duration),
    /// `savepoint`: only a savepoint was rolled back; the transaction goes on.
    TxAborted {
        savepoint: bool,
    },
    RowCount(usize),
    Config {
        knob: &'static str,
        reason: String,
    },
    /// The manager could not open a session: printed as the connect error itself.
    Connect(ConnectError),
    /// The manager could not bring a session back to a clean state.
    Reset(tokio_postgres::Error),
    /// An idle session failed its validation round trip.
    Validate(tokio_postgres::Error),
    CancelTimedOut,
    CancelUnconfirmed,
    NotIdle,
    /// A column of a row could not be read as the Rust type asked for (or is not there).
    Column {
        name: Option<String>,
        source: tokio_postgres::Error,
    },
    /// The data given to a `COPY ... FROM STDIN` failed: the COPY was aborted.
    CopyData(Box<dyn StdError + Send + Sync>),
    /// A [`Listener`](crate::Listener)'s session ended; the connection's exit error is in
    /// [`Inner::exit`].
    SessionEnded,
}

/// The link to put in a chain for a tokio-postgres error: the server's [`DbError`] itself
/// when there is one (tokio-postgres's own level would only say "db error"), else the
/// tokio-postgres error (whose `Display` is its own level only, its cause the source).
pub(crate) fn link(e: &tokio_postgres::Error) -> &(dyn StdError + 'static) {
    match e.as_db_error() {
        Some(db) => db,
        None => e,
    }
}

/// ` (SQLSTATE xxxxx)` when `e` is the server's error, else nothing: the code is a fact of
/// the level that links the server's error (whose own `Display` does not carry it).
pub(crate) struct Code<'a>(pub Option<&'a tokio_postgres::Error>);

impl fmt::Display for Code<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.and_then(tokio_postgres::Error::as_db_error) {
            Some(db) => write!(f, " (SQLSTATE {})", db.code().code()),
            None => Ok(()),
        }
    }
}

/// An error with its whole source chain, joined with `": "`, for this crate's own log lines
/// (where a `Display` of one level would lose the cause).
pub(crate) struct Report<'a>(pub &'a (dyn StdError + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)?;
        for cause in walk(self.0.source()) {
            write!(f, ": {cause}")?;
        }
        Ok(())
    }
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

    /// The pool failed at `op`, for a `Db` whose sessions go to `target`.
    pub(crate) fn pool(
        source: pool_core::Error,
        op: PoolOp,
        target: &Arc<str>,
        waited: Option<Duration>,
    ) -> Self {
        Self::new(Kind::Pool {
            source,
            op,
            target: target.clone(),
            waited,
        })
    }

    pub(crate) fn config(knob: &'static str, reason: impl Into<String>) -> Self {
        Self::new(Kind::Config {
            knob,
            reason: reason.into(),
        })
    }

    pub(crate) fn connect(e: ConnectError) -> Self {
        Self::new(Kind::Connect(e))
    }

    /// A listener's session ended with `exit`, its connection's error.
    pub(crate) fn session_ended(exit: Arc<tokio_postgres::Error>) -> Self {
        Error {
            inner: Arc::new(Inner {
                kind: Kind::SessionEnded,
                exit: Some(exit),
            }),
        }
    }

    pub(crate) fn reset(e: tokio_postgres::Error) -> Self {
        Self::new(Kind::Reset(e))
    }

    /// This error, then every error in its source chain.
    fn chain(&self) -> impl Iterator<Item = &(dyn StdError + 'static)> {
        walk(Some(self as &(dyn StdError + 'static)))
    }

    /// The server's error: from the statement, from the session's startup (a wrong
    /// password, no such database, too many connections), else the one that ended the
    /// connection under the statement. Its [`message`](DbError::message) is the server's
    /// text, whole.
    pub fn as_db_error(&self) -> Option<&DbError> {
        self.chain().find_map(|e| e.downcast_ref::<DbError>())
    }

    /// The SQLSTATE of the server's error ([`as_db_error`](Error::as_db_error)).
    pub fn code(&self) -> Option<&SqlState> {
        self.as_db_error().map(DbError::code)
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
            Kind::Pool { source, .. } => Some(source),
            _ => None,
        }
    }

    /// Waiting for a connection, connecting, the bounded session reset, or a statement past
    /// [`query_timeout`](crate::DbBuilder::query_timeout) ran out of time. A statement the
    /// server cancelled for its own `statement_timeout` is
    /// [`is_query_canceled`](Error::is_query_canceled).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self.inner.kind,
            Kind::QueryTimeout(_) | Kind::CancelTimedOut
        ) || self.pool_error().is_some_and(pool_core::Error::is_timeout)
            || self.io_kind(std::io::ErrorKind::TimedOut)
            || matches!(self.connect_error(), Some(ConnectError::Timeout { .. }))
    }

    /// Why connecting failed, when it did: the manager's error in the chain (or this one).
    fn connect_error(&self) -> Option<&ConnectError> {
        self.chain()
            .find_map(|e| match &e.downcast_ref::<Error>()?.inner.kind {
                Kind::Connect(c) => Some(c),
                _ => None,
            })
    }

    /// No session could be opened: the host did not resolve, refused or did not answer in
    /// time, TLS failed, or the server refused the session (authentication, no such database,
    /// too many connections: see [`code`](Error::code)). Also true while the pool fails fast
    /// after repeated connect failures (the last one is the cause).
    pub fn is_connect(&self) -> bool {
        self.connect_error().is_some()
            || self
                .pool_error()
                .is_some_and(|e| e.is_create() || e.is_unavailable())
    }

    /// The `Db` was closed, or the connection closed under the statement (or under a
    /// [`Listener`](crate::Listener): [`Gap::cause`](crate::listener::Gap::cause)).
    pub fn is_closed(&self) -> bool {
        match &self.inner.kind {
            Kind::SessionEnded => true,
            Kind::Pool { source, .. } => source.is_closed(),
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
        matches!(self.connect_error(), Some(ConnectError::Tls { .. }))
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

    /// The server could not serialize the transaction's access (SQLSTATE 40001): under
    /// `REPEATABLE READ` or `SERIALIZABLE` another transaction changed what this one read.
    /// Running the whole transaction again may succeed
    /// ([`Db::transaction_retry`](crate::Db::transaction_retry) does).
    pub fn is_serialization_failure(&self) -> bool {
        self.has_code(&[SqlState::T_R_SERIALIZATION_FAILURE])
    }

    /// The server found a deadlock and chose this transaction to fail (SQLSTATE 40P01).
    /// Running the whole transaction again may succeed
    /// ([`Db::transaction_retry`](crate::Db::transaction_retry) does).
    pub fn is_deadlock(&self) -> bool {
        self.has_code(&[SqlState::T_R_DEADLOCK_DETECTED])
    }

    /// A transaction's statement failed, so its commit rolled back instead.
    pub fn is_tx_aborted(&self) -> bool {
        matches!(self.inner.kind, Kind::TxAborted { .. })
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

    /// The name of the column a row could not be read from ([`FromRow`](crate::FromRow),
    /// [`query_as`](crate::Db::query_as)): its type does not convert to the Rust type asked
    /// for, or its value does not decode. `None` for other errors, and for a row that has
    /// no such column (the message gives the index).
    pub fn column(&self) -> Option<&str> {
        match &self.inner.kind {
            Kind::Column { name, .. } => name.as_deref(),
            _ => None,
        }
    }

    /// The data stream given to [`copy_in`](crate::Db::copy_in) failed (its error is the
    /// [`source`](StdError::source)); the COPY was aborted and nothing of it was kept.
    pub fn is_copy_aborted(&self) -> bool {
        matches!(self.inner.kind, Kind::CopyData(_))
    }

    /// The knob a configuration error is about.
    pub fn knob(&self) -> Option<&'static str> {
        match &self.inner.kind {
            Kind::Config { knob, .. } => Some(knob),
            Kind::Pool { source, .. } => source.knob(),
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

/// Most bytes `Debug` prints of each part (the kind with its causes, the connection's exit
/// error).
const DEBUG_PART: usize = 4096;

/// " after <duration>" (to the millisecond), or nothing.
struct After(Option<Duration>);

impl fmt::Display for After {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(d) => {
                let ms = Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
                write!(f, " after {ms:?}")
            }
            None => Ok(()),
        }
    }
}

impl fmt::Display for Error {
    /// This level only (see [Messages](Error#messages)): the cause is the
    /// [`source`](StdError::source).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.inner.kind {
            Kind::Pool {
                source,
                op,
                target,
                waited,
            } => match op {
                PoolOp::Build => f.write_str("invalid Db config"),
                PoolOp::Close if source.is_timeout() => {
                    write!(f, "closing the Db for {target} timed out{}", After(*waited))
                }
                PoolOp::Close => write!(f, "closing the Db for {target} failed"),
                PoolOp::Acquire if source.is_closed() => {
                    write!(f, "the Db for {target} is closed")
                }
                PoolOp::Acquire if source.is_create() || source.is_unavailable() => {
                    write!(f, "could not connect to {target}")
                }
                PoolOp::Acquire if source.is_timeout() => write!(
                    f,
                    "timed out{} waiting for a session with {target}",
                    After(*waited)
                ),
                PoolOp::Acquire => write!(f, "could not get a session with {target}"),
            },
            Kind::Statement(e) if e.is_closed() => write!(
                f,
                "postgres session closed under the statement{}",
                Code(self.inner.exit.as_deref())
            ),
            Kind::Statement(e) => write!(f, "postgres statement failed{}", Code(Some(e))),
            Kind::QueryTimeout(limit) => write!(
                f,
                "postgres statement still running after {limit:?} (query_timeout): its \
                 session was closed and a cancel request sent"
            ),
            Kind::TxAborted { savepoint: false } => f.write_str(
                "postgres transaction failed and was rolled back; nothing was committed",
            ),
            Kind::TxAborted { savepoint: true } => f.write_str(
                "a statement in the postgres savepoint failed: rolled back to the savepoint; \
                 the transaction goes on",
            ),
            Kind::RowCount(n) => write!(f, "query returned {n} rows where one was expected"),
            Kind::Config { knob, reason } => {
                write!(f, "pool-sql config error: `{knob}` {reason}")
            }
            Kind::Connect(c) => fmt::Display::fmt(c, f),
            Kind::Reset(e) => write!(f, "could not reset a postgres session{}", Code(Some(e))),
            Kind::Validate(e) => write!(
                f,
                "an idle postgres session failed its validation round trip{}",
                Code(Some(e))
            ),
            Kind::CancelTimedOut => {
                f.write_str("an abandoned statement did not end after its cancel request")
            }
            Kind::CancelUnconfirmed => f.write_str(
                "the cancel request for an abandoned statement was not confirmed by the server",
            ),
            Kind::NotIdle => {
                f.write_str("the session was still not idle on the server after its reset")
            }
            Kind::Column { name: Some(n), .. } => {
                write!(f, "could not read column \"{n}\" of a row")
            }
            Kind::Column { name: None, .. } => f.write_str("could not read a column of a row"),
            Kind::CopyData(_) => f.write_str("the data of a COPY FROM STDIN failed: COPY aborted"),
            Kind::SessionEnded => f.write_str("the listener's postgres session ended"),
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match &self.inner.kind {
            Kind::Pool { source, .. } => Some(source),
            // "connection closed" is this level's own fact; the reason, if the connection
            // task saw one, is the cause.
            Kind::Statement(e) if e.is_closed() => self.inner.exit.as_deref().map(link),
            Kind::SessionEnded => self.inner.exit.as_deref().map(link),
            Kind::Statement(e) | Kind::Reset(e) | Kind::Validate(e) => Some(link(e)),
            // tokio-postgres's level only repeats the index: its cause says why.
            Kind::Column { source, .. } => source.source().or(Some(source)),
            Kind::CopyData(e) => Some(&**e),
            // A connect error is this level: its cause is the next.
            Kind::Connect(c) => c.source(),
            Kind::QueryTimeout(_)
            | Kind::TxAborted { .. }
            | Kind::RowCount(_)
            | Kind::Config { .. }
            | Kind::CancelTimedOut
            | Kind::CancelUnconfirmed
            | Kind::NotIdle => None,
        }
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
