//! One PostgreSQL session as the pool holds it: the client, what it knows about its own
//! state (a statement in flight, a transaction open), and its statement cache.

use std::sync::Arc;
use std::time::Duration;

use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, Row, Statement};

use crate::connect::{Canceller, Probe, Wire};
use crate::error::Kind;
use crate::manager::CANCEL_WAIT;
use crate::wire::TxStatus;

mod statements;

use statements::{StatementCache, is_stale_statement};

/// How long the next statement on a session waits for a dropped statement that had not yet
/// been sent to end by itself, before it cancels it (see `PgConn::settle_dropped`).
const DROPPED_GRACE: Duration = Duration::from_millis(50);

/// A pooled session. Users reach it through [`Conn`](crate::Conn) and [`Tx`](crate::Tx).
pub struct PgConn {
    pub(crate) client: Box<Client>,
    pub(crate) wire: Arc<Wire>,
    // Boxed, as the cache: the pool moves sessions around (idle list, hand-offs), so what
    // is rarely touched stays out of line.
    pub(crate) cancel: Box<Canceller>,
    /// Ends the connection task (and closes the socket) when a statement overruns.
    task: tokio::task::AbortHandle,
    /// [`DbBuilder::query_timeout`](crate::DbBuilder::query_timeout).
    pub(crate) query_timeout: Option<Duration>,
    pub(crate) probe: Probe,
    /// A statement was started and its future dropped before it finished: the server may
    /// still be running it.
    pub(crate) busy: bool,
    /// A cancel request for the abandoned statement is on its way.
    /// Its task ends `true` once the server confirmed it (closed the cancel connection).
    pub(crate) cancel_sent: Option<tokio::task::JoinHandle<bool>>,
    /// The server ended the session (a FATAL error answered a statement), or the connection
    /// closed under one: never reused, even before the connection task has seen the end.
    pub(crate) broken: bool,
    /// A statement just finished: the release's `check` can skip the socket peek (the
    /// answer was just read); the next checkout's `check` peeks.
    pub(crate) just_used: bool,
    /// The socket had unread data while idle: confirm with a round trip before reuse.
    pub(crate) suspect: bool,
    /// Statements run on this session (0: never used, as good as new).
    pub(crate) uses: u64,
    /// It has waited in the pool (idle, or handed from one caller to the next), so the
    /// server may have ended it meanwhile: database/sql's "cached" connection, whose bad
    /// connection is retried. Set by `check`, which runs on every return and on every
    /// checkout but a fresh session's first.
    pub(crate) pooled: bool,
    /// [`Wire::requests`] after the last session reset: any request since means the
    /// opt-in `session_reset` runs on return.
    pub(crate) reset_mark: u64,
    cache: Box<StatementCache>,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("busy", &self.busy)
            .field("tx_status", &self.wire.tx_status())
            .field("uses", &self.uses)
            .field("cached_statements", &self.cache.len())
            .field(
                "requests_since_reset",
                &(self.wire.requests() - self.reset_mark),
            )
            .finish()
    }
}

