//! PostgreSQL through tokio-postgres, pooled by pool-core, with Go `database/sql`'s behaviour:
//! [`Db`] is `*sql.DB`.
//!
//! - **database/sql's knobs and stats**: `max_open` (0 = unlimited), `max_idle` (2),
//!   `max_lifetime`, `max_idle_time`; [`Db::stats`] has the `DBStats` names.
//! - **Without its burst churn**: a session above `max_idle` stays for `idle_grace` (30 s)
//!   and serves the next burst, instead of closing at once. `idle_grace(ZERO)` is
//!   database/sql exactly.
//! - **Bad-connection retry** where it is provably safe: the socket under each session counts
//!   the bytes it wrote, so a statement is run again only when its session died before
//!   anything of it left. Never a statement that may have run.
//! - **Session hygiene**: open transactions roll back before reuse; a statement whose future
//!   was dropped is cancelled on the server (cancel request) before its session is reused, or
//!   the session is discarded.
//! - **Errors** with predicates ([`Error::is_auth_failed`], [`Error::is_too_many_connections`],
//!   [`Error::is_server_shutdown`], ...), the SQLSTATE and the server's message kept; a
//!   server-side kill (57P01), which tokio-postgres only reports on the connection, is
//!   attached to the statement's error.
//! - With the `testing` feature, [`testing::TestPg`] starts a throw-away PostgreSQL from the
//!   system's binaries for your own tests.
//!
//! ```no_run
//! # async fn demo() -> Result<(), pool_sql::Error> {
//! let db = pool_sql::Db::builder("postgres://app:secret@localhost/app").max_open(16).build()?;
//! let n: i64 = db.query_one("SELECT count(*) FROM pg_stat_activity", &[]).await?.get(0);
//! println!("{n} sessions; pool: {:?}", db.stats());
//! # Ok(()) }
//! ```

mod config;
mod conn;
mod connect;
mod db;
mod error;
mod manager;
#[cfg(feature = "testing")]
pub mod testing;

pub use config::{DEFAULT_APPLICATION_NAME, DEFAULT_STATEMENT_CACHE, DbBuilder};
pub use conn::PgConn;
pub use db::{Conn, Db, Params, Tx};
pub use error::Error;
pub use manager::{ConnectErrorBox, ManagerError, PgManager};
pub use pool_core::Stats;
pub use tokio_postgres::error::{DbError, SqlState};
pub use tokio_postgres::{Row, types};
