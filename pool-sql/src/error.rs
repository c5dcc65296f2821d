//! The one error type of pool-sql: an opaque [`Error`] with predicates. The message policy
//! is on [`Error`]; the private [`Kind`] says what failed, and each kind's cause is the
//! [`source`](StdError::source).

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::error::{DbError, SqlState};

use crate::connect::ConnectError;

mod kind;
mod report;

pub(crate) use kind::{Code, Kind, PoolOp, link};
pub(crate) use report::Report;

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
