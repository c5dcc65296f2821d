//! The PostgreSQL target: a workload of one read-only statement through [`pool_sql::Db`].

use std::time::Duration;

use pool_sql::{Db, SqlState};

use super::budget::{self, Budget};
use super::{Failure, LabError, Run, Setting, Stop, Workload, measure};

/// How long one connect may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The first words of statements that only read.
const READ_ONLY: [&str; 5] = ["select", "with", "values", "show", "table"];

/// The first words of PostgreSQL's other commands (its reference, "SQL Commands"): a
/// statement that starts with one of them may write. A first word in neither list is no
/// command at all, and the server's parser says what is wrong with it.
const OTHER_COMMANDS: [&str; 48] = [
    "abort",
    "alter",
    "analyze",
    "analyse",
    "begin",
    "call",
    "checkpoint",
    "close",
    "cluster",
    "comment",
    "commit",
    "copy",
    "create",
    "deallocate",
    "declare",
    "delete",
    "discard",
    "do",
    "drop",
    "end",
    "execute",
    "explain",
    "fetch",
    "grant",
    "import",
    "insert",
    "listen",
    "load",
    "lock",
    "merge",
    "move",
    "notify",
    "prepare",
    "reassign",
    "refresh",
    "reindex",
    "release",
    "reset",
    "revoke",
    "rollback",
    "savepoint",
    "security",
    "set",
    "start",
    "truncate",
    "unlisten",
    "update",
    "vacuum",
];

/// The schemes of a PostgreSQL connection URL.
const SCHEMES: [&str; 2] = ["postgres", "postgresql"];

/// A PostgreSQL server and the statement each call runs.
#[derive(Debug, Clone)]
pub struct SqlTarget {
    url: String,
    statement: String,
    port: Option<u16>,
}

