//! The [`Manager`] of PostgreSQL sessions: connect, look, reset.

use std::sync::Arc;
use std::time::Duration;

use pool_core::{Health, Manager, async_trait};

use crate::conn::PgConn;
use crate::connect::{self, Liveness};
use crate::error::{Error, Kind};
use crate::wire::TxStatus;

/// How long a reset waits for an abandoned statement to end after its cancel request (and
/// how long a cancel request may take to send).
pub(crate) const CANCEL_WAIT: Duration = Duration::from_secs(2);

/// Creates and looks after [`PgConn`]s for a [`Db`](crate::Db).
///
/// Public because [`Db::pool`](crate::Db::pool) is a `pool_core::Pool<PgManager>`: its
/// runtime setters, stats and guards name this type. [`DbBuilder::build`](crate::DbBuilder::build)
/// makes it (there is no other constructor: the connection string is parsed and checked
/// there). Its `Manager::Error` is this crate's [`Error`]: a [`pool_core::Error`] from
/// `db.pool().get()` reaches it with
/// [`downcast_ref::<pool_sql::Error>()`](pool_core::Error::downcast_ref), predicates and all.
///
/// - `create` dials the server (see the crate docs: our own socket, counting what it writes
///   and following the protocol's framing), and spawns the connection task, which keeps its
///   exit error.
/// - `check` (on release and before reuse, no blocking I/O): a closed session is broken, and
///   so is one the server reports in a `client_encoding` other than UTF8 (a statement set
///   it; tokio-postgres reads text as UTF-8 only); a session with a statement in flight (its future was dropped: the cancel request leaves
///   at once), one the server reports inside a transaction (or with a request not yet
///   answered), or one used since its last [`SessionReset`] needs a reset. Then a
///   non-blocking peek at the socket: the server closed it (broken), or sent something
///   unasked, most likely its goodbye before the connection task read it (a reset round
///   trip tells).
/// - `reset` (on return, in the background, under the pool's `hook_timeout`; the session
///   reaches nobody before it succeeds): waits for the cancelled statement to end, waits
///   for every request's answer, rolls back a transaction left open, runs the session reset,
///   and checks that the server reports the session idle. Any failure closes the session.
pub struct PgManager {
    pub(crate) config: tokio_postgres::Config,
    pub(crate) session_reset: Option<SessionReset>,
    pub(crate) connect_timeout: Option<Duration>,
    pub(crate) statement_cache: usize,
    pub(crate) query_timeout: Option<Duration>,
    pub(crate) tls: connect::Tls,
    /// Where the sessions go, for messages: `user@host:port/db`, never a password.
    pub(crate) target: Arc<str>,
    /// The `Db`'s own counters (runs again), shared by its clones.
    pub(crate) counters: crate::counters::Counters,
}

impl std::fmt::Debug for PgManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // tokio-postgres's Config redacts the password in its Debug.
        f.debug_struct("PgManager")
            .field("target", &self.target)
            .field("config", &self.config)
            .field("statement_cache", &self.statement_cache)
            .field("query_timeout", &self.query_timeout)
            .field("tls", &self.tls)
            .field("session_reset", &self.session_reset)
            .finish()
    }
}

/// What runs on every session given back after use, before anyone else can get it
/// ([`DbBuilder::session_reset`](crate::DbBuilder::session_reset)); off by default.
///
/// With feature `serde`, it reads as `"discard_all"` or
/// `{ "sql": { "sql": "...", "discards_statements": false } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "serde", derive(serde::Deserialize))]
#[cfg_attr(
    feature = "serde",
    serde(rename_all = "snake_case", deny_unknown_fields)
)]
#[non_exhaustive]
pub enum SessionReset {
    /// `DISCARD ALL`: session settings (`SET`) back to their defaults, temporary tables
    /// dropped, advisory locks released, `LISTEN` ended, prepared statements and cursors
    /// gone (the session's statement cache is cleared with them), as PgBouncer's
    /// `server_reset_query`. A session's state never reaches the next caller; the price is
    /// one round trip per use, in the background, and statements prepared again after it.
    DiscardAll,
    /// Your SQL (simple protocol; several statements separated by `;`), e.g. `RESET ALL;
    /// SELECT pg_advisory_unlock_all()`. Set `discards_statements` when it drops prepared
    /// statements (`DEALLOCATE ALL`, `DISCARD ALL`), so the statement cache is cleared too.
    Sql {
        /// The statements to run.
        sql: String,
        /// Whether they drop prepared statements.
        discards_statements: bool,
    },
}

