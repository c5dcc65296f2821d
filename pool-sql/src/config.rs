//! Building a [`Db`]: the connection string plus database/sql's pool knobs.
//!
//! The connection string is read twice: by tokio-postgres, which makes the session's config,
//! and by `Scanned` (in `conninfo.rs`), a scanner that follows tokio-postgres's grammar (URL and
//! `key=value` forms) to find what that config cannot tell: whether `sslmode` was written
//! at all (a TLS config makes the default `require`), libpq's `sslmode` values that
//! tokio-postgres does not know (`verify-full`, `verify-ca`, `allow`), and where each
//! password is, so that nothing this crate prints shows one.

use std::fmt;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};

use crate::conninfo::{Scanned, describe_parse_error, misread_parts, misread_url, redact};
use crate::error::PoolOp;
use crate::manager::{PgManager, SessionReset};
use crate::{Db, Error};

/// The `application_name` sessions get when the connection string sets none, so that they
/// can be counted on the server (`pg_stat_activity`).
pub const DEFAULT_APPLICATION_NAME: &str = "pool-sql";

/// Prepared statements kept per session by default.
pub const DEFAULT_STATEMENT_CACHE: usize = 256;

/// `max_open` unless set: HikariCP's and sqlx's default (see [`DbBuilder`]).
const DEFAULT_MAX_OPEN: usize = 10;

/// Builds a [`Db`]: [`Db::builder`].
///
/// The knobs have database/sql's names and, but for `max_open`, its defaults: `max_idle` 2,
/// `max_lifetime` and `max_idle_time` none, plus pool-core's `idle_grace` (30 s: the
/// burst-churn fix; zero is database/sql exactly). Every knob of [`pool_core::Config`] is
/// reachable through [`pool`](DbBuilder::pool).
///
/// **`max_open` defaults to 10**, as HikariCP and sqlx, not to database/sql's 0
/// (unlimited): a PostgreSQL server has a fixed number of sessions for all its clients
/// (`max_connections`, 100 by default), and an unlimited pool turns the first burst that
/// outgrows it into `53300 too many connections` errors, where a capped pool makes the
/// burst wait its turn for a session. Raise it to what the server can give this process,
/// or call [`go_mode`](DbBuilder::go_mode) for database/sql's defaults.
///
/// `Debug` shows the connection string with every password replaced by `***`.
///
/// Other ways to make one: [`DbBuilder::from_env`] (`DATABASE_URL`, libpq's `PG*`
/// variables), and with feature `serde`, from a configuration file (its `Deserialize`
/// impl lists the fields).
#[must_use = "a builder does nothing until `build` is called"]
#[derive(Clone)]
pub struct DbBuilder {
    url: String,
    pool: pool_core::Config,
    statement_cache: usize,
    query_timeout: Option<Duration>,
    session_reset: Option<SessionReset>,
    application_name: Option<String>,
    tls: crate::connect::Tls,
}

