//! [`FaultProxy`]: a TCP proxy that injects network faults between a client and a real
//! server, changeable while it runs: added latency, a bandwidth limit, resets (zero linger),
//! a black hole (accepts, never forwards), closing after N bytes, refusing new connections.
//!
//! It is a plain tokio program, not a mock: the client and the server see real sockets. Faults
//! apply globally ([`FaultProxy::set`]) or to one connection ([`FaultProxy::set_conn`]); each
//! pump reads the faults in force before every chunk it forwards, so a change takes effect on
//! the next chunk.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// The faults a connection (or every connection) suffers. The default forwards untouched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Faults {
    /// Delay added before each forwarded chunk, in each direction.
    pub latency: Duration,
    /// Most bytes per second forwarded in each direction; `None`: no limit.
    pub bandwidth: Option<u64>,
    /// Accept and hold connections, forward nothing (in either direction) while set.
    pub black_hole: bool,
    /// Close a connection (both sides) once it has forwarded this many bytes, counting both
    /// directions; the chunk that crosses the limit is cut at it.
    pub close_after: Option<u64>,
    /// Refuse new connections: the proxy stops listening (a connect gets `ECONNREFUSED`, as
    /// from a host whose server is down) and listens again on the same port when this is
    /// cleared. Open connections are left alone. Global only: ignored per connection.
    pub refuse: bool,
}

impl Faults {
    /// No fault: forward everything as it comes.
    pub fn none() -> Faults {
        Faults::default()
    }

    /// Only `latency`.
    pub fn latency(latency: Duration) -> Faults {
        Faults {
            latency,
            ..Faults::default()
        }
    }

    /// Only a bandwidth limit of `bytes_per_sec` in each direction.
    pub fn bandwidth(bytes_per_sec: u64) -> Faults {
        Faults {
            bandwidth: Some(bytes_per_sec.max(1)),
            ..Faults::default()
        }
    }

    /// Only the black hole.
    pub fn black_hole() -> Faults {
        Faults {
            black_hole: true,
            ..Faults::default()
        }
    }

    /// Only closing after `bytes`.
    pub fn close_after(bytes: u64) -> Faults {
        Faults {
            close_after: Some(bytes),
            ..Faults::default()
        }
    }

    /// Only refusing new connections.
    pub fn refuse() -> Faults {
        Faults {
            refuse: true,
            ..Faults::default()
        }
    }
}

