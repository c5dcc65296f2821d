//! COPY through the pool: `copy_in` (`COPY ... FROM STDIN`, from a stream of bytes) and
//! `copy_out` (`COPY ... TO STDOUT`, a [`CopyOutStream`] of bytes) on [`Db`], [`Conn`] and
//! [`Tx`].
//!
//! A COPY holds its session as a [`RowStream`](crate::RowStream) does, with the same rules:
//! memory bounded by the stream (tokio-postgres sends at most a few KiB ahead and reads only
//! as fast as the stream is polled), and a COPY dropped half way never reaches the next
//! caller. A COPY FROM STDIN abandoned (its future dropped, or its data stream failed) is
//! aborted with a CopyFail, so nothing of it is kept; its session is settled (and, for a
//! dropped future, cancelled) before reuse. A COPY TO STDOUT dropped unfinished is
//! cancelled as a dropped stream.
//!
//! [`query_timeout`](crate::DbBuilder::query_timeout) bounds each wait for the server (the
//! start, each chunk the server takes or sends, the final answer), not the time the
//! caller's data stream takes: past it, the COPY fails with [`Error::is_timeout`] and its
//! session is closed, as a statement's that overran.

use std::error::Error as StdError;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, Stream, StreamExt};

use crate::Error;
use crate::Tx;
use crate::conn::{Done, Op, PgConn};
use crate::db::{Conn, Db, in_span};
use crate::error::Kind;
use crate::stream::{Held, WaitBound, poll_bounded};

impl PgConn {
    /// Starts a `COPY ... FROM STDIN`: the server is in copy mode when this returns.
    pub(crate) async fn start_copy_in(&mut self, sql: &str) -> Result<Done, tokio_postgres::Error> {
        let sink = self.client.copy_in::<_, Bytes>(sql).await?;
        Ok(Done::CopyIn(Box::pin(sink)))
    }
}

/// Keeps a COPY FROM STDIN's session until it is finished; dropped before (the future of
/// `copy_in` dropped), the session is given up as an abandoned statement's.
struct CopyIn<'a>(Held<'a>);

impl Drop for CopyIn<'_> {
    fn drop(&mut self) {
        self.0.abandon(false);
    }
}

impl CopyIn<'_> {
    /// Sends `data` into the started COPY FROM STDIN and finishes it.
    async fn feed<S, B, E>(mut self, done: Done, data: S) -> Result<u64, Error>
    where
        S: Stream<Item = Result<B, E>>,
        B: Into<Bytes>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        let Done::CopyIn(mut sink) = done else {
            unreachable!("a COPY FROM STDIN's start returns its sink")
        };
        let held = &mut self.0;
        let limit = held.limit();
        let mut data = std::pin::pin!(data);
        while let Some(chunk) = data.next().await {
            match chunk {
                Ok(bytes) => match bounded(limit, sink.send(bytes.into())).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => return Err(held.error(e)),
                    Err(limit) => return Err(held.overran(limit)),
                },
                Err(e) => {
                    // Dropping the sink unfinished sends CopyFail and a Sync: the server
                    // drops what it got and answers with an error, which nobody waits for
                    // here; the next statement (or the pool's reset) comes after it.
                    drop(sink);
                    held.fail_tx();
                    held.finish(None);
                    return Err(Error::new(Kind::CopyData(e.into())));
                }
            }
        }
        match bounded(limit, sink.as_mut().finish()).await {
            Ok(Ok(n)) => {
                held.finish(None);
                Ok(n)
            }
            Ok(Err(e)) => Err(held.error(e)),
            Err(limit) => Err(held.overran(limit)),
        }
    }
}

/// Waits for `f` (the server taking data, or its answer) at most `limit`.
async fn bounded<T>(limit: Option<Duration>, f: impl Future<Output = T>) -> Result<T, Duration> {
    match limit {
        None => Ok(f.await),
        Some(limit) => tokio::time::timeout(limit, f).await.map_err(|_| limit),
    }
}

