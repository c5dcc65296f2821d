//! Transactions: [`Tx`] (Go's `*sql.Tx`), its [`Savepoint`]s, the modes of `BEGIN`
//! ([`TxOptions`]), and the closure forms on [`Db`]: [`Db::transaction`],
//! [`Db::transaction_with`] and [`Db::transaction_retry`].
//!
//! # Invariants
//!
//! - A [`Tx`] owns its session until it is committed, rolled back or dropped; dropped, the
//!   session's reset on return rolls it back (the server's status decides, see
//!   [`Db`]'s "Session hygiene").
//! - `failed` is true from a failed statement (or one dropped half way, whose end the
//!   caller never saw) until a savepoint made before it rolls back past it: a commit then
//!   rolls back and says so ([`Error::is_tx_aborted`]), as it does when the server reports
//!   a failed transaction block. `failed_at` is the newest savepoint made before the first
//!   failure: a rollback to a savepoint made after it (possible when the dropped statement
//!   finished on the server, which then accepts a `SAVEPOINT`) clears nothing.
//! - A dropped `SAVEPOINT` of [`Tx::savepoint`] changes no data: it fails nothing.
//! - A [`Savepoint`] dropped without commit or rollback leaves its id in `pending`: the
//!   next statement of the transaction (its commit, another savepoint) first rolls back to
//!   it, so its changes never reach a commit. `pending` is cleared only once that rollback
//!   succeeded: a cancelled one is sent again.
//! - Savepoint names are `pool_sql_sp_<n>`, `n` counting up per transaction: never text of
//!   the caller's.

use std::panic::Location;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use pool_core::Pooled;
use tokio_postgres::Row;
use tracing::Instrument;

// The statement methods' docs link it.
#[cfg(doc)]
use crate::DbBuilder;
use crate::conn::{Done, Op, PgConn};
use crate::db::{Params, in_span, run_on, statement_api};
use crate::error::Kind;
use crate::manager::PgManager;
use crate::{Db, Error};

mod options;
mod savepoint;

pub use options::{IsolationLevel, TxOptions};
pub use savepoint::Savepoint;

impl Db {
    /// Begins a transaction on a session of its own (`BEGIN`, with the bad-connection
    /// retry). Commit it with [`Tx::commit`]; dropped without commit, it rolls back before
    /// the session is reused.
    ///
    /// # Errors
    /// As [`query`](Db::query).
    ///
    /// # Cancel safety
    /// Dropped before it returns, nothing stays open: the session goes back and is rolled
    /// back if `BEGIN` reached it.
    #[track_caller]
    pub fn begin(&self) -> impl Future<Output = Result<Tx, Error>> {
        self.begin_at(TxOptions::new(), Location::caller())
    }

