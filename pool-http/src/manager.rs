//! The pooled connection and the [`KeyedManager`] that dials it.
//!
//! # The link
//!
//! The parts of one connection (hyper's connection task, the pooled [`HttpConn`], a streamed
//! request body hyper is writing) share a [`Link`]:
//! - `parked`: set from the dial (a connection made for a caller who left goes straight to
//!   idle) and by `check` when the pool takes the connection back as ready; cleared at each
//!   checkout. When hyper's connection task ends on its own (the server closed the
//!   connection, or sent an unasked 408) while it is set, the connection sits dead in the idle
//!   list: its client's pool closes it at once (`KeyedPool::evict_idle_where`, under the
//!   pool's lock, no replacement dialled), so `idle` never counts a connection that is gone.
//! - `writing`: a streamed request body is still with hyper. A response can end before its
//!   request did (a server answering early, 413 or 200, without reading the body); such a
//!   connection is reusable only once hyper is ready again (Go's `wroteRequest`).
//! - `drain`: the rest of a body dropped early, handed to hyper's connection task, which
//!   reads it within the drain budget and then pools or closes the connection: no task of its
//!   own, and the connection is back as soon as hyper has read the body's end. Once the
//!   connection task has ended, nothing more is handed over (the drop closes the connection).
//! - `relay`: the caller awaiting a response head is woken when the connection task's pass
//!   over hyper is over, not in its middle (see [`Relay`]).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, Weak};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;

use tokio::sync::Notify;

use pool_core::{Health, KeyedManager, async_trait};

use crate::body::Draining;
use crate::client::Inner;
use crate::config::Settings;
use crate::connect::{Wire, dial};
use crate::request::RequestBody;
use crate::{ConnectError, Origin};

/// hyper's sending half of a connection.
pub(crate) enum Sender {
    H1(H1),
    H2(hyper::client::conn::http2::SendRequest<RequestBody>),
}

/// hyper's HTTP/1.1 sending half, whose responses are awaited through the connection's
/// [`Relay`].
pub(crate) struct H1 {
    send: hyper::client::conn::http1::SendRequest<RequestBody>,
    relay: Arc<Relay>,
}

impl H1 {
    pub fn new(send: hyper::client::conn::http1::SendRequest<RequestBody>, link: &Link) -> H1 {
        H1 {
            send,
            relay: link.relay.clone(),
        }
    }

    /// hyper's `poll_ready`: whether the connection can take a request.
    pub fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<hyper::Result<()>> {
        self.send.poll_ready(cx)
    }

    /// Waits until the connection can take a request.
    pub async fn ready(&mut self) -> hyper::Result<()> {
        self.send.ready().await
    }

    /// hyper's `try_send_request`, its response awaited through the relay.
    pub fn try_send_request(
        &mut self,
        req: Request<RequestBody>,
    ) -> Relayed<
        impl Future<Output = Result<Response<Incoming>, TrySendError<Request<RequestBody>>>>
        + Send
        + use<>,
    > {
        Relayed {
            inner: self.send.try_send_request(req),
            relay: self.relay.clone(),
        }
    }
}

impl Sender {
    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.send.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    /// HTTP/1.1: hyper can take another request now, so it has read the last response whole
    /// (what the caller did not take of its body sits in the body's channel).
    pub fn is_ready(&self) -> bool {
        match self {
            Sender::H1(s) => s.send.is_ready(),
            Sender::H2(_) => false,
        }
    }

    pub fn h1(&mut self) -> Option<&mut H1> {
        match self {
            Sender::H1(s) => Some(s),
            Sender::H2(_) => None,
        }
    }

    pub fn h2(&self) -> Option<&hyper::client::conn::http2::SendRequest<RequestBody>> {
        match self {
            Sender::H2(s) => Some(s),
            Sender::H1(_) => None,
        }
    }
}

/// What the parts of one connection share (see the module docs).
pub(crate) struct Link {
    origin: Origin,
    /// In the pool as ready (idle, or on its way there): set by the dial and by `check`,
    /// cleared at checkout.
    parked: AtomicBool,
    /// A streamed request body is still with hyper (set while a [`Writing`] lives).
    writing: AtomicBool,
    /// The client to tell when the connection dies parked.
    client: Weak<Inner>,
    /// A dropped body's rest for the connection task to drain, and whether that task has
    /// ended (then nothing is handed over).
    drain: parking_lot::Mutex<DrainSlot>,
    /// A body is in `drain`: the connection task, which looks on every poll, takes the lock
    /// only then.
    draining: AtomicBool,
    /// The connection task's waker, so a handed-over drain starts at once.
    task: OnceLock<Waker>,
    /// Holds the wake of the caller awaiting a response head until the connection task's
    /// pass is over.
    relay: Arc<Relay>,
    /// HTTP/2: the server's stream limit as its last SETTINGS set it, read off the bytes
    /// before hyper applies them ([`UNSETTLED`] until its first SETTINGS).
    max_streams: AtomicUsize,
}

