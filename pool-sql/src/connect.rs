//! Dialling PostgreSQL: our own socket under tokio-postgres, so that we know what was written.
//!
//! `tokio_postgres::connect` hides its socket. We dial it ourselves (TCP or Unix, with TCP
//! keep-alive) and start the session on it ([`session::start`]) through
//! [`Counted`](crate::wire::Counted), which counts what was written and follows the protocol
//! (see [`crate::wire`]).
//!
//! So the connection string's multi-host options are ours to honour, as libpq does:
//!
//! - every `host` is tried in order ([`plan`]), each attempt (dial, TLS, startup, check)
//!   under the connect timeout; ports pair with hosts (one for all, or one per host);
//! - `hostaddr` is dialled instead of resolving the host's name, which still names the
//!   server for TLS and in errors; a `hostaddr` without a `host` is the target itself;
//! - `target_session_attrs=read-write` / `read-only`: a started session is asked
//!   `SHOW transaction_read_only`, and one of the wrong kind is closed and the next host
//!   tried; none of the right kind is [`ConnectError::NoMatchingHost`], naming each host.
//!   This is how a pool finds the new primary after a failover, without a restart;
//! - `load_balance_hosts=random` shuffles the hosts for each connect.
//!
//! The connection task runs in a task of its own; its exit error is kept in [`Wire`], because
//! a server-side kill (SQLSTATE 57P01) only shows up there: the query itself just sees "connection
//! closed".

use std::error::Error as StdError;
use std::fmt;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::{Host, LoadBalanceHosts, TargetSessionAttrs};
use tokio_postgres::{Client, SimpleQueryMessage};

use crate::error::{Code, Report, link};
use crate::session;
pub(crate) use crate::session::{Canceller, NotifySink, Peer, Tls};
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
///
/// `Display` is this level only (the host and what failed there, with the SQLSTATE when
/// the server refused the session); the cause is the [`source`](StdError::source): the
/// socket's error, the server's [`DbError`](tokio_postgres::error::DbError), or
/// tokio-postgres's error.
#[derive(Debug)]
pub(crate) enum ConnectError {
    /// The host name did not resolve.
    Resolve { target: String, source: io::Error },
    /// Dialling failed (refused, unreachable).
    Dial { target: String, source: io::Error },
    /// The dial or the startup handshake ran out of time.
    Timeout { target: String, after: Duration },
    /// The server refused the session (authentication, too many connections, no
    /// database...), or the startup handshake failed.
    Startup {
        target: String,
        source: tokio_postgres::Error,
    },
    /// The TLS handshake failed (certificate not trusted, name mismatch, no TLS on the
    /// server with `sslmode=require`...).
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    Tls {
        target: String,
        source: tokio_postgres::Error,
    },
    /// The config names no host.
    NoHost,
    /// The hosts, addresses and ports of the config do not pair up (libpq's rule: as many
    /// `hostaddr`s as `host`s when both are given; one port for all, or one per host), or
    /// it asks for a `target_session_attrs` this crate cannot check.
    Hosts(String),
    /// A session was started but asking it whether it takes writes (`SHOW
    /// transaction_read_only`, for `target_session_attrs`) failed.
    Check {
        target: String,
        source: tokio_postgres::Error,
    },
    /// `target_session_attrs` asked for a kind of session that no host gave. `tried` says
    /// what each host was (in the order tried); the last failure to connect, if any host
    /// could not be reached, is the source.
    NoMatchingHost {
        wanted: &'static str,
        tried: String,
        last: Option<Box<ConnectError>>,
    },
}

impl ConnectError {
    /// What went wrong at one host, in a few words, for the list of hosts tried (the
    /// details are the last failure's chain).
    fn summary(&self) -> String {
        match self {
            ConnectError::Resolve { .. } => "could not resolve".to_owned(),
            ConnectError::Dial { .. } => "could not connect".to_owned(),
            ConnectError::Timeout { .. } => "timed out".to_owned(),
            ConnectError::Startup { source, .. } => match source.code() {
                Some(code) => format!("session refused, SQLSTATE {}", code.code()),
                None => "session startup failed".to_owned(),
            },
            ConnectError::Tls { .. } => "tls failed".to_owned(),
            ConnectError::Check { .. } => "could not ask whether it takes writes".to_owned(),
            ConnectError::NoHost | ConnectError::Hosts(_) | ConnectError::NoMatchingHost { .. } => {
                "failed".to_owned()
            }
        }
    }
}

