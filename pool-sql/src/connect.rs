//! Dialling PostgreSQL: our own socket under tokio-postgres, so that we know what was written.
//!
//! `tokio_postgres::connect` hides its socket. We dial it ourselves (TCP or Unix, each host of
//! the config in order, under the connect timeout, with TCP keep-alive) and hand it to
//! `Config::connect_raw` wrapped in [`Counted`], which counts the bytes that reached the
//! socket. A statement that failed while the count did not move provably never reached the
//! server: that is the one case the bad-connection retry may run again (pgx's `SafeToRetry`).
//!
//! The connection task runs in a task of its own; its exit error is kept in [`Wire`], because
//! a server-side kill (SQLSTATE 57P01) only shows up there: the query itself just sees "connection
//! closed".

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::Host;
#[cfg(feature = "tls")]
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, NoTls};

/// Where a connection went: kept for the cancel request, which needs a socket of its own to
/// the same server.
#[derive(Debug, Clone)]
pub(crate) enum Addr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

/// What the connection task and its users share: bytes written, and the task's exit error.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    written: AtomicU64,
    exit: Mutex<Option<Arc<tokio_postgres::Error>>>,
    /// Feature `testing`: fail the next write as a reset socket would, writing nothing.
    #[cfg(feature = "testing")]
    pub(crate) fail_next_write: std::sync::atomic::AtomicBool,
}

impl Wire {
    /// Bytes that reached the socket so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Why the connection task ended, when it ended with an error.
    pub fn exit_error(&self) -> Option<Arc<tokio_postgres::Error>> {
        self.exit.lock().clone()
    }
}

/// A TCP or Unix socket.
pub(crate) enum Socket {
    Tcp(TcpStream),
    Unix(UnixStream),
}

/// A socket that counts the bytes written to it into its [`Wire`].
pub(crate) struct Counted {
    socket: Socket,
    wire: Arc<Wire>,
    /// For cancel requests: a shutdown completes only once the server has closed its side.
    until_eof: Option<Shutdown>,
}

