//! Starting a session on a dialled socket: TLS when configured, the startup handshake, the
//! connection task; and cancel requests, which need a socket of their own to the same server.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::net::{TcpStream, UnixStream};
use tokio_postgres::config::Host;
#[cfg(feature = "tls")]
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Client, NoTls};

use crate::connect::{Addr, ConnectError};
use crate::error::Report;
#[cfg(feature = "tls")]
use crate::wire::Observed;
use crate::wire::{Counted, Frames, Socket, Wire};

/// Where the connection task of a [`Listener`](crate::Listener)'s session sends the
/// notifications it reads; dropped (so the receiver sees the end) when the task ends.
/// Where a listener's connection task puts the notifications it reads: a bounded queue,
/// and the count of those dropped because the queue was full (the listener reports them).
#[derive(Clone)]
pub(crate) struct NotifySink {
    pub queue: tokio::sync::mpsc::Sender<tokio_postgres::Notification>,
    pub dropped: Arc<std::sync::atomic::AtomicU64>,
}

/// Closes the session's [`Probe`](crate::wire::Probe) when dropped: the connection task
/// holds it, so that when the task ends (an error, a protocol bound, an abort) its socket
/// closes at once and the server sees it, though the pool keeps the dead session (and its
/// probe) until the next checkout looks at it.
pub(crate) struct Closer(pub crate::wire::Probe);

impl Drop for Closer {
    fn drop(&mut self) {
        self.0.close();
    }
}

/// The startup handshake on a dialled socket (TLS first, when `tls` offers it and the
/// connection string's `sslmode` allows it); spawns the connection task, which keeps its
/// exit error in `wire` and, given a `sink`, forwards the session's notifications there.
/// `target` names the server in errors; the task holds `closer` until it ends.
pub(crate) async fn start(
    config: &tokio_postgres::Config,
    socket: Socket,
    wire: &Arc<Wire>,
    (host, target): (&Host, &str),
    tls: &Tls,
    (sink, closer): (Option<NotifySink>, Closer),
) -> Result<(Client, tokio::task::AbortHandle), ConnectError> {
    #[cfg(not(feature = "tls"))]
    let _ = host;
    match tls {
        Tls::Off => {
            let counted = Counted::new(socket, wire.clone(), Frames::plain());
            handshake(config, counted, NoTls, wire, (target, sink, closer)).await
        }
        #[cfg(feature = "tls")]
        Tls::Rustls(make) => {
            use tokio_postgres::config::{SslMode, SslNegotiation};
            // Who sees the plain text: this socket, or the TLS stream above it.
            let frames = match (config.get_ssl_mode(), config.get_ssl_negotiation()) {
                (SslMode::Disable, _) => Frames::plain(),
                (_, SslNegotiation::Direct) => Frames::off(),
                _ => Frames::before_ssl(),
            };
            let counted = Counted::new(socket, wire.clone(), frames);
            let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let connect = Watched {
                inner: make.connector(host),
                failed: failed.clone(),
                wire: wire.clone(),
            };
            handshake(config, counted, connect, wire, (target, sink, closer))
                .await
                .map_err(|e| match e {
                    ConnectError::Startup { target, source }
                        if failed.load(Ordering::Relaxed) || refused_tls(&source) =>
                    {
                        ConnectError::Tls { target, source }
                    }
                    e => e,
                })
        }
    }
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
    /// What cancel requests for `client`'s statements need.
    pub fn new(client: &Client, peer: Peer, tls: &Tls) -> Self {
        Canceller {
            token: client.cancel_token(),
            peer,
            tls: tls.clone(),
        }
    }

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
                    tracing::debug!(target: "pool_sql", error = %Report(&*e), "cancel request failed");
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

/// tokio-postgres's startup on `socket` (to the server `target` names); spawns the
/// connection task (forwarding notifications to `sink`, when given; holding `closer`).
async fn handshake<T>(
    config: &tokio_postgres::Config,
    socket: Counted,
    tls: T,
    wire: &Arc<Wire>,
    (target, sink, closer): (&str, Option<NotifySink>, Closer),
) -> Result<(Client, tokio::task::AbortHandle), ConnectError>
where
    T: tokio_postgres::tls::TlsConnect<Counted>,
    T::Stream: Send + Unpin + 'static,
{
    let (client, connection) =
        config
            .connect_raw(socket, tls)
            .await
            .map_err(|source| ConnectError::Startup {
                target: target.to_owned(),
                source,
            })?;
    let task_wire = wire.clone();
    let task = tokio::spawn(async move {
        let _closer = closer;
        let mut connection = connection;
        let ended = match &sink {
            None => std::future::poll_fn(|cx| Pin::new(&mut connection).poll(cx)).await,
            Some(sink) => forward(&mut connection, sink).await,
        };
        // The reason first: dropping the connection (and the sink) ends the statements
        // waiting on it (and the listener), which then look for it.
        if let Err(e) = ended {
            tracing::debug!(target: "pool_sql", error = %Report(&e), "connection task ended with an error");
            task_wire.set_exit(e);
        }
        drop(connection);
        drop(sink);
    });
    Ok((client, task.abort_handle()))
}

/// Drives `connection` as its own `Future` does, but hands each notification to `sink`
/// (the `Future` drops them). Ends when the session does; the caller drops `connection`
/// and `sink` once it kept the exit error.
async fn forward<S, T>(
    connection: &mut tokio_postgres::Connection<S, T>,
    sink: &NotifySink,
) -> Result<(), tokio_postgres::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    use std::task::Poll;
    use tokio_postgres::AsyncMessage;
    std::future::poll_fn(|cx| {
        loop {
            match std::task::ready!(connection.poll_message(cx)) {
                Some(Ok(AsyncMessage::Notification(n))) => {
                    use tokio::sync::mpsc::error::TrySendError;
                    match sink.queue.try_send(n) {
                        Ok(()) => {}
                        // Never waits: the task also reads the replies the listener's own
                        // `LISTEN`s wait for. A full queue costs the newest notification.
                        Err(TrySendError::Full(_)) => {
                            sink.dropped.fetch_add(1, Ordering::Relaxed);
                        }
                        // The listener is gone: its session ends with the client it dropped.
                        Err(TrySendError::Closed(_)) => {}
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => return Poll::Ready(Err(e)),
                None => return Poll::Ready(Ok(())),
            }
        }
    })
    .await
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
    /// Sessions through rustls under `config`.
    #[cfg(feature = "tls")]
    pub fn rustls(config: rustls::ClientConfig) -> Self {
        Tls::Rustls(RustlsTls {
            make: tokio_postgres_rustls::MakeRustlsConnect::new(config),
        })
    }

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
    /// The session's wire: the TLS stream's plain text is framed into it.
    wire: Arc<Wire>,
}

#[cfg(feature = "tls")]
impl<S, T> tokio_postgres::tls::TlsConnect<S> for Watched<T>
where
    T: tokio_postgres::tls::TlsConnect<S>,
    T::Future: Send + 'static,
{
    type Stream = Observed<T::Stream>;
    type Error = T::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Stream, T::Error>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let (failed, wire) = (self.failed, self.wire);
        let fut = self.inner.connect(stream);
        Box::pin(async move {
            let r = fut.await;
            if r.is_err() {
                failed.store(true, Ordering::Relaxed);
            }
            r.map(|s| Observed::new(s, wire))
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
