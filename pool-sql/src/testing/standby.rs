//! A streaming-replication standby of a local server, and its promotion: a failover.

use std::io;

use super::server::{make_dir, path, run};
use super::{Server, TestPg, launch, server_dir};

impl TestPg {
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
}

impl Server {
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
}
