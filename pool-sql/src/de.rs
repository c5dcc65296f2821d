//! Feature `serde`: a [`DbBuilder`] from a configuration file.

use std::time::Duration;

use serde::Deserialize;

use crate::{DbBuilder, SessionReset};

/// What a [`DbBuilder`] is read from: the connection string and the builder's knobs,
/// durations in pool-core's syntax (`"30s"`, `"5m"`, `"1h 30m"`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Spec {
    url: String,
    #[serde(default)]
    go_mode: bool,
    pool: Option<pool_core::Config>,
    max_open: Option<usize>,
    max_idle: Option<usize>,
    min_idle: Option<usize>,
    #[serde(default, with = "humantime_serde")]
    idle_grace: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    adaptive_idle: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    max_lifetime: Option<Duration>,
    rotate_lifetime: Option<bool>,
    #[serde(default, with = "humantime_serde")]
    max_idle_time: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    acquire_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    create_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    validate_after: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    query_timeout: Option<Duration>,
    statement_cache: Option<usize>,
    session_reset: Option<SessionReset>,
    application_name: Option<String>,
}

/// A [`DbBuilder`] from serde (feature `serde`): `url` (required), then any of the
/// builder's knobs by their method names, each with the builder's default when absent:
/// `max_open` (10), `max_idle`, `min_idle`, `idle_grace`, `adaptive_idle`, `max_lifetime`,
/// `rotate_lifetime`, `max_idle_time`, `acquire_timeout`, `create_timeout`, `validate_after`,
/// `query_timeout`, `statement_cache`, `session_reset` (`"discard_all"` or
/// `{ "sql": { "sql": "...", "discards_statements": false } }`), `application_name`;
/// `go_mode: true` (database/sql's defaults first) and `pool`, a whole
/// [`pool_core::Config`] (as [`DbBuilder::pool`]: it replaces every pool knob, `max_open`
/// included), both applied before the single knobs. Durations are pool-core's
/// (`"30s"`, `"5m"`, `"1h 30m"`). An unknown field is an error (a misspelt knob must not
/// be silently ignored). The TLS config is code's ([`DbBuilder::tls`]); the connection
/// string's `sslmode` is data. Whatever the source, `Debug` shows no password.
///
/// ```
/// let builder: pool_sql::DbBuilder = serde_json::from_str(r#"{
///     "url": "postgres://app:secret@db.internal/app",
///     "max_open": 32,
///     "idle_grace": "45s",
///     "query_timeout": "5s",
///     "session_reset": "discard_all"
/// }"#)?;
/// assert_eq!(builder.pool_config().max_open, 32);
/// assert_eq!(builder.redacted_url(), "postgres://app:***@db.internal/app");
/// # Ok::<(), serde_json::Error>(())
/// ```
impl<'de> Deserialize<'de> for DbBuilder {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spec = Spec::deserialize(deserializer)?;
        let mut b = DbBuilder::new(&spec.url);
        if spec.go_mode {
            b = b.go_mode();
        }
        if let Some(pool) = spec.pool {
            b = b.pool(pool);
        }
        macro_rules! apply {
            ($($knob:ident),*) => {
                $(if let Some(value) = spec.$knob {
                    b = b.$knob(value);
                })*
            };
        }
        apply!(
            max_open,
            max_idle,
            min_idle,
            idle_grace,
            adaptive_idle,
            max_lifetime,
            rotate_lifetime,
            max_idle_time,
            acquire_timeout,
            create_timeout,
            validate_after,
            query_timeout,
            statement_cache,
            session_reset,
            application_name
        );
        Ok(b)
    }
}