    /// [`begin`](Db::begin) with the modes of `options` (`BEGIN ISOLATION LEVEL ...`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(db: pool_sql::Db) -> Result<(), pool_sql::Error> {
    /// use pool_sql::{IsolationLevel, TxOptions};
    /// let mut tx = db.begin_with(TxOptions::new().isolation(IsolationLevel::RepeatableRead)).await?;
    /// let n: i64 = tx.query_one("SELECT count(*) FROM kv", &[]).await?.get(0);
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`begin`](Db::begin).
    ///
    /// # Cancel safety
    /// As [`begin`](Db::begin).
    #[track_caller]
    pub fn begin_with(&self, options: TxOptions) -> impl Future<Output = Result<Tx, Error>> {
        self.begin_at(options, Location::caller())
    }

    /// [`begin_with`](Db::begin_with), a leak of its session reported at `caller`.
    async fn begin_at(
        &self,
        options: TxOptions,
        caller: &'static Location<'static>,
    ) -> Result<Tx, Error> {
        let db = &self.pool().manager().target;
        let sql = options.begin_sql();
        let op = Op::Begin(&sql);
        let begin = |span| self.retrying(op, Some(caller), span);
        let (conn, _) = in_span(db, op, begin, |(_, d)| d).await?;
        Ok(Tx::new(Pooled::into_owned(conn), db.clone()))
    }

    /// Runs `f` in a transaction: commits when it returns `Ok`, rolls back when it returns
    /// `Err` (and passes the error on). `f` is an async closure that may borrow from the
    /// caller (`async |tx| ...`).
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(db: pool_sql::Db) -> Result<(), pool_sql::Error> {
    /// let from = "alice"; // borrowed, not moved
    /// let mut log = Vec::new();
    /// db.transaction(async |tx| {
    ///     tx.execute("UPDATE account SET balance = balance - 10 WHERE id = $1", &[&from]).await?;
    ///     tx.execute("UPDATE account SET balance = balance + 10 WHERE id = $1", &[&"bob"]).await?;
    ///     log.push(from);
    ///     Ok::<_, pool_sql::Error>(())
    /// })
    /// .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `f`'s error, or the error of `BEGIN` or `COMMIT`; [`Error::is_tx_aborted`] when a
    /// statement of the transaction failed and `f` still returned `Ok`.
    ///
    /// # Cancel safety
    /// Dropped at any point, nothing is committed that `f` did not finish: the session goes
    /// back with its transaction open, and is rolled back before anyone else gets it.
    #[track_caller]
    pub fn transaction<T, E, F>(&self, f: F) -> impl Future<Output = Result<T, E>>
    where
        F: AsyncFnOnce(&mut Tx) -> Result<T, E>,
        E: From<Error>,
    {
        self.transaction_with(TxOptions::new(), f)
    }

    /// [`transaction`](Db::transaction) with the modes of `options` (isolation level, read
    /// only, deferrable). Runs `f` once: see [`transaction_retry`](Db::transaction_retry)
    /// to run it again on a serialization failure.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(db: pool_sql::Db) -> Result<(), pool_sql::Error> {
    /// use pool_sql::{IsolationLevel, TxOptions};
    /// let report = TxOptions::new().isolation(IsolationLevel::Serializable).read_only(true).deferrable(true);
    /// let total: i64 = db
    ///     .transaction_with(report, async |tx| Ok::<_, pool_sql::Error>(tx.query_one("SELECT sum(v) FROM kv", &[]).await?.get(0)))
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`transaction`](Db::transaction).
    ///
    /// # Cancel safety
    /// As [`transaction`](Db::transaction).
    #[track_caller]
    pub fn transaction_with<T, E, F>(
        &self,
        options: TxOptions,
        f: F,
    ) -> impl Future<Output = Result<T, E>>
    where
        F: AsyncFnOnce(&mut Tx) -> Result<T, E>,
        E: From<Error>,
    {
        let caller = Location::caller();
        traced(&self.pool().manager().target, async move {
            let mut tx = match self.begin_at(options, caller).await {
                Ok(tx) => tx,
                Err(e) => return (Err(e.into()), 1),
            };
            let r = f(&mut tx).await;
            (tx.finish(r).await.0, 1)
        })
    }

    /// Runs `f` in a transaction as [`transaction_with`](Db::transaction_with), and runs it
    /// again, in a new transaction, when it failed for a serialization failure (40001) or
    /// a deadlock (40P01): from one of its statements (whatever `f` made of that error) or
    /// from `COMMIT`. At most [`attempts`](TxOptions::attempts) runs in all (default 3),
    /// with a jittered [`backoff`](TxOptions::backoff) between them; any other failure
    /// ends it at once. `f` must be safe to run more than once: whatever it does outside
    /// the database happens again.
    ///
    /// Each retry is counted (`sql_tx_retried` with the `metrics` feature) and logged at
    /// DEBUG (target `pool_sql`); the `transaction` span (around the statement spans of
    /// every run) records `attempts`.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(db: pool_sql::Db) -> Result<(), pool_sql::Error> {
    /// use pool_sql::{IsolationLevel, TxOptions};
    /// let mut runs = 0;
    /// db.transaction_retry(TxOptions::new().isolation(IsolationLevel::Serializable), async |tx| {
    ///     runs += 1;
    ///     let n: i32 = tx.query_one("SELECT v FROM kv WHERE k = 'a'", &[]).await?.get(0);
    ///     tx.execute("UPDATE kv SET v = $1 WHERE k = 'a'", &[&(n + 1)]).await?;
    ///     Ok::<_, pool_sql::Error>(())
    /// })
    /// .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// In a spawned task (a future that must be `Send`), let the closure own what it
    /// captures: `async move |tx|`. A closure run more than once that borrows its captures
    /// makes rustc ask `Send` of those borrows for every lifetime, which it cannot yet
    /// prove ("implementation of `Send` is not general enough").
    ///
    /// ```no_run
    /// # fn demo(db: pool_sql::Db) {
    /// let account = 7i32;
    /// tokio::spawn(async move {
    ///     db.transaction_retry(pool_sql::TxOptions::new(), async move |tx| {
    ///         tx.execute("UPDATE account SET n = n + 1 WHERE id = $1", &[&account]).await
    ///     })
    ///     .await
    /// });
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`transaction`](Db::transaction): the last run's error when every run conflicted.
    ///
    /// # Cancel safety
    /// As [`transaction`](Db::transaction): a dropped run commits nothing, and no further
    /// run starts.
    #[track_caller]
    pub fn transaction_retry<T, E, F>(
        &self,
        options: TxOptions,
        mut f: F,
    ) -> impl Future<Output = Result<T, E>>
    where
        F: AsyncFnMut(&mut Tx) -> Result<T, E>,
        E: From<Error>,
    {
        let caller = Location::caller();
        traced(&self.pool().manager().target, async move {
            let attempts = options.attempts.max(1);
            let counters = &self.pool().manager().counters;
            let mut attempt = 1;
            loop {
                let mut tx = match self.begin_at(options, caller).await {
                    Ok(tx) => tx,
                    Err(e) => return (Err(e.into()), attempt),
                };
                let r = f(&mut tx).await;
                let (r, conflict) = tx.finish(r).await;
                if r.is_ok() || !conflict {
                    return (r, attempt);
                }
                if attempt >= attempts {
                    counters.tx_gave_up.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(target: "pool_sql", attempts, "transaction conflicted on its last attempt");
                    return (r, attempt);
                }
                counters.tx_retried.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(target: "pool_sql", attempt, "transaction conflicted (serialization failure or deadlock): running it again");
                let wait = options.backoff_before(attempt);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                attempt += 1;
            }
        })
    }
}

