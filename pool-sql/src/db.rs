//! [`Db`], the `*sql.DB` of this crate, and the pinned [`Conn`] and [`Tx`].

use std::future::Future;
use std::panic::Location;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pool_core::{Pool, Pooled, Stats};
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use tracing::Instrument;

use crate::conn::{Done, Op, PgConn};
use crate::error::{Kind, PoolOp, Report};
use crate::manager::PgManager;
use crate::wire::TxStatus;
use crate::{DbBuilder, Error, Tx, TxOptions};

/// Tries of one statement on bad connections, as database/sql: two on a pooled-or-new
/// session, then one on a new one.
const BAD_CONN_TRIES: usize = 3;

/// Parameters of a statement, as tokio-postgres takes them: `&[&1i32, &"text"]`.
pub type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

/// A pool of PostgreSQL sessions with database/sql's behaviour: Go's `*sql.DB`.
///
/// Cheap to clone (clones share the pool). Statements run directly on it take a session for
/// the call and give it back; [`conn`](Db::conn) pins one session, [`begin`](Db::begin) and
/// [`transaction`](Db::transaction) run a transaction on one.
///
/// **Bad connections.** A statement that fails because its session was dead *before anything
/// reached the server* (counted at the socket), or because the server ended a reused session
/// between statements (its FATAL 57P01/57P02/57P03, or the end of the stream, was the first
/// reply, outside a transaction: the statement never ran), is run again: twice on a
/// pooled-or-new session, then once on a new one, as database/sql. A statement that may have
/// run is never run again; its error says so ([`Error::is_closed`]).
///
/// **Session hygiene.** A session given back with a transaction open (a [`Tx`] dropped
/// without commit) is rolled back before reuse. A session whose statement future was dropped
/// mid-flight gets a cancel request at once and is reused only once the server has
/// answered it; the next caller never waits for an abandoned query. What `SET`, temp tables,
/// advisory locks or `LISTEN` leave on a session stays, as with database/sql.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), pool_sql::Error> {
/// let db = pool_sql::Db::builder("postgres://app:secret@localhost/app")
///     .max_open(16)
///     .max_idle(4)
///     .build()?;
/// db.execute("CREATE TABLE IF NOT EXISTS kv (k text PRIMARY KEY, v text)", &[]).await?;
/// db.execute("INSERT INTO kv VALUES ($1, $2) ON CONFLICT (k) DO UPDATE SET v = $2", &[&"a", &"1"]).await?;
/// let row = db.query_one("SELECT v FROM kv WHERE k = $1", &[&"a"]).await?;
/// assert_eq!(row.get::<_, &str>(0), "1");
/// println!("{:?}", db.stats());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Db {
    pool: Pool<PgManager>,
}

impl std::fmt::Debug for Db {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("manager", self.pool.manager())
            .field("stats", &self.pool.stats())
            .finish()
    }
}

/// Rows of a query: `query`, `query_one`, `query_opt`, `execute`, `batch_execute`, each
/// written once for [`Db`], [`Conn`] and [`Tx`] over their `run`.
macro_rules! statement_api {
    ($($mut:ident)?) => {
        /// Runs a query and returns its rows. The statement (SQL text or a [`Statement`](crate::Statement))
        /// is prepared once per session and cached (see [`DbBuilder::statement_cache`]).
        ///
        /// # Errors
        /// The server's error ([`Error::code`]), a closed session, or the pool's error.
        pub async fn query(&$($mut)? self, sql: &(impl $crate::ToStatement + ?Sized), params: Params<'_>) -> Result<Vec<Row>, Error> {
            match self.run(Op::Query(sql.as_sql(), params)).await? {
                Done::Rows(rows) => Ok(rows),
                _ => unreachable!("a query returns rows"),
            }
        }

        /// Runs a query that returns exactly one row.
        ///
        /// # Errors
        /// As [`query`](Self::query); and [`Error::is_no_rows`] for no row,
        /// [`Error::row_count`] for more than one.
        pub async fn query_one(&$($mut)? self, sql: &(impl $crate::ToStatement + ?Sized), params: Params<'_>) -> Result<Row, Error> {
            let mut rows = self.query(sql, params).await?;
            match rows.len() {
                1 => Ok(rows.pop().expect("one row")),
                n => Err(Error::new(Kind::RowCount(n))),
            }
        }

        /// Runs a query that returns at most one row.
        ///
        /// # Errors
        /// As [`query`](Self::query); and [`Error::row_count`] for more than one row.
        pub async fn query_opt(&$($mut)? self, sql: &(impl $crate::ToStatement + ?Sized), params: Params<'_>) -> Result<Option<Row>, Error> {
            let mut rows = self.query(sql, params).await?;
            match rows.len() {
                0 | 1 => Ok(rows.pop()),
                n => Err(Error::new(Kind::RowCount(n))),
            }
        }

        /// Runs a statement and returns the number of rows it affected.
        ///
        /// # Errors
        /// As [`query`](Self::query).
        pub async fn execute(&$($mut)? self, sql: &(impl $crate::ToStatement + ?Sized), params: Params<'_>) -> Result<u64, Error> {
            match self.run(Op::Execute(sql.as_sql(), params)).await? {
                Done::Count(n) => Ok(n),
                _ => unreachable!("a statement returns a count"),
            }
        }

        /// Runs one or more statements separated by `;`, without parameters (the simple
        /// query protocol).
        ///
        /// # Errors
        /// As [`query`](Self::query).
        pub async fn batch_execute(&$($mut)? self, sql: &str) -> Result<(), Error> {
            self.run(Op::Batch(sql)).await.map(drop)
        }
    };
}
pub(crate) use statement_api;