/// A fault-injecting TCP proxy in front of `upstream`; stops (and resets what it holds) when
/// dropped.
///
/// # Examples
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> std::io::Result<()> {
/// use pool_core::testing::proxy::{FaultProxy, Faults};
/// use std::time::Duration;
///
/// let server = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
/// let proxy = FaultProxy::start(server.local_addr()?).await?;
/// proxy.set(Faults::latency(Duration::from_millis(5)));
/// let _client = tokio::net::TcpStream::connect(proxy.addr()).await?; // reaches `server`, slowly
/// proxy.set(Faults::refuse());
/// # Ok(())
/// # }
/// ```
pub struct FaultProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

struct Shared {
    upstream: SocketAddr,
    /// Bumped on every change of faults or resets, so pumps waiting in a black hole wake.
    changed: watch::Sender<u64>,
    state: Mutex<State>,
    accepted: AtomicUsize,
    live: AtomicUsize,
}

#[derive(Default)]
struct State {
    global: Faults,
    per_conn: HashMap<usize, Faults>,
    /// Connections to reset, by id (ids are never reused).
    reset: HashSet<usize>,
    /// Connections open now, by id.
    open: HashSet<usize>,
}

impl Shared {
    fn faults(&self, id: usize) -> Faults {
        let st = self.state.lock();
        st.per_conn.get(&id).unwrap_or(&st.global).clone()
    }

    fn bump(&self) {
        self.changed.send_modify(|v| *v += 1);
    }

    fn must_reset(&self, id: usize) -> bool {
        self.state.lock().reset.contains(&id)
    }

    fn mark_reset(&self, ids: impl IntoIterator<Item = usize>) {
        self.state.lock().reset.extend(ids);
        self.bump();
    }
}

impl FaultProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    ///
    /// # Errors
    /// The listener could not be bound.
    pub async fn start(upstream: SocketAddr) -> io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (changed, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            upstream,
            changed,
            state: Mutex::new(State::default()),
            accepted: AtomicUsize::new(0),
            live: AtomicUsize::new(0),
        });
        let task = tokio::spawn(accept_loop(listener, addr, shared.clone()));
        Ok(FaultProxy { addr, shared, task })
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Sets the faults of every connection without its own, new and open ones.
    pub fn set(&self, faults: Faults) {
        self.shared.state.lock().global = faults;
        self.shared.bump();
    }

    /// Sets the faults of connection `id` (the order of acceptance, from 0), overriding the
    /// global ones; `None` goes back to them.
    pub fn set_conn(&self, id: usize, faults: Option<Faults>) {
        {
            let mut st = self.shared.state.lock();
            match faults {
                Some(f) => st.per_conn.insert(id, f),
                None => st.per_conn.remove(&id),
            };
        }
        self.shared.bump();
    }

    /// Resets connection `id` (zero linger: both peers see a reset, not a clean close).
    pub fn reset_conn(&self, id: usize) {
        self.shared.mark_reset([id]);
    }

    /// Resets every open connection.
    pub fn reset_all(&self) {
        let n = self.shared.accepted.load(Ordering::Acquire);
        self.shared.mark_reset(0..n);
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.shared.accepted.load(Ordering::Acquire)
    }

    /// Connections open now (accepted and not yet closed or reset).
    pub fn live(&self) -> usize {
        self.shared.live.load(Ordering::Acquire)
    }
}

/// What [`FaultProxy::flap`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Flapped {
    /// How much `count` grew during each outage, in order.
    pub during_outages: Vec<u64>,
}

impl FaultProxy {
    /// Makes the backend flap `times` times: `down` with new connections refused and open ones
    /// reset, then `up` with no fault, and records how much `count` (e.g. connection
    /// attempts) grew during each outage.
    pub async fn flap(
        &self,
        times: u64,
        down: Duration,
        up: Duration,
        count: impl Fn() -> u64,
    ) -> Flapped {
        let mut seen = Flapped::default();
        for _ in 0..times {
            let before = count();
            self.set(Faults::refuse());
            self.reset_all();
            tokio::time::sleep(down).await;
            seen.during_outages.push(count() - before);
            self.set(Faults::none());
            tokio::time::sleep(up).await;
        }
        seen
    }

    /// Runs `work` while a chaos monkey resets a random open connection every `every_ms`
    /// (random in the range, seeded); returns `work`'s output and the resets made.
    pub async fn with_monkey<T>(
        &self,
        seed: u64,
        every_ms: std::ops::Range<u64>,
        work: impl std::future::Future<Output = T>,
    ) -> (T, u64) {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut resets = 0;
        let mut work = std::pin::pin!(work);
        loop {
            let pause = Duration::from_millis(rng.u64(every_ms.clone()));
            tokio::select! {
                out = &mut work => return (out, resets),
                () = tokio::time::sleep(pause) => {}
            }
            let victim = {
                let st = self.shared.state.lock();
                let n = st.open.len();
                (n > 0).then(|| *st.open.iter().nth(rng.usize(..n)).expect("in range"))
            };
            if let Some(id) = victim {
                self.reset_conn(id);
                resets += 1;
            }
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
        self.reset_all();
    }
}

impl std::fmt::Debug for FaultProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.shared.upstream)
            .field("accepted", &self.accepted())
            .field("live", &self.live())
            .finish()
    }
}