/// The stream limit of an HTTP/2 connection before the server's first SETTINGS, which no
/// SETTINGS can give (its value is 32 bits; none at all reads as `usize::MAX`).
const UNSETTLED: usize = usize::MAX - 1;

/// Holds the wake of the caller awaiting a response head until the connection task's pass
/// over hyper's connection is over.
///
/// hyper hands the head over, and wakes its caller, as soon as it has parsed it; in the same
/// pass it then moves the body it read with the head into the body's channel and readies the
/// connection for the next request. A caller on another thread (a `block_on` main thread,
/// another worker) woken at the head often preempts that pass on its CPU: it then finds the
/// body not there yet and the connection not ready, and waits for both (a dropped body's rest
/// is handed to the connection task; the next request parks until the connection is back).
/// Woken when the pass is over, it finds a small body whole and the connection ready: a body
/// dropped unread is let go in the drop, and the next request goes out at once. A caller on
/// the connection task's own thread sees no difference: it runs after the pass anyway.
///
/// `state` says whether the connection task is in its pass (`POLLING`) and whether a wake
/// came meanwhile (`DEFERRED`); the pass's end ([`Pass`]'s drop) delivers that wake.
pub(crate) struct Relay {
    state: AtomicU8,
    /// The task awaiting the response head (none between requests).
    caller: parking_lot::Mutex<Option<Waker>>,
}

const POLLING: u8 = 1;
const DEFERRED: u8 = 2;

impl Relay {
    /// `waker` awaits the response from now on.
    fn register(&self, waker: &Waker) {
        let mut caller = self.caller.lock();
        if caller.as_ref().is_some_and(|w| w.will_wake(waker)) {
            return;
        }
        let old = caller.replace(waker.clone());
        drop(caller);
        drop(old);
    }

    /// The response came: nobody awaits it now.
    fn clear(&self) {
        let old = self.caller.lock().take();
        drop(old);
    }

    fn wake_caller(&self) {
        let caller = self.caller.lock().clone();
        if let Some(caller) = caller {
            caller.wake();
        }
    }
}

impl Wake for Relay {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut state = self.state.load(Ordering::Acquire);
        while state & POLLING != 0 {
            match self.state.compare_exchange_weak(
                state,
                state | DEFERRED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return,
                Err(now) => state = now,
            }
        }
        self.wake_caller();
    }
}

/// The connection task's pass over hyper's connection: a wake for the caller waits until it is
/// dropped (a panic in the pass drops it too).
pub(crate) struct Pass<'a>(&'a Relay);

impl Drop for Pass<'_> {
    fn drop(&mut self) {
        if self.0.state.swap(0, Ordering::AcqRel) & DEFERRED != 0 {
            self.0.wake_caller();
        }
    }
}

pin_project_lite::pin_project! {
    /// A response awaited through the connection's [`Relay`].
    pub(crate) struct Relayed<F> {
        #[pin]
        inner: F,
        relay: Arc<Relay>,
    }
}

impl<F: Future> Future for Relayed<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        this.relay.register(cx.waker());
        let waker = Waker::from(this.relay.clone());
        let polled = this.inner.poll(&mut Context::from_waker(&waker));
        if polled.is_ready() {
            this.relay.clear();
        }
        polled
    }
}

#[derive(Default)]
struct DrainSlot {
    body: Option<Box<Draining>>,
    ended: bool,
}

impl Link {
    pub fn new(origin: &Origin, client: Weak<Inner>) -> Arc<Link> {
        Arc::new(Link {
            origin: origin.clone(),
            parked: AtomicBool::new(true),
            writing: AtomicBool::new(false),
            client,
            drain: parking_lot::Mutex::new(DrainSlot::default()),
            draining: AtomicBool::new(false),
            task: OnceLock::new(),
            relay: Arc::new(Relay {
                state: AtomicU8::new(0),
                caller: parking_lot::Mutex::new(None),
            }),
            max_streams: AtomicUsize::new(UNSETTLED),
        })
    }

    /// HTTP/2: the server's stream limit, `None` until its first SETTINGS.
    pub fn max_streams(&self) -> Option<usize> {
        match self.max_streams.load(Ordering::Acquire) {
            UNSETTLED => None,
            n => Some(n),
        }
    }

