//! The PostgreSQL target: a workload of one read-only statement through [`pool_sql::Db`].

use std::time::Duration;

use pool_sql::Db;

use super::{LabError, Run, Setting, Stop, Workload, measure};

/// How long one connect may take before the server counts as unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A PostgreSQL server and the statement each call runs.
#[derive(Debug, Clone)]
pub struct SqlTarget {
    url: String,
    statement: String,
    port: Option<u16>,
}

impl SqlTarget {
    /// Checks the connection string and the statement (read-only: pool-lab runs it thousands
    /// of times against the user's server).
    ///
    /// # Errors
    /// [`LabError::BadInput`] for a connection string that does not parse or a statement that
    /// may write.
    pub fn new(url: &str, statement: &str) -> Result<Self, LabError> {
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
        let first_word = statement
            .split_whitespace()
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if !matches!(
            first_word.as_str(),
            "select" | "with" | "values" | "show" | "table"
        ) {
            return Err(LabError::BadInput(format!(
                "`{statement}` may write; pool-lab runs read-only statements only (SELECT, WITH, \
                 VALUES, SHOW, TABLE)"
            )));
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

    /// Connects once and runs the statement once, so that a bad URL, an unreachable server,
    /// bad credentials or a failing statement are reported before any measuring.
    ///
    /// # Errors
    /// The [`LabError`] that says which.
    pub async fn probe(&self) -> Result<(), LabError> {
        let db = self
            .builder()
            .max_open(1)
            .build()
            .map_err(|e| LabError::BadInput(e.to_string()))?;
        let result = db.execute(&self.statement, &[]).await;
        db.close();
        result.map(drop).map_err(|e| classify(&e))
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
            async move { db.execute(&statement, &[]).await.map(drop) }
        };
        let run = measure(workload, setting, call, stats, self.port, stop, tick).await;
        let _ = db.close_and_wait(Duration::from_secs(10)).await;
        Ok(run)
    }
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
