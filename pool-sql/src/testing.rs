//! A throw-away PostgreSQL for tests (feature `testing`): ours, and yours.
//!
//! [`TestPg::start`] runs a private server from the system's PostgreSQL binaries
//! (`$PG_BINDIR` when set, else `pg_config --bindir`, else the newest
//! `/usr/lib/postgresql/*/bin`): a copy of a cached
//! `initdb` template in a temp dir, on a free loopback port, with durability off (tests do
//! not need it). PostgreSQL refuses to run as root, so as root it runs as the `postgres`
//! user. It is stopped and its directory removed on drop. [`TestPg::from_env_or_start`] uses
//! `DATABASE_URL` instead when set (such a server cannot be stopped or restarted by a test).
//! [`TestPg::standby_of`] adds a streaming-replication standby of a local server, and
//! [`TestPg::promote`] makes it the primary: a failover, for tests of multi-host connection
//! strings (`target_session_attrs`).
//!
//! The superuser is `postgres` with the password [`TestPg::PASSWORD`]; TCP logins need it
//! (SCRAM), so wrong-password tests are real.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let pg = pool_sql::testing::TestPg::start()?;
//! let db = pool_sql::Db::open(&pg.url())?;
//! db.ping().await?;
//! # Ok(()) }
//! ```

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

mod bouncer;
mod server;
mod standby;

pub use bouncer::{TestBouncer, TestBouncerBuilder};

use server::{fastrand_suffix, find_bin, free_port, is_root, make_dir, path, run, template};

/// A PostgreSQL server for one test (or one test process).
///
/// `Debug` shows a `DATABASE_URL` server's connection string with its password replaced by
/// `***`.
#[derive(Debug)]
pub struct TestPg {
    mode: Mode,
}

enum Mode {
    External(String),
    Local(Server),
}

impl std::fmt::Debug for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::External(url) => f
                .debug_tuple("External")
                .field(&crate::conninfo::redact(url))
                .finish(),
            Mode::Local(server) => f.debug_tuple("Local").field(server).finish(),
        }
    }
}

#[derive(Debug)]
struct Server {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    max_connections: u32,
    tls: bool,
    running: Mutex<bool>,
}

/// Options of a [`TestPg`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct TestPgBuilder {
    max_connections: u32,
    tls: Option<(String, String)>,
}

