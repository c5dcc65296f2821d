//! Configuration from the environment: `DATABASE_URL`, else libpq's `PG*` variables.
//!
//! The variables become a `key=value` connection string (each value quoted), which then
//! goes through the same parser and checks as any other ([`DbBuilder::build`]). The values
//! whose mistakes are common (a port, a timeout, an `sslmode`) are checked here first, so
//! that the error names the variable; no error repeats a value (`PGPASSWORD` least of all).

use std::ffi::OsString;

use crate::{Db, DbBuilder, Error};

/// libpq's variables read, and the connection string option each one sets.
const VARIABLES: [(&str, &str); 13] = [
    ("PGHOST", "host"),
    ("PGHOSTADDR", "hostaddr"),
    ("PGPORT", "port"),
    ("PGUSER", "user"),
    ("PGPASSWORD", "password"),
    ("PGDATABASE", "dbname"),
    ("PGSSLMODE", "sslmode"),
    ("PGAPPNAME", "application_name"),
    ("PGCONNECT_TIMEOUT", "connect_timeout"),
    ("PGOPTIONS", "options"),
    ("PGTARGETSESSIONATTRS", "target_session_attrs"),
    ("PGLOADBALANCEHOSTS", "load_balance_hosts"),
    ("PGSSLNEGOTIATION", "sslnegotiation"),
];

impl DbBuilder {
    /// A builder configured from the process's environment, as libpq and sqlx read it:
    ///
    /// - `DATABASE_URL`, when set, is the connection string, whole (the `PG*` variables are
    ///   then ignored);
    /// - else libpq's variables: `PGHOST` (required here: this crate has no default Unix
    ///   socket directory), `PGHOSTADDR`, `PGPORT`, `PGUSER`, `PGPASSWORD`, `PGDATABASE`,
    ///   `PGSSLMODE`, `PGAPPNAME`, `PGCONNECT_TIMEOUT` (whole seconds), `PGOPTIONS`,
    ///   `PGTARGETSESSIONATTRS`, `PGLOADBALANCEHOSTS` and `PGSSLNEGOTIATION`. Like libpq, a
    ///   variable set to the empty string counts as unset.
    ///
    /// The knobs keep their defaults; set them on the builder returned. The password never
    /// shows in `Debug` or [`redacted_url`](DbBuilder::redacted_url).
    ///
    /// ```no_run
    /// // DATABASE_URL=postgres://app:secret@db/app, or PGHOST=db PGUSER=app ...
    /// let db = pool_sql::DbBuilder::from_env()?.max_open(20).build()?;
    /// # Ok::<(), pool_sql::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::is_config`], with [`Error::knob`] naming the variable: not valid UTF-8,
    /// `PGPORT` not a port (or a comma-separated list of them), `PGCONNECT_TIMEOUT` not a
    /// whole number of seconds, `PGSSLMODE` not one of libpq's modes; `DATABASE_URL` when
    /// neither it nor `PGHOST` nor `PGHOSTADDR` is set. The rest of the connection string
    /// is checked by [`build`](DbBuilder::build), as any other.
    pub fn from_env() -> Result<DbBuilder, Error> {
        Self::from_env_with(|name| std::env::var_os(name))
    }

    /// [`from_env`](DbBuilder::from_env) with the variables read through `lookup` instead
    /// of the process's environment: a secrets store, a map in a test, an environment
    /// prepared for one service among several.
    ///
    /// ```
    /// use std::collections::HashMap;
    /// use std::ffi::OsString;
    ///
    /// let vars = HashMap::from([("PGHOST", "db.internal"), ("PGPASSWORD", "s3cret")]);
    /// let builder =
    ///     pool_sql::DbBuilder::from_env_with(|name| vars.get(name).map(OsString::from))?;
    /// assert_eq!(builder.redacted_url(), "host='db.internal' password=***");
    /// # Ok::<(), pool_sql::Error>(())
    /// ```
    ///
    /// # Errors
    /// As [`from_env`](DbBuilder::from_env).
    pub fn from_env_with(
        mut lookup: impl FnMut(&str) -> Option<OsString>,
    ) -> Result<DbBuilder, Error> {
        let mut read = |name: &'static str| -> Result<Option<String>, Error> {
            match lookup(name) {
                None => Ok(None),
                Some(value) if value.is_empty() => Ok(None),
                Some(value) => value
                    .into_string()
                    .map(Some)
                    .map_err(|_| Error::config(name, "is not valid UTF-8")),
            }
        };
        if let Some(url) = read("DATABASE_URL")? {
            return Ok(DbBuilder::new(&url));
        }
        let mut options = Vec::new();
        for (name, key) in VARIABLES {
            if let Some(value) = read(name)? {
                check(name, &value)?;
                options.push(format!("{key}={}", quote(&value)));
            }
        }
        if !options
            .iter()
            .any(|o| o.starts_with("host=") || o.starts_with("hostaddr="))
        {
            return Err(Error::config(
                "DATABASE_URL",
                "is not set, nor is PGHOST or PGHOSTADDR: there is no server to connect to",
            ));
        }
        Ok(DbBuilder::new(&options.join(" ")))
    }
}

impl Db {
    /// Opens a pool configured from the environment with the default knobs:
    /// `DbBuilder::from_env()?.build()` (see [`DbBuilder::from_env`]). Nothing connects
    /// yet.
    ///
    /// # Errors
    /// As [`DbBuilder::from_env`] and [`DbBuilder::build`].
    pub fn from_env() -> Result<Db, Error> {
        DbBuilder::from_env()?.build()
    }
}

/// Checks the variables whose mistakes are common, so that the error names the variable.
fn check(name: &'static str, value: &str) -> Result<(), Error> {
    let ok = match name {
        "PGPORT" => value.split(',').all(|p| p.trim().parse::<u16>().is_ok()),
        // libpq takes whole seconds (0: no limit).
        "PGCONNECT_TIMEOUT" => value.trim().parse::<u64>().is_ok(),
        "PGSSLMODE" => matches!(
            value,
            "disable" | "allow" | "prefer" | "require" | "verify-ca" | "verify-full"
        ),
        _ => true,
    };
    if ok {
        return Ok(());
    }
    let why = match name {
        "PGPORT" => "is not a port number (or a comma-separated list of them)",
        "PGCONNECT_TIMEOUT" => "is not a whole number of seconds",
        _ => "is not an sslmode (disable, allow, prefer, require, verify-ca or verify-full)",
    };
    Err(Error::config(name, why))
}

/// `value` quoted for a `key=value` connection string: in `'...'`, with `\` and `'`
/// escaped by a `\`.
fn quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if matches!(c, '\\' | '\'') {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('\'');
    out
}