/// The data of a `COPY ... TO STDOUT`, as it arrives: a [`Stream`] of `Result<Bytes,
/// Error>` (in the COPY's format: text lines, CSV, or binary), from [`Db::copy_out`],
/// [`Conn::copy_out`] or [`Tx::copy_out`].
///
/// # Cancel safety
///
/// As [`RowStream`](crate::RowStream): dropped before its end, the COPY is cancelled on the
/// server before its session is reused.
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
/// let out = db.copy_out("COPY (SELECT generate_series(1, 3)) TO STDOUT").await?;
/// let data: Vec<bytes::Bytes> = out.try_collect().await?;
/// assert_eq!(data.concat(), b"1\n2\n3\n");
/// # Ok(()) }
/// ```
pub struct CopyOutStream<'a> {
    // Dropped first, as `RowStream`'s.
    data: Option<Pin<Box<tokio_postgres::CopyOutStream>>>,
    held: Held<'a>,
    limit: Option<Duration>,
    bound: WaitBound,
}

impl std::fmt::Debug for CopyOutStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyOutStream")
            .field("done", &self.data.is_none())
            .finish()
    }
}

impl<'a> CopyOutStream<'a> {
    fn new(held: Held<'a>, done: Done) -> Self {
        let Done::CopyOut(data) = done else {
            unreachable!("a COPY TO STDOUT's start returns its stream")
        };
        let mut held = held;
        CopyOutStream {
            data: Some(data),
            limit: held.limit(),
            held,
            bound: WaitBound::default(),
        }
    }
}

impl CopyOutStream<'_> {
    /// The next chunk of the COPY's output, `None` at the end, with no stream crate (it is
    /// also a [`Stream`]).
    ///
    /// # Errors
    /// The server's error mid-way, a closed session, or `query_timeout` while waiting.
    ///
    /// # Cancel safety
    /// Cancel-safe: a chunk is never lost to a dropped call.
    pub async fn try_next(&mut self) -> Result<Option<Bytes>, Error> {
        std::future::poll_fn(|cx| Pin::new(&mut *self).poll_next(cx))
            .await
            .transpose()
    }
}

impl Stream for CopyOutStream<'_> {
    type Item = Result<Bytes, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        let Some(data) = this.data.as_mut() else {
            return Poll::Ready(None);
        };
        let r = match ready!(poll_bounded(data.as_mut(), &mut this.bound, this.limit, cx)) {
            Ok(r) => r,
            Err(limit) => {
                this.data = None;
                return Poll::Ready(Some(Err(this.held.overran(limit))));
            }
        };
        Poll::Ready(match r {
            Some(Ok(bytes)) => Some(Ok(bytes)),
            Some(Err(e)) => {
                this.data = None;
                Some(Err(this.held.error(e)))
            }
            None => {
                this.data = None;
                this.held.finish(None);
                None
            }
        })
    }
}

impl Drop for CopyOutStream<'_> {
    fn drop(&mut self) {
        self.data = None;
        self.held.abandon(true);
    }
}

/// `op` when its statement is a `COPY`; anything else is refused before a byte is sent
/// (tokio-postgres would run it, then fail on the reply it did not expect, with the session
/// out of step). The error never quotes the statement, which may hold secrets.
fn copy_statement(op: Op<'_>) -> Result<Op<'_>, Error> {
    if op.command() == "COPY" {
        return Ok(op);
    }
    let (method, form) = match op {
        Op::CopyIn(_) => ("copy_in", "COPY ... FROM STDIN"),
        _ => ("copy_out", "COPY ... TO STDOUT"),
    };
    Err(Error::config(
        "statement",
        format!("{method} runs `{form}`; this statement is not a COPY (nothing was sent)"),
    ))
}

/// `copy_in` and `copy_out` for [`Conn`] and [`Tx`]: `$failed` names the transaction's
/// failure flag, if any.
macro_rules! copy_api {
    ($failed:ident) => {
        /// As [`Db::copy_in`], on this session.
        ///
        /// # Errors
        /// As [`Db::copy_in`].
        ///
        /// # Cancel safety
        /// As [`Db::copy_in`]; the next statement on this session waits for the cancel.
        pub async fn copy_in<S, B, E>(&mut self, sql: &str, data: S) -> Result<u64, Error>
        where
            S: Stream<Item = Result<B, E>>,
            B: Into<Bytes>,
            E: Into<Box<dyn StdError + Send + Sync>>,
        {
            let done = self.run(copy_statement(Op::CopyIn(sql))?).await?;
            let held = Held::Borrowed {
                conn: &mut self.guard,
                failed: $failed!(self),
            };
            CopyIn(held).feed(done, data).await
        }

        /// As [`Db::copy_out`], on this session: the stream borrows it until it ends or
        /// is dropped.
        ///
        /// # Errors
        /// As [`Db::copy_out`].
        ///
        /// # Cancel safety
        /// See [`CopyOutStream`].
        pub async fn copy_out(&mut self, sql: &str) -> Result<CopyOutStream<'_>, Error> {
            let done = self.run(copy_statement(Op::CopyOut(sql))?).await?;
            let held = Held::Borrowed {
                conn: &mut self.guard,
                failed: $failed!(self),
            };
            Ok(CopyOutStream::new(held, done))
        }
    };
}