/// Runs the closure forms' `body` in their `transaction` span (target `pool_sql`, level
/// DEBUG): `db` from the start, `attempts` (runs of the closure, 1 but for
/// [`Db::transaction_retry`]) and `committed` at the end. The statement spans of `BEGIN`,
/// the closure's statements and `COMMIT` sit inside it.
async fn traced<T, E>(db: &str, body: impl Future<Output = (Result<T, E>, u32)>) -> Result<T, E> {
    let span = tracing::debug_span!(
        target: "pool_sql",
        "transaction",
        db,
        attempts = tracing::field::Empty,
        committed = tracing::field::Empty,
    );
    if span.is_disabled() {
        return body.await.0;
    }
    let (r, attempts) = body.instrument(span.clone()).await;
    span.record("attempts", attempts);
    span.record("committed", r.is_ok());
    r
}

/// A transaction on one session (Go's `*sql.Tx`). [`commit`](Tx::commit) or
/// [`rollback`](Tx::rollback) it; dropped without either, it is rolled back before the
/// session is reused. [`savepoint`](Tx::savepoint) nests one.
///
/// As [`Conn`](crate::Conn), it does not deref to its session: [`get_ref`](Tx::get_ref)
/// reaches it.
///
/// # Cancel safety
///
/// A statement dropped half way is cancelled on the server before the transaction's next
/// statement runs (or when the session goes back), and the transaction fails: its commit
/// rolls back ([`Error::is_tx_aborted`]), unless a savepoint rolled back past the statement.
/// The transaction never commits what it did not finish.
#[derive(Debug)]
pub struct Tx {
    pub(crate) guard: Pooled<'static, PgManager>,
    /// As [`Conn`](crate::Conn)'s.
    pub(crate) db: Arc<str>,
    /// A statement failed: `COMMIT` rolls back (a stream or COPY that fails sets it too).
    pub(crate) failed: bool,
    /// With `failed`: the newest savepoint made before the first failure (0: none), set by
    /// [`note_failure`](Tx::note_failure); a rollback to a later one does not clear it.
    failed_at: Option<u64>,
    /// A `SAVEPOINT` of [`savepoint`](Tx::savepoint) is in flight: dropped, it fails nothing.
    saving: bool,
    /// A statement (or `COMMIT`) failed with 40001 or 40P01: what
    /// [`Db::transaction_retry`] runs the transaction again for.
    conflict: bool,
    /// Savepoints made so far: the next one's number.
    savepoints: u64,
    /// The savepoint to roll back to before the next statement (one dropped open).
    pending: Option<u64>,
}