impl Db {
    /// Opens a pool with the default knobs, as Go's `sql.Open`: nothing connects yet.
    ///
    /// # Errors
    /// See [`DbBuilder::build`].
    pub fn open(url: &str) -> Result<Db, Error> {
        Self::builder(url).build()
    }

    /// A builder for the connection string `url`: `postgres://user:pass@host:port/db?...`
    /// or `host=... user=... dbname=...`, as tokio-postgres parses them.
    pub fn builder(url: &str) -> DbBuilder {
        DbBuilder::new(url)
    }

    pub(crate) fn from_pool(pool: Pool<PgManager>) -> Self {
        Db { pool }
    }

    statement_api!();

    pub(crate) async fn run(&self, op: Op<'_>) -> Result<Done, Error> {
        let db = &self.pool.manager().target;
        in_span(
            db,
            op,
            |span| self.retrying(op, None, span),
            |(_, done)| done,
        )
        .await
        .map(|(_, done)| done)
    }

    /// Runs `op` on a session with database/sql's bad-connection retry; returns the session
    /// with the result. A leak of the session is reported at `caller` if given. Records the
    /// session and the tries on `span`.
    pub(crate) async fn retrying(
        &self,
        op: Op<'_>,
        caller: Option<&'static Location<'static>>,
        span: tracing::Span,
    ) -> Result<(Pooled<'_, PgManager>, Done), Error> {
        let mut last = None;
        for attempt in 0..BAD_CONN_TRIES {
            span.record("retried", attempt);
            let mut conn = if attempt + 1 < BAD_CONN_TRIES {
                self.get(caller).await?
            } else {
                self.new_session(caller).await?
            };
            let written = conn.wire.written();
            // A session that waited in the pool, used or not (a create whose caller was
            // served by a release first leaves an unused one idle).
            let between_statements = op.unanswered_means_unrun()
                && conn.pooled
                && conn.wire.tx_status() == TxStatus::Idle;
            let mark = conn.wire.mark();
            if let Some(pid) = conn.backend_pid() {
                span.record("session", pid);
            }
            match conn.run_bounded(op).await {
                Ok(done) => return Ok((conn, done)),
                Err(err) => {
                    let never_sent = err.is_closed() && conn.wire.written() == written;
                    // The server ended a reused session between statements (an administrator's
                    // pg_terminate_backend, a shutdown): its goodbye, or the end of the
                    // stream, was the first reply, so the statement never ran.
                    let never_ran = between_statements
                        && (err.is_closed() || err.is_server_shutdown())
                        && conn.wire.at_most_an_error_since(mark);
                    if never_sent || never_ran {
                        tracing::debug!(target: "pool_sql", attempt, error = %Report(&err), never_sent, "bad connection: the statement never ran; trying again");
                        Pooled::discard(conn);
                        self.pool
                            .manager()
                            .counters
                            .retried
                            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        last = Some(err);
                        continue;
                    }
                    return Err(err);
                }
            }
        }
        Err(last.expect("at least one try"))
    }

