//! Prepared statements that work on any session: [`Statement`], [`ToStatement`], and
//! `prepare` on [`Db`], [`Conn`] and [`Tx`].
//!
//! A session prepares a statement once and keeps it in its statement cache, keyed by the
//! SQL text ([`DbBuilder::statement_cache`](crate::DbBuilder::statement_cache)). A
//! [`Statement`] is that text, checked by the server once, with what the server said of it
//! (parameter and column types): each session it runs on prepares it on first use, through
//! the same cache. It holds no session and no server-side name, so it is `Clone`, `'static`,
//! and outlives any session (and a pooler in transaction mode, with the cache off, runs it
//! unnamed as any other statement).

use std::sync::Arc;

use tokio_postgres::types::Type;

use crate::Error;
use crate::Tx;
use crate::conn::{Done, Op};
use crate::db::{Conn, Db};

/// A statement prepared by [`Db::prepare`] (or [`Conn::prepare`], [`Tx::prepare`]), to run
/// with `query`, `execute`, `query_stream`, `query_as`, ... on any session of the same
/// server.
///
/// Cheap to clone. Each session prepares it on first use and caches it (see the
/// [module docs](crate::ToStatement)); a cache evicts least recently prepared first, so a
/// statement used often stays prepared.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let pg = pool_sql::testing::TestPg::start()?;
/// # let db = pool_sql::Db::builder(&pg.url()).build()?;
/// let add = db.prepare("SELECT $1::int + $2::int").await?;
/// assert_eq!(add.params(), [pool_sql::types::Type::INT4, pool_sql::types::Type::INT4]);
/// let sum: i32 = db.query_one(&add, &[&1i32, &2i32]).await?.get(0);
/// assert_eq!(sum, 3);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Statement {
    inner: Arc<Described>,
}

#[derive(Debug)]
struct Described {
    sql: String,
    params: Vec<Type>,
    columns: Vec<(String, Type)>,
}

impl Statement {
    fn from_prepared(sql: &str, stmt: &tokio_postgres::Statement) -> Self {
        Statement {
            inner: Arc::new(Described {
                sql: sql.to_owned(),
                params: stmt.params().to_vec(),
                columns: stmt
                    .columns()
                    .iter()
                    .map(|c| (c.name().to_owned(), c.type_().clone()))
                    .collect(),
            }),
        }
    }

    /// The SQL text.
    pub fn sql(&self) -> &str {
        &self.inner.sql
    }

    /// The parameters' types, as the server that prepared it inferred them (another
    /// server, or a table changed since, may see others: each session prepares again).
    pub fn params(&self) -> &[Type] {
        &self.inner.params
    }

    /// The result's columns: name and type, in order (none for a statement without rows),
    /// as the server that prepared it described them.
    pub fn columns(&self) -> impl ExactSizeIterator<Item = (&str, &Type)> {
        self.inner.columns.iter().map(|(n, t)| (n.as_str(), t))
    }
}

mod sealed {
    pub trait Sealed {
        fn as_sql(&self) -> &str;
    }
}

pub(crate) use sealed::Sealed;

/// What a statement method takes: SQL text (`&str`, `&String`) or a prepared
/// [`Statement`] (and references to them). Sealed: implemented for those only.
///
/// # Examples
///
/// ```no_run
/// # async fn demo(db: pool_sql::Db) -> Result<(), pool_sql::Error> {
/// db.execute("DELETE FROM kv WHERE k = $1", &[&"a"]).await?;
/// let delete = db.prepare("DELETE FROM kv WHERE k = $1").await?;
/// db.execute(&delete, &[&"b"]).await?;
/// # Ok(()) }
/// ```
pub trait ToStatement: Sealed {}

impl Sealed for str {
    fn as_sql(&self) -> &str {
        self
    }
}
impl ToStatement for str {}

impl Sealed for String {
    fn as_sql(&self) -> &str {
        self
    }
}
impl ToStatement for String {}

impl Sealed for Statement {
    fn as_sql(&self) -> &str {
        &self.inner.sql
    }
}
impl ToStatement for Statement {}

impl<T: ToStatement + ?Sized> Sealed for &T {
    fn as_sql(&self) -> &str {
        (**self).as_sql()
    }
}
impl<T: ToStatement + ?Sized> ToStatement for &T {}

fn prepared(sql: &str, done: Done) -> Statement {
    match done {
        Done::Prepared(stmt) => Statement::from_prepared(sql, &stmt),
        _ => unreachable!("a prepare returns a statement"),
    }
}

impl Db {
    /// Prepares `sql` on a session (which keeps it in its cache) and returns a handle that
    /// runs on any session: each prepares it on first use.
    ///
    /// # Errors
    /// The server's error for a statement that does not parse or names what does not exist
    /// ([`Error::code`]); a closed session, or the pool's error.
    pub async fn prepare(&self, sql: &str) -> Result<Statement, Error> {
        self.run(Op::Prepare(sql)).await.map(|d| prepared(sql, d))
    }
}

impl Conn {
    /// As [`Db::prepare`], on this session.
    ///
    /// # Errors
    /// As [`Db::prepare`].
    pub async fn prepare(&mut self, sql: &str) -> Result<Statement, Error> {
        self.run(Op::Prepare(sql)).await.map(|d| prepared(sql, d))
    }
}

impl Tx {
    /// As [`Db::prepare`], on this transaction's session. A statement that fails to
    /// prepare fails the transaction, as any failed statement.
    ///
    /// # Errors
    /// As [`Db::prepare`].
    pub async fn prepare(&mut self, sql: &str) -> Result<Statement, Error> {
        self.run(Op::Prepare(sql)).await.map(|d| prepared(sql, d))
    }
}
