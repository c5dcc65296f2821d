//! A throw-away PostgreSQL for tests (feature `testing`): ours, and yours.
//!
//! [`TestPg::start`] runs a private server from the system's PostgreSQL binaries
//! (`pg_config --bindir`, else the newest `/usr/lib/postgresql/*/bin`): a copy of a cached
//! `initdb` template in a temp dir, on a free loopback port, with durability off (tests do
//! not need it). PostgreSQL refuses to run as root, so as root it runs as the `postgres`
//! user. It is stopped and its directory removed on drop. [`TestPg::from_env_or_start`] uses
//! `DATABASE_URL` instead when set (such a server cannot be stopped or restarted by a test).
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
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

/// A PostgreSQL server for one test (or one test process).
#[derive(Debug)]
pub struct TestPg {
    mode: Mode,
}

#[derive(Debug)]
enum Mode {
    External(String),
    Local(Server),
}

#[derive(Debug)]
struct Server {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    as_postgres: bool,
    max_connections: u32,
    running: Mutex<bool>,
}

/// Options of a [`TestPg`].
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `start` is called"]
pub struct TestPgBuilder {
    max_connections: u32,
}

impl TestPgBuilder {
    /// The server's `max_connections`. Default 60.
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
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
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = base.join(format!(
            "srv-{}-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed),
            fastrand_suffix()
        ));
        run(as_postgres, "cp", &["-a", path(&template)?, path(&dir)?])?;
        let mut last = None;
        for _ in 0..5 {
            let port = free_port()?;
            let server = Server {
                bin: bin.clone(),
                dir: dir.clone(),
                port,
                as_postgres,
                max_connections: self.max_connections,
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
        let _ = std::fs::remove_dir_all(&dir);
        Err(last.unwrap_or_else(|| io::Error::other("postgres did not start")))
    }
}

impl TestPg {
    /// The superuser's password on a local server.
    pub const PASSWORD: &'static str = "pool-sql-test-pw";

    /// Options for a private server.
    pub fn builder() -> TestPgBuilder {
        TestPgBuilder {
            max_connections: 60,
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

impl Server {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_start(&self) -> io::Result<()> {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections={} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c shared_buffers=16MB -c superuser_reserved_connections=0",
            self.port,
            self.dir.display(),
            self.max_connections
        );
        let pg_ctl = self.bin.join("pg_ctl");
        let log = self.dir.join("log");
        let out = run(
            self.as_postgres,
            path(&pg_ctl)?,
            &[
                "-D",
                path(&self.data())?,
                "-l",
                path(&log)?,
                "-w",
                "-t",
                "60",
                "-o",
                &opts,
                "start",
            ],
        );
        match out {
            Ok(_) => {
                *self.running.lock() = true;
                Ok(())
            }
            Err(e) => {
                let log = std::fs::read_to_string(&log).unwrap_or_default();
                let tail: String = log.lines().rev().take(10).collect::<Vec<_>>().join("\n");
                Err(io::Error::other(format!(
                    "{e}\nserver log (last lines, newest first):\n{tail}"
                )))
            }
        }
    }

    fn pg_stop(&self, mode: &str) -> io::Result<()> {
        let pg_ctl = self.bin.join("pg_ctl");
        run(
            self.as_postgres,
            path(&pg_ctl)?,
            &["-D", path(&self.data())?, "-m", mode, "-w", "stop"],
        )?;
        *self.running.lock() = false;
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if *self.running.lock() {
            let _ = self.pg_stop("immediate");
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The cached `initdb` result for these binaries: made once, copied per server.
fn template(bin: &Path, base: &Path, as_postgres: bool) -> io::Result<PathBuf> {
    let version = run(false, path(&bin.join("postgres"))?, &["--version"])?;
    let version = String::from_utf8_lossy(&version.stdout);
    let digits: String = version.chars().filter(char::is_ascii_digit).collect();
    let template = base.join(format!("template-{digits}"));
    if template.join("data").join("PG_VERSION").exists() {
        return Ok(template);
    }
    let tmp = base.join(format!("tmp-{}-{}", std::process::id(), fastrand_suffix()));
    make_dir(&tmp, as_postgres)?;
    let pwfile = tmp.join("pw");
    std::fs::write(&pwfile, TestPg::PASSWORD)?;
    if as_postgres {
        run(false, "chown", &["postgres", path(&pwfile)?])?;
    }
    run(
        as_postgres,
        path(&bin.join("initdb"))?,
        &[
            "-D",
            path(&tmp.join("data"))?,
            "-U",
            "postgres",
            "--auth-local=trust",
            "--auth-host=scram-sha-256",
            "--pwfile",
            path(&pwfile)?,
            "-E",
            "UTF8",
            "--no-sync",
        ],
    )?;
    // Whoever renames first wins; the others throw their copy away.
    if std::fs::rename(&tmp, &template).is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    Ok(template)
}

fn find_bin() -> io::Result<PathBuf> {
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if dir.join("initdb").exists() {
            return Ok(dir);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, b)| b).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            "no PostgreSQL server binaries (initdb): install them (apt-get install postgresql) \
             or set DATABASE_URL",
        )
    })
}

fn is_root() -> io::Result<bool> {
    let out = run(false, "id", &["-u"])?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

fn make_dir(dir: &Path, as_postgres: bool) -> io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    if as_postgres {
        run(false, "chown", &["postgres", path(dir)?])?;
    }
    Ok(())
}

fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

fn fastrand_suffix() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{:x}", t.as_nanos() & 0xff_ffff)
}

fn path(p: &Path) -> io::Result<&str> {
    p.to_str()
        .ok_or_else(|| io::Error::other(format!("not a UTF-8 path: {}", p.display())))
}

/// Runs a command (as `postgres` when asked), failing with its output when it fails.
fn run(as_postgres: bool, cmd: &str, args: &[&str]) -> io::Result<Output> {
    let mut c = if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", cmd]);
        c
    } else {
        Command::new(cmd)
    };
    let out = c.args(args).current_dir(std::env::temp_dir()).output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "`{cmd}` failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )));
    }
    Ok(out)
}
