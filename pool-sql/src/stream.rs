//! Rows as they arrive: [`RowStream`], from `query_stream` on [`Db`], [`Conn`] and [`Tx`];
//! and [`Held`], the session a stream or a COPY holds while the server still works on it.
//!
//! # Invariants
//!
//! - While a stream is unfinished its session is `busy`, as a statement future in flight:
//!   dropped half way, the session is cancelled and settled before anyone runs a statement
//!   on it (a [`Db`] stream's session goes back to the pool, whose `check` sends the cancel
//!   request and whose `reset` waits for it; a [`Conn`] or [`Tx`] stream sends it at once,
//!   and the next statement on that session waits for it).
//! - A stream that ended (its last row, or its error) gives its session back at once: a
//!   [`Db`] stream to the pool, even if the stream value is kept.
//! - Memory is bounded by the stream, not the result: tokio-postgres hands rows over a
//!   channel of one batch (one socket read), and stops reading the socket while it is full.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::Stream;
use pool_core::Pooled;
use tokio_postgres::Row;

use crate::Tx;
use crate::conn::{Done, Op, PgConn, ends_session};
use crate::db::{Conn, Db, in_span};
use crate::error::Kind;
use crate::manager::{CANCEL_WAIT, PgManager};
use crate::wire::TxStatus;
use crate::{Error, Params, ToStatement};

/// The session a stream or a COPY works on, until the server is done with its statement.
pub(crate) enum Held<'a> {
    /// A session of its own (a [`Db`] call's): back to the pool when released.
    Owned(Pooled<'static, PgManager>),
    /// A [`Conn`]'s or a [`Tx`]'s session; `failed` is the transaction's flag.
    Borrowed {
        conn: &'a mut PgConn,
        failed: Option<&'a mut bool>,
    },
    /// Released: the statement ended.
    Released,
}

