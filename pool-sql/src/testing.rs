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
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::Mutex;

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

    /// Starts a streaming-replication standby of the local server `primary`: a base backup
    /// of it (`pg_basebackup -R`, from the same binaries, over its Unix socket) in a temp
    /// dir of its own, started as a hot standby on a free port, with the same
    /// `max_connections` and TLS certificate. It returns once the standby streams from the
    /// primary, so what the primary commits from then on reaches it.
    ///
    /// The standby takes reads and refuses writes (SQLSTATE 25006) until
    /// [`promote`](TestPg::promote). It is an independent `TestPg`: its
    /// [`url`](TestPg::url), [`stop`](TestPg::stop), [`resume`](TestPg::resume) (as a
    /// standby again, unless promoted) and drop (stopped, directory removed) work as for
    /// any local server. Dropping the primary first leaves the standby running, retrying
    /// its primary, until it is dropped too.
    ///
    /// ```no_run
    /// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
    /// use pool_sql::testing::TestPg;
    /// let primary = TestPg::start()?;
    /// let standby = TestPg::standby_of(&primary)?;
    /// // Writes go to whichever host takes them.
    /// let url = format!(
    ///     "host=127.0.0.1,127.0.0.1 port={},{} user=postgres password={} \
    ///      target_session_attrs=read-write",
    ///     standby.port().unwrap(),
    ///     primary.port().unwrap(),
    ///     TestPg::PASSWORD,
    /// );
    /// let db = pool_sql::Db::open(&url)?;
    /// db.execute("CREATE TABLE t (x int)", &[]).await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// `primary` is a `DATABASE_URL` server or not running, `pg_basebackup` failed, the
    /// standby did not start (its log is in the message), or it did not stream within 30 s.
    pub fn standby_of(primary: &TestPg) -> io::Result<TestPg> {
        let p = primary.local()?;
        let dir = server_dir(p.dir.parent().unwrap_or(&std::env::temp_dir()));
        make_dir(&dir, p.as_postgres)?;
        let backup = run(
            p.as_postgres,
            path(&p.bin.join("pg_basebackup"))?,
            &[
                "-h",
                path(&p.dir)?,
                "-p",
                &p.port.to_string(),
                "-U",
                "postgres",
                "-w",
                "-D",
                path(&dir.join("data"))?,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
                "--no-sync",
            ],
        );
        let copied = backup.and_then(|_| {
            if p.tls {
                for file in ["server.crt", "server.key"] {
                    run(
                        false,
                        "cp",
                        &["-a", path(&p.dir.join(file))?, path(&dir.join(file))?],
                    )?;
                }
            }
            Ok(())
        });
        if let Err(e) = copied {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let standby = launch(&p.bin, &dir, p.as_postgres, p.max_connections, p.tls)?;
        standby.local()?.wait_streaming()?;
        Ok(standby)
    }

    /// Promotes a standby ([`standby_of`](TestPg::standby_of)) to a primary
    /// (`pg_ctl promote`, waiting until it is done): it takes writes when this returns.
    ///
    /// # Errors
    /// A `DATABASE_URL` server, not a standby, or `pg_ctl` failed.
    pub fn promote(&self) -> io::Result<()> {
        self.local()?.pg_ctl(&["-w", "-t", "60", "promote"])
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

impl Server {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_start(&self) -> io::Result<()> {
        let mut opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections={} \
             -c fsync=off -c synchronous_commit=off -c full_page_writes=off \
             -c shared_buffers=16MB -c superuser_reserved_connections=0",
            self.port,
            self.dir.display(),
            self.max_connections
        );
        if self.tls {
            opts.push_str(&format!(
                " -c ssl=on -c ssl_cert_file={0}/server.crt -c ssl_key_file={0}/server.key",
                self.dir.display()
            ));
        }
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

    /// `pg_ctl -D <data> <args>` as the server's user.
    fn pg_ctl(&self, args: &[&str]) -> io::Result<()> {
        let data = self.data();
        let mut all = vec!["-D", path(&data)?];
        all.extend_from_slice(args);
        run(self.as_postgres, path(&self.bin.join("pg_ctl"))?, &all).map(drop)
    }

    /// Waits until this standby's WAL receiver streams from its primary (asked over the
    /// Unix socket with `psql`), for at most 30 s.
    fn wait_streaming(&self) -> io::Result<()> {
        let psql = self.bin.join("psql");
        let port = self.port.to_string();
        let args = [
            "-h",
            path(&self.dir)?,
            "-p",
            &port,
            "-U",
            "postgres",
            "-d",
            "postgres",
            "-w",
            "-Atc",
            "SELECT status FROM pg_stat_wal_receiver",
        ];
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            let status = run(self.as_postgres, path(&psql)?, &args);
            if let Ok(out) = &status
                && String::from_utf8_lossy(&out.stdout).trim() == "streaming"
            {
                return Ok(());
            }
            if std::time::Instant::now() > deadline {
                let log = std::fs::read_to_string(self.dir.join("log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(10).collect();
                return Err(io::Error::other(format!(
                    "the standby did not stream from its primary within 30 s ({status:?})\n\
                     server log (last lines, newest first):\n{}",
                    tail.join("\n")
                )));
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
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
    if let Some(dir) = std::env::var_os("PG_BINDIR") {
        let dir = PathBuf::from(dir);
        return if dir.join("initdb").exists() {
            Ok(dir)
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no PostgreSQL server binaries in PG_BINDIR={} (no initdb there)",
                    dir.display()
                ),
            ))
        };
    }
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
