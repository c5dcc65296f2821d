//! One PostgreSQL session as the pool holds it: the client, what it knows about its own
//! state (a statement in flight, a transaction open), and its statement cache.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{CancelToken, Client, Row, Statement};

use crate::connect::{Addr, Probe, Wire};

/// A pooled session. Users reach it through [`Conn`](crate::Conn) and [`Tx`](crate::Tx).
pub struct PgConn {
    pub(crate) client: Client,
    pub(crate) wire: Arc<Wire>,
    pub(crate) addr: Addr,
    pub(crate) cancel: CancelToken,
    pub(crate) probe: Probe,
    /// A statement was started and its future dropped before it finished: the server may
    /// still be running it.
    pub(crate) busy: bool,
    /// A cancel request for the abandoned statement is on its way.
    pub(crate) cancel_sent: Option<tokio::task::JoinHandle<()>>,
    /// The server ended the session (a FATAL error answered a statement), or the connection
    /// closed under one: never reused, even before the connection task has seen the end.
    pub(crate) broken: bool,
    /// A statement just finished: the release's `check` can skip the socket peek (the
    /// answer was just read); the next checkout's `check` peeks.
    pub(crate) just_used: bool,
    /// The socket had unread data while idle: confirm with a round trip before reuse.
    pub(crate) suspect: bool,
    /// `BEGIN` ran and neither `COMMIT` nor `ROLLBACK` did.
    pub(crate) in_tx: bool,
    /// Statements run on this session (0: never used, as good as new).
    pub(crate) uses: u64,
    cache: StatementCache,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("busy", &self.busy)
            .field("in_tx", &self.in_tx)
            .field("uses", &self.uses)
            .field("cached_statements", &self.cache.len())
            .finish()
    }
}

/// What one statement does with the session.
#[derive(Clone, Copy)]
pub(crate) enum Op<'a> {
    Query(&'a str, &'a [&'a (dyn ToSql + Sync)]),
    Execute(&'a str, &'a [&'a (dyn ToSql + Sync)]),
    Batch(&'a str),
    /// `BEGIN`: the session counts as in a transaction from the moment it is sent.
    Begin,
}

/// The result of an [`Op`].
pub(crate) enum Done {
    Rows(Vec<Row>),
    Count(u64),
    Unit,
}

impl PgConn {
    pub(crate) fn new(c: crate::connect::Connected, cache: usize) -> Self {
        let crate::connect::Connected {
            client,
            wire,
            addr,
            probe,
        } = c;
        PgConn {
            cancel: client.cancel_token(),
            probe,
            client,
            wire,
            addr,
            busy: false,
            broken: false,
            just_used: false,
            suspect: false,
            cancel_sent: None,
            in_tx: false,
            uses: 0,
            cache: StatementCache::new(cache),
        }
    }

    /// The tokio-postgres client, for what this crate does not wrap (COPY, notifications,
    /// typed queries). A statement run through it bypasses the session tracking: leave no
    /// transaction open on it.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// Runs one statement, marking the session busy while it is in flight: when the future is
    /// dropped half way, the flag stays and the pool cancels or discards the session.
    pub(crate) async fn run(&mut self, op: Op<'_>) -> Result<Done, tokio_postgres::Error> {
        self.busy = true;
        self.uses += 1;
        let r = self.run_inner(op).await;
        self.busy = false;
        self.just_used = true;
        if let Err(e) = &r
            && ends_session(e)
        {
            self.broken = true;
        }
        r
    }

    async fn run_inner(&mut self, op: Op<'_>) -> Result<Done, tokio_postgres::Error> {
        let (sql, params) = match op {
            Op::Query(s, p) | Op::Execute(s, p) => (s, p),
            Op::Batch(sql) => return self.client.batch_execute(sql).await.map(|()| Done::Unit),
            Op::Begin => {
                self.in_tx = true;
                return self
                    .client
                    .batch_execute("BEGIN")
                    .await
                    .map(|()| Done::Unit);
            }
        };
        if !self.cache.enabled() {
            return match op {
                Op::Query(..) => self.client.query(sql, params).await.map(Done::Rows),
                _ => self.client.execute(sql, params).await.map(Done::Count),
            };
        }
        let mut evicted = false;
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
                _ => self.client.execute(&stmt, params).await.map(Done::Count),
            };
            match r {
                // The cached plan went stale (the table changed shape) or the statement is
                // gone (DISCARD ALL, DEALLOCATE): nothing ran, so prepare again, once.
                Err(e) if !evicted && is_stale_statement(&e) => {
                    self.cache.remove(sql);
                    evicted = true;
                }
                r => return r,
            }
        }
    }
}

/// A closed connection, or a FATAL or PANIC answer: the server is gone from this session.
fn ends_session(e: &tokio_postgres::Error) -> bool {
    use tokio_postgres::error::Severity;
    e.is_closed()
        || e.as_db_error()
            .is_some_and(|d| matches!(d.parsed_severity(), Some(Severity::Fatal | Severity::Panic)))
}

fn is_stale_statement(e: &tokio_postgres::Error) -> bool {
    matches!(
        e.code(),
        Some(c) if *c == SqlState::FEATURE_NOT_SUPPORTED || *c == SqlState::INVALID_SQL_STATEMENT_NAME
    )
}

/// Prepared statements by SQL text, least recently inserted evicted first. Capacity 0
/// disables it: every statement is prepared and closed by tokio-postgres.
struct StatementCache {
    cap: usize,
    map: HashMap<String, Statement>,
    order: VecDeque<String>,
}

impl StatementCache {
    fn new(cap: usize) -> Self {
        StatementCache {
            cap,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn enabled(&self) -> bool {
        self.cap > 0
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn get(&self, sql: &str) -> Option<Statement> {
        self.map.get(sql).cloned()
    }

    fn insert(&mut self, sql: &str, stmt: Statement) {
        if self.map.len() >= self.cap {
            while let Some(old) = self.order.pop_front() {
                if self.map.remove(&old).is_some() {
                    break;
                }
            }
        }
        self.order.push_back(sql.to_owned());
        self.map.insert(sql.to_owned(), stmt);
    }

    fn remove(&mut self, sql: &str) {
        self.map.remove(sql);
    }
}
