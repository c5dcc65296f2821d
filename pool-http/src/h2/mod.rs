//! HTTP/2: one connection of an origin carries many requests at once, up to the server's
//! stream limit; past it a request gets another connection, as Go's Transport does.
//!
//! The pool still owns every connection and counts it once against the per-host limits; an
//! HTTP/2 connection is simply checked out (`in_use`) while it carries at least one stream,
//! and goes back to the pool (idle, with the idle timeout and grace of any connection) when
//! its last stream ends. While checked out it sits in its origin's [`Entry`], so concurrent
//! requests share it instead of each taking (or dialling) a connection of its own.
//!
//! # The server's stream limit
//! Each connection's limit is the server's last `SETTINGS_MAX_CONCURRENT_STREAMS`, read off
//! the frames the connection reads ([`SettingsWatch`]: hyper applies SETTINGS in a task of
//! its own, and exposes the value only on the connection future, which another task drives),
//! and the origin's entry is told when it changes (a later SETTINGS may lower or raise it).
//! Until the server's first SETTINGS arrives the limit is unknown: the connection takes one
//! stream and no other dial starts (the SETTINGS comes within a round trip), so a burst on a
//! new origin shares one connection instead of dialling one per request. A request that finds
//! no room waits in the entry's queue, first come first served; the head waiter dials (one
//! dial per origin at a time, within `max_conns_per_host`) while it waits, and a stream that
//! frees meanwhile is handed to it instead.
//!
//! What hyper was handed it sends when the server's limit allows: a request sent in the
//! moment a SETTINGS lowers the limit waits in hyper for a stream of its connection to end,
//! as in Go. A limit of 0 takes no stream: a connection from the pool known to say 0 is closed
//! and its request fails with [`ConnectError::NoStreams`] (RFC 9113 asks such a server to
//! close the connection, or to say 0 only briefly); the first stream of a new connection whose
//! first SETTINGS then says 0 waits within the request's timeouts for the server to raise it.
//!
//! # Invariants
//! - Under the map lock: `Shared::streams` changes, waiters are queued and served, and a
//!   connection in an entry carries at least one stream (one with none goes back to the pool
//!   at once).
//! - A stream that frees, a limit that rises, a dial that ends and a connection that closes
//!   all run [`H2Conns::settle`]: room goes to the head waiter (handed over, never raced
//!   for), and when waiters remain with no room and no dial, the head waiter gets the dial.
//! - Grants are decided under the lock (the stream opened, the waiter taken off the queue,
//!   the dial turn given) and delivered after it; what leaves the lock (a connection back to
//!   the pool, a waiter's channel) is dropped after it too ([`Later`]).
//! - A connection that closed (or got GOAWAY, which closes hyper's sender) takes no new
//!   stream and leaves its entry; its open streams finish on it, and the last one returns
//!   it to the pool, whose health check closes it.
//! - Once [`close`](H2Conns::close) ran, no stream opens: the map is emptied, a request fails
//!   with the closed error, and the streams in flight finish; the last one of a connection
//!   gives it back to the closed pool, which closes it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::Poll;

use parking_lot::Mutex;
use pool_core::{KeyedPool, KeyedPooled};
use tokio::sync::mpsc;

use crate::manager::{Dialer, Link};

mod settings;

use crate::request::RequestBody;
use crate::{ConnectError, Error, Origin};
pub(crate) use settings::SettingsWatch;

/// Most `https` origins remembered as HTTP/2 at once.
const MAX_NEGOTIATED: usize = 4096;

/// hyper's sending half of an HTTP/2 connection (a cheap clone of one channel).
type H2Sender = hyper::client::conn::http2::SendRequest<RequestBody>;

/// The shared HTTP/2 connections of a client, by origin.
#[derive(Default)]
pub(crate) struct H2Conns {
    map: Mutex<HashMap<Origin, Entry>>,
    /// `https` origins whose server chose HTTP/2 in ALPN.
    negotiated: Mutex<HashSet<Origin>>,
    /// Streams open on every connection, those that left the map (closing) included.
    open_streams: AtomicUsize,
    /// The client was closed: no new stream.
    closed: AtomicBool,
}