/// What one statement does with the session.
#[derive(Clone, Copy)]
pub(crate) enum Op<'a> {
    Query(&'a str, &'a [&'a (dyn ToSql + Sync)]),
    Execute(&'a str, &'a [&'a (dyn ToSql + Sync)]),
    Batch(&'a str),
    /// `BEGIN`, with its transaction modes (`BEGIN ISOLATION LEVEL SERIALIZABLE`): text
    /// this crate made, never the caller's.
    Begin(&'a str),
    /// A query whose rows are read as they arrive: the session stays busy after the start.
    Stream(&'a str, &'a [&'a (dyn ToSql + Sync)]),
    /// Prepares (through the statement cache) without running.
    Prepare(&'a str),
    /// `COPY ... FROM STDIN`, started: the session stays busy until the data is sent.
    CopyIn(&'a str),
    /// `COPY ... TO STDOUT`, started: the session stays busy until the data is read.
    CopyOut(&'a str),
}

impl Op<'_> {
    /// The statement's command, for spans: its first word after any leading comments, if
    /// it is one of PostgreSQL's commands (`SELECT`, `INSERT`), else `OTHER`; never more of
    /// its text, which may hold secrets.
    pub(crate) fn command(&self) -> &'static str {
        let sql = match self {
            Op::Query(sql, _)
            | Op::Execute(sql, _)
            | Op::Batch(sql)
            | Op::Stream(sql, _)
            | Op::Prepare(sql)
            | Op::CopyIn(sql)
            | Op::CopyOut(sql) => sql,
            Op::Begin(_) => return "BEGIN",
        };
        let mut rest = sql.trim_start();
        loop {
            if let Some(line) = rest.strip_prefix("--") {
                rest = line.split_once('\n').map_or("", |(_, r)| r).trim_start();
            } else if let Some(block) = rest.strip_prefix("/*") {
                rest = block.split_once("*/").map_or("", |(_, r)| r).trim_start();
            } else {
                break;
            }
        }
        let end = rest
            .find(|c: char| !c.is_ascii_alphabetic())
            .unwrap_or(rest.len());
        let word = &rest[..end];
        COMMANDS
            .iter()
            .find(|c| c.eq_ignore_ascii_case(word))
            .copied()
            .unwrap_or(if word.is_empty() { "EMPTY" } else { "OTHER" })
    }

    /// Whether a statement the server ended the session on before any reply provably never
    /// ran. True for the extended protocol (the server answers the Bind before it executes
    /// anything) and for `BEGIN` (which does nothing to retry twice); false for a simple
    /// query (a batch), which may run a long time before its first reply.
    pub(crate) fn unanswered_means_unrun(&self) -> bool {
        !matches!(self, Op::Batch(_))
    }
}

/// The first words of PostgreSQL's SQL commands, as statement spans show them.
const COMMANDS: &[&str] = &[
    "ABORT",
    "ALTER",
    "ANALYZE",
    "BEGIN",
    "CALL",
    "CHECKPOINT",
    "CLOSE",
    "CLUSTER",
    "COMMENT",
    "COMMIT",
    "COPY",
    "CREATE",
    "DEALLOCATE",
    "DECLARE",
    "DELETE",
    "DISCARD",
    "DO",
    "DROP",
    "END",
    "EXECUTE",
    "EXPLAIN",
    "FETCH",
    "GRANT",
    "IMPORT",
    "INSERT",
    "LISTEN",
    "LOAD",
    "LOCK",
    "MERGE",
    "MOVE",
    "NOTIFY",
    "PREPARE",
    "REASSIGN",
    "REFRESH",
    "REINDEX",
    "RELEASE",
    "RESET",
    "REVOKE",
    "ROLLBACK",
    "SAVEPOINT",
    "SECURITY",
    "SELECT",
    "SET",
    "SHOW",
    "START",
    "TABLE",
    "TRUNCATE",
    "UNLISTEN",
    "UPDATE",
    "VACUUM",
    "VALUES",
    "WITH",
];

/// The result of an [`Op`].
pub(crate) enum Done {
    Rows(Vec<Row>),
    Count(u64),
    Unit,
    /// [`Op::Stream`] started: its rows are still to come.
    Stream(std::pin::Pin<Box<tokio_postgres::RowStream>>),
    Prepared(Statement),
    CopyIn(std::pin::Pin<Box<tokio_postgres::CopyInSink<bytes::Bytes>>>),
    CopyOut(std::pin::Pin<Box<tokio_postgres::CopyOutStream>>),
}

impl Done {
    /// Whether the statement is still running after this start: its session stays busy.
    fn in_flight(&self) -> bool {
        matches!(self, Done::Stream(_) | Done::CopyIn(_) | Done::CopyOut(_))
    }
}

impl PgConn {
    pub(crate) fn new(
        c: crate::connect::Connected,
        cache: usize,
        query_timeout: Option<Duration>,
    ) -> Self {
        let crate::connect::Connected {
            client,
            wire,
            cancel,
            probe,
            task,
        } = c;
        PgConn {
            cancel: Box::new(cancel),
            task,
            query_timeout,
            probe,
            client: Box::new(client),
            wire,
            busy: false,
            broken: false,
            just_used: false,
            suspect: false,
            cancel_sent: None,
            uses: 0,
            pooled: false,
            reset_mark: 0,
            cache: Box::new(StatementCache::new(cache)),
        }
    }

    /// Feature `testing`: the next write on this session fails as a socket the server reset
    /// would (`EPIPE`), before a byte of it leaves. The session dies with it; the statement
    /// provably never reached the server, which is what the bad-connection retry is for.
    #[cfg(feature = "testing")]
    pub fn fail_next_write(&self) {
        self.wire
            .fail_next_write
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// The server process serving this session (`pg_backend_pid()`), as the server told
    /// it at startup (its BackendKeyData), with no round trip; `None` when it sent none.
    /// Statement spans show it as `session`; match it against `pg_stat_activity.pid`.
    /// Behind a pooler (PgBouncer) it is the number the pooler gave the client, not a
    /// server process.
    pub fn backend_pid(&self) -> Option<u32> {
        self.wire.pid()
    }

    /// Statements run on this session so far.
    pub fn uses(&self) -> u64 {
        self.uses
    }

    /// Prepared statements cached on this session now.
    pub fn cached_statements(&self) -> usize {
        self.cache.len()
    }

    /// Forgets every cached statement (the server dropped them, or is about to): each
    /// tokio-postgres `Statement` dropped sends its Close, ahead of whatever is sent next.
    pub(crate) fn clear_cache(&mut self) {
        self.cache.clear();
    }

    /// Whether the server said the session is in a transaction block (or a failed one), or
    /// has not yet answered every request: as PostgreSQL reports it, whatever opened the
    /// transaction (a [`Tx`](crate::Tx), `BEGIN` in SQL text, a function).
    pub fn in_transaction(&self) -> bool {
        self.wire.tx_status() != TxStatus::Idle
    }

    /// The tokio-postgres client, for what this crate does not wrap (COPY, notifications,
    /// typed queries). A statement run through it bypasses the session tracking: leave no
    /// transaction open on it.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs one statement within the session's `query_timeout`, with the error made whole
    /// (the connection's exit error joins a closed one).
    ///
    /// A statement still running at the deadline is abandoned with its session: a cancel
    /// request goes to the server (which may still be running it), and the connection ends at
    /// once, so that on a dead network the session frees its slot and its socket now rather
    /// than when TCP gives up. Later statements on the same session fail as closed.
    pub(crate) async fn run_bounded(&mut self, op: Op<'_>) -> Result<Done, crate::Error> {
        if self.busy && !self.broken {
            // A statement of this pinned session was dropped unfinished (its future, or a
            // stream or COPY whose cancel already left): settle it first, so this statement
            // neither queues behind it nor is hit by its cancel.
            if let Err(e) = self.settle_dropped().await {
                self.broken = true;
                return Err(e);
            }
        }
        let copies = self.wire.copies();
        let r = match self.query_timeout {
            None => self.run(op).await,
            Some(limit) => match tokio::time::timeout(limit, self.run(op)).await {
                Ok(r) => r,
                Err(_) => {
                    self.abandon();
                    tracing::debug!(target: "pool_sql", ?limit, "statement overran query_timeout: session closed");
                    return Err(crate::Error::new(Kind::QueryTimeout(limit)));
                }
            },
        };
        if self.wire.copies() != copies && !matches!(op, Op::CopyIn(_) | Op::CopyOut(_)) {
            // A `COPY ... FROM STDIN` (or `TO STDOUT`) run as a statement: the server waits
            // for data nobody sends (or streams it to nobody), and the next statement would
            // reach it in copy mode. The session ends here, not in the next caller's hands.
            self.broken = true;
            self.task.abort();
            return Err(crate::Error::config(
                "statement",
                "is a `COPY ... FROM STDIN` or `COPY ... TO STDOUT`, which runs through \
                 copy_in or copy_out; the server started the COPY, so the session was closed",
            ));
        }
        r.map_err(|e| crate::Error::statement(e, self.wire.exit_error()))
    }

    /// Ends what a statement dropped half way left on this (pinned) session before the next
    /// one runs, so that it neither queues behind it nor gets its cancel.
    ///
    /// A stream or COPY sent its cancel as it was dropped; a statement whose request the
    /// server has and has not answered gets one now. Either way the cancel is confirmed,
    /// then every answer awaited ([`settle_abandoned`](crate::manager::settle_abandoned)).
    /// Otherwise the dropped statement's request may still wait in tokio-postgres's queue,
    /// unwritten (dropped at its first poll, before the connection task's turn): an empty
    /// query queued behind it tells. Answered within [`DROPPED_GRACE`], nothing is left;
    /// else the statement runs on the server (its request went first), so it is cancelled
    /// and the empty query awaited.
    async fn settle_dropped(&mut self) -> Result<(), crate::Error> {
        if self.cancel_sent.is_none() {
            if self.wire.tx_status() == TxStatus::Unsettled {
                self.send_cancel()?;
            } else {
                let sync = self.client.batch_execute("");
                let mut sync = std::pin::pin!(sync);
                match tokio::time::timeout(DROPPED_GRACE, &mut sync).await {
                    Ok(Ok(())) => {
                        self.busy = false;
                        return Ok(());
                    }
                    // The empty query itself failed (a stray cancel): what came before it
                    // is answered all the same.
                    Ok(Err(e)) if e.as_db_error().is_some() && !ends_session(&e) => {
                        self.busy = false;
                        return Ok(());
                    }
                    Ok(Err(e)) => return Err(crate::Error::reset(e)),
                    Err(_) => {}
                }
                tracing::debug!(target: "pool_sql", "statement dropped before it was sent still runs: cancel request sent before the next one");
                let cancel = self.cancel.spawn(CANCEL_WAIT);
                self.cancel_sent = cancel;
                if self.cancel_sent.is_none() {
                    return Err(crate::Error::new(Kind::CancelUnconfirmed));
                }
                crate::manager::confirm_cancel(&mut self.cancel_sent).await?;
                // The empty query comes after the cancelled statement; a cancel that landed
                // on it instead (the statement ended meanwhile) is retried by the sync below.
                match tokio::time::timeout(CANCEL_WAIT, sync).await {
                    Ok(Ok(())) => {
                        self.busy = false;
                        return Ok(());
                    }
                    Ok(Err(_)) => {}
                    Err(_) => return Err(crate::Error::new(Kind::CancelTimedOut)),
                }
            }
        }
        crate::manager::settle_abandoned(self).await
    }

    /// Sends a cancel request for the statement in flight (see [`settle_dropped`]).
    fn send_cancel(&mut self) -> Result<(), crate::Error> {
        self.cancel_sent = self.cancel.spawn(CANCEL_WAIT);
        tracing::debug!(target: "pool_sql", "statement dropped mid-flight: cancel request sent before the next one");
        match self.cancel_sent {
            Some(_) => Ok(()),
            None => Err(crate::Error::new(Kind::CancelUnconfirmed)),
        }
    }

    /// Gives the session up with a statement in flight: see [`run_bounded`](Self::run_bounded).
    pub(crate) fn abandon(&mut self) {
        self.broken = true;
        if self.cancel_sent.is_none() {
            self.cancel_sent = self.cancel.spawn(CANCEL_WAIT);
        }
        self.task.abort();
    }

    /// Runs one statement, marking the session busy while it is in flight: when the future is
    /// dropped half way, the flag stays and the pool cancels or discards the session.
    pub(crate) async fn run(&mut self, op: Op<'_>) -> Result<Done, tokio_postgres::Error> {
        self.busy = true;
        self.uses += 1;
        let copy = matches!(op, Op::CopyIn(_) | Op::CopyOut(_));
        let r = self.run_inner(op).await;
        self.busy = matches!(&r, Ok(done) if done.in_flight());
        self.just_used = true;
        if let Err(e) = &r
            && (ends_session(e) || (copy && e.as_db_error().is_none()))
        {
            // A COPY that failed other than by the server's error (a COPY of the other
            // direction: a reply tokio-postgres did not expect) left the protocol out of
            // step: the session serves nobody else.
            self.broken = true;
        }
        r
    }

    async fn run_inner(&mut self, op: Op<'_>) -> Result<Done, tokio_postgres::Error> {
        let (sql, params) = match op {
            Op::Query(s, p) | Op::Execute(s, p) => (s, p),
            Op::Batch(sql) => return self.client.batch_execute(sql).await.map(|()| Done::Unit),
            Op::Begin(begin) => {
                return self.client.batch_execute(begin).await.map(|()| Done::Unit);
            }
            Op::CopyIn(sql) => return self.start_copy_in(sql).await,
            Op::CopyOut(sql) => {
                let out = self.client.copy_out(sql).await?;
                return Ok(Done::CopyOut(Box::pin(out)));
            }
            Op::Stream(s, p) => (s, p),
            Op::Prepare(s) => (s, &[][..]),
        };
        if !self.cache.enabled() {
            return self.run_unnamed(op, sql, params).await;
        }
        // Outside a transaction block only: in one, the failure aborted it and a second run
        // would fail with 25P02, hiding the cause.
        let mut evicted = self.wire.in_block();
        loop {
            let stmt = match self.cache.get(sql) {
                Some(s) => s,
                None => {
                    let s = self.client.prepare(sql).await?;
                    self.cache.insert(sql, s.clone());
                    s
                }
            };
            let r = match op {
                Op::Query(..) => self.client.query(&stmt, params).await.map(Done::Rows),
                Op::Stream(..) => self
                    .client
                    .query_raw(&stmt, params.iter().copied())
                    .await
                    .map(|rows| Done::Stream(Box::pin(rows))),
                Op::Prepare(_) => return Ok(Done::Prepared(stmt)),
                _ => self.client.execute(&stmt, params).await.map(Done::Count),
            };
            match r {
                // The cached plan went stale (the table changed shape) or the statement is
                // gone (DISCARD ALL, DEALLOCATE): nothing ran, so prepare again, once.
                Err(e) if is_stale_statement(&e) => {
                    self.cache.remove(sql);
                    if evicted {
                        return Err(e);
                    }
                    evicted = true;
                }
                r => return r,
            }
        }
    }
}

/// A closed connection, or a FATAL or PANIC answer: the server is gone from this session.
pub(crate) fn ends_session(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::Severity;
    e.is_closed()
        || e.as_db_error()
            .is_some_and(|d| matches!(d.parsed_severity(), Some(Severity::Fatal | Severity::Panic)))
}