impl fmt::Display for ConnectError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConnectError::Resolve { target, .. } => write!(f, "could not resolve {target}"),
            ConnectError::Dial { target, source }
                if source.kind() == io::ErrorKind::ConnectionRefused =>
            {
                write!(f, "connect to {target} refused")
            }
            ConnectError::Dial { target, .. } => write!(f, "could not connect to {target}"),
            ConnectError::Timeout { target, after } => {
                write!(f, "connecting to {target} timed out after {after:?}")
            }
            ConnectError::Startup { target, source } if source.as_db_error().is_some() => {
                write!(f, "{target} refused the session{}", Code(Some(source)))
            }
            ConnectError::Startup { target, .. } => {
                write!(f, "session startup with {target} failed")
            }
            ConnectError::Tls { target, .. } => write!(f, "tls with {target} failed"),
            ConnectError::NoHost => f.write_str("the connection string names no host"),
            ConnectError::Hosts(why) => {
                write!(f, "the connection string's hosts cannot be tried: {why}")
            }
            ConnectError::Check { target, source } => write!(
                f,
                "could not ask {target} whether it takes writes (target_session_attrs){}",
                Code(Some(source))
            ),
            ConnectError::NoMatchingHost { wanted, tried, .. } => write!(
                f,
                "no host gave a {wanted} session (target_session_attrs={wanted}); tried {tried}"
            ),
        }
    }
}

impl StdError for ConnectError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        match self {
            ConnectError::Resolve { source, .. } | ConnectError::Dial { source, .. } => {
                Some(source)
            }
            ConnectError::Startup { source, .. }
            | ConnectError::Tls { source, .. }
            | ConnectError::Check { source, .. } => Some(link(source)),
            ConnectError::NoMatchingHost { last, .. } => {
                last.as_deref().map(|e| e as &(dyn StdError + 'static))
            }
            ConnectError::Timeout { .. } | ConnectError::NoHost | ConnectError::Hosts(_) => None,
        }
    }
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

/// One host of the config, as it is tried: libpq's `host`, `hostaddr` and `port` of the
/// same position.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Target {
    /// The server's name: what a TLS certificate must carry and what errors say. The
    /// address itself when the config gives a `hostaddr` without a `host`.
    pub host: Host,
    /// The numeric address to dial instead of resolving `host` (`hostaddr`).
    pub hostaddr: Option<IpAddr>,
    pub port: u16,
}

impl Target {
    /// How errors and logs name it: `name:port`, with the address dialled when it is not
    /// the name (`db.example:5432 (hostaddr 10.0.0.7)`). Never a credential.
    fn describe(&self) -> String {
        let name = describe(&self.host, self.port);
        match self.hostaddr {
            Some(ip) if !matches!(&self.host, Host::Tcp(h) if *h == ip.to_string()) => {
                format!("{name} (hostaddr {ip})")
            }
            _ => name,
        }
    }
}

/// The hosts of `config` in the written order ([`connect`] shuffles them under
/// `load_balance_hosts=random`). Pure.
///
/// # Errors
/// [`ConnectError::NoHost`] when the config names neither a host nor an address;
/// [`ConnectError::Hosts`] when hosts, addresses and ports do not pair up as libpq requires.
pub(crate) fn plan(config: &tokio_postgres::Config) -> Result<Vec<Target>, ConnectError> {
    let (hosts, addrs, ports) = (
        config.get_hosts(),
        config.get_hostaddrs(),
        config.get_ports(),
    );
    if !hosts.is_empty() && !addrs.is_empty() && hosts.len() != addrs.len() {
        return Err(ConnectError::Hosts(format!(
            "{} hosts but {} hostaddrs (give one address per host, or none)",
            hosts.len(),
            addrs.len()
        )));
    }
    let n = hosts.len().max(addrs.len());
    if n == 0 {
        return Err(ConnectError::NoHost);
    }
    if ports.len() > 1 && ports.len() != n {
        return Err(ConnectError::Hosts(format!(
            "{} ports for {n} hosts (give one port for all, or one per host)",
            ports.len()
        )));
    }
    // Every position has a host, an address, or both: `n` is the longer list.
    let targets: Vec<Target> = (0..n)
        .filter_map(|i| {
            let hostaddr = addrs.get(i).copied();
            let host = hosts
                .get(i)
                .cloned()
                .or_else(|| hostaddr.map(|ip| Host::Tcp(ip.to_string())))?;
            Some(Target {
                host,
                hostaddr,
                port: ports.get(i).or(ports.first()).copied().unwrap_or(5432),
            })
        })
        .collect();
    Ok(targets)
}

