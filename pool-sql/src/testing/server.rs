//! A local server's processes: starting and stopping it with `pg_ctl`, the cached `initdb`
//! template, finding the binaries, and running commands (as `postgres` when root).

use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::{Server, TestPg};

impl Server {
    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub(super) fn pg_start(&self) -> io::Result<()> {
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
    pub(super) fn pg_ctl(&self, args: &[&str]) -> io::Result<()> {
        let data = self.data();
        let mut all = vec!["-D", path(&data)?];
        all.extend_from_slice(args);
        run(self.as_postgres, path(&self.bin.join("pg_ctl"))?, &all).map(drop)
    }

    pub(super) fn pg_stop(&self, mode: &str) -> io::Result<()> {
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
pub(super) fn template(bin: &Path, base: &Path, as_postgres: bool) -> io::Result<PathBuf> {
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

pub(super) fn find_bin() -> io::Result<PathBuf> {
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

pub(super) fn is_root() -> io::Result<bool> {
    let out = run(false, "id", &["-u"])?;
    Ok(String::from_utf8_lossy(&out.stdout).trim() == "0")
}

pub(super) fn make_dir(dir: &Path, as_postgres: bool) -> io::Result<()> {
    if dir.exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    if as_postgres {
        run(false, "chown", &["postgres", path(dir)?])?;
    }
    Ok(())
}

pub(super) fn free_port() -> io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

pub(super) fn fastrand_suffix() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    format!("{:x}", t.as_nanos() & 0xff_ffff)
}

pub(super) fn path(p: &Path) -> io::Result<&str> {
    p.to_str()
        .ok_or_else(|| io::Error::other(format!("not a UTF-8 path: {}", p.display())))
}

/// Runs a command (as `postgres` when asked), failing with its output when it fails.
pub(super) fn run(as_postgres: bool, cmd: &str, args: &[&str]) -> io::Result<Output> {
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