/// Where a shutdown that waits for the peer's EOF is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shutdown {
    NotYet,
    Sent,
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.socket {
            Socket::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        #[cfg(feature = "testing")]
        if self.wire.fail_next_write.swap(false, Ordering::AcqRel) {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let polled = match &mut self.socket {
            Socket::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Socket::Unix(s) => Pin::new(s).poll_write(cx, buf),
        };
        if let Poll::Ready(Ok(n)) = polled {
            self.wire.written.fetch_add(n as u64, Ordering::AcqRel);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.socket {
            Socket::Tcp(s) => Pin::new(s).poll_flush(cx),
            Socket::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.until_eof != Some(Shutdown::Sent) {
            let shut = match &mut self.socket {
                Socket::Tcp(s) => Pin::new(s).poll_shutdown(cx),
                Socket::Unix(s) => Pin::new(s).poll_shutdown(cx),
            };
            std::task::ready!(shut)?;
            if self.until_eof.is_none() {
                return Poll::Ready(Ok(()));
            }
            self.until_eof = Some(Shutdown::Sent);
        }
        // A cancel request: PostgreSQL closes the connection once it has signalled the
        // statement's backend. Returning earlier would let the caller's next statement race
        // the signal (and be cancelled instead).
        let mut scratch = [0u8; 64];
        loop {
            let mut buf = ReadBuf::new(&mut scratch);
            std::task::ready!(self.as_mut().poll_read(cx, &mut buf))?;
            if buf.filled().is_empty() {
                return Poll::Ready(Ok(()));
            }
        }
    }
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

/// Where a session went: the address (for cancel requests, which need a socket of their
/// own) and the host it was asked for (the name a TLS certificate must carry).
#[derive(Debug, Clone)]
pub(crate) struct Peer {
    pub addr: Addr,
    #[cfg_attr(not(feature = "tls"), allow(dead_code))]
    pub host: Host,
}

/// What a cancel request for a session needs: its key, where it went, how it is encrypted.
pub(crate) struct Canceller {
    token: tokio_postgres::CancelToken,
    peer: Peer,
    tls: Tls,
}

impl Canceller {
    /// Sends a cancel request from a task of its own, given up after `within` (the server may
    /// be unreachable). `None` outside a tokio runtime.
    ///
    /// The task ends `true` when the server confirmed the request: it closes the cancel
    /// connection only after it has signalled the statement's backend. `false` (failed, given
    /// up) leaves it unknown whether and when the cancel lands: it may still hit whatever the
    /// session runs next, so such a session must not be reused.
    pub fn spawn(&self, within: Duration) -> Option<tokio::task::JoinHandle<bool>> {
        let rt = tokio::runtime::Handle::try_current().ok()?;
        let (token, peer, tls) = (self.token.clone(), self.peer.clone(), self.tls.clone());
        Some(rt.spawn(async move {
            match tokio::time::timeout(within, tls.cancel(&token, &peer)).await {
                Ok(Ok(())) => true,
                Ok(Err(e)) => {
                    tracing::debug!(target: "pool_sql", error = %e, "cancel request failed");
                    false
                }
                Err(_) => {
                    tracing::debug!(target: "pool_sql", ?within, "cancel request given up");
                    false
                }
            }
        }))
    }
}

/// A second handle on a session's socket (a `dup`), to look at it without reading: the
/// connection task owns the socket and may not have noticed yet that the server hung up.
#[derive(Debug)]
pub(crate) struct Probe(socket2::Socket);

/// What a [`Probe`] saw on an idle session's socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Liveness {
    /// Nothing to read: as alive as a socket can tell.
    Quiet,
    /// The server sent something nobody asked for (a notice, or its last words).
    Pending,
    /// The server closed the socket, or the socket failed.
    Closed,
}

impl Probe {
    /// A non-blocking peek (pgx's `CheckConn`, without consuming anything).
    pub fn look(&self) -> Liveness {
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1];
        match self.0.peek(&mut buf) {
            Ok(0) => Liveness::Closed,
            Ok(_) => Liveness::Pending,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Liveness::Quiet,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Liveness::Pending,
            Err(_) => Liveness::Closed,
        }
    }
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
            let counted = Counted {
                socket,
                wire: wire.clone(),
                until_eof: None,
            };
            let (client, task) = match tls {
                Tls::Off => start(config, counted, NoTls, &wire).await,
                #[cfg(feature = "tls")]
                Tls::Rustls(make) => {
                    let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let connect = Watched {
                        inner: make.connector(host),
                        failed: failed.clone(),
                    };
                    start(config, counted, connect, &wire)
                        .await
                        .map_err(|e| match e {
                            ConnectError::Startup(source)
                                if failed.load(Ordering::Relaxed) || refused_tls(&source) =>
                            {
                                ConnectError::Tls {
                                    target: describe(host, port),
                                    source,
                                }
                            }
                            e => e,
                        })
                }
            }?;
            Ok(Connected {
                cancel: Canceller {
                    token: client.cancel_token(),
                    peer: Peer {
                        addr,
                        host: host.clone(),
                    },
                    tls: tls.clone(),
                },
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

/// The startup handshake on a dialled socket (TLS first, when `tls` offers it and the
/// connection string's `sslmode` allows it); spawns the connection task, which keeps its
/// exit error in `wire`.
async fn start<T>(
    config: &tokio_postgres::Config,
    socket: Counted,
    tls: T,
    wire: &Arc<Wire>,
) -> Result<(Client, tokio::task::AbortHandle), ConnectError>
where
    T: tokio_postgres::tls::TlsConnect<Counted>,
    T::Stream: Send + 'static,
{
    let (client, connection) = config
        .connect_raw(socket, tls)
        .await
        .map_err(ConnectError::Startup)?;
    let task_wire = wire.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!(target: "pool_sql", error = %e, "connection task ended with an error");
            *task_wire.exit.lock() = Some(Arc::new(e));
        }
    });
    Ok((client, task.abort_handle()))
}

/// How sessions talk TLS: not at all, or through rustls (feature `tls`).
#[derive(Clone, Default)]
pub(crate) enum Tls {
    #[default]
    Off,
    #[cfg(feature = "tls")]
    Rustls(RustlsTls),
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tls::Off => f.write_str("Off"),
            #[cfg(feature = "tls")]
            Tls::Rustls(_) => f.write_str("Rustls"),
        }
    }
}

