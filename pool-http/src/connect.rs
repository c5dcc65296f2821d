//! Dialling: resolve with the system resolver, connect under `connect_timeout` (split over
//! the addresses as Go does), set TCP options, count the bytes each way, and start hyper's
//! connection task (HTTP/1.1 with upgrades enabled), which reports its own end to the
//! connection's [`Link`].

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::body::Draining;
use crate::config::Settings;
use crate::h2::SettingsWatch;
use crate::manager::{H1, Link, Sender};
use crate::{ConnectError, Origin};

/// Bytes read and written on one connection, shared by the socket and the pooled connection:
/// a request whose error left `written` where it was provably never reached the server.
#[derive(Debug, Default)]
pub(crate) struct Wire {
    read: AtomicU64,
    written: AtomicU64,
    /// Feature `testing`: writes left to fail (shared by a client's connections).
    #[cfg(feature = "testing")]
    fail_writes: Option<Arc<std::sync::atomic::AtomicUsize>>,
}

impl Wire {
    /// Feature `testing`: whether this write fails (as on a socket the peer reset) before a
    /// byte of it leaves.
    #[cfg(feature = "testing")]
    fn take_failure(&self) -> bool {
        self.fail_writes.as_ref().is_some_and(|f| {
            f.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_ok()
        })
    }

    #[cfg(not(feature = "testing"))]
    fn take_failure(&self) -> bool {
        false
    }

    pub fn read(&self) -> u64 {
        self.read.load(Ordering::Acquire)
    }

    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }
}

pin_project_lite::pin_project! {
    /// A socket (or a TLS stream: then the plain text is counted) that counts into a
    /// [`Wire`].
    pub(crate) struct Counted<S> {
        #[pin]
        io: S,
        wire: Arc<Wire>,
        // HTTP/2: the server's stream limit, read off what is read.
        settings: Option<SettingsWatch>,
    }
}

impl<S: AsyncRead> AsyncRead for Counted<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let polled = this.io.poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.wire.read.fetch_add(n as u64, Ordering::Release);
            if let Some(settings) = this.settings {
                settings.read(&buf.filled()[before..]);
            }
        }
        polled
    }
}

impl<S: AsyncWrite> AsyncWrite for Counted<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        if this.wire.take_failure() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let polled = this.io.poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = polled {
            this.wire.written.fetch_add(n as u64, Ordering::Release);
        }
        polled
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.project();
        if this.wire.take_failure() {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let polled = this.io.poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = polled {
            this.wire.written.fetch_add(n as u64, Ordering::Release);
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().io.poll_shutdown(cx)
    }
}

/// A live connection: hyper's sending half (its connection task runs on its own), the byte
/// counts and the link its parts share.
pub(crate) struct Dialed {
    pub sender: Sender,
    pub wire: Arc<Wire>,
    pub link: Arc<Link>,
    pub task: tokio::task::AbortHandle,
}

/// Resolves `origin` (or its proxy), connects, opens the `CONNECT` tunnel of an `https`
/// origin through a proxy, and starts HTTP/1.1 (or HTTP/2: ALPN's choice, or prior knowledge
/// to an `http` origin that is not behind a forward proxy) on the socket.
///
/// `connect_timeout` bounds resolving, connecting and the `CONNECT` exchange together; the
/// TLS handshake has its own `tls_handshake_timeout`.
pub(crate) async fn dial(
    origin: &Origin,
    settings: &Settings,
    client: std::sync::Weak<crate::client::Inner>,
) -> Result<Dialed, ConnectError> {
    // The TLS configuration first: one that cannot be made (no roots) opens no socket.
    #[cfg(feature = "tls")]
    let tls = if origin.is_https() {
        settings.tls_config().await.map_err(|e| ConnectError::Tls {
            host: origin.authority(),
            source: io::Error::other(e.to_string()),
        })?
    } else {
        None
    };
    let timeout = settings.connect_timeout;
    let deadline = Instant::now() + timeout;
    let proxy = origin.proxy();
    // A forward proxy's connections serve every http target: none is named.
    let target = || {
        if origin.is_proxy_forward() {
            "*".to_owned()
        } else {
            origin.host_port()
        }
    };
    if let Some(refused) = proxy.and_then(|p| p.unsupported(target)) {
        return Err(refused);
    }
    // What is dialled: the proxy when there is one.
    let (host, port) = proxy.map_or((origin.host(), origin.port()), |p| (p.host(), p.port()));
    let timed_out = || ConnectError::Timeout {
        host: proxy.map_or_else(|| origin.authority(), |p| p.host_port()),
        timeout,
    };
    let addrs: Vec<SocketAddr> =
        match tokio::time::timeout_at(deadline, tokio::net::lookup_host((host, port))).await {
            Err(_) => return Err(timed_out()),
            Ok(Err(source)) => {
                return Err(ConnectError::Dns {
                    host: host.to_owned(),
                    source,
                });
            }
            Ok(Ok(addrs)) => addrs.collect(),
        };
    let tcp = connect_any(&addrs, deadline, host, timed_out).await?;
    set_options(&tcp, settings.tcp_keepalive);
    let wire = Arc::new(Wire {
        #[cfg(feature = "testing")]
        fail_writes: Some(settings.fail_writes.clone()),
        ..Wire::default()
    });
    let link = Link::new(origin, client);
    if origin.is_https() {
        #[cfg(feature = "tls")]
        if let Some(tls) = &tls {
            let mut tcp = tcp;
            if let Some(proxy) = proxy {
                crate::proxy::tunnel(&mut tcp, proxy, origin, deadline, timeout).await?;
            }
            let (stream, h2) =
                crate::tls::handshake(tcp, origin, tls, settings.tls_handshake_timeout).await?;
            let (sender, task) = start(stream, h2, &wire, &link, origin).await?;
            return Ok(Dialed {
                sender,
                wire,
                link,
                task,
            });
        }
        return Err(ConnectError::NoTls {
            host: origin.authority(),
        });
    }
    // A forward proxy speaks HTTP/1.1 (absolute-form requests).
    let h2 = settings.http2_prior_knowledge && !origin.is_proxy_forward();
    let (sender, task) = start(tcp, h2, &wire, &link, origin).await?;
    Ok(Dialed {
        sender,
        wire,
        link,
        task,
    })
}