    /// A session that never waited in the pool (database/sql's `alwaysNewConn`): pooled
    /// ones met on the way are closed (after two bad connections in a row, the idle ones
    /// are suspect), within a bound.
    async fn new_session(
        &self,
        caller: Option<&'static Location<'static>>,
    ) -> Result<Pooled<'_, PgManager>, Error> {
        let bound = self.pool.stats().open + 1;
        for _ in 0..bound {
            let conn = self.get(caller).await?;
            if !conn.pooled {
                return Ok(conn);
            }
            Pooled::discard(conn);
        }
        self.get(caller).await
    }

    /// A session from the pool; the error says where the sessions go and how long this
    /// call waited.
    async fn get(
        &self,
        caller: Option<&'static Location<'static>>,
    ) -> Result<Pooled<'_, PgManager>, Error> {
        let start = Instant::now();
        let get = self.pool.get();
        let get = match caller {
            Some(caller) => get.called_from(caller),
            None => get,
        };
        match get.await {
            Ok(conn) => Ok(conn),
            Err(e) => Err(self.acquire_error(e, start)),
        }
    }

    fn acquire_error(&self, e: pool_core::Error, start: Instant) -> Error {
        let target = &self.pool.manager().target;
        Error::pool(e, PoolOp::Acquire, target, Some(start.elapsed()))
    }

    /// Pins one session: its statements all run on it, in order (Go's `db.Conn`). It goes
    /// back to the pool when dropped.
    ///
    /// # Errors
    /// The pool's error (timeout, closed, connect failure).
    #[track_caller]
    pub fn conn(&self) -> impl Future<Output = Result<Conn, Error>> {
        // A leak of the session is reported at the caller's line (`leak_threshold`).
        let caller = Location::caller();
        async move {
            let start = Instant::now();
            match self.pool.get_owned().called_from(caller).await {
                Ok(guard) => Ok(Conn {
                    guard,
                    db: self.pool.manager().target.clone(),
                }),
                Err(e) => Err(self.acquire_error(e, start)),
            }
        }
    }

    /// Checks that the server answers (an empty statement), connecting if need be.
    ///
    /// # Errors
    /// As [`query`](Db::query).
    pub async fn ping(&self) -> Result<(), Error> {
        self.batch_execute("").await
    }

    /// The pool's counters, with database/sql's `DBStats` names (`max_open`, `open`,
    /// `in_use`, `idle`, `wait_count`, `wait_duration`, `max_idle_closed`, ...).
    pub fn stats(&self) -> Stats {
        self.pool.stats()
    }

    /// The pool underneath, for its runtime setters (`set_max_open`, `set_max_idle`, ...).
    pub fn pool(&self) -> &Pool<PgManager> {
        &self.pool
    }

    /// Closes the pool: waiting calls fail with [`Error::is_closed`], idle sessions close
    /// now, sessions in use close when they come back.
    pub fn close(&self) {
        self.pool.close();
    }

    /// [`close`](Db::close), then waits up to `timeout` for every session to be closed.
    ///
    /// # Errors
    /// [`Error::is_timeout`] when sessions are still in use at the deadline.
    pub async fn close_and_wait(&self, timeout: Duration) -> Result<(), Error> {
        let target = &self.pool.manager().target;
        self.pool
            .close_and_wait(timeout)
            .await
            .map_err(|e| Error::pool(e, PoolOp::Close, target, Some(timeout)))
    }
}

/// One session pinned for a sequence of statements (Go's `*sql.Conn`). Statements on it are
/// not retried elsewhere: they must run on this session. Dropped, it goes back to the pool
/// (rolled back first if it is left in a transaction, cancelled first if a statement was
/// abandoned mid-flight); [`discard`](Conn::discard) closes it instead.
///
/// Unlike pool-core's [`Pooled`], a `Conn` does not deref to its resource: its statements
/// are its own methods (they keep the session tracking that the bad-connection retry and
/// the hygiene on return rely on), and the [`PgConn`] under it is reached with
/// [`get_ref`](Conn::get_ref). With no `Deref`, nothing can be shadowed, so its
/// operations are methods (`conn.discard()`), where `Pooled`'s are associated functions
/// (`Pooled::discard(conn)`).
///
/// # Cancel safety
///
/// Dropping a statement's future half way loses nothing and leaks nothing: the session is
/// marked busy, and a cancel request is sent before the `Conn`'s next statement runs (which
/// then waits until the server has answered it, and neither queues behind the abandoned
/// statement nor is hit by its cancel), or when the `Conn` goes back (the session then
/// reaches nobody until the server has answered it, or it is closed). A statement the
/// server finished before the cancel arrived stays done.
#[derive(Debug)]
pub struct Conn {
    pub(crate) guard: Pooled<'static, PgManager>,
    /// Where the session goes (`user@host:port/db`), for statement spans.
    pub(crate) db: Arc<str>,
}

