//! Dialling PostgreSQL: our own socket under tokio-postgres, so that we know what was written.
//!
//! `tokio_postgres::connect` hides its socket. We dial it ourselves (TCP or Unix, each host of
//! the config in order, under the connect timeout, with TCP keep-alive) and start the session
//! on it ([`session::start`]) through [`Counted`](crate::wire::Counted), which counts what
//! was written and follows the protocol (see [`crate::wire`]).
//!
//! The connection task runs in a task of its own; its exit error is kept in [`Wire`], because
//! a server-side kill (SQLSTATE 57P01) only shows up there: the query itself just sees "connection
//! closed".

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::Client;
use tokio_postgres::config::Host;

use crate::session;
#[cfg(feature = "tls")]
pub(crate) use crate::session::RustlsTls;
pub(crate) use crate::session::{Canceller, Peer, Tls};
use crate::wire::Socket;
pub(crate) use crate::wire::{Liveness, Probe, Wire};

/// Where a connection went: kept for the cancel request, which needs a socket of its own to
/// the same server.
#[derive(Debug, Clone)]
pub(crate) enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// Why a connection could not be made.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnectError {
    /// Dialling failed (refused, unreachable, DNS).
    #[error("could not connect to {target}")]
    Dial {
        target: String,
        #[source]
        source: io::Error,
    },
    /// The dial or the startup handshake ran out of time.
    #[error("timed out connecting to {target}")]
    Timeout { target: String },
    /// The server refused the session (authentication, too many connections, no database...).
    #[error("postgres refused the session")]
    Startup(#[source] tokio_postgres::Error),
    /// The TLS handshake failed (certificate not trusted, name mismatch, no TLS on the
    /// server with `sslmode=require`...).
    #[error("TLS with {target} failed")]
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Tls {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    /// The config names no host.
    #[error("the connection string names no host")]
    NoHost,
}

/// A new session: the client, its wire, where it went, and a probe of its socket.
pub(crate) struct Connected {
    pub client: Client,
    pub wire: Arc<Wire>,
    pub cancel: Canceller,
    pub probe: Probe,
    /// Ends the connection task, and with it the socket, at once.
    pub task: tokio::task::AbortHandle,
}

/// Dials the hosts of `config` in order and starts a session on the first that answers.
/// The connection task is spawned; it ends when the client is dropped or the socket fails.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
    timeout: Option<Duration>,
    tls: &Tls,
) -> Result<Connected, ConnectError> {
    let hosts = config.get_hosts();
    let ports = config.get_ports();
    if hosts.is_empty() {
        return Err(ConnectError::NoHost);
    }
    let mut last = None;
    for (i, host) in hosts.iter().enumerate() {
        let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
        let attempt = async {
            let (socket, addr, probe) = dial(host, port, config).await?;
            let wire = Arc::new(Wire::default());
            let target = describe(host, port);
            let (client, task) = session::start(config, socket, &wire, host, &target, tls).await?;
            Ok(Connected {
                cancel: Canceller::new(
                    &client,
                    Peer {
                        addr,
                        host: host.clone(),
                    },
                    tls,
                ),
                client,
                wire,
                probe,
                task,
            })
        };
        let result = match timeout {
            Some(t) => tokio::time::timeout(t, attempt).await.unwrap_or_else(|_| {
                Err(ConnectError::Timeout {
                    target: describe(host, port),
                })
            }),
            None => attempt.await,
        };
        match result {
            Ok(c) => return Ok(c),
            // The server answered and said no: another host would not change that for a
            // password, but it might for "too many connections"; try them all, keep the last.
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or(ConnectError::NoHost))
}

fn describe(host: &Host, port: u16) -> String {
    match host {
        Host::Tcp(h) => format!("{h}:{port}"),
        Host::Unix(p) => format!("{}/.s.PGSQL.{port}", p.display()),
    }
}

async fn dial(
    host: &Host,
    port: u16,
    config: &tokio_postgres::Config,
) -> Result<(Socket, Addr, Probe), ConnectError> {
    let target = describe(host, port);
    let dial_err = |source| ConnectError::Dial {
        target: target.clone(),
        source,
    };
    match host {
        Host::Unix(dir) => {
            let path = dir.join(format!(".s.PGSQL.{port}"));
            let s = UnixStream::connect(&path).await.map_err(dial_err)?;
            let std = s.into_std().map_err(dial_err)?;
            let probe = Probe(std.try_clone().map_err(dial_err)?.into());
            let s = UnixStream::from_std(std).map_err(dial_err)?;
            Ok((Socket::Unix(s), Addr::Unix(path), probe))
        }
        Host::Tcp(name) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name.as_str(), port))
                .await
                .map_err(dial_err)?
                .collect();
            let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for the host");
            for a in addrs {
                match TcpStream::connect(a).await {
                    Ok(s) => {
                        let _ = s.set_nodelay(true);
                        if config.get_keepalives() {
                            let ka = socket2::TcpKeepalive::new()
                                .with_time(config.get_keepalives_idle());
                            let _ = socket2::SockRef::from(&s).set_tcp_keepalive(&ka);
                        }
                        let std = s.into_std().map_err(dial_err)?;
                        let probe = Probe(std.try_clone().map_err(dial_err)?.into());
                        let s = TcpStream::from_std(std).map_err(dial_err)?;
                        return Ok((Socket::Tcp(s), Addr::Tcp(a), probe));
                    }
                    Err(e) => last = e,
                }
            }
            Err(dial_err(last))
        }
    }
}