impl Tx {
    pub(crate) fn new(guard: Pooled<'static, PgManager>, db: Arc<str>) -> Tx {
        Tx {
            guard,
            db,
            failed: false,
            failed_at: None,
            saving: false,
            conflict: false,
            savepoints: 0,
            pending: None,
        }
    }

    statement_api!(mut);

    pub(crate) async fn run(&mut self, op: Op<'_>) -> Result<Done, Error> {
        self.note_failure();
        self.settle().await?;
        let r = run_on(&self.db, &mut self.guard, op).await;
        if let Err(e) = &r {
            self.fail(e);
        }
        r
    }

    /// Called before each step of the transaction. A statement dropped half way (its
    /// session is still `busy`; the next statement cancels what is left of it) fails the
    /// transaction, as an error does: its caller never saw it finish. A dropped `SAVEPOINT`
    /// changed no data. Also places a failure a stream or COPY flagged since the last step
    /// (no savepoint can be made in between: they borrow the transaction).
    pub(crate) fn note_failure(&mut self) {
        if self.guard.busy && !std::mem::take(&mut self.saving) {
            self.failed = true;
        }
        if self.failed && self.failed_at.is_none() {
            self.failed_at = Some(self.savepoints);
        }
    }

    fn fail(&mut self, e: &Error) {
        self.failed = true;
        self.note_failure();
        self.conflict |= e.is_serialization_failure() || e.is_deadlock();
    }

    /// Rolled back to savepoint `id`: a failure after it was made is undone with it.
    pub(crate) fn rolled_back_to(&mut self, id: u64) {
        self.note_failure();
        if self.failed_at.is_some_and(|at| at >= id) {
            self.failed = false;
            self.failed_at = None;
        }
    }

    /// Rolls back to a savepoint dropped open, if any (see the module's invariants).
    async fn settle(&mut self) -> Result<(), Error> {
        let Some(id) = self.pending else {
            return Ok(());
        };
        let sql =
            format!("ROLLBACK TO SAVEPOINT pool_sql_sp_{id}; RELEASE SAVEPOINT pool_sql_sp_{id}");
        match run_on(&self.db, &mut self.guard, Op::Batch(&sql)).await {
            Ok(_) => {
                self.pending = None;
                self.rolled_back_to(id);
                Ok(())
            }
            Err(e) => {
                self.fail(&e);
                Err(e)
            }
        }
    }

    /// Commits.
    ///
    /// # Errors
    /// [`Error::is_tx_aborted`] when a statement of the transaction failed (PostgreSQL rolls
    /// it back instead); otherwise the error of `COMMIT` (40001 under `SERIALIZABLE`:
    /// [`Error::is_serialization_failure`]).
    ///
    /// # Cancel safety
    /// Dropped before it returns, the transaction may or may not have committed (as any
    /// database client whose `COMMIT` got no answer); the session is made clean before reuse.
    pub async fn commit(mut self) -> Result<(), Error> {
        self.commit_inner().await
    }

    async fn commit_inner(&mut self) -> Result<(), Error> {
        self.note_failure();
        if !self.failed {
            // A savepoint dropped open is undone first: its changes are never committed.
            let _ = self.settle().await;
        }
        if self.failed {
            self.rollback_inner().await?;
            return Err(Error::new(Kind::TxAborted { savepoint: false }));
        }
        match run_on(&self.db, &mut self.guard, Op::Batch("COMMIT")).await {
            // The server's word too: a statement run past this crate (`get_ref().client()`)
            // may have failed the transaction, and `COMMIT` then rolled back (no error).
            Ok(_) if self.guard.wire.rolled_back() => {
                self.failed = true;
                Err(Error::new(Kind::TxAborted { savepoint: false }))
            }
            Ok(_) => Ok(()),
            Err(e) => {
                self.fail(&e);
                Err(e)
            }
        }
    }

    /// Rolls back.
    ///
    /// # Errors
    /// The error of `ROLLBACK` (the session is then discarded).
    ///
    /// # Cancel safety
    /// Dropped before it returns, the session is still rolled back before reuse.
    pub async fn rollback(mut self) -> Result<(), Error> {
        self.rollback_inner().await
    }