impl Conn {
    statement_api!(mut);

    pub(crate) async fn run(&mut self, op: Op<'_>) -> Result<Done, Error> {
        run_on(&self.db, &mut self.guard, op).await
    }

    /// Begins a transaction on this session.
    ///
    /// # Errors
    /// As [`query`](Conn::query).
    ///
    /// # Cancel safety
    /// As [`begin_with`](Conn::begin_with).
    pub async fn begin(self) -> Result<Tx, Error> {
        self.begin_with(TxOptions::new()).await
    }

    /// Begins a transaction on this session with the modes of `options` (isolation level,
    /// read only, deferrable: see [`Db::begin_with`]).
    ///
    /// # Errors
    /// As [`query`](Conn::query).
    ///
    /// # Cancel safety
    /// Dropped before it returns, the session goes back and is rolled back if `BEGIN`
    /// reached it.
    pub async fn begin_with(mut self, options: TxOptions) -> Result<Tx, Error> {
        let sql = options.begin_sql();
        self.run(Op::Begin(&sql)).await?;
        Ok(Tx::new(self.guard, self.db))
    }

    /// The session, for what this crate does not wrap ([`PgConn::client`]).
    pub fn get_ref(&self) -> &PgConn {
        &self.guard
    }

    /// Closes the session instead of giving it back, for one left in a state the next
    /// caller must not see (`SET`, temporary tables, advisory locks, without a
    /// [`session_reset`](DbBuilder::session_reset)). Counted in `broken_closed`; its slot
    /// frees when the close completes.
    pub fn discard(self) {
        Pooled::discard(self.guard);
    }
}

pub(crate) async fn run_on(db: &str, conn: &mut PgConn, op: Op<'_>) -> Result<Done, Error> {
    let run = move |span: tracing::Span| {
        let conn = conn; // moved in: the statement's future borrows it
        if let Some(pid) = conn.backend_pid() {
            span.record("session", pid);
        }
        conn.run_bounded(op)
    };
    in_span(db, op, run, |done| done).await
}

/// Runs one statement in its `statement` span (target `pool_sql`, level DEBUG; see the crate
/// docs, "Tracing"): `db` and `command` from the start; `session` (the server process, as
/// `pg_backend_pid()`) and `retried` (runs again after a bad connection: 0 on a pinned
/// session) once known, recorded by `run` on the span it is given; `duration`, and `rows`
/// or `error` at the end. The pool's `checkout` span of a [`Db`] call sits inside it.
///
/// `command` is the statement's first keyword when it is one of PostgreSQL's commands, as
/// a string of this crate's ([`Op::command`]): never a byte of the statement's text
/// (literals, identifiers, parameters), which may hold secrets (`ALTER ROLE ... PASSWORD`)
/// or data (a tenant's table name).
pub(crate) async fn in_span<T, F>(
    db: &str,
    op: Op<'_>,
    run: impl FnOnce(tracing::Span) -> F,
    done: impl FnOnce(&T) -> &Done,
) -> Result<T, Error>
where
    F: Future<Output = Result<T, Error>>,
{
    let span = tracing::debug_span!(
        target: "pool_sql",
        "statement",
        db,
        command = op.command(),
        session = tracing::field::Empty,
        retried = 0u64,
        duration = tracing::field::Empty,
        rows = tracing::field::Empty,
        error = tracing::field::Empty,
    );
    if span.is_disabled() {
        return run(span).await;
    }
    let start = Instant::now();
    let r = run(span.clone()).instrument(span.clone()).await;
    span.record("duration", tracing::field::debug(start.elapsed()));
    match &r {
        Ok(t) => match done(t) {
            Done::Rows(rows) => span.record("rows", rows.len()),
            Done::Count(n) => span.record("rows", n),
            Done::Unit | Done::Prepared(_) => &span,
            // Rows still to come: the stream's own work.
            Done::Stream(_) | Done::CopyIn(_) | Done::CopyOut(_) => &span,
        },
        Err(e) => span.record("error", tracing::field::display(e)),
    };
    r
}