impl<'a> Held<'a> {
    pub(crate) fn owned(conn: Pooled<'_, PgManager>) -> Held<'static> {
        Held::Owned(Pooled::into_owned(conn))
    }

    pub(crate) fn conn(&mut self) -> Option<&mut PgConn> {
        match self {
            Held::Owned(c) => Some(c),
            Held::Borrowed { conn, .. } => Some(conn),
            Held::Released => None,
        }
    }

    /// The statement ended: with `err`, or with every answer read. The session is no longer
    /// busy; a [`Db`]'s goes back to the pool now.
    pub(crate) fn finish(&mut self, err: Option<&tokio_postgres::Error>) {
        if let Some(conn) = self.conn() {
            conn.busy = false;
            conn.just_used = true;
            if err.is_some_and(ends_session) {
                conn.broken = true;
            }
        }
        if err.is_some() {
            self.fail_tx();
        }
        *self = Held::Released;
    }

    /// A transaction's statement failed (or was abandoned): its commit must roll back.
    pub(crate) fn fail_tx(&mut self) {
        if let Held::Borrowed {
            failed: Some(f), ..
        } = self
        {
            **f = true;
        }
    }

    /// The error of a statement on this session, with the connection's exit error.
    pub(crate) fn error(&mut self, e: tokio_postgres::Error) -> Error {
        let exit = self.conn().and_then(|c| c.wire.exit_error());
        self.finish(Some(&e));
        Error::statement(e, exit)
    }

    /// The statement's `query_timeout`, if the session has one.
    pub(crate) fn limit(&mut self) -> Option<Duration> {
        self.conn().and_then(|c| c.query_timeout)
    }

    /// The server kept the statement waiting past `limit` (`query_timeout`): the session
    /// is given up as a statement's that overran (cancel request, connection closed).
    pub(crate) fn overran(&mut self, limit: Duration) -> Error {
        if let Some(conn) = self.conn() {
            conn.abandon();
            tracing::debug!(target: "pool_sql", ?limit, "stream or COPY waited past query_timeout: session closed");
        }
        self.fail_tx();
        *self = Held::Released;
        Error::new(Kind::QueryTimeout(limit))
    }

    /// Gives the session up with its statement unfinished. `settled_means_done`: the
    /// server's last ReadyForQuery tells this statement is over (not so for a COPY FROM
    /// STDIN, whose copy mode the status does not show).
    pub(crate) fn abandon(&mut self, settled_means_done: bool) {
        let Some(conn) = self.conn() else { return };
        if !conn.busy {
            return;
        }
        if settled_means_done && conn.wire.tx_status() != TxStatus::Unsettled {
            // Every answer came: the rest is in the channel, which tokio-postgres drops.
            conn.busy = false;
            conn.just_used = true;
            return;
        }
        if let Held::Borrowed { conn, .. } = self {
            // The cancel leaves now; the next statement on this session waits for it
            // (`run_bounded`), so it neither queues behind the rest nor gets the cancel.
            if conn.cancel_sent.is_none() {
                conn.cancel_sent = conn.cancel.spawn(CANCEL_WAIT);
                if conn.cancel_sent.is_none() {
                    conn.broken = true;
                }
            }
            self.fail_tx();
        }
        // Owned: the pool's `check` sends the cancel request and `reset` waits for it.
    }
}

/// Bounds each wait for the server of a stream by the session's `query_timeout`: armed
/// when a poll finds nothing ready, cleared when something comes.
#[derive(Default)]
pub(crate) struct WaitBound {
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl WaitBound {
    /// After the inner stream returned `Pending`: whether the wait has now lasted `limit`.
    pub(crate) fn expired(&mut self, limit: Option<Duration>, cx: &mut Context<'_>) -> bool {
        let Some(limit) = limit else { return false };
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        sleep.as_mut().poll(cx).is_ready()
    }

    /// Something came: the next wait starts afresh.
    pub(crate) fn clear(&mut self) {
        self.sleep = None;
    }
}

/// Polls `inner` with each wait bounded ([`WaitBound`]): `Err(limit)` when it overran.
pub(crate) fn poll_bounded<S: Stream + ?Sized>(
    inner: Pin<&mut S>,
    bound: &mut WaitBound,
    limit: Option<Duration>,
    cx: &mut Context<'_>,
) -> Poll<Result<Option<S::Item>, Duration>> {
    match inner.poll_next(cx) {
        Poll::Ready(item) => {
            bound.clear();
            Poll::Ready(Ok(item))
        }
        Poll::Pending if bound.expired(limit, cx) => Poll::Ready(Err(limit.unwrap_or_default())),
        Poll::Pending => Poll::Pending,
    }
}

/// The rows of a query, as they arrive: a [`Stream`] of `Result<Row, Error>`, from
/// [`Db::query_stream`], [`Conn::query_stream`] or [`Tx::query_stream`].
///
/// It holds its session until the last row (or an error) has been read: a [`Db`] stream
/// owns it (`RowStream<'static>`), a [`Conn`]'s or [`Tx`]'s borrows it. Rows are read from
/// the socket only as fast as the stream is polled, so memory does not grow with the
/// result.
///
/// [`query_timeout`](crate::DbBuilder::query_timeout) bounds each wait for the server: the
/// start, then each poll that finds no row ready (not the time the caller takes between
/// polls). Past it, the stream ends with an [`Error::is_timeout`] and its session is given
/// up as a statement's that overran: a cancel request, the connection closed.
///
/// # Cancel safety
///
/// Dropping the stream before its end cancels the query on the server (a cancel request),
/// as a dropped statement future: its session reaches no one, on the pool or on the same
/// [`Conn`], before the server has answered the cancel; a [`Tx`] whose stream was dropped
/// unfinished fails (its commit rolls back). If every row had already arrived, no cancel
/// is needed and none is sent.
///
/// "As they arrive" is as the server sends them: PostgreSQL fills its 8 KB output buffer
/// before it flushes, so a slow query's first rows may come only with later ones.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use futures_util::TryStreamExt;
///
/// # let pg = pool_sql::testing::TestPg::start()?;
/// # let db = pool_sql::Db::builder(&pg.url()).build()?;
/// let mut rows = db.query_stream("SELECT generate_series(1, $1)", &[&1000i32]).await?;
/// let mut sum = 0i64;
/// while let Some(row) = rows.try_next().await? {
///     sum += i64::from(row.get::<_, i32>(0));
/// }
/// assert_eq!(sum, 500_500);
/// assert_eq!(rows.rows_affected(), Some(1000));
/// # Ok(()) }
/// ```
pub struct RowStream<'a> {
    // Dropped first: tokio-postgres then reads and drops what is left, unblocked.
    rows: Option<Pin<Box<tokio_postgres::RowStream>>>,
    held: Held<'a>,
    affected: Option<u64>,
    limit: Option<Duration>,
    bound: WaitBound,
}

impl std::fmt::Debug for RowStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowStream")
            .field("done", &self.rows.is_none())
            .field("rows_affected", &self.affected)
            .finish()
    }
}