impl SessionReset {
    fn sql(&self) -> &str {
        match self {
            SessionReset::DiscardAll => "DISCARD ALL",
            SessionReset::Sql { sql, .. } => sql,
        }
    }

    fn discards_statements(&self) -> bool {
        match self {
            SessionReset::DiscardAll => true,
            SessionReset::Sql {
                discards_statements,
                ..
            } => *discards_statements,
        }
    }
}

impl PgManager {
    /// The session reset run on every session given back after use, if any
    /// ([`DbBuilder::session_reset`](crate::DbBuilder::session_reset)).
    pub fn session_reset(&self) -> Option<&SessionReset> {
        self.session_reset.as_ref()
    }
}

#[async_trait]
impl Manager for PgManager {
    type Resource = PgConn;
    type Error = Error;

    async fn create(&self) -> Result<PgConn, Error> {
        let c = connect::connect(&self.config, self.connect_timeout, &self.tls, None)
            .await
            .map_err(Error::connect)?;
        let mut conn = PgConn::new(c, self.statement_cache, self.query_timeout);
        conn.reset_mark = conn.wire.requests();
        Ok(conn)
    }

    fn check(&self, conn: &mut PgConn) -> Health {
        conn.pooled = true;
        if conn.broken || conn.client.is_closed() {
            return Health::Broken;
        }
        if conn.wire.foreign_encoding() {
            // tokio-postgres reads text as UTF-8 only: the next caller's would not decode.
            tracing::warn!(
                target: "pool_sql",
                "a statement set the session's client_encoding to something other than UTF8, \
                 which tokio-postgres cannot read: the session is closed"
            );
            return Health::Broken;
        }
        if conn.busy {
            if conn.cancel_sent.is_none() {
                let Some(sent) = conn.cancel.spawn(CANCEL_WAIT) else {
                    return Health::Broken;
                };
                conn.cancel_sent = Some(sent);
                tracing::debug!(target: "pool_sql", "statement abandoned mid-flight: cancel request sent");
            }
            return Health::NeedsReset;
        }
        if conn.wire.tx_status() != TxStatus::Idle {
            // In a transaction (however it was opened), or a request not yet answered: the
            // server's word decides, in the reset.
            return Health::NeedsReset;
        }
        if self.session_reset.is_some() && conn.wire.requests() != conn.reset_mark {
            return Health::NeedsReset;
        }
        if std::mem::take(&mut conn.just_used) {
            // The release right after a statement: its answer was just read. One peek per
            // use is enough, at the next checkout.
            return Health::Ready;
        }
        match conn.probe.look() {
            Liveness::Quiet => Health::Ready,
            Liveness::Closed => Health::Broken,
            // Most likely the server's goodbye (57P01) that the connection task has not read
            // yet; a round trip in `reset` tells for sure.
            Liveness::Pending => {
                conn.suspect = true;
                Health::NeedsReset
            }
        }
    }

    /// A round trip (an empty query) before reusing a session idle at least
    /// [`validate_after`](crate::DbBuilder::validate_after): a session that does not answer
    /// within the pool's `hook_timeout` (a dead route, a server gone without a reset) or
    /// answers with an error is closed, and the call gets another.
    async fn validate(&self, conn: &mut PgConn) -> Result<(), Error> {
        let clean = conn.wire.requests() == conn.reset_mark;
        conn.client
            .batch_execute("")
            .await
            .map_err(|e| Error::new(Kind::Validate(e)))?;
        if clean {
            // The round trip leaves nothing on the session for a session reset to undo.
            conn.reset_mark = conn.wire.requests();
        }
        Ok(())
    }