/// An origin's connections that carry streams, and the requests waiting for one.
#[derive(Default)]
struct Entry {
    conns: Vec<Arc<Shared>>,
    waiters: VecDeque<Waiter>,
    /// A waiter holds the [`DialTurn`].
    dialing: bool,
    next_id: u64,
}

impl Entry {
    /// Nothing to keep: no connection, no waiter, no dial (the entry leaves the map).
    fn is_idle(&self) -> bool {
        self.conns.is_empty() && self.waiters.is_empty() && !self.dialing
    }
}

/// A request waiting for a stream: where its grant goes.
struct Waiter {
    id: u64,
    tx: mpsc::UnboundedSender<Grant>,
}

/// What a waiter is handed: a stream, or the turn to dial.
enum Grant {
    Stream(StreamLease),
    Dial(DialTurn),
}

/// The one dial of an origin in flight. Dropped unused (the dial failed, or its waiter got a
/// stream first or left), the next waiter gets the turn if one is still needed.
struct DialTurn {
    conns: Arc<H2Conns>,
    origin: Origin,
    armed: bool,
}

/// What the map lock decided, done once it is released (its drop, which must come after
/// the lock's): grants delivered (a send wakes its waiter, whose waker may run any code, even
/// code that takes the lock), waiters that left the queue dropped (their channel's end wakes
/// too), connections given back to the pool.
#[derive(Default)]
struct Later {
    grants: Vec<(mpsc::UnboundedSender<Grant>, Grant)>,
    waiters: Vec<Waiter>,
    conns: Vec<KeyedPooled<'static, Dialer>>,
}

impl Drop for Later {
    fn drop(&mut self) {
        for (tx, grant) in self.grants.drain(..) {
            // A waiter that left meanwhile: the grant is dropped here, and passes on (a
            // stream to the next waiter, the dial turn too).
            drop(tx.send(grant));
        }
    }
}

/// One HTTP/2 connection while it is checked out of the pool.
pub(crate) struct Shared {
    sender: H2Sender,
    link: Arc<Link>,
    /// Streams open on it now (changed under the map lock).
    streams: AtomicUsize,
    /// It carried a stream before (the next one is reused).
    used: AtomicBool,
    /// The pool's guard: given back when the last stream ends.
    conn: Mutex<Option<KeyedPooled<'static, Dialer>>>,
}

impl Shared {
    /// Makes `conn` (already counted as used) a shared connection; `None` if it is HTTP/1.1.
    fn new(conn: KeyedPooled<'static, Dialer>, used: bool) -> Option<Arc<Shared>> {
        let sender = conn.sender.h2()?.clone();
        Some(Arc::new(Shared {
            sender,
            link: conn.link.clone(),
            streams: AtomicUsize::new(0),
            used: AtomicBool::new(used),
            conn: Mutex::new(Some(conn)),
        }))
    }

    /// Streams it can take now: none once closed, one while the server's limit is unknown.
    fn room(&self) -> usize {
        if self.sender.is_closed() {
            return 0;
        }
        let limit = self.link.max_streams().unwrap_or(1);
        limit.saturating_sub(self.streams.load(Ordering::Acquire))
    }

    /// Open, and the server's first SETTINGS not in yet.
    fn settling(&self) -> bool {
        !self.sender.is_closed() && self.link.max_streams().is_none()
    }
}

/// A request's share of an HTTP/2 connection: one open stream.
pub(crate) struct StreamLease {
    conns: Arc<H2Conns>,
    origin: Origin,
    shared: Arc<Shared>,
    /// Whether the connection had carried a stream before this one.
    pub reused: bool,
}

impl StreamLease {
    /// The origin this stream's connection serves.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// A sender for this stream (hyper's senders are cheap clones of one channel).
    pub fn sender(&self) -> H2Sender {
        self.shared.sender.clone()
    }
}

/// How a wait in the queue ended.
enum Served {
    Stream(StreamLease),
    /// The connection the pool gave is HTTP/1.1.
    Http1,
    Failed(Error),
    /// The client was closed while waiting.
    Closed,
}