    /// HTTP/2: the server set its stream limit to `limit` (see
    /// [`SettingsWatch`](crate::h2::SettingsWatch)); when it changed, the client's shared
    /// connections of this origin are told, from a task of their own (this runs inside the
    /// connection's read).
    pub fn set_max_streams(&self, limit: usize) {
        // Only a 32-bit target can be told this limit: it reads as unlimited, never unknown.
        let limit = if limit == UNSETTLED {
            usize::MAX
        } else {
            limit
        };
        if self.max_streams.swap(limit, Ordering::AcqRel) == limit {
            return;
        }
        if let (Some(client), Ok(rt)) =
            (self.client.upgrade(), tokio::runtime::Handle::try_current())
        {
            let origin = self.origin.clone();
            drop(rt.spawn(async move { client.h2.refresh(&origin) }));
        }
    }

    /// HTTP/2: the limit changed or the connection ended: waiters may be served, or need a
    /// dial.
    pub fn h2_changed(&self) {
        if let Some(client) = self.client.upgrade() {
            client.h2.refresh(&self.origin);
        }
    }

    /// The connection task starts a pass over hyper's connection (see [`Relay`]).
    pub fn pass(&self) -> Pass<'_> {
        self.relay.state.store(POLLING, Ordering::Release);
        Pass(&self.relay)
    }

    /// The connection task says where to wake it (once: a task's waker does not change).
    pub fn register_task(&self, waker: &Waker) {
        let _ = self.task.set(waker.clone());
    }

    /// Hands a dropped body's rest to the connection task; gives it back when that task has
    /// ended (the caller then closes the connection).
    pub fn hand_drain(&self, body: Box<Draining>) -> Result<(), Box<Draining>> {
        {
            let mut slot = self.drain.lock();
            if slot.ended {
                return Err(body);
            }
            slot.body = Some(body);
            self.draining.store(true, Ordering::Release);
        }
        if let Some(task) = self.task.get() {
            task.wake_by_ref();
        }
        Ok(())
    }

    /// The body handed over, if any (for the connection task).
    pub fn take_drain(&self) -> Option<Box<Draining>> {
        if !self.draining.load(Ordering::Acquire) {
            return None;
        }
        let mut slot = self.drain.lock();
        self.draining.store(false, Ordering::Release);
        slot.body.take()
    }

    /// The connection task ends: no more drains; the one handed over, if any, is returned.
    pub fn end_drains(&self) -> Option<Box<Draining>> {
        let mut slot = self.drain.lock();
        slot.ended = true;
        slot.body.take()
    }

    /// The connection was checked out.
    #[inline]
    pub fn checked_out(&self) {
        self.parked.store(false, Ordering::Release);
    }

    /// Whether a streamed request body is still being written.
    #[inline]
    pub fn is_writing(&self) -> bool {
        self.writing.load(Ordering::Acquire)
    }

    /// hyper's connection task ended on its own (never when we aborted it). A connection that
    /// was parked now sits dead in the idle list: the client takes it out at once.
    pub fn ended(&self) {
        if !self.parked.load(Ordering::Acquire) {
            return;
        }
        if let Some(client) = self.client.upgrade() {
            // Under the pool's lock: this one, and any other whose task has ended too.
            let Some(pool) = client.started_pool() else {
                return;
            };
            pool.evict_idle_where(&self.origin, |conn| {
                std::ptr::eq(&*conn.link, self) || conn.sender.is_closed()
            });
        }
    }
}

/// A streamed request body being written on a connection: its drop (hyper drops a body once
/// it has taken its last frame, or when the connection fails) clears [`Link::is_writing`].
pub(crate) struct Writing(Arc<Link>);

impl Writing {
    pub fn start(link: &Arc<Link>) -> Writing {
        link.writing.store(true, Ordering::Release);
        Writing(link.clone())
    }
}

impl Drop for Writing {
    fn drop(&mut self) {
        self.0.writing.store(false, Ordering::Release);
    }
}

/// One connection in the pool (HTTP/1.1, or HTTP/2 shared by many requests while checked
/// out: see [`h2`](crate::h2)).
pub(crate) struct HttpConn {
    pub sender: Sender,
    pub wire: Arc<Wire>,
    pub link: Arc<Link>,
    /// Requests sent on it so far; above 0 it is "reused" in Go's sense.
    pub uses: u64,
    /// Cleared when the connection must not carry another request (`Connection: close`, a
    /// close-delimited body, an error): `check` then says broken.
    pub reusable: bool,
    /// hyper's connection task: aborted when the connection leaves the pool, so a connection
    /// closed mid-request (a timeout, a caller that left) releases its socket at once. `None`
    /// once the connection was upgraded: the task hands the socket over and ends by itself.
    pub task: Option<tokio::task::AbortHandle>,
}