impl Tls {
    /// Whether a session can be encrypted at all (`sslmode=require` needs it).
    pub fn is_on(&self) -> bool {
        !matches!(self, Tls::Off)
    }

    /// Sends a cancel request for a session, over a socket of its own, encrypted as the
    /// session is.
    pub async fn cancel(
        &self,
        token: &tokio_postgres::CancelToken,
        peer: &Peer,
    ) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        let socket = dial_addr(&peer.addr).await?.for_cancel();
        match self {
            Tls::Off => token.cancel_query_raw(socket, NoTls).await?,
            #[cfg(feature = "tls")]
            Tls::Rustls(make) => {
                token
                    .cancel_query_raw(socket, make.connector(&peer.host))
                    .await?;
            }
        }
        Ok(())
    }
}

/// The rustls connector of a [`Db`](crate::Db).
#[cfg(feature = "tls")]
#[derive(Clone)]
pub(crate) struct RustlsTls {
    pub make: tokio_postgres_rustls::MakeRustlsConnect,
}

#[cfg(feature = "tls")]
impl RustlsTls {
    fn connector(
        &self,
        host: &Host,
    ) -> <tokio_postgres_rustls::MakeRustlsConnect as MakeTlsConnect<Counted>>::TlsConnect {
        let name = match host {
            Host::Tcp(name) => name.as_str(),
            // TLS over a Unix socket is rare; the certificate has to name localhost.
            Host::Unix(_) => "localhost",
        };
        let Ok(connect) = MakeTlsConnect::<Counted>::make_tls_connect(&mut self.make.clone(), name);
        connect
    }
}

/// The server answered "no" to TLS under `sslmode=require`: tokio-postgres fails before our
/// connector runs, and says so only in words (its error kinds are private). Our TLS tests
/// pin the wording.
#[cfg(feature = "tls")]
fn refused_tls(e: &tokio_postgres::Error) -> bool {
    e.as_db_error().is_none()
        && std::error::Error::source(e)
            .is_some_and(|s| s.to_string() == "server does not support TLS")
}

/// A TLS connector that remembers whether the handshake failed, so that a failed
/// handshake is told apart from a refused session.
#[cfg(feature = "tls")]
struct Watched<T> {
    inner: T,
    failed: Arc<std::sync::atomic::AtomicBool>,
}

#[cfg(feature = "tls")]
impl<S, T> tokio_postgres::tls::TlsConnect<S> for Watched<T>
where
    T: tokio_postgres::tls::TlsConnect<S>,
    T::Future: Send + 'static,
{
    type Stream = T::Stream;
    type Error = T::Error;
    type Future = Pin<Box<dyn Future<Output = Result<T::Stream, T::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let failed = self.failed;
        let fut = self.inner.connect(stream);
        Box::pin(async move {
            let r = fut.await;
            if r.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            r
        })
    }
}

/// Opens a socket to the same server for a cancel request.
pub(crate) async fn dial_addr(addr: &Addr) -> io::Result<Socket> {
    Ok(match addr {
        Addr::Tcp(a) => Socket::Tcp(TcpStream::connect(a).await?),
        Addr::Unix(p) => Socket::Unix(UnixStream::connect(p).await?),
    })
}

impl Socket {
    /// The socket of a cancel request: not counted, and its shutdown waits until the server
    /// has closed the connection, which it does once it has acted on the request.
    pub fn for_cancel(self) -> Counted {
        Counted {
            socket: self,
            wire: Arc::new(Wire::default()),
            until_eof: Some(Shutdown::NotYet),
        }
    }
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
