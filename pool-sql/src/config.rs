//! Building a [`Db`]: the connection string plus database/sql's pool knobs.
//!
//! The connection string is read twice: by tokio-postgres, which makes the session's config,
//! and by [`Scanned`] here, a scanner that follows tokio-postgres's grammar (URL and
//! `key=value` forms) to find what that config cannot tell: whether `sslmode` was written
//! at all (a TLS config makes the default `require`), libpq's `sslmode` values that
//! tokio-postgres does not know (`verify-full`, `verify-ca`, `allow`), and where each
//! password is, so that nothing this crate prints shows one.

use std::fmt;
use std::ops::Range;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};

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
    /// abandoned statement is cancelled. What survives into the next caller *without* a
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
    /// The connection string takes libpq's `sslmode` values; see [`tls`](DbBuilder::tls)
    /// for what each means here.
    ///
    /// # Errors
    /// [`Error::is_config`] with [`Error::knob`]: `"url"` for a connection string that does
    /// not parse, holds text that is not an option, has an unknown `sslmode`, or names a
    /// host with an `@` in it (an unencoded `@` in a password: write `%40`); the message
    /// never repeats the string or any part of a password. `"tls"` for
    /// `sslmode=require` (or `verify-full`, `verify-ca`) without [`tls`](DbBuilder::tls).
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
        if hosts
            .iter()
            .any(|h| matches!(h, Host::Tcp(name) if name.contains('@')))
        {
            return Err(Error::config(
                "url",
                "names a host with `@` in it: the user name or password holds an `@`, which \
                 a URL must write as %40",
            ));
        }
        // PostgreSQL never encrypts a Unix socket (libpq does not try); a `hostaddr` is TCP.
        let only_unix =
            config.get_hostaddrs().is_empty() && hosts.iter().all(|h| matches!(h, Host::Unix(_)));
        match written {
            None if self.tls.is_on() && !only_unix => {
                config.ssl_mode(SslMode::Require);
            }
            Some(mode) if mode.requires_tls() && !self.tls.is_on() => {
                return Err(Error::config(
                    "tls",
                    format!(
                        "is not set, and the connection string says sslmode={} (enable the \
                         `tls` feature and call DbBuilder::tls)",
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
            tls: self.tls,
            counters: Default::default(),
        };
        let target = manager.target.clone();
        let pool = pool_core::Pool::new(manager, self.pool)
            .map_err(|e| Error::pool(e, PoolOp::Build, &target, None))?;
        Ok(Db::from_pool(pool))
    }
}

/// tokio-postgres's parse errors name the option, not the value, but for an unknown option
/// its name is the user's text: after a password with an unquoted space (or, in a URL, an
/// unencoded `&`), that is a piece of the password, and it is not repeated.
fn describe_parse_error(e: &tokio_postgres::Error, scanned: &Scanned) -> String {
    let text = std::error::Error::source(e)
        .map(ToString::to_string)
        .unwrap_or_else(|| e.to_string());
    let unknown = text
        .strip_prefix("unknown option `")
        .and_then(|rest| rest.strip_suffix('`'));
    if let Some(key) = unknown {
        let Some(at) = scanned.params.iter().position(|p| p.key == key) else {
            return "does not parse: it has an unknown option".to_owned();
        };
        if at > 0 && scanned.params[at - 1].key == "password" {
            let fix = if scanned.url {
                "write an `&` in a password as %26"
            } else {
                "quote a password that holds spaces: password='...'"
            };
            return format!(
                "does not parse: an unknown option follows `password`, maybe the rest of it \
                 ({fix})"
            );
        }
    }
    format!("does not parse: {text}")
}

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LibpqSslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl LibpqSslMode {
    fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "disable" => Self::Disable,
            "allow" => Self::Allow,
            "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow => "allow",
            Self::Prefer => "prefer",
            Self::Require => "require",
            Self::VerifyCa => "verify-ca",
            Self::VerifyFull => "verify-full",
        }
    }

    /// The value tokio-postgres knows with our meaning (see [`DbBuilder::tls`]).
    fn ours(self) -> &'static str {
        match self {
            Self::Disable => "disable",
            Self::Allow | Self::Prefer => "prefer",
            Self::Require | Self::VerifyCa | Self::VerifyFull => "require",
        }
    }

    fn requires_tls(self) -> bool {
        self.ours() == "require"
    }
}

