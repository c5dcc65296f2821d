//! Building a [`Db`]: the connection string plus database/sql's pool knobs.

use std::time::Duration;

use crate::manager::PgManager;
use crate::{Db, Error};

/// The `application_name` sessions get when the connection string sets none, so that they
/// can be counted on the server (`pg_stat_activity`).
pub const DEFAULT_APPLICATION_NAME: &str = "pool-sql";

/// Prepared statements kept per session by default.
pub const DEFAULT_STATEMENT_CACHE: usize = 256;

/// Builds a [`Db`]: [`Db::builder`].
///
/// The knobs have database/sql's names and defaults (`max_open` 0 = unlimited, `max_idle` 2),
/// plus pool-core's `idle_grace` (30 s: the burst-churn fix; zero is database/sql exactly).
/// Every knob of [`pool_core::Config`] is reachable through [`pool`](DbBuilder::pool).
#[must_use = "a builder does nothing until `build` is called"]
#[derive(Debug, Clone)]
pub struct DbBuilder {
    url: String,
    pool: pool_core::Config,
    statement_cache: usize,
    query_timeout: Option<Duration>,
    application_name: Option<String>,
    tls: crate::connect::Tls,
}

macro_rules! knob {
    ($(#[$doc:meta])* $name:ident: $ty:ty => $value:expr) => {
        $(#[$doc])*
        pub fn $name(mut self, $name: $ty) -> Self {
            self.pool.$name = $value;
            self
        }
    };
}

impl DbBuilder {
    pub(crate) fn new(url: &str) -> Self {
        DbBuilder {
            url: url.to_owned(),
            pool: pool_core::Config::default(),
            statement_cache: DEFAULT_STATEMENT_CACHE,
            query_timeout: None,
            application_name: None,
            tls: crate::connect::Tls::Off,
        }
    }

    knob!(/// Most sessions open at once, connecting ones included (`SetMaxOpenConns`).
          /// Default 0: unlimited.
        max_open: usize => max_open);
    knob!(/// Most sessions kept idle past the grace period (`SetMaxIdleConns`). Default 2.
        max_idle: usize => max_idle);
    knob!(/// Sessions kept open and ready even when nobody asks. Default 0.
        min_idle: usize => min_idle);
    knob!(/// How long a session above `max_idle` stays before it closes; checkouts reuse it
          /// first. Default 30 s; zero closes it at once, as database/sql.
        idle_grace: Duration => idle_grace);
    knob!(/// Longest life of a session (`SetConnMaxLifetime`). Default: no limit.
        max_lifetime: Duration => Some(max_lifetime));
    knob!(/// Idle longer than this and the session closes (`SetConnMaxIdleTime`). Default: no
          /// limit.
        max_idle_time: Duration => Some(max_idle_time));
    knob!(/// Longest a call waits for a session in all. Default: until the caller gives up.
        acquire_timeout: Duration => Some(acquire_timeout));
    knob!(/// Longest one connect (dial and startup, authentication included) may take. Default:
          /// the connection string's `connect_timeout`, else `acquire_timeout`, else 30 s.
        create_timeout: Duration => Some(create_timeout));
    knob!(/// Validate (`SELECT` round trip) a session idle at least this long before reuse.
          /// Default: never; the bad-connection retry covers sessions that died idle.
        validate_after: Duration => Some(validate_after));

    /// Every pool knob at once (replaces the ones set before).
    pub fn pool(mut self, config: pool_core::Config) -> Self {
        self.pool = config;
        self
    }

    /// Prepared statements cached per session, by SQL text. Default 256.
    ///
    /// 0 turns the cache off, for a pooler in transaction mode (PgBouncer): every statement
    /// is then sent unnamed and parsed, bound and run in one round trip, so nothing is left
    /// on a server session that the pooler may give to another client. The parameter types
    /// are declared from the Rust values (`i32` is `int4`, `String` is `text`, `Vec<i64>` is
    /// `int8[]`...), and the server applies its implicit casts: an `i32` where `bigint` is
    /// wanted works, a `String` where an integer is wanted is an error (write `$1::int`).
    pub fn statement_cache(mut self, size: usize) -> Self {
        self.statement_cache = size;
        self
    }

    /// Longest one statement may run, counted at the client from the moment it is sent to
    /// its last row (Go: a context deadline on `QueryContext`). Default: no limit.
    ///
    /// A statement still running at the deadline fails with [`Error::is_timeout`], and its
    /// session is given up: a cancel request goes to the server, and the connection closes
    /// at once, so that a statement on a dead network (a black-holed route, a server that
    /// vanished without a reset) frees its slot and its socket after this long rather than
    /// when TCP keep-alive gives up, minutes later. The statement is never run again (it may
    /// have run). For limits the server enforces on itself, set PostgreSQL's
    /// `statement_timeout` too (`options=-c statement_timeout=5s` in the connection string).
    pub fn query_timeout(mut self, limit: Duration) -> Self {
        self.query_timeout = Some(limit);
        self
    }

    /// The `application_name` of the sessions, unless the connection string sets one.
    /// Default [`DEFAULT_APPLICATION_NAME`].
    pub fn application_name(mut self, name: impl Into<String>) -> Self {
        self.application_name = Some(name.into());
        self
    }

    /// Encrypts sessions with rustls under `config` (feature `tls`): its root certificates
    /// decide which servers are trusted, and the server's certificate must name the
    /// connection string's host. The connection string's `sslmode` applies: `prefer` (the
    /// default) uses TLS when the server offers it, `require` refuses a server without it,
    /// `disable` never uses it.
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = crate::connect::Tls::Rustls(crate::connect::RustlsTls {
            make: tokio_postgres_rustls::MakeRustlsConnect::new(config),
        });
        self
    }

    /// Parses the connection string, checks the knobs and starts the pool. Like Go's
    /// `sql.Open`, it does not connect: the first call does (or [`Db::ping`]).
    ///
    /// # Errors
    /// [`Error::is_config`] with [`Error::knob`]: `"url"` for a connection string that does
    /// not parse (the message never repeats the string, which may hold a password), or the
    /// pool knob at fault; `"tls"` for `sslmode=require` without [`tls`](DbBuilder::tls);
    /// `"runtime"` outside a tokio runtime.
    pub fn build(self) -> Result<Db, Error> {
        let mut config: tokio_postgres::Config = self
            .url
            .parse()
            .map_err(|e: tokio_postgres::Error| Error::config("url", describe_parse_error(&e)))?;
        if config.get_hosts().is_empty() {
            return Err(Error::config(
                "url",
                "names no host (add host=... or postgres://host/...)",
            ));
        }
        if config.get_ssl_mode() == tokio_postgres::config::SslMode::Require && !self.tls.is_on() {
            return Err(Error::config(
                "tls",
                "is not set, and the connection string says sslmode=require (enable the \
                 `tls` feature and call DbBuilder::tls)",
            ));
        }
        if config.get_application_name().is_none() {
            config.application_name(
                self.application_name
                    .as_deref()
                    .unwrap_or(DEFAULT_APPLICATION_NAME),
            );
        }
        let connect_timeout = config
            .get_connect_timeout()
            .copied()
            .or(self.pool.create_timeout);
        let manager = PgManager {
            config,
            connect_timeout,
            statement_cache: self.statement_cache,
            query_timeout: self.query_timeout,
            tls: self.tls,
        };
        let pool = pool_core::Pool::new(manager, self.pool).map_err(Error::pool)?;
        Ok(Db::from_pool(pool))
    }
}

/// tokio-postgres's parse errors name the option, not the value; keep only that much.
fn describe_parse_error(e: &tokio_postgres::Error) -> String {
    let text = std::error::Error::source(e)
        .map(ToString::to_string)
        .unwrap_or_else(|| e.to_string());
    format!("does not parse: {text}")
}
