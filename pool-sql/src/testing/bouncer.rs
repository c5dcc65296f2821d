//! A PgBouncer in front of a local server: [`TestBouncer`].

use std::io;
use std::path::{Path, PathBuf};

use super::TestPg;
use super::server::{free_port, make_dir, path, run};

/// A PgBouncer in front of a local [`TestPg`], from the system's `pgbouncer` binary
/// (Debian's `pgbouncer` package), for testing pools behind a transaction-mode pooler.
///
/// It listens on a free loopback port, logs in as the test superuser (SCRAM), pools in
/// `transaction` mode with [`server_sessions`](TestBouncerBuilder::server_sessions) server
/// sessions, and runs as `postgres` when the process is root (PgBouncer refuses root). It
/// stops and its directory is removed on drop.
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// use pool_sql::testing::{TestBouncer, TestPg};
/// let pg = TestPg::start()?;
/// let bouncer = TestBouncer::builder().server_sessions(2).start(&pg)?;
/// let db = pool_sql::Db::builder(&bouncer.url()).statement_cache(0).build()?;
/// db.ping().await?;
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct TestBouncer {
    dir: PathBuf,
    port: u16,
}

/// Options of a [`TestBouncer`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct TestBouncerBuilder {
    server_sessions: u32,
    pool_mode: &'static str,
}

impl TestBouncerBuilder {
    /// Server sessions PgBouncer keeps for the database (`default_pool_size`). Default 2.
    pub fn server_sessions(mut self, n: u32) -> Self {
        self.server_sessions = n;
        self
    }

    /// Session pooling instead of transaction pooling (`pool_mode = session`).
    pub fn session_mode(mut self) -> Self {
        self.pool_mode = "session";
        self
    }

    /// Starts PgBouncer in front of `pg`, and waits until it accepts connections.
    ///
    /// # Errors
    /// `pg` is a `DATABASE_URL` server, `pgbouncer` is not installed (the message says how
    /// to install it), or it did not start (its log is in the message).
    pub fn start(self, pg: &TestPg) -> io::Result<TestBouncer> {
        let server = pg.local()?;
        let bin = find_program("pgbouncer").ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                "no pgbouncer binary: install it (apt-get install pgbouncer)",
            )
        })?;
        let as_postgres = server.as_postgres;
        let dir = server.dir.with_extension("bouncer");
        make_dir(&dir, as_postgres)?;
        let port = free_port()?;
        let config = format!(
            "[databases]\n\
             * = host=127.0.0.1 port={pg_port}\n\
             [pgbouncer]\n\
             listen_addr = 127.0.0.1\n\
             listen_port = {port}\n\
             unix_socket_dir =\n\
             auth_type = scram-sha-256\n\
             auth_file = {dir}/userlist.txt\n\
             pool_mode = {mode}\n\
             default_pool_size = {size}\n\
             max_client_conn = 500\n\
             server_reset_query =\n\
             ignore_startup_parameters = extra_float_digits,options\n\
             logfile = {dir}/pgbouncer.log\n\
             pidfile = {dir}/pgbouncer.pid\n",
            pg_port = server.port,
            dir = dir.display(),
            mode = self.pool_mode,
            size = self.server_sessions,
        );
        let ini = dir.join("pgbouncer.ini");
        std::fs::write(&ini, config)?;
        std::fs::write(
            dir.join("userlist.txt"),
            format!("\"postgres\" \"{}\"\n", TestPg::PASSWORD),
        )?;
        if as_postgres {
            run(false, "chown", &["-R", "postgres", path(&dir)?])?;
        }
        let bouncer = TestBouncer { dir, port };
        // `-d`: it forks once it listens and writes its pid file.
        if let Err(e) = run(as_postgres, path(&bin)?, &["-d", path(&ini)?]) {
            return Err(io::Error::other(format!("{e}\n{}", bouncer.log_tail())));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if std::time::Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "pgbouncer did not listen within 20 s\n{}",
                    bouncer.log_tail()
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Ok(bouncer)
    }
}

impl TestBouncer {
    /// Options for a PgBouncer: 2 server sessions, transaction pooling.
    pub fn builder() -> TestBouncerBuilder {
        TestBouncerBuilder {
            server_sessions: 2,
            pool_mode: "transaction",
        }
    }

    /// A superuser connection string through PgBouncer (TCP, password authentication).
    pub fn url(&self) -> String {
        format!(
            "postgres://postgres:{}@127.0.0.1:{}/postgres",
            TestPg::PASSWORD,
            self.port
        )
    }

    /// Its TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("pgbouncer.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(10).collect();
        format!(
            "pgbouncer log (last lines, newest first):\n{}",
            tail.join("\n")
        )
    }
}

impl Drop for TestBouncer {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.dir.join("pgbouncer.pid")) {
            let pid = pid.trim();
            if run(false, "kill", &[pid]).is_ok() {
                // Gone before the directory is: no process outlives its test.
                let proc = Path::new("/proc").join(pid);
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
                while proc.exists() && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