impl SqlTarget {
    /// Checks the connection string and the statement (read-only: pool-lab runs it thousands
    /// of times against the user's server). A statement that starts with no SQL command
    /// (`SELEC 1`) passes here: [`probe`](SqlTarget::probe) has the server parse it.
    ///
    /// # Errors
    /// [`LabError::BadInput`] for a URL of another scheme (`mysql://`), a connection string
    /// that does not parse, or a statement that starts with a command that may write.
    pub fn new(url: &str, statement: &str) -> Result<Self, LabError> {
        check_scheme(url)?;
        let config: tokio_postgres::Config = url.parse().map_err(|e: tokio_postgres::Error| {
            LabError::BadInput(format!(
                "the connection string does not parse ({}); write postgres://user:password@host:port/database",
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string)
            ))
        })?;
        if config.get_hosts().is_empty() {
            return Err(LabError::BadInput(
                "the connection string names no host (postgres://user@host/database)".into(),
            ));
        }
        if statement.trim().is_empty() {
            return Err(LabError::BadInput(
                "the statement (--query) is empty".into(),
            ));
        }
        if OTHER_COMMANDS.contains(&first_word(statement).as_str()) {
            return Err(may_write(statement));
        }
        Ok(SqlTarget {
            url: url.to_owned(),
            statement: statement.to_owned(),
            port: config.get_ports().first().copied().or(Some(5432)),
        })
    }

    /// The statement each call runs.
    pub fn statement(&self) -> &str {
        &self.statement
    }

    fn builder(&self) -> pool_sql::DbBuilder {
        Db::builder(&self.url)
            .application_name("pool-lab")
            .create_timeout(CONNECT_TIMEOUT)
            .acquire_timeout(Duration::from_secs(30))
    }

    /// Connects once, has the server parse the statement, and runs it once, so that a bad
    /// URL, an unreachable server, bad credentials, a syntax error or a failing statement
    /// are reported before any measuring.
    ///
    /// # Errors
    /// The [`LabError`] that says which: a syntax error is [`LabError::BadInput`] with the
    /// server's message; a statement the server parses that starts with no read-only
    /// command is refused as one that may write.
    pub async fn probe(&self) -> Result<(), LabError> {
        let db = self
            .builder()
            .max_open(1)
            .build()
            .map_err(|e| LabError::BadInput(e.to_string()))?;
        let result = self.parse_and_run(&db).await;
        db.close();
        result
    }

    async fn parse_and_run(&self, db: &Db) -> Result<(), LabError> {
        if let Err(e) = db.prepare(&self.statement).await {
            if e.code() == Some(&SqlState::SYNTAX_ERROR) {
                let message = e
                    .as_db_error()
                    .map_or_else(|| e.to_string(), |d| d.message().to_owned());
                return Err(LabError::BadInput(format!(
                    "the server reports a syntax error in `{}`: {message}",
                    self.statement
                )));
            }
            return Err(classify(&e));
        }
        if !READ_ONLY.contains(&self.first_word().as_str()) {
            return Err(may_write(&self.statement));
        }
        db.execute(&self.statement, &[])
            .await
            .map(drop)
            .map_err(|e| classify(&e))
    }

    fn first_word(&self) -> String {
        first_word(&self.statement)
    }

    /// Reads the server's connection budget (see [`budget`]) on one connection.
    ///
    /// # Errors
    /// The [`LabError`] that says why the server could not be asked.
    pub async fn budget(&self) -> Result<Budget, LabError> {
        let db = self
            .builder()
            .max_open(1)
            .build()
            .map_err(|e| LabError::BadInput(e.to_string()))?;
        let row = db
            .query_one_as::<(i32, i32, i32, bool, bool, i32)>(budget::QUERY, &[])
            .await;
        db.close();
        let (max, su, reserved, superuser, uses_reserved, sessions) =
            row.map_err(|e| classify(&e))?;
        let count = |n: i32| u32::try_from(n).unwrap_or(0);
        Ok(Budget {
            max_connections: count(max),
            superuser_reserved: count(su),
            reserved: count(reserved),
            superuser,
            uses_reserved,
            sessions: count(sessions),
        })
    }

    /// Runs `workload` with `setting` and returns what it cost; the pool is closed after.
    ///
    /// # Errors
    /// [`LabError::BadInput`] when the knobs are refused.
    pub async fn run(
        &self,
        workload: Workload,
        setting: &Setting,
        stop: &Stop,
        tick: &(dyn Fn() + Sync),
    ) -> Result<Run, LabError> {
        let mut builder = self.builder();
        if setting.go {
            // database/sql exactly: its binding, no jitter, no breaker (knobs set below).
            builder = builder.go_mode();
        }
        let db = builder
            .max_open(setting.max_open)
            .max_idle(setting.max_idle)
            .idle_grace(setting.idle_grace)
            .build()
            .map_err(|e| LabError::BadInput(e.to_string()))?;
        let stats = {
            let db = db.clone();
            move || db.stats()
        };
        let call = || {
            let (db, statement) = (db.clone(), self.statement.clone());
            async move {
                db.execute(&statement, &[])
                    .await
                    .map(drop)
                    .map_err(|e| Failure {
                        message: error_chain(&e),
                        refused: e.is_too_many_connections(),
                    })
            }
        };
        let run = measure(workload, setting, call, stats, self.port, stop, tick).await;
        let _ = db.close_and_wait(Duration::from_secs(10)).await;
        Ok(run)
    }
}

/// A URL of a scheme that is not PostgreSQL's is refused by name, before the parser reads it
/// as `key=value` pairs and says only "unexpected EOF".
fn check_scheme(url: &str) -> Result<(), LabError> {
    let Some((scheme, _)) = url.split_once("://") else {
        return Ok(()); // key=value pairs
    };
    let is_scheme = !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if is_scheme && !SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()) {
        return Err(LabError::BadInput(format!(
            "`{scheme}://` is not a PostgreSQL connection string: pool-lab sql speaks \
             PostgreSQL only and takes postgres:// or postgresql:// URLs, or key=value pairs \
             (host=... user=... dbname=...)"
        )));
    }
    Ok(())
}

/// The statement's first word, lowercase, after any opening parentheses.
fn first_word(statement: &str) -> String {
    statement
        .trim_start_matches(|c: char| c == '(' || c.is_whitespace())
        .split(|c: char| !c.is_ascii_alphabetic())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

fn may_write(statement: &str) -> LabError {
    LabError::BadInput(format!(
        "`{statement}` may write; pool-lab runs read-only statements only (SELECT, WITH, \
         VALUES, SHOW, TABLE)"
    ))
}

/// What a failed probe means for the user.
fn classify(e: &pool_sql::Error) -> LabError {
    let text = error_chain(e);
    if e.is_config() {
        LabError::BadInput(text)
    } else if e.is_auth_failed() {
        LabError::Credentials(text)
    } else if e.as_db_error().is_some() {
        LabError::Rejected(text)
    } else {
        LabError::Unreachable(text)
    }
}

/// An error and its causes on one line.
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let more = s.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = s.source();
    }
    text
}