impl TestPgBuilder {
    /// The server's `max_connections`. Default 60.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// Serves TLS (`ssl = on`) with this certificate chain and private key (PEM), beside
    /// plain TCP. Generate them in the test (rcgen): the client's `rustls` config trusts
    /// the certificate, which must name `127.0.0.1` or the host in the client's URL.
    pub fn tls(mut self, cert_pem: impl Into<String>, key_pem: impl Into<String>) -> Self {
        self.tls = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Starts the server.
    ///
    /// # Errors
    /// No PostgreSQL binaries, `initdb` or `pg_ctl` failed (the server log is in the
    /// message), or no free port.
    pub fn start(self) -> io::Result<TestPg> {
        let bin = find_bin()?;
        let as_postgres = is_root()?;
        let base = std::env::temp_dir().join("pool-sql-testpg");
        make_dir(&base, as_postgres)?;
        let template = template(&bin, &base, as_postgres)?;
        let dir = server_dir(&base);
        run(as_postgres, "cp", &["-a", path(&template)?, path(&dir)?])?;
        let tls = match &self.tls {
            Some((cert, key)) => {
                let (crt, pem) = (dir.join("server.crt"), dir.join("server.key"));
                std::fs::write(&crt, cert)?;
                std::fs::write(&pem, key)?;
                // PostgreSQL refuses a key others can read.
                run(false, "chmod", &["600", path(&pem)?])?;
                if as_postgres {
                    run(false, "chown", &["postgres", path(&crt)?, path(&pem)?])?;
                }
                true
            }
            None => false,
        };
        launch(&bin, &dir, as_postgres, self.max_connections, tls)
    }
}

/// Starts the server in `dir` (its `data` directory ready) on a free port, retrying with
/// another port when one was taken meanwhile; removes `dir` when it cannot start.
fn launch(
    bin: &Path,
    dir: &Path,
    as_postgres: bool,
    max_connections: u32,
    tls: bool,
) -> io::Result<TestPg> {
    let mut last = None;
    for _ in 0..5 {
        let port = free_port()?;
        let server = Server {
            bin: bin.to_owned(),
            dir: dir.to_owned(),
            port,
            as_postgres,
            max_connections,
            tls,
            running: Mutex::new(false),
        };
        match server.pg_start() {
            Ok(()) => {
                return Ok(TestPg {
                    mode: Mode::Local(server),
                });
            }
            // Another process took the port between our probe and the start: try another.
            Err(e) => {
                std::mem::forget(server);
                last = Some(e);
            }
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    Err(last.unwrap_or_else(|| io::Error::other("postgres did not start")))
}

/// A fresh server directory under `base`, unique in this machine.
fn server_dir(base: &Path) -> PathBuf {
    static SEQ: AtomicU32 = AtomicU32::new(0);
    base.join(format!(
        "srv-{}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed),
        fastrand_suffix()
    ))
}

impl TestPg {
    /// The superuser's password on a local server.
    pub const PASSWORD: &'static str = "pool-sql-test-pw";

    /// Options for a private server.
    pub fn builder() -> TestPgBuilder {
        TestPgBuilder {
            max_connections: 60,
            tls: None,
        }
    }

    /// Starts a private server with the default options.
    ///
    /// # Errors
    /// See [`TestPgBuilder::start`].
    pub fn start() -> io::Result<TestPg> {
        Self::builder().start()
    }

    /// `DATABASE_URL` when set, else a private server.
    ///
    /// # Errors
    /// See [`TestPgBuilder::start`].
    pub fn from_env_or_start() -> io::Result<TestPg> {
        match std::env::var("DATABASE_URL") {
            Ok(url) if !url.is_empty() => Ok(TestPg {
                mode: Mode::External(url),
            }),
            _ => Self::start(),
        }
    }

    /// A superuser connection string (TCP, password authentication).
    pub fn url(&self) -> String {
        match &self.mode {
            Mode::External(url) => url.clone(),
            Mode::Local(s) => format!(
                "postgres://postgres:{}@127.0.0.1:{}/postgres",
                Self::PASSWORD,
                s.port
            ),
        }
    }

    /// The same server with another password, for authentication failures.
    /// `None` for a `DATABASE_URL` server.
    pub fn url_with_password(&self, password: &str) -> Option<String> {
        match &self.mode {
            Mode::External(_) => None,
            Mode::Local(s) => Some(format!(
                "postgres://postgres:{password}@127.0.0.1:{}/postgres",
                s.port
            )),
        }
    }

    /// The TCP port of a local server.
    pub fn port(&self) -> Option<u16> {
        match &self.mode {
            Mode::External(_) => None,
            Mode::Local(s) => Some(s.port),
        }
    }

    /// Stops a local server (fast shutdown: sessions get 57P01). The port stays reserved
    /// for [`resume`](TestPg::resume).
    ///
    /// # Errors
    /// A `DATABASE_URL` server, or `pg_ctl` failed.
    pub fn stop(&self) -> io::Result<()> {
        self.local()?.pg_stop("fast")
    }

    /// Starts a stopped local server again on the same port.
    ///
    /// # Errors
    /// A `DATABASE_URL` server, or `pg_ctl` failed.
    pub fn resume(&self) -> io::Result<()> {
        self.local()?.pg_start()
    }

    fn local(&self) -> io::Result<&Server> {
        match &self.mode {
            Mode::Local(s) => Ok(s),
            Mode::External(_) => Err(io::Error::other(
                "a DATABASE_URL server cannot be stopped by a test",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Mode, TestPg};

    #[test]
    fn debug_of_a_database_url_server_shows_no_password() {
        let pg = TestPg {
            mode: Mode::External("postgres://app:s3cret@db/app".to_owned()),
        };
        let shown = format!("{pg:?} {pg:#?}");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("postgres://app:***@db/app"), "{shown}");
    }
}