/// One option of a connection string, as tokio-postgres reads it.
#[derive(Debug)]
struct Param {
    /// Its name, percent-decoded in a URL.
    key: String,
    /// Where its value is in the string, quotes included.
    span: Range<usize>,
    /// The value, unescaped or percent-decoded.
    value: String,
}

/// A connection string's options, found with tokio-postgres's grammar (its
/// `impl FromStr for Config`): a URL (`postgres://` or `postgresql://`; the user info ends
/// at the first `@`, the host at `/` or `?`, the database name at `?`, then `key=value`
/// pairs split at `&`, percent-decoded) or `key = value` pairs split at whitespace, a value
/// either `'quoted'` or plain, `\` escaping the next character in both. The URL's password
/// is a [`Param`] named `password`. Only the syntax: names and values are tokio-postgres's
/// to judge.
#[derive(Debug)]
struct Scanned {
    url: bool,
    params: Vec<Param>,
    /// Where tokio-postgres stops reading: an option name that is empty (the string's end,
    /// or an `=` where a name should be) ends a `key=value` string, silently.
    end: usize,
}

impl Scanned {
    /// # Errors
    /// What is wrong, in words that never quote the string.
    fn scan(s: &str) -> Result<Scanned, &'static str> {
        match ["postgres://", "postgresql://"]
            .iter()
            .find(|p| s.starts_with(*p))
        {
            Some(prefix) => Self::scan_url(s, prefix.len()),
            None => Self::scan_key_values(s),
        }
    }

    fn scan_url(s: &str, start: usize) -> Result<Scanned, &'static str> {
        let mut params = Vec::new();
        let mut at = start;
        if let Some(end) = s[at..].find('@').map(|i| at + i) {
            if let Some(colon) = s[at..end].find(':').map(|i| at + i) {
                params.push(Param {
                    key: "password".to_owned(),
                    span: colon + 1..end,
                    value: percent_decode(&s[colon + 1..end]),
                });
            }
            at = end + 1;
        }
        at = s[at..].find(['/', '?']).map_or(s.len(), |i| at + i);
        if s[at..].starts_with('/') {
            at = s[at..].find('?').map_or(s.len(), |i| at + i);
        }
        if s[at..].starts_with('?') {
            at += 1;
            while at < s.len() {
                let eq = s[at..]
                    .find('=')
                    .map(|i| at + i)
                    .ok_or("a query parameter has no `=`")?;
                let end = s[eq + 1..].find('&').map_or(s.len(), |i| eq + 1 + i);
                params.push(Param {
                    key: percent_decode(&s[at..eq]),
                    span: eq + 1..end,
                    value: percent_decode(&s[eq + 1..end]),
                });
                at = (end + 1).min(s.len());
            }
        }
        Ok(Scanned {
            url: true,
            params,
            end: s.len(),
        })
    }

    fn scan_key_values(s: &str) -> Result<Scanned, &'static str> {
        let mut it = s.char_indices().peekable();
        let mut params = Vec::new();
        let pos = |it: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
            it.peek().map_or(s.len(), |&(i, _)| i)
        };
        let skip_ws = |it: &mut std::iter::Peekable<std::str::CharIndices<'_>>| {
            while it.next_if(|&(_, c)| c.is_whitespace()).is_some() {}
        };
        loop {
            skip_ws(&mut it);
            let key_start = pos(&mut it);
            while it
                .next_if(|&(_, c)| !c.is_whitespace() && c != '=')
                .is_some()
            {}
            let key_end = pos(&mut it);
            if key_start == key_end {
                return Ok(Scanned {
                    url: false,
                    params,
                    end: key_start,
                });
            }
            skip_ws(&mut it);
            if it.next_if(|&(_, c)| c == '=').is_none() {
                return Err(
                    "an option name is not followed by `=` (quote a value that holds \
                            spaces: key='a b')",
                );
            }
            skip_ws(&mut it);
            let value_start = pos(&mut it);
            let quoted = it.next_if(|&(_, c)| c == '\'').is_some();
            let mut value = String::new();
            loop {
                match it.peek().copied() {
                    None if quoted => return Err("a quoted value has no closing quote"),
                    None => break,
                    Some((_, '\'')) if quoted => {
                        it.next();
                        break;
                    }
                    Some((_, c)) if !quoted && c.is_whitespace() => break,
                    Some((_, '\\')) => {
                        it.next();
                        value.extend(it.next().map(|(_, c)| c));
                    }
                    Some((_, c)) => {
                        it.next();
                        value.push(c);
                    }
                }
            }
            if !quoted && value.is_empty() {
                return Err("an option has no value");
            }
            params.push(Param {
                key: s[key_start..key_end].to_owned(),
                span: value_start..pos(&mut it),
                value,
            });
        }
    }

    /// The `sslmode` the string sets (the last one wins, as in tokio-postgres), if any.
    fn ssl_mode(&self) -> Result<Option<LibpqSslMode>, Error> {
        let Some(param) = self.params.iter().rev().find(|p| p.key == "sslmode") else {
            return Ok(None);
        };
        LibpqSslMode::parse(&param.value).map(Some).ok_or_else(|| {
            Error::config(
                "url",
                "has an unknown sslmode (disable, allow, prefer, require, verify-ca or \
                 verify-full)",
            )
        })
    }

    /// `s` (the string scanned) with each `sslmode` written as tokio-postgres knows it.
    fn libpq_modes_as_ours(&self, s: &str) -> String {
        let spans = self.params.iter().filter_map(|p| {
            let mode = LibpqSslMode::parse(&p.value).filter(|_| p.key == "sslmode")?;
            Some((p.span.clone(), mode.ours()))
        });
        splice(s, spans)
    }
}