macro_rules! no_tx {
    ($s:ident) => {
        None
    };
}

macro_rules! tx_flag {
    ($s:ident) => {
        Some(&mut $s.failed)
    };
}

impl Db {
    /// Runs `COPY ... FROM STDIN` with the bytes of `data` (in the COPY's format: text
    /// lines, CSV, binary; chunks of any size), and returns the number of rows copied. The
    /// COPY has a session of its own until it ends; its start has the bad-connection retry
    /// of [`execute`](Db::execute) (no data has been read from `data` before).
    ///
    /// # Errors
    /// As [`execute`](Db::execute) (a row the server rejects fails the whole COPY, with
    /// the server's error); [`Error::is_copy_aborted`] when `data` yields an error (the
    /// cause): the COPY is aborted and nothing of it is kept.
    ///
    /// # Cancel safety
    /// Dropped half way, the COPY is aborted (nothing of it is kept) and its session is
    /// settled before reuse, as a dropped statement's.
    ///
    /// # Examples
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pg = pool_sql::testing::TestPg::start()?;
    /// # let db = pool_sql::Db::builder(&pg.url()).build()?;
    /// db.execute("CREATE TABLE nums (n int)", &[]).await?;
    /// let lines = (1..=3).map(|n| Ok::<_, std::io::Error>(format!("{n}\n")));
    /// let copied = db.copy_in("COPY nums FROM STDIN", futures_util::stream::iter(lines)).await?;
    /// assert_eq!(copied, 3);
    /// # Ok(()) }
    /// ```
    pub async fn copy_in<S, B, E>(&self, sql: &str, data: S) -> Result<u64, Error>
    where
        S: Stream<Item = Result<B, E>>,
        B: Into<Bytes>,
        E: Into<Box<dyn StdError + Send + Sync>>,
    {
        let op = copy_statement(Op::CopyIn(sql))?;
        let db = &self.pool().manager().target;
        let (conn, done) =
            in_span(db, op, |span| self.retrying(op, None, span), |(_, d)| d).await?;
        CopyIn(Held::owned(conn)).feed(done, data).await
    }

    /// Runs `COPY ... TO STDOUT` and returns its data as a [`CopyOutStream`], read as it
    /// arrives. The stream owns its session until its end; its start has the
    /// bad-connection retry of [`query`](Db::query).
    ///
    /// # Errors
    /// As [`query`](Db::query); each item is a chunk of data or the error that ended the
    /// COPY.
    ///
    /// # Cancel safety
    /// See [`CopyOutStream`].
    pub async fn copy_out(&self, sql: &str) -> Result<CopyOutStream<'static>, Error> {
        let op = copy_statement(Op::CopyOut(sql))?;
        let db = &self.pool().manager().target;
        let (conn, done) =
            in_span(db, op, |span| self.retrying(op, None, span), |(_, d)| d).await?;
        Ok(CopyOutStream::new(Held::owned(conn), done))
    }
}

impl Conn {
    copy_api!(no_tx);
}

impl Tx {
    copy_api!(tx_flag);
}