    async fn rollback_inner(&mut self) -> Result<(), Error> {
        run_on(&self.db, &mut self.guard, Op::Batch("ROLLBACK")).await?;
        Ok(())
    }

    /// Commits `r`'s transaction when `r` is `Ok`, else rolls it back; says whether a
    /// failure was a conflict (40001, 40P01) that running it again may cure.
    async fn finish<T, E: From<Error>>(mut self, r: Result<T, E>) -> (Result<T, E>, bool) {
        match r {
            Ok(v) => match self.commit_inner().await {
                Ok(()) => (Ok(v), false),
                Err(e) => (Err(e.into()), self.conflict),
            },
            Err(e) => {
                // The error the caller wants is theirs; a failed rollback discards the
                // session (its reset rolls back or closes it).
                let _ = self.rollback_inner().await;
                (Err(e), self.conflict)
            }
        }
    }

    /// Sets a savepoint (`SAVEPOINT pool_sql_sp_<n>`, a name of this crate's): a nested
    /// transaction whose [`rollback`](Savepoint::rollback) (or drop) undoes what ran in it
    /// and keeps what ran before, and whose [`commit`](Savepoint::commit) releases it. The
    /// transaction is usable again once it ends.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(db: pool_sql::Db) -> Result<(), pool_sql::Error> {
    /// let mut tx = db.begin().await?;
    /// tx.execute("INSERT INTO kv VALUES ('a', 1)", &[]).await?;
    /// let mut sp = tx.savepoint().await?;
    /// if sp.execute("INSERT INTO kv VALUES ('a', 2)", &[]).await.is_err() {
    ///     sp.rollback().await?; // the first insert stays
    /// } else {
    ///     sp.commit().await?;
    /// }
    /// tx.commit().await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`query`](Tx::query) (a transaction that already failed refuses it: 25P02).
    ///
    /// # Cancel safety
    /// Dropped before it returns, the savepoint may exist on the server, unnamed to anyone:
    /// harmless, it ends with the transaction.
    pub async fn savepoint(&mut self) -> Result<Savepoint<'_>, Error> {
        self.note_failure();
        self.savepoints += 1;
        let id = self.savepoints;
        self.saving = true;
        let made = self
            .run(Op::Batch(&format!("SAVEPOINT pool_sql_sp_{id}")))
            .await;
        self.saving = false;
        made?;
        Ok(Savepoint::new(self, id))
    }

    /// Runs `f` in a [`savepoint`](Tx::savepoint): releases it when `f` returns `Ok`, rolls
    /// back to it when `f` returns `Err` (and passes the error on). The transaction goes on
    /// either way.
    ///
    /// # Examples
    ///
    /// ```no_run
    /// # async fn demo(db: pool_sql::Db) -> Result<(), pool_sql::Error> {
    /// db.transaction(async |tx| {
    ///     tx.execute("INSERT INTO kv VALUES ('a', 1)", &[]).await?;
    ///     // A duplicate is fine: only the nested part is undone.
    ///     let _ = tx.transaction(async |sp| sp.execute("INSERT INTO kv VALUES ('b', 2)", &[]).await).await;
    ///     Ok::<_, pool_sql::Error>(())
    /// })
    /// .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `f`'s error, or the error of `SAVEPOINT` or `RELEASE SAVEPOINT`;
    /// [`Error::is_tx_aborted`] when a statement in it failed and `f` still returned `Ok`
    /// (it was rolled back to the savepoint).
    ///
    /// # Cancel safety
    /// Dropped at any point, what `f` did is rolled back before the transaction's next
    /// statement.
    pub async fn transaction<T, E, F>(&mut self, f: F) -> Result<T, E>
    where
        F: AsyncFnOnce(&mut Savepoint<'_>) -> Result<T, E>,
        E: From<Error>,
    {
        let mut sp = self.savepoint().await?;
        match f(&mut sp).await {
            Ok(v) => {
                sp.commit().await?;
                Ok(v)
            }
            Err(e) => {
                // Failing, the savepoint stays pending and the next statement retries it.
                let _ = sp.rollback().await;
                Err(e)
            }
        }
    }

    /// The session, for what this crate does not wrap ([`PgConn::client`]).
    pub fn get_ref(&self) -> &PgConn {
        &self.guard
    }
}