/// `s` with each span (ordered, not overlapping) replaced by its text.
fn splice<'a>(s: &str, spans: impl IntoIterator<Item = (Range<usize>, &'a str)>) -> String {
    let mut out = String::with_capacity(s.len());
    let mut at = 0;
    for (span, text) in spans {
        out.push_str(&s[at..span.start]);
        out.push_str(text);
        at = span.end;
    }
    out.push_str(&s[at..]);
    out
}

/// The connection string `s` with every password replaced by `***`: the URL's password
/// and every `password` option, in the URL's query and in `key=value` form. A string that
/// does not parse is not shown at all, and text after the last option is masked as well.
///
/// Where a URL is ambiguous (an unencoded `@`, `?` or `&` in a password) both readings are
/// masked: tokio-postgres's (user info up to the first `@`) and the one a reader expects
/// (up to the last `@` before the host, query options split after the first `?`).
pub(crate) fn redact(s: &str) -> String {
    let Ok(scanned) = Scanned::scan(s) else {
        return "(a connection string that does not parse; not shown, it may hold a password)"
            .to_owned();
    };
    let mut masks: Vec<Range<usize>> = scanned
        .params
        .iter()
        .filter(|p| p.key == "password")
        .map(|p| p.span.clone())
        .collect();
    if scanned.end < s.len() {
        masks.push(scanned.end..s.len());
    }
    if scanned.url {
        let start = s.find("://").map_or(0, |i| i + 3);
        let host_end = s[start..].find(['/', '?']).map_or(s.len(), |i| start + i);
        if let Some(at) = s[start..host_end].rfind('@').map(|i| start + i)
            && let Some(colon) = s[start..at].find(':').map(|i| start + i)
        {
            masks.push(colon + 1..at);
        }
        if let Some(query) = s.find('?') {
            let mut at = query + 1;
            for pair in s[query + 1..].split('&') {
                if let Some((key, value)) = pair.split_once('=')
                    && percent_decode(key) == "password"
                {
                    let from = at + key.len() + 1;
                    masks.push(from..from + value.len());
                }
                at += pair.len() + 1;
            }
        }
    }
    masks.sort_by_key(|m| m.start);
    let mut merged: Vec<Range<usize>> = Vec::with_capacity(masks.len());
    for m in masks {
        match merged.last_mut() {
            Some(last) if m.start <= last.end => last.end = last.end.max(m.end),
            _ => merged.push(m),
        }
    }
    splice(s, merged.into_iter().map(|m| (m, "***")))
}

/// Percent-decoding as tokio-postgres does it (a `%` not followed by two hex digits stays),
/// lossy where the bytes are not UTF-8.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let byte = hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0);
                out.push(u8::try_from(byte).unwrap_or(0));
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