/// Where the sessions of `config` go, for messages: `user@host:port,host:port/dbname`, the
/// hosts in the written order (a part the config leaves out is left out). Never a password.
pub(crate) fn describe_config(config: &tokio_postgres::Config) -> String {
    let hosts = match plan(config) {
        Ok(targets) => targets
            .iter()
            .map(Target::describe)
            .collect::<Vec<_>>()
            .join(","),
        Err(_) => "(no host)".to_owned(),
    };
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config
        .get_dbname()
        .map(|d| format!("/{d}"))
        .unwrap_or_default();
    format!("{user}{hosts}{db}")
}

/// The kind of session `target_session_attrs` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wanted {
    ReadWrite,
    ReadOnly,
}

impl Wanted {
    /// `None` for `any`.
    fn of(config: &tokio_postgres::Config) -> Result<Option<Wanted>, ConnectError> {
        match config.get_target_session_attrs() {
            TargetSessionAttrs::Any => Ok(None),
            TargetSessionAttrs::ReadWrite => Ok(Some(Wanted::ReadWrite)),
            TargetSessionAttrs::ReadOnly => Ok(Some(Wanted::ReadOnly)),
            // A value a later tokio-postgres parses: refuse it rather than ignore it.
            other => Err(ConnectError::Hosts(format!(
                "target_session_attrs {other:?} is not supported"
            ))),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Wanted::ReadWrite => "read-write",
            Wanted::ReadOnly => "read-only",
        }
    }

    /// Whether a session whose `transaction_read_only` is `read_only` will do.
    fn accepts(self, read_only: bool) -> bool {
        match self {
            Wanted::ReadWrite => !read_only,
            Wanted::ReadOnly => read_only,
        }
    }
}

/// Tries the hosts of `config` in order (shuffled under `load_balance_hosts=random`), each
/// under `timeout`, and keeps the first session that starts and, under
/// `target_session_attrs`, is of the kind asked for (`SHOW transaction_read_only`, as
/// libpq): a session of the wrong kind is closed and the next host tried.
/// The connection task is spawned; it ends when the client is dropped or the socket fails.
///
/// With a `sink` (a [`Listener`](crate::Listener)'s session), the connection task forwards
/// the session's notifications to it.
pub(crate) async fn connect(
    config: &tokio_postgres::Config,
    timeout: Option<Duration>,
    tls: &Tls,
    sink: Option<&NotifySink>,
) -> Result<Connected, ConnectError> {
    let wanted = Wanted::of(config)?;
    let mut rng = fastrand::Rng::new();
    let mut targets = plan(config)?;
    if config.get_load_balance_hosts() == LoadBalanceHosts::Random {
        rng.shuffle(&mut targets);
    }
    let mut last = None;
    let mut tried = Vec::with_capacity(targets.len());
    let mut mismatched = false;
    for target in &targets {
        let attempt = attempt(target, config, (tls, sink), wanted, &mut rng);
        let result = match timeout {
            Some(t) => tokio::time::timeout(t, attempt).await.unwrap_or_else(|_| {
                Err(ConnectError::Timeout {
                    target: target.describe(),
                    after: t,
                })
            }),
            None => attempt.await,
        };
        match result {
            Ok(Outcome::Session(c)) => return Ok(*c),
            Ok(Outcome::WrongKind { read_only }) => {
                mismatched = true;
                let kind = if read_only {
                    "read-only"
                } else {
                    "not read-only"
                };
                tracing::debug!(
                    target: "pool_sql",
                    host = %target.describe(),
                    kind,
                    "session closed: not what target_session_attrs asks for"
                );
                tried.push(format!("{} ({kind})", target.describe()));
            }
            // The server answered and said no: another host would not change that for a
            // password, but it might for "too many connections"; try them all, keep the last
            // (its chain is the error's cause; the others are logged here).
            Err(e) => {
                tracing::debug!(target: "pool_sql", error = %Report(&e), "connect failed");
                tried.push(format!("{} (failed: {})", target.describe(), e.summary()));
                last = Some(e);
            }
        }
    }
    match (wanted, mismatched) {
        (Some(wanted), true) => Err(ConnectError::NoMatchingHost {
            wanted: wanted.name(),
            tried: tried.join(", "),
            last: last.map(Box::new),
        }),
        _ => Err(last.unwrap_or(ConnectError::NoHost)),
    }
}