impl Drop for HttpConn {
    fn drop(&mut self) {
        if let Some(task) = &self.task {
            task.abort();
        }
    }
}

/// Counters the pool does not keep: what happened to responses and retries; and the drains
/// in flight, which a request for the same origin waits for rather than dial.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub drains: Drains,
    pub requests: AtomicU64,
    pub retried: AtomicU64,
    pub drained: AtomicU64,
    pub drain_failed: AtomicU64,
    pub body_eof: AtomicU64,
    pub not_reusable: AtomicU64,
    pub rescued: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// Bodies being drained in the background, by origin. A connection being drained comes back
/// within the drain's time budget (or is closed): a request of that origin that finds no idle
/// connection waits for it (at most that budget) instead of dialling one it will not need.
#[derive(Debug, Default)]
pub(crate) struct Drains {
    active: AtomicUsize,
    by_origin: parking_lot::Mutex<HashMap<Origin, (usize, Arc<Notify>)>>,
}

/// One drain in flight; its drop wakes the requests waiting for it.
pub(crate) struct DrainTicket {
    drains: Arc<Counters>,
    origin: Origin,
}

impl Drains {
    /// Whether any drain is in flight (one atomic load: the request path asks every time).
    pub fn any(&self) -> bool {
        self.active.load(Ordering::Acquire) > 0
    }

    /// Waits (at most `budget`) for a drain of `origin` to end, if one is in flight.
    pub async fn wait_for(&self, origin: &Origin, budget: Duration) {
        if self.active.load(Ordering::Acquire) == 0 {
            return;
        }
        let notified = {
            let map = self.by_origin.lock();
            let Some((_, notify)) = map.get(origin) else {
                return;
            };
            let mut notified = Box::pin(notify.clone().notified_owned());
            notified.as_mut().enable();
            notified
        };
        let _ = tokio::time::timeout(budget, notified).await;
    }
}

impl DrainTicket {
    pub fn new(counters: &Arc<Counters>, origin: &Origin) -> DrainTicket {
        let drains = &counters.drains;
        drains.active.fetch_add(1, Ordering::AcqRel);
        drains
            .by_origin
            .lock()
            .entry(origin.clone())
            .or_insert_with(|| (0, Arc::new(Notify::new())))
            .0 += 1;
        DrainTicket {
            drains: counters.clone(),
            origin: origin.clone(),
        }
    }
}

impl Drop for DrainTicket {
    fn drop(&mut self) {
        let drains = &self.drains.drains;
        let mut map = drains.by_origin.lock();
        if let Some((n, notify)) = map.get_mut(&self.origin) {
            *n -= 1;
            notify.notify_waiters();
            if *n == 0 {
                map.remove(&self.origin);
            }
        }
        drains.active.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Dials connections for the keyed pool, one key per origin.
pub(crate) struct Dialer {
    pub settings: Arc<Settings>,
    /// The client this dialler dials for: its connections report their end to it. Set once
    /// by `Client::new_inner`; empty (or dead) once the client is gone.
    client: OnceLock<Weak<Inner>>,
}

impl Dialer {
    pub fn new(settings: Arc<Settings>) -> Self {
        Dialer {
            settings,
            client: OnceLock::new(),
        }
    }

    /// Tells the dialler which client it dials for.
    pub fn serve(&self, client: Weak<Inner>) {
        let _ = self.client.set(client);
    }

    /// The client this dialler dials for (none once it is gone).
    fn client(&self) -> Weak<Inner> {
        self.client.get().cloned().unwrap_or_default()
    }
}

#[async_trait]
impl KeyedManager for Dialer {
    type Key = Origin;
    type Resource = HttpConn;
    type Error = ConnectError;

    /// Checkout spans name their origin (`scheme://host:port`: never userinfo, path or
    /// query).
    fn span_key<'k>(&self, origin: &'k Origin) -> Option<&'k dyn std::fmt::Display> {
        Some(origin)
    }

    async fn create(&self, origin: &Origin) -> Result<HttpConn, ConnectError> {
        let dialed = dial(origin, &self.settings, self.client()).await?;
        Ok(HttpConn {
            sender: dialed.sender,
            wire: dialed.wire,
            link: dialed.link,
            uses: 0,
            reusable: true,
            task: Some(dialed.task),
        })
    }

    /// On release and before reuse: a connection the server closed (hyper's connection task
    /// saw the end) or one marked not reusable is broken; a ready one is marked parked.
    fn check(&self, conn: &mut HttpConn) -> Health {
        if conn.reusable && !conn.sender.is_closed() {
            conn.link.parked.store(true, Ordering::Release);
            Health::Ready
        } else {
            Health::Broken
        }
    }
}