    async fn reset(&self, conn: &mut PgConn) -> Result<(), Error> {
        if conn.busy {
            settle_abandoned(conn).await?;
        }
        if conn.suspect {
            conn.client.batch_execute("").await.map_err(Error::reset)?;
            conn.suspect = false;
        }
        settle(conn).await?;
        if let Some(reset) = &self.session_reset
            && conn.wire.requests() != conn.reset_mark
        {
            if reset.discards_statements() {
                conn.clear_cache();
            }
            conn.client
                .batch_execute(reset.sql())
                .await
                .map_err(Error::reset)?;
            // The reset SQL must leave no transaction behind.
            settle(conn).await?;
            conn.reset_mark = conn.wire.requests();
        }
        Ok(())
    }

    async fn close(&self, conn: PgConn) {
        // Dropping the client ends the session: tokio-postgres sends Terminate.
        drop(conn);
    }
}

/// Settles a session whose statement was abandoned mid-flight (`busy`): waits for the
/// cancel request to be confirmed, then for every answer of the abandoned statement.
pub(crate) async fn settle_abandoned(conn: &mut PgConn) -> Result<(), Error> {
    confirm_cancel(&mut conn.cancel_sent).await?;
    sync(conn).await?;
    conn.busy = false;
    Ok(())
}

/// Waits for the cancel request in `sent`, if any, to be confirmed. The server must have
/// acted on it before what comes next, or it could cancel that instead. Unconfirmed (the
/// request failed or its connection broke half way), it may still land: the session must
/// be given up. The handle stays in `sent` until its answer came, so a caller dropped
/// meanwhile leaves it for the next one to wait for.
pub(crate) async fn confirm_cancel(
    sent: &mut Option<tokio::task::JoinHandle<bool>>,
) -> Result<(), Error> {
    let Some(cancel) = sent.as_mut() else {
        return Ok(());
    };
    let confirmed = tokio::time::timeout(CANCEL_WAIT, cancel)
        .await
        .map_err(|_| Error::new(Kind::CancelTimedOut))?
        .unwrap_or(false);
    *sent = None;
    if !confirmed {
        return Err(Error::new(Kind::CancelUnconfirmed));
    }
    Ok(())
}

/// Waits until every response of the abandoned statement has arrived: an empty query's
/// answer comes after them. A late cancel can still hit the empty query itself; one more
/// try covers that.
async fn sync(conn: &mut PgConn) -> Result<(), Error> {
    let wait = async {
        for _ in 0..2 {
            match conn.client.batch_execute("").await {
                Ok(()) => return Ok(()),
                Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::QUERY_CANCELED) => {}
                Err(e) => return Err(Error::reset(e)),
            }
        }
        conn.client.batch_execute("").await.map_err(Error::reset)
    };
    tokio::time::timeout(CANCEL_WAIT, wait)
        .await
        .map_err(|_| Error::new(Kind::CancelTimedOut))?
}

/// Brings the session to the server's idle status: waits until every request has its answer
/// (an empty query's comes after them), then rolls back a transaction left open, whoever
/// opened it. Anything but the server's `I` at the end fails the reset.
async fn settle(conn: &mut PgConn) -> Result<(), Error> {
    if conn.wire.tx_status() == TxStatus::Unsettled {
        conn.client.batch_execute("").await.map_err(Error::reset)?;
    }
    if conn.wire.tx_status() == TxStatus::InTransaction {
        conn.client
            .batch_execute("ROLLBACK")
            .await
            .map_err(Error::reset)?;
        tracing::debug!(target: "pool_sql", "rolled back a transaction left open");
    }
    match conn.wire.tx_status() {
        TxStatus::Idle => Ok(()),
        _ => Err(Error::new(Kind::NotIdle)),
    }
}