impl<'a> RowStream<'a> {
    fn new(held: Held<'a>, done: Done) -> Self {
        let Done::Stream(rows) = done else {
            unreachable!("a stream's start returns its rows")
        };
        let mut held = held;
        RowStream {
            rows: Some(rows),
            limit: held.limit(),
            held,
            affected: None,
            bound: WaitBound::default(),
        }
    }

    /// The number of rows the statement returned or affected, once the stream has ended
    /// (`None` before, or after an error).
    pub fn rows_affected(&self) -> Option<u64> {
        self.affected
    }

    /// The next row, `None` at the end: `while let Some(row) = rows.try_next().await? {}`
    /// with no stream crate (it is also a [`Stream`]).
    ///
    /// # Errors
    /// The server's error mid-way, a closed session, or `query_timeout` while waiting.
    ///
    /// # Cancel safety
    /// Cancel-safe: a row is never lost to a dropped call.
    pub async fn try_next(&mut self) -> Result<Option<Row>, Error> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx))
            .await
            .transpose()
    }
}

impl Stream for RowStream<'_> {
    type Item = Result<Row, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(rows) = this.rows.as_mut() else {
            return Poll::Ready(None);
        };
        let r = match ready!(poll_bounded(rows.as_mut(), &mut this.bound, this.limit, cx)) {
            Ok(r) => r,
            Err(limit) => {
                this.rows = None;
                return Poll::Ready(Some(Err(this.held.overran(limit))));
            }
        };
        Poll::Ready(match r {
            Some(Ok(row)) => Some(Ok(row)),
            Some(Err(e)) => {
                this.rows = None;
                Some(Err(this.held.error(e)))
            }
            None => {
                this.affected = rows.rows_affected();
                this.rows = None;
                this.held.finish(None);
                None
            }
        })
    }
}

impl Drop for RowStream<'_> {
    fn drop(&mut self) {
        self.rows = None;
        self.held.abandon(true);
    }
}

impl Db {
    /// Runs a query and returns its rows as a [`RowStream`], read as they arrive: memory
    /// is bounded by the stream, not by the result. The stream owns its session (with the
    /// bad-connection retry of [`query`](Db::query) for the start) until its end.
    ///
    /// # Errors
    /// The start fails as [`query`](Db::query); each item is a row or the error that ended
    /// the query (after which the stream ends).
    ///
    /// # Cancel safety
    /// See [`RowStream`]: dropped unfinished, the query is cancelled on the server before
    /// its session is reused.
    ///
    /// # Examples
    /// See [`RowStream`].
    pub async fn query_stream(
        &self,
        sql: &(impl ToStatement + ?Sized),
        params: Params<'_>,
    ) -> Result<RowStream<'static>, Error> {
        let op = Op::Stream(sql.as_sql(), params);
        let db = &self.pool().manager().target;
        let (conn, done) =
            in_span(db, op, |span| self.retrying(op, None, span), |(_, d)| d).await?;
        Ok(RowStream::new(Held::owned(conn), done))
    }
}

impl Conn {
    /// As [`Db::query_stream`], on this session: the stream borrows the `Conn` until it
    /// ends or is dropped.
    ///
    /// # Errors
    /// As [`Db::query_stream`].
    ///
    /// # Cancel safety
    /// See [`RowStream`].
    pub async fn query_stream(
        &mut self,
        sql: &(impl ToStatement + ?Sized),
        params: Params<'_>,
    ) -> Result<RowStream<'_>, Error> {
        let done = self.run(Op::Stream(sql.as_sql(), params)).await?;
        let held = Held::Borrowed {
            conn: &mut self.guard,
            failed: None,
        };
        Ok(RowStream::new(held, done))
    }
}

impl Tx {
    /// As [`Db::query_stream`], in this transaction: the stream borrows the `Tx` until it
    /// ends or is dropped. An error, or a stream dropped unfinished, fails the transaction.
    ///
    /// # Errors
    /// As [`Db::query_stream`].
    ///
    /// # Cancel safety
    /// See [`RowStream`].
    pub async fn query_stream(
        &mut self,
        sql: &(impl ToStatement + ?Sized),
        params: Params<'_>,
    ) -> Result<RowStream<'_>, Error> {
        let done = self.run(Op::Stream(sql.as_sql(), params)).await?;
        let held = Held::Borrowed {
            conn: &mut self.guard,
            failed: Some(&mut self.failed),
        };
        Ok(RowStream::new(held, done))
    }
}