/// A request in its origin's queue; its drop leaves the queue.
struct Waiting {
    conns: Arc<H2Conns>,
    origin: Origin,
    id: u64,
    rx: mpsc::UnboundedReceiver<Grant>,
}

impl H2Conns {
    /// Streams open now on `origin`'s shared connections.
    pub fn streams(&self, origin: &Origin) -> usize {
        self.map.lock().get(origin).map_or(0, |entry| {
            entry
                .conns
                .iter()
                .map(|c| c.streams.load(Ordering::Acquire))
                .sum()
        })
    }

    /// Streams open now on all connections.
    pub fn total_streams(&self) -> usize {
        self.open_streams.load(Ordering::Acquire)
    }

    /// Whether `origin`'s server chose HTTP/2 (ALPN) on the last connection made to it.
    pub fn negotiated_h2(&self, origin: &Origin) -> bool {
        self.negotiated.lock().contains(origin)
    }

    /// Makes `conn`, a new HTTP/2 connection of `origin` (chosen in ALPN), one of the
    /// origin's shared connections, and opens a stream on it.
    pub fn adopt(
        self: &Arc<Self>,
        origin: &Origin,
        mut conn: KeyedPooled<'static, Dialer>,
    ) -> StreamLease {
        {
            let mut negotiated = self.negotiated.lock();
            // A memory bound for clients that meet endless origins: forgetting only costs the
            // next request to each a first try over the HTTP/1.1 path, which adopts again.
            if negotiated.len() >= MAX_NEGOTIATED {
                negotiated.clear();
            }
            negotiated.insert(origin.clone());
        }
        let reused = conn.uses > 0;
        conn.uses += 1;
        let shared = Shared::new(conn, reused).expect("an HTTP/2 connection");
        let mut later = Later::default();
        let lease = {
            let mut map = self.map.lock();
            let lease = self.open(origin, &shared);
            if !self.closed.load(Ordering::Acquire) {
                let entry = map.entry(origin.clone()).or_default();
                entry.conns.push(shared);
                self.settle(origin, entry, &mut later);
            }
            lease
        };
        drop(later);
        lease
    }

    /// A stream of one of `origin`'s connections: one with room, else (waiting in turn) a
    /// stream that frees or a connection from the pool (idle or dialled).
    ///
    /// # Cancel safety
    /// Dropped while waiting, it leaves the queue; a stream handed to it meanwhile goes to
    /// the next waiter; dropped while dialling, the turn goes to the next waiter and the
    /// dial's connection (which the pool completes regardless) goes idle.
    ///
    /// `None` when the connection the pool gave is HTTP/1.1 (an `https` server that no longer
    /// offers HTTP/2): the origin is then treated as HTTP/1.1 again.
    pub async fn acquire(
        self: &Arc<Self>,
        pool: &KeyedPool<Dialer>,
        origin: &Origin,
    ) -> Result<Option<StreamLease>, Error> {
        loop {
            if self.closed.load(Ordering::Acquire) {
                // The pool was closed first: its checkout fails with the closed error.
                pool.get_owned(origin).await.map_err(Error::pool)?;
            }
            let mut later = Later::default();
            let queued = {
                let mut map = self.map.lock();
                if self.closed.load(Ordering::Acquire) {
                    continue;
                }
                let entry = map.entry(origin.clone()).or_default();
                self.settle(origin, entry, &mut later);
                let roomy = entry.conns.iter().find(|c| c.room() > 0);
                match roomy {
                    // Nobody is ahead: no barging past the queue.
                    Some(shared) if entry.waiters.is_empty() => {
                        let shared = shared.clone();
                        Err(self.open(origin, &shared))
                    }
                    _ => {
                        let (tx, rx) = mpsc::unbounded_channel();
                        let id = entry.next_id;
                        entry.next_id += 1;
                        entry.waiters.push_back(Waiter { id, tx });
                        self.settle(origin, entry, &mut later);
                        Ok(Waiting {
                            conns: self.clone(),
                            origin: origin.clone(),
                            id,
                            rx,
                        })
                    }
                }
            };
            drop(later);
            let mut waiting = match queued {
                Ok(waiting) => waiting,
                Err(lease) => return Ok(Some(lease)),
            };
            match waiting.serve(pool).await {
                Served::Stream(lease) => return Ok(Some(lease)),
                Served::Http1 => return Ok(None),
                Served::Failed(e) => return Err(e),
                Served::Closed => {}
            }
        }
    }