/// Starts HTTP/1.1 (upgrades enabled: a `101` hands the socket to the caller) or HTTP/2 on a
/// connected stream, hyper's connection task on its own.
async fn start<S>(
    io: S,
    h2: bool,
    wire: &Arc<Wire>,
    link: &Arc<Link>,
    origin: &Origin,
) -> Result<(Sender, tokio::task::AbortHandle), ConnectError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(Counted {
        io,
        wire: wire.clone(),
        settings: h2.then(|| SettingsWatch::new(link.clone())),
    });
    let handshake = |source| ConnectError::Handshake {
        host: origin.authority(),
        source,
    };
    let (sender, task) = if h2 {
        let (sender, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake(io)
                .await
                .map_err(handshake)?;
        // The shared connections learn of the connection's end (their waiters may need a
        // dial); of the server's stream limit, from the read side (`SettingsWatch`).
        let ends = link.clone();
        let watched = async move {
            let ended = conn.await;
            ends.h2_changed();
            ended
        };
        (
            Sender::H2(sender),
            tokio::spawn(drive(watched, link.clone())),
        )
    } else {
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(io)
            .await
            .map_err(handshake)?;
        let conn = conn.with_upgrades();
        (
            Sender::H1(H1::new(sender, link)),
            tokio::spawn(drive(conn, link.clone())),
        )
    };
    Ok((sender, task.abort_handle()))
}

/// Drives hyper's connection until it ends, then tells the link (an aborted task, a
/// connection we closed, never gets there). Between requests it also reads the rest of a
/// body dropped early, handed over through the link (see [`Draining`]): in this task, hyper
/// reads a body and the drain sees its end in the same pass, without a task of its own. The
/// caller of a response is woken when the pass that read its head is over (see
/// [`Relay`](crate::manager::Relay)).
async fn drive<F: std::future::Future<Output = hyper::Result<()>>>(conn: F, link: Arc<Link>) {
    /// However the task ends (hyper's connection ended, or the task was aborted), a drain
    /// handed over fails and no other is accepted.
    struct Ends<'a>(&'a Link);
    impl Drop for Ends<'_> {
        fn drop(&mut self) {
            if let Some(body) = self.0.end_drains() {
                body.settle(false);
            }
        }
    }
    let ends = Ends(&link);
    let mut conn = std::pin::pin!(conn);
    let mut draining: Option<Box<Draining>> = None;
    let mut registered = false;
    let result = std::future::poll_fn(|cx| {
        if !registered {
            link.register_task(cx.waker());
            registered = true;
        }
        // The caller of a response read in this pass is woken at its end (see `Relay`).
        let _pass = link.pass();
        loop {
            let done = conn.as_mut().poll(cx);
            if draining.is_none() {
                draining = link.take_drain();
            }
            let Some(body) = draining.as_mut() else {
                return done;
            };
            let Poll::Ready(drained) = body.poll_rest(cx) else {
                return done;
            };
            if let Some(body) = draining.take() {
                body.settle(drained);
            }
            if done.is_ready() {
                return done;
            }
        }
    })
    .await;
    // The connection ended mid-drain: the body cannot end now.
    if let Some(body) = draining {
        body.settle(false);
    }
    drop(ends);
    if let Err(e) = result {
        tracing::debug!(error = %e, "http connection ended with an error");
    }
    link.ended();
}

/// Tries each address in turn; each gets an equal share of the time left (Go's
/// `partialDeadline`), so one black-holed address does not use up the whole budget.
async fn connect_any(
    addrs: &[SocketAddr],
    deadline: Instant,
    host: &str,
    timed_out: impl Fn() -> ConnectError,
) -> Result<TcpStream, ConnectError> {
    let mut last = None;
    for (i, addr) in addrs.iter().enumerate() {
        let now = Instant::now();
        if now >= deadline {
            return Err(timed_out());
        }
        let share = (deadline - now) / (addrs.len() - i) as u32;
        let share = share.max(Duration::from_millis(2).min(deadline - now));
        match tokio::time::timeout(share, TcpStream::connect(addr)).await {
            Ok(Ok(tcp)) => return Ok(tcp),
            Ok(Err(source)) => {
                last = Some(if source.kind() == io::ErrorKind::ConnectionRefused {
                    ConnectError::Refused {
                        addr: *addr,
                        source,
                    }
                } else {
                    ConnectError::Io {
                        addr: *addr,
                        source,
                    }
                });
            }
            Err(_) => last = Some(timed_out()),
        }
    }
    Err(last.unwrap_or_else(|| ConnectError::NoAddress {
        host: host.to_owned(),
    }))
}

fn set_options(tcp: &TcpStream, keepalive: Option<Duration>) {
    // Best effort: a socket that refuses an option still works.
    let _ = tcp.set_nodelay(true);
    if let Some(time) = keepalive {
        let ka = socket2::TcpKeepalive::new()
            .with_time(time)
            .with_interval(time);
        let _ = socket2::SockRef::from(tcp).set_tcp_keepalive(&ka);
    }
}