impl fmt::Debug for DbBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DbBuilder")
            .field("url", &redact(&self.url))
            .field("pool", &self.pool)
            .field("statement_cache", &self.statement_cache)
            .field("query_timeout", &self.query_timeout)
            .field("session_reset", &self.session_reset)
            .field("application_name", &self.application_name)
            .field("tls", &self.tls)
            .finish()
    }
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
        let mut pool = pool_core::Config::default();
        pool.max_open = DEFAULT_MAX_OPEN;
        DbBuilder {
            url: url.to_owned(),
            pool,
            statement_cache: DEFAULT_STATEMENT_CACHE,
            query_timeout: None,
            session_reset: None,
            application_name: None,
            tls: crate::connect::Tls::Off,
        }
    }

    knob!(/// Most sessions open at once, connecting ones included (`SetMaxOpenConns`).
          /// Default 10 (HikariCP, sqlx), so that a burst waits for a session instead of
          /// exceeding the server's `max_connections` (see [`DbBuilder`]); 0 means unlimited,
          /// as database/sql.
        max_open: usize => max_open);
    knob!(/// Most sessions kept idle past the grace period (`SetMaxIdleConns`). Default 2.
        max_idle: usize => max_idle);
    knob!(/// Sessions kept open and ready even when nobody asks. Default 0.
        min_idle: usize => min_idle);
    knob!(/// How long a session above `max_idle` stays before it closes; checkouts reuse it
          /// first. Default 30 s; zero closes it at once, as database/sql.
        idle_grace: Duration => idle_grace);
    knob!(/// Learn from the traffic how long to keep sessions above `max_idle`, instead of the
          /// fixed `idle_grace`: kept across bursts that come back sooner than `break_even`
          /// (how long holding an idle session costs as much as opening one; 60 s suits most
          /// servers), closed soon after a spike or between bursts further apart. See
          /// [`pool_core::Config::adaptive_idle`]. Default: off.
        adaptive_idle: Duration => Some(adaptive_idle));
    knob!(/// Longest life of a session (`SetConnMaxLifetime`). Default: no limit.
        max_lifetime: Duration => Some(max_lifetime));
    knob!(/// With `max_lifetime`, open a replacement in the background shortly before a session's
          /// lifetime ends (while the pool is busy and below `max_open`), so no call waits on a
          /// connect because of an expiry. Default on; off in Go mode. See
          /// [`pool_core::Config::rotate_lifetime`].
        rotate_lifetime: bool => rotate_lifetime);
    knob!(/// Idle longer than this and the session closes (`SetConnMaxIdleTime`). Default: no
          /// limit.
        max_idle_time: Duration => Some(max_idle_time));
    knob!(/// Longest a call waits for a session in all. Default: until the caller gives up.
        acquire_timeout: Duration => Some(acquire_timeout));
    knob!(/// Longest one connect (dial and startup, authentication included) may take. Default:
          /// the connection string's `connect_timeout`, else `acquire_timeout`, else 30 s.
        create_timeout: Duration => Some(create_timeout));
    knob!(/// Validate a session idle at least this long before reuse: a round trip (an empty
          /// query) that must answer within the pool's `hook_timeout` (5 s), or the session
          /// is closed and the call gets another. Default: never; the bad-connection retry
          /// covers sessions the server closed while idle, this covers those that stopped
          /// answering (a dead route, a server gone without a reset). Zero validates every
          /// reuse.
        validate_after: Duration => Some(validate_after));

    /// Every pool knob at once: replaces all of them, `max_open` included, whatever was set
    /// before. Note that [`pool_core::Config::default`] has pool-core's `max_open` 0
    /// (unlimited), not this builder's 10; start from
    /// [`pool_config`](DbBuilder::pool_config) to change a few knobs only.
    pub fn pool(mut self, config: pool_core::Config) -> Self {
        self.pool = config;
        self
    }

    /// The connection string with every password replaced by `***` (the URL's password and
    /// each `password` option, in a URL's query or in `key=value` form), for logs and
    /// messages; a string that does not parse is not shown at all. `Debug` shows the same.
    ///
    /// ```
    /// let builder = pool_sql::Db::builder("host=db user=app password='s3 cret'");
    /// assert_eq!(builder.redacted_url(), "host=db user=app password=***");
    /// ```
    pub fn redacted_url(&self) -> String {
        redact(&self.url)
    }

    /// The pool knobs as set so far (the defaults, `max_open` 10, on a new builder).
    pub fn pool_config(&self) -> &pool_core::Config {
        &self.pool
    }

    /// database/sql's behaviour where ours differs, for comparisons and for porting step by
    /// step: [`pool_core::Config::go`] for every pool knob: `max_open` 0 (unlimited),
    /// `max_idle` 2, `idle_grace` 0 (a session above `max_idle` closes as soon as it comes
    /// back), no lifetime jitter (every session lives exactly `max_lifetime`, when that is
    /// set), no breaker, and each connect belonging to the call that started it
    /// ([`pool_core::Binding::Caller`]: its error reaches that call at once), so the
    /// connection counts are database/sql's on any machine.
    ///
    /// It replaces every pool knob set before, so call it first and set your own knobs
    /// after it: `Db::builder(url).go_mode().max_open(50).max_idle(10)`.
    pub fn go_mode(mut self) -> Self {
        self.pool = pool_core::Config::go();
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

    /// Cleans every session given back after use, before anyone else can get it: in the
    /// background as it comes back (counted in `Stats::resetting` meanwhile), under the
    /// pool's `hook_timeout`; a session whose reset fails is closed. Default: none.
    ///
    /// What always holds, with or without it: a session given back inside a transaction
    /// (a [`Tx`](crate::Tx) dropped, `BEGIN` sent as text, a function that opened one) is
    /// rolled back on return, because the server's own transaction status decides, and an
    /// abandoned statement is cancelled; a session the server reports in a `client_encoding`
    /// other than UTF8 (a `SET client_encoding`, `set_config`, a function's `SET` clause) is
    /// closed on return, since tokio-postgres reads text as UTF-8 only. What survives into the next caller *without* a
    /// session reset: `SET` settings, temporary tables, session advisory locks, `LISTEN`,
    /// prepared statements and cursors (`WITH HOLD`), as with database/sql. With
    /// [`SessionReset::DiscardAll`], none of it does.
    pub fn session_reset(mut self, reset: SessionReset) -> Self {
        self.session_reset = Some(reset);
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

    /// Encrypts sessions with rustls under `config` (feature `tls`).
    ///
    /// The server's certificate is always verified, chain and host name, as libpq's
    /// `sslmode=verify-full`: rustls checks that it chains to a root of `config` and names
    /// the connection string's host (a session over a Unix socket checks for `localhost`).
    /// Unless `config` replaces rustls's certificate verifier with one of its own, a server
    /// that fails either check fails with [`Error::is_tls`].
    ///
    /// The connection string's `sslmode` says whether TLS is required:
    ///
    /// - **none** (the default with a TLS config): `require`, except when every host is a
    ///   Unix socket, which PostgreSQL never encrypts (libpq does not try either).
    /// - `require`, `verify-full`, and `verify-ca` (treated as `verify-full`: the host name
    ///   is checked too): TLS or no session. A server that answers the TLS request with
    ///   "no" fails with [`Error::is_tls`] before anything else is sent, the password
    ///   included.
    /// - `prefer`, written explicitly: libpq's meaning, TLS when the server agrees, else
    ///   plain text. **Risk**: anyone on the network path can answer "no" for the server
    ///   and get the session, password included, in plain text (a downgrade); use it only
    ///   on a network you trust, and `require` everywhere else.
    /// - `allow`: treated as `prefer` (TLS first, plain text when the server refuses it),
    ///   which never encrypts less than libpq's `allow`, and carries the same risk.
    /// - `disable`: never TLS.
    ///
    /// **Without this call**, features `webpki-roots` and `native-roots` (each enables
    /// `rustls`) make `sslmode=require`, `verify-full` and `verify-ca` work with no code: a
    /// built-in config (rustls's `ring` provider, Mozilla's roots compiled in and/or the
    /// system's, `SSL_CERT_FILE` included, read once per process) verifies the server as
    /// above. With no `sslmode`, or `prefer`/`allow`, the built-in config is not used and
    /// sessions are plain text, as without the features. This call always overrides it.
    ///
    /// **A private CA, a client certificate** (libpq's `sslrootcert`, `sslcert`, `sslkey`,
    /// which the connection string does not take here: they are a config error pointing
    /// to this call): put them in `config`. The CA goes in its root store, the client
    /// certificate and key in `with_client_auth_cert`; rustls-pki-types reads PEM files
    /// (`CertificateDer::pem_file_iter`, `PrivateKeyDer::from_pem_file`).
    ///
    /// ```no_run
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// use rustls::pki_types::pem::PemObject;
    /// use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    ///
    /// // sslrootcert: the CA that signed the server's certificate.
    /// let mut roots = rustls::RootCertStore::empty();
    /// for ca in CertificateDer::pem_file_iter("/etc/db/ca.pem")? {
    ///     roots.add(ca?)?;
    /// }
    /// // sslcert and sslkey, when the server asks for a client certificate.
    /// let chain = CertificateDer::pem_file_iter("/etc/db/client.pem")?
    ///     .collect::<Result<Vec<_>, _>>()?;
    /// let key = PrivateKeyDer::from_pem_file("/etc/db/client.key")?;
    /// let config = rustls::ClientConfig::builder()
    ///     .with_root_certificates(roots)
    ///     .with_client_auth_cert(chain, key)?; // or .with_no_client_auth()
    /// let db = pool_sql::Db::builder("postgres://app@db.internal/app?sslmode=verify-full")
    ///     .tls(config)
    ///     .build()?;
    /// # drop(db);
    /// # Ok(())
    /// # }
    /// ```
    #[cfg(feature = "tls")]
    pub fn tls(mut self, config: rustls::ClientConfig) -> Self {
        self.tls = crate::connect::Tls::rustls(config);
        self
    }

    /// Parses the connection string, checks the knobs and starts the pool. Like Go's
    /// `sql.Open`, it does not connect: the first call does (or [`Db::ping`]).
    ///
    /// The connection string takes libpq's `sslmode` values; see [`tls`](DbBuilder::tls)
    /// for what each means here.
    ///
    /// # Errors
    /// [`Error::is_config`] with [`Error::knob`]: `"url"` for a connection string that does
    /// not parse, holds text that is not an option, has an unknown `sslmode`, names one of
    /// libpq's certificate files (`sslrootcert`, `sslcert`, `sslkey`: see
    /// [`tls`](DbBuilder::tls)), or would be misread: an unencoded `@` in a password, whose
    /// rest tokio-postgres and libpq read as the host and database name
    /// (`postgres://app:s3cr@t/Part2@db/app` is the host `t`, database `Part2@db/app`), or
    /// an `@` after the host with no user info before it (`postgres://db/app?password=p@ss`,
    /// which tokio-postgres reads as the user `db/app?password=p` at the host `ss`): write
    /// `@` as `%40`. The message never repeats the string or any part of a password.
    /// `"tls"` for `sslmode=require` (or `verify-full`, `verify-ca`) without
    /// [`tls`](DbBuilder::tls) and without a roots feature (`webpki-roots`,
    /// `native-roots`), or when `native-roots` alone finds no root certificate on the
    /// system.
    /// The pool knob at fault, or `"runtime"` outside a tokio runtime.
    pub fn build(self) -> Result<Db, Error> {
        let scanned = Scanned::scan(&self.url)
            .map_err(|why| Error::config("url", format!("does not parse: {why}")))?;
        if scanned.end < self.url.len() {
            return Err(Error::config(
                "url",
                format!(
                    "does not parse: the text from byte {} on is not a `key=value` option \
                     (quote a value that holds spaces: key='a b')",
                    scanned.end
                ),
            ));
        }
        if let Some(why) = misread_url(&self.url, &scanned) {
            return Err(Error::config("url", why));
        }
        let written = scanned.ssl_mode()?;
        let text = scanned.libpq_modes_as_ours(&self.url);
        let mut config: tokio_postgres::Config = text
            .parse()
            .map_err(|e| Error::config("url", describe_parse_error(&e, &scanned)))?;
        let hosts = config.get_hosts();
        if hosts.is_empty() && config.get_hostaddrs().is_empty() {
            return Err(Error::config(
                "url",
                "names no host (add host=... or postgres://host/...)",
            ));
        }
        // Hosts, addresses and ports that do not pair up are the string's fault: say so now.
        if let Err(e) = crate::connect::plan(&config) {
            return Err(Error::config("url", e.to_string()));
        }
        // A misread string would put part of a password into a host, which every message
        // shows (a URL's user name and database name: `misread_url`, on the raw text).
        if let Some(why) = misread_parts(&config) {
            return Err(Error::config("url", why));
        }
        // PostgreSQL never encrypts a Unix socket (libpq does not try); a `hostaddr` is TCP.
        let only_unix =
            config.get_hostaddrs().is_empty() && hosts.iter().all(|h| matches!(h, Host::Unix(_)));
        #[cfg_attr(not(feature = "rustls"), allow(unused_mut))]
        let mut tls = self.tls;
        // Feature `rustls`: TLS the string requires, and no config of the caller's, gets the
        // built-in one (rustls with the roots features' certificates).
        #[cfg(feature = "rustls")]
        if !tls.is_on()
            && written.is_some_and(crate::conninfo::LibpqSslMode::requires_tls)
            && let Some(made) = crate::tls::built_in()?
        {
            tls = crate::connect::Tls::rustls(made);
        }
        match written {
            None if tls.is_on() && !only_unix => {
                config.ssl_mode(SslMode::Require);
            }
            Some(mode) if mode.requires_tls() && !tls.is_on() => {
                return Err(Error::config(
                    "tls",
                    format!(
                        "is not set, and the connection string says sslmode={} (enable the \
                         `webpki-roots` or `native-roots` feature, or the `tls` feature and \
                         call DbBuilder::tls)",
                        mode.name()
                    ),
                ));
            }
            _ => {}
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
            target: crate::connect::describe_config(&config).into(),
            config,
            connect_timeout,
            statement_cache: self.statement_cache,
            query_timeout: self.query_timeout,
            session_reset: self.session_reset,
            tls,
            counters: Default::default(),
        };
        let target = manager.target.clone();
        let pool = pool_core::Pool::new(manager, self.pool)
            .map_err(|e| Error::pool(e, PoolOp::Build, &target, None))?;
        Ok(Db::from_pool(pool))
    }
}