    /// The client is closed: no stream opens from now on. The connections carrying streams
    /// leave the map; each goes back to the (closed) pool when its last stream ends, and
    /// closes there. Requests waiting are woken and fail.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let entries: Vec<Entry> = self.map.lock().drain().map(|(_, e)| e).collect();
        drop(entries);
    }

    /// A limit changed or a connection ended on `origin` (told by the connection task): room
    /// may have come for the waiters, or a dial may be needed.
    pub fn refresh(self: &Arc<Self>, origin: &Origin) {
        let mut later = Later::default();
        {
            let mut map = self.map.lock();
            if let Some(entry) = map.get_mut(origin) {
                self.settle(origin, entry, &mut later);
                if entry.is_idle() {
                    map.remove(origin);
                }
            }
        }
        drop(later);
    }

    /// Opens a stream on `shared` (under the map lock).
    fn open(self: &Arc<Self>, origin: &Origin, shared: &Arc<Shared>) -> StreamLease {
        shared.streams.fetch_add(1, Ordering::AcqRel);
        self.open_streams.fetch_add(1, Ordering::AcqRel);
        StreamLease {
            conns: self.clone(),
            origin: origin.clone(),
            shared: shared.clone(),
            reused: shared.used.swap(true, Ordering::AcqRel),
        }
    }

    /// Under the map lock: drops closed connections, hands room to the waiters in order,
    /// gives back connections that carry no stream, and gives the head waiter the dial when
    /// waiters remain, no dial is in flight and no new connection's limit is still unknown.
    fn settle(self: &Arc<Self>, origin: &Origin, entry: &mut Entry, later: &mut Later) {
        entry.conns.retain(|c| {
            let open = !c.sender.is_closed();
            if !open && c.streams.load(Ordering::Acquire) == 0 {
                later.conns.extend(c.conn.lock().take());
            }
            open
        });
        while !entry.waiters.is_empty() {
            let Some(shared) = entry.conns.iter().find(|c| c.room() > 0).cloned() else {
                break;
            };
            let waiter = entry.waiters.pop_front().expect("not empty");
            let lease = self.open(origin, &shared);
            later.grants.push((waiter.tx, Grant::Stream(lease)));
        }
        entry.conns.retain(|c| {
            let carries = c.streams.load(Ordering::Acquire) > 0;
            if !carries {
                later.conns.extend(c.conn.lock().take());
            }
            carries
        });
        if entry.dialing || entry.conns.iter().any(|c| c.settling()) {
            return;
        }
        if let Some(head) = entry.waiters.front() {
            entry.dialing = true;
            let turn = DialTurn {
                conns: self.clone(),
                origin: origin.clone(),
                armed: true,
            };
            later.grants.push((head.tx.clone(), Grant::Dial(turn)));
        }
    }

    /// The dial of `turn` gave `conn`: it joins the origin's connections and serves the
    /// waiters. `false` if it is HTTP/1.1 (then it goes back to the pool for that path).
    fn add(
        self: &Arc<Self>,
        mut turn: DialTurn,
        mut conn: KeyedPooled<'static, Dialer>,
    ) -> Result<bool, Error> {
        turn.armed = false;
        let origin = &turn.origin;
        conn.link.checked_out();
        let reused = conn.uses > 0;
        conn.uses += 1;
        let shared = if conn.sender.h2().is_some() {
            Shared::new(conn, reused)
        } else {
            // An `https` server that answered ALPN with HTTP/1.1 this time: the connection
            // goes back to the pool for the HTTP/1.1 path (and so will the next waiters').
            self.negotiated.lock().remove(origin);
            drop(conn);
            None
        };
        // A server that allows no stream at all: this request fails (one dial each), rather
        // than take the connection from the pool again and again.
        let refused = shared
            .as_ref()
            .filter(|s| s.room() == 0 && !s.sender.is_closed())
            .and_then(|s| s.conn.lock().take());
        let mut later = Later::default();
        {
            let mut map = self.map.lock();
            if let Some(entry) = map.get_mut(origin) {
                entry.dialing = false;
                if let Some(shared) = shared.as_ref().filter(|_| refused.is_none()) {
                    entry.conns.push(shared.clone());
                }
                self.settle(origin, entry, &mut later);
            } else if let Some(shared) = &shared {
                // Closed meanwhile: back to the (closed) pool.
                later.conns.extend(shared.conn.lock().take());
            }
        }
        drop(later);
        if let Some(conn) = refused {
            KeyedPooled::discard(conn);
            return Err(Error::dial(ConnectError::NoStreams {
                host: origin.authority(),
            }));
        }
        Ok(shared.is_some())
    }
}

