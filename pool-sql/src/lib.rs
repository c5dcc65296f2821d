#![doc = include_str!("../README.md")]
//!
//! ## In detail
//!
//! - **database/sql's knobs and stats**: `max_open` (0 = unlimited), `max_idle` (2),
//!   `max_lifetime`, `max_idle_time` on [`DbBuilder`]; [`Db::stats`] has the `DBStats` names.
//!   `max_open` defaults to 10, not database/sql's unlimited: see [`DbBuilder`] for why.
//! - **Without its burst churn**: a session above `max_idle` stays for `idle_grace` (30 s)
//!   and serves the next burst, instead of closing at once. `idle_grace(ZERO)` is
//!   database/sql exactly, and [`DbBuilder::go_mode`] all of database/sql's behaviour.
//! - **Bad-connection retry** where it is provably safe: the socket under each session counts
//!   the bytes it wrote, so a statement is run again only when its session died before
//!   anything of it left. Never a statement that may have run (see [`Db`]).
//! - **Session hygiene**: open transactions roll back before reuse; a statement whose future
//!   was dropped is cancelled on the server (cancel request) before its session is reused, or
//!   the session is discarded. [`DbBuilder::session_reset`] says what else survives a
//!   session's return, and how to clear it.
//! - **Errors** with predicates ([`Error::is_auth_failed`], [`Error::is_too_many_connections`],
//!   [`Error::is_server_shutdown`], ...), the SQLSTATE and the server's message kept
//!   ([`Error::code`], [`Error::as_db_error`]); a server-side kill (57P01), which
//!   tokio-postgres only reports on the connection, is attached to the statement's error.
//!   Messages follow hyper's policy: see [`Error`].
//! - **One pinned session** ([`Conn`], Go's `*sql.Conn`) and **transactions** ([`Tx`],
//!   [`Db::transaction`], whose async closure borrows the caller's values). They do not
//!   deref to their session, unlike pool-core's [`Pooled`](pool_core::Pooled): their
//!   statements are their own methods; [`Conn::get_ref`] reaches the [`PgConn`] and its
//!   tokio-postgres client.
//! - **Streams, COPY, prepared statements, typed rows**, with the same hygiene:
//!   [`Db::query_stream`] ([`RowStream`]: rows as they arrive, memory bounded by the
//!   stream), [`Db::copy_in`] and [`Db::copy_out`] ([`CopyOutStream`]), each dropped half
//!   way cancelled (or aborted) and settled before its session is reused;
//!   [`Db::prepare`] ([`Statement`]: runs on any session, each prepares it once through
//!   its statement cache); [`Db::query_as`] for a [`FromRow`] type (tuples, or yours by
//!   hand with [`get`]), whose errors name the column ([`Error::column`]). On [`Conn`] and
//!   [`Tx`] too.
//! - **Transaction modes, savepoints, conflict retry**: [`TxOptions`] (isolation level, read
//!   only, deferrable: Go's `sql.TxOptions`) for [`Db::begin_with`] and
//!   [`Db::transaction_with`]; [`Tx::savepoint`] and [`Tx::transaction`] nest;
//!   [`Db::transaction_retry`] runs a transaction again after a serialization failure or a
//!   deadlock (40001, 40P01), at most 3 times by default.
//! - **Tracing and metrics**: a `statement` span per statement (target `pool_sql`, DEBUG)
//!   with `db`, `command`, `session` (the server's pid, [`PgConn::backend_pid`]),
//!   `retried`, `duration`, `rows` or `error`; a `transaction` span around the closure
//!   forms (`attempts`, `committed`). `command` is the first keyword when it is one of
//!   PostgreSQL's commands (`SELECT`, `INSERT`, ...; `OTHER` or `EMPTY` otherwise): a
//!   string of this crate's, never a byte of the statement (literals, identifiers and
//!   parameters may hold secrets or data). With feature `metrics`,
//!   `Db::record_metrics` exports the pool's stats and the retries.
//! - The pool is [`pool_core::Pool<PgManager>`](pool_core::Pool) ([`Db::pool`]), for its
//!   runtime setters (`set_max_open`, `set_max_idle`, ...).
//! - **Configuration from the environment**: [`Db::from_env`] and [`DbBuilder::from_env`]
//!   read `DATABASE_URL`, else libpq's `PG*` variables (`PGHOST`, `PGPORT`, `PGUSER`,
//!   `PGPASSWORD`, `PGDATABASE`, `PGSSLMODE`, ...), with errors naming the variable.
//! - **LISTEN/NOTIFY** on a session of its own, outside the pool: [`Db::listener`] gives a
//!   [`Listener`] that dials again after its session ends, listens again to every channel
//!   and reports the [gap](listener::Event::Gap); [`Db::notify`] sends.
//! - With the `testing` feature, [`testing::TestPg`] starts a throw-away PostgreSQL from the
//!   system's binaries for your own tests.
//!
//! ## Example
//!
//! Runs as a doc test against a throw-away PostgreSQL (feature `testing`, from the system's
//! server binaries); with your server, pass its connection string to [`Db::builder`].
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//!
//! let pg = pool_sql::testing::TestPg::start()?; // yours: "postgres://user:pass@host/db"
//! let db = pool_sql::Db::builder(&pg.url())
//!     .max_open(16)
//!     .max_idle(4)
//!     .query_timeout(Duration::from_secs(5))
//!     .build()?;
//! db.execute("CREATE TABLE kv (k text PRIMARY KEY, v int)", &[]).await?;
//! let keys = ["a", "b"]; // borrowed by the transaction's closure
//! db.transaction(async |tx| {
//!     for (v, k) in (1i32..).zip(&keys) {
//!         tx.execute("INSERT INTO kv VALUES ($1, $2)", &[k, &v]).await?;
//!     }
//!     Ok::<_, pool_sql::Error>(())
//! })
//! .await?;
//! let total: i64 = db.query_one("SELECT sum(v) FROM kv", &[]).await?.get(0);
//! assert_eq!(total, 3);
//!
//! // A statement's error: the SQLSTATE, and the server's message as its source.
//! let err = db.execute("INSERT INTO kv VALUES ('a', 3)", &[]).await.unwrap_err();
//! assert_eq!(err.code(), Some(&pool_sql::SqlState::UNIQUE_VIOLATION));
//! assert_eq!(err.to_string(), "postgres statement failed (SQLSTATE 23505)");
//! let cause = std::error::Error::source(&err).map(ToString::to_string);
//! assert_eq!(
//!     cause.as_deref(),
//!     Some("ERROR: duplicate key value violates unique constraint \"kv_pkey\"\n\
//!           DETAIL: Key (k)=(a) already exists.")
//! );
//!
//! println!("{:?}", db.stats()); // DBStats: open, in_use, idle, wait_count, ...
//! db.close_and_wait(Duration::from_secs(5)).await?;
//! # Ok(()) }
//! ```
// Without the feature the module is not built: the link goes to the published docs.
#![cfg_attr(
    not(feature = "testing"),
    doc = "\n[`testing::TestPg`]: https://docs.rs/pool-sql/latest/pool_sql/testing/struct.TestPg.html"
)]
#![cfg_attr(docsrs, feature(doc_cfg))]
mod config;
mod conn;
mod connect;
mod conninfo;
mod copy;
mod counters;
mod db;
#[cfg(feature = "serde")]
mod de;
mod env;
mod error;
pub mod listener;
mod manager;
mod prepare;
mod row;
mod session;
mod stream;
#[cfg(feature = "testing")]
pub mod testing;
#[cfg(feature = "rustls")]
mod tls;
mod tx;
mod wire;

pub use config::{DEFAULT_APPLICATION_NAME, DEFAULT_STATEMENT_CACHE, DbBuilder};
pub use conn::PgConn;
pub use copy::CopyOutStream;
pub use db::{Conn, Db, Params};
pub use error::Error;
pub use listener::Listener;
pub use manager::{PgManager, SessionReset};
pub use pool_core::Stats;
pub use prepare::{Statement, ToStatement};
pub use row::{FromRow, get};
pub use stream::RowStream;
pub use tokio_postgres::error::{DbError, SqlState};
pub use tokio_postgres::{Notification, Row, types};
pub use tx::{IsolationLevel, Savepoint, Tx, TxOptions};
