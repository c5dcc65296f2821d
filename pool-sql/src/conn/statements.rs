//! The statements' SQL side of a session: the statement cache (and when a cached statement
//! is prepared again), and unnamed statements with parameter types from the Rust values
//! (the cache off).

use std::collections::{HashMap, VecDeque};

use bytes::BytesMut;
use tokio_postgres::Statement;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::{ToSql, Type, WrongType};

use super::{Done, Op, PgConn};

impl PgConn {
    /// With the cache off: one unnamed statement, parsed, bound and run in one round trip,
    /// that leaves nothing behind on the server. A pooler in transaction mode (PgBouncer)
    /// may hand the next statement to another server session, where a named statement
    /// would not exist (or its name would already be taken).
    pub(super) async fn run_unnamed(
        &mut self,
        op: Op<'_>,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Done, tokio_postgres::Error> {
        if let Op::Prepare(_) = op {
            // Nothing stays on the server: the statement is closed when dropped.
            return self.client.prepare(sql).await.map(Done::Prepared);
        }
        let typed = params.iter().map(|&p| (p, infer_type(p)));
        let stream = self.client.query_typed_raw(sql, typed).await?;
        if let Op::Stream(..) = op {
            return Ok(Done::Stream(Box::pin(stream)));
        }
        futures_util::pin_mut!(stream);
        let mut rows = Vec::new();
        while let Some(row) = futures_util::StreamExt::next(&mut stream).await {
            let row = row?;
            if matches!(op, Op::Query(..)) {
                rows.push(row);
            }
        }
        Ok(match op {
            Op::Query(..) => Done::Rows(rows),
            _ => Done::Count(stream.rows_affected().unwrap_or(0)),
        })
    }
}

/// The types tried, in order, for a parameter of an unnamed statement: the first one the
/// value accepts is declared to the server (as pgx's exec mode takes the type from the Go
/// value). Types a value rarely shares come first; `String` takes `text`.
const INFERRED: &[Type] = &[
    Type::INT4,
    Type::INT8,
    Type::TEXT,
    Type::BOOL,
    Type::INT2,
    Type::FLOAT8,
    Type::FLOAT4,
    Type::BYTEA,
    Type::TIMESTAMPTZ,
    Type::TIMESTAMP,
    Type::DATE,
    Type::TIME,
    Type::TIMETZ,
    Type::INTERVAL,
    Type::UUID,
    Type::JSONB,
    Type::JSON,
    Type::NUMERIC,
    Type::INET,
    Type::CIDR,
    Type::MACADDR,
    Type::OID,
    Type::CHAR,
    Type::POINT,
    Type::BOX,
    Type::PATH,
    Type::VARBIT,
    Type::BIT,
    Type::INT4_ARRAY,
    Type::INT8_ARRAY,
    Type::TEXT_ARRAY,
    Type::BOOL_ARRAY,
    Type::INT2_ARRAY,
    Type::FLOAT8_ARRAY,
    Type::FLOAT4_ARRAY,
    Type::BYTEA_ARRAY,
    Type::TIMESTAMPTZ_ARRAY,
    Type::TIMESTAMP_ARRAY,
    Type::DATE_ARRAY,
    Type::UUID_ARRAY,
    Type::JSONB_ARRAY,
    Type::NUMERIC_ARRAY,
    Type::OID_ARRAY,
    Type::CHAR_ARRAY,
];

/// The PostgreSQL type to declare for `value` (see [`INFERRED`]). A value no listed type
/// accepts is declared `unknown`, and tokio-postgres's error names its Rust type.
fn infer_type(value: &(dyn ToSql + Sync)) -> Type {
    let mut scratch = BytesMut::new();
    for ty in INFERRED {
        scratch.clear();
        match value.to_sql_checked(ty, &mut scratch) {
            Ok(_) => return ty.clone(),
            // Accepted, but this value does not encode: declare it and let the statement
            // report the encoding error.
            Err(e) if !e.is::<WrongType>() => return ty.clone(),
            Err(_) => {}
        }
    }
    Type::UNKNOWN
}

/// The server refused the cached statement itself before running it: its plan's result
/// type changed (0A000 from the plan cache's revalidation) or the statement is gone (26000
/// from the lookup of a named statement). The SQLSTATE alone does not say it: any function
/// or trigger can raise either after it ran, so the raising routine must be the server's
/// own check, for our statement (no context: not inside a function).
pub(super) fn is_stale_statement(e: &tokio_postgres::Error) -> bool {
    let Some(db) = e.as_db_error() else {
        return false;
    };
    let routine = db.routine().unwrap_or_default();
    db.where_().is_none()
        && ((*db.code() == SqlState::FEATURE_NOT_SUPPORTED && routine == "RevalidateCachedQuery")
            || (*db.code() == SqlState::INVALID_SQL_STATEMENT_NAME
                && routine == "FetchPreparedStatement"))
}

/// Prepared statements by SQL text, least recently inserted evicted first. Capacity 0
/// disables it: every statement is prepared and closed by tokio-postgres.
pub(super) struct StatementCache {
    cap: usize,
    map: HashMap<String, Statement>,
    order: VecDeque<String>,
}

impl StatementCache {
    pub(super) fn new(cap: usize) -> Self {
        StatementCache {
            cap,
            map: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(super) fn enabled(&self) -> bool {
        self.cap > 0
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn get(&self, sql: &str) -> Option<Statement> {
        self.map.get(sql).cloned()
    }

    pub(super) fn insert(&mut self, sql: &str, stmt: Statement) {
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

    pub(super) fn remove(&mut self, sql: &str) {
        self.map.remove(sql);
    }

    pub(super) fn clear(&mut self) {
        self.map.clear();
        self.order.clear();
    }
}