async fn accept_loop(listener: TcpListener, addr: SocketAddr, shared: Arc<Shared>) {
    let mut changes = shared.changed.subscribe();
    let mut listener = Some(listener);
    loop {
        let refuse = shared.state.lock().global.refuse;
        match (&listener, refuse) {
            (Some(_), true) => listener = None,
            (None, false) => match TcpListener::bind(addr).await {
                Ok(l) => listener = Some(l),
                Err(e) => {
                    tracing::warn!(%addr, error = %e, "fault proxy could not listen again");
                    return;
                }
            },
            _ => {}
        }
        let Some(l) = &listener else {
            if changes.changed().await.is_err() {
                return;
            }
            continue;
        };
        tokio::select! {
            accepted = l.accept() => {
                let Ok((client, _)) = accepted else { return };
                let id = shared.accepted.fetch_add(1, Ordering::AcqRel);
                shared.live.fetch_add(1, Ordering::AcqRel);
                shared.state.lock().open.insert(id);
                tokio::spawn(serve(client, id, shared.clone()));
            }
            _ = changes.changed() => {}
        }
    }
}

/// Closes with zero linger: the peer gets a reset.
fn reset(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).set_linger(Some(Duration::ZERO));
}

async fn serve(client: TcpStream, id: usize, shared: Arc<Shared>) {
    let _live = Live(&shared, id);
    let Ok(server) = TcpStream::connect(shared.upstream).await else {
        reset(&client);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let forwarded = AtomicUsize::new(0);
    let (cr, cw) = client.into_split();
    let (sr, sw) = server.into_split();
    let up = pump(cr, sw, id, &shared, &forwarded);
    let down = pump(sr, cw, id, &shared, &forwarded);
    tokio::join!(up, down);
}

/// Counts a connection open until dropped.
struct Live<'a>(&'a Shared, usize);

impl Drop for Live<'_> {
    fn drop(&mut self) {
        self.0.state.lock().open.remove(&self.1);
        self.0.live.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Forwards `from` to `to` under the faults in force until EOF (passed on as a clean
/// shutdown), a reset or `close_after` (both sides reset, and the other direction told).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    id: usize,
    shared: &Shared,
    forwarded: &AtomicUsize,
) {
    let mut changes = shared.changed.subscribe();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if shared.must_reset(id) {
            return kill(from, to);
        }
        let faults = shared.faults(id);
        if faults.black_hole {
            if changes.changed().await.is_err() {
                return kill(from, to);
            }
            continue;
        }
        let want = faults
            .bandwidth
            .map_or(buf.len(), |bw| (bw as usize / 20).clamp(1, buf.len()));
        let n = tokio::select! {
            read = from.read(&mut buf[..want]) => match read {
                Ok(0) | Err(_) => {
                    if shared.must_reset(id) {
                        return kill(from, to);
                    }
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
            _ = changes.changed() => continue,
        };
        if !faults.latency.is_zero() {
            tokio::time::sleep(faults.latency).await;
        }
        if let Some(bw) = faults.bandwidth {
            tokio::time::sleep(Duration::from_secs_f64(n as f64 / bw as f64)).await;
        }
        let (n, last) = match faults.close_after {
            Some(limit) => {
                let before = forwarded.fetch_add(n, Ordering::AcqRel) as u64;
                let room = limit.saturating_sub(before) as usize;
                (n.min(room), before + n as u64 >= limit)
            }
            None => (n, false),
        };
        if to.write_all(&buf[..n]).await.is_err() {
            shared.mark_reset([id]);
            return kill(from, to);
        }
        if last {
            let _ = to.flush().await;
            shared.mark_reset([id]);
            return kill(from, to);
        }
    }
}

/// Ends this direction with zero linger on both sockets; the other direction, told through
/// the reset list, drops the other halves, and then both peers see a reset.
fn kill(from: OwnedReadHalf, to: OwnedWriteHalf) {
    let _ = socket2::SockRef::from(from.as_ref()).set_linger(Some(Duration::ZERO));
    let _ = socket2::SockRef::from(to.as_ref()).set_linger(Some(Duration::ZERO));
    drop(from);
    // Not a FIN: the socket closes (with a reset) when its read half goes too.
    to.forget();
}
