//! What failed: the private [`Kind`] of an [`Error`], its `Display` (this level only) and
//! its [`source`](StdError::source).

use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::connect::ConnectError;

use super::Error;

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
    /// A statement failed (with the connection's exit error in
    /// [`Inner::exit`](super::Inner::exit) when the connection closed under it).
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
    /// [`Inner::exit`](super::Inner::exit).
    SessionEnded,
}

/// The link to put in a chain for a tokio-postgres error: the server's
/// [`DbError`](tokio_postgres::error::DbError) itself when there is one (tokio-postgres's own
/// level would only say "db error"), else the tokio-postgres error (whose `Display` is its
/// own level only, its cause the source).
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