impl Waiting {
    /// Waits for a stream; dials when given the turn, and takes a stream handed over first.
    async fn serve(&mut self, pool: &KeyedPool<Dialer>) -> Served {
        loop {
            let turn = match self.rx.recv().await {
                None => return Served::Closed,
                Some(Grant::Stream(lease)) => return Served::Stream(lease),
                Some(Grant::Dial(turn)) => turn,
            };
            let mut checkout = std::pin::pin!(pool.get_owned(&self.origin));
            let rx = &mut self.rx;
            let outcome = std::future::poll_fn(|cx| {
                if let Poll::Ready(grant) = rx.poll_recv(cx) {
                    return Poll::Ready(Err(grant));
                }
                checkout.as_mut().poll(cx).map(Ok)
            })
            .await;
            match outcome {
                Err(None) => return Served::Closed,
                // The checkout is dropped (the pool keeps what it made), and with it the turn.
                Err(Some(Grant::Stream(lease))) => return Served::Stream(lease),
                Err(Some(Grant::Dial(_))) => {}
                Ok(Err(e)) => return Served::Failed(Error::pool(e)),
                Ok(Ok(conn)) => match self.conns.add(turn, conn) {
                    Ok(true) => {}
                    Ok(false) => return Served::Http1,
                    Err(e) => return Served::Failed(e),
                },
            }
        }
    }
}

impl Drop for Waiting {
    fn drop(&mut self) {
        let mut later = Later::default();
        {
            let mut map = self.conns.map.lock();
            if let Some(entry) = map.get_mut(&self.origin) {
                if let Some(at) = entry.waiters.iter().position(|w| w.id == self.id) {
                    later.waiters.extend(entry.waiters.remove(at));
                }
                if entry.is_idle() {
                    map.remove(&self.origin);
                }
            }
        }
        drop(later);
        // A grant still in the channel is dropped with it, after the lock: a stream goes
        // to the next waiter, the dial turn too.
    }
}

impl Drop for DialTurn {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let mut later = Later::default();
        {
            let mut map = self.conns.map.lock();
            if let Some(entry) = map.get_mut(&self.origin) {
                entry.dialing = false;
                self.conns.settle(&self.origin, entry, &mut later);
                if entry.is_idle() {
                    map.remove(&self.origin);
                }
            }
        }
        drop(later);
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        self.conns.open_streams.fetch_sub(1, Ordering::AcqRel);
        let mut later = Later::default();
        {
            let mut map = self.conns.map.lock();
            let left = self.shared.streams.fetch_sub(1, Ordering::AcqRel) - 1;
            match map.get_mut(&self.origin) {
                Some(entry) if entry.conns.iter().any(|c| Arc::ptr_eq(c, &self.shared)) => {
                    self.conns.settle(&self.origin, entry, &mut later);
                    if entry.is_idle() {
                        map.remove(&self.origin);
                    }
                }
                // It left the entry (closed, or the client was closed): its last stream
                // gives it back to the pool, which closes it.
                _ if left == 0 => later.conns.extend(self.shared.conn.lock().take()),
                _ => {}
            }
        }
        // Back to the pool (idle), or closed there if the connection is gone.
        drop(later);
    }
}