/// How one host's attempt ended, when nothing failed.
enum Outcome {
    /// A session of the kind asked for (boxed: it is large, the other variant is a flag).
    Session(Box<Connected>),
    /// A session started, but not of the kind `target_session_attrs` asks for: it was closed.
    WrongKind { read_only: bool },
}

/// One host: dial, start the session, and check its kind when asked.
async fn attempt(
    target: &Target,
    config: &tokio_postgres::Config,
    (tls, sink): (&Tls, Option<&NotifySink>),
    wanted: Option<Wanted>,
    rng: &mut fastrand::Rng,
) -> Result<Outcome, ConnectError> {
    let (socket, addr, probe) = dial(target, config, rng).await?;
    let wire = Arc::new(Wire::default());
    let name = target.describe();
    let (host, sink) = (&target.host, sink.cloned());
    let closer = session::Closer(probe.clone());
    let (client, task) =
        session::start(config, socket, &wire, (host, &name), tls, (sink, closer)).await?;
    if let Some(wanted) = wanted {
        let read_only = read_only(&client)
            .await
            .map_err(|source| ConnectError::Check {
                target: name.clone(),
                source,
            })?;
        if !wanted.accepts(read_only) {
            // Dropping the client ends the session: the connection task sends Terminate.
            drop(client);
            return Ok(Outcome::WrongKind { read_only });
        }
    }
    Ok(Outcome::Session(Box::new(Connected {
        cancel: Canceller::new(
            &client,
            Peer {
                addr,
                host: target.host.clone(),
            },
            tls,
        ),
        client,
        wire,
        probe,
        task,
    })))
}

/// The session's `transaction_read_only`: `on` in a hot standby (and wherever
/// `default_transaction_read_only` is on), `off` where writes are possible.
async fn read_only(client: &Client) -> Result<bool, tokio_postgres::Error> {
    let messages = client.simple_query("SHOW transaction_read_only").await?;
    let value = messages.iter().find_map(|m| match m {
        SimpleQueryMessage::Row(row) => Some(row.get(0) == Some("on")),
        _ => None,
    });
    Ok(value.unwrap_or(false))
}

fn describe(host: &Host, port: u16) -> String {
    match host {
        Host::Tcp(h) => format!("{h}:{port}"),
        Host::Unix(p) => format!("{}/.s.PGSQL.{port}", p.display()),
    }
}

/// Opens the socket to one host: its `hostaddr` when given, else the host's Unix socket
/// or each address its name resolves to, in turn (in an order shuffled by `rng` under
/// `load_balance_hosts=random`, as libpq).
async fn dial(
    target: &Target,
    config: &tokio_postgres::Config,
    rng: &mut fastrand::Rng,
) -> Result<(Socket, Addr, Probe), ConnectError> {
    let dial_err = |source| ConnectError::Dial {
        target: target.describe(),
        source,
    };
    let port = target.port;
    let mut addrs: Vec<SocketAddr> = match (&target.host, target.hostaddr) {
        (_, Some(ip)) => vec![SocketAddr::new(ip, port)],
        (Host::Unix(dir), None) => {
            let path = dir.join(format!(".s.PGSQL.{port}"));
            let s = UnixStream::connect(&path).await.map_err(dial_err)?;
            let std = s.into_std().map_err(dial_err)?;
            let probe = Probe::new(std.try_clone().map_err(dial_err)?.into());
            let s = UnixStream::from_std(std).map_err(dial_err)?;
            return Ok((Socket::Unix(s), Addr::Unix(path), probe));
        }
        (Host::Tcp(name), None) => tokio::net::lookup_host((name.as_str(), port))
            .await
            .map_err(|source| ConnectError::Resolve {
                target: target.describe(),
                source,
            })?
            .collect(),
    };
    if config.get_load_balance_hosts() == LoadBalanceHosts::Random {
        rng.shuffle(&mut addrs);
    }
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no address for the host");
    for a in addrs {
        match TcpStream::connect(a).await {
            Ok(s) => {
                let _ = s.set_nodelay(true);
                if config.get_keepalives() {
                    let ka = socket2::TcpKeepalive::new().with_time(config.get_keepalives_idle());
                    let _ = socket2::SockRef::from(&s).set_tcp_keepalive(&ka);
                }
                let std = s.into_std().map_err(dial_err)?;
                let probe = Probe::new(std.try_clone().map_err(dial_err)?.into());
                let s = TcpStream::from_std(std).map_err(dial_err)?;
                return Ok((Socket::Tcp(s), Addr::Tcp(a), probe));
            }
            Err(e) => last = e,
        }
    }
    Err(dial_err(last))
}
