//! HTTP/2: one connection of an origin carries many requests at once.
//!
//! The pool still owns every connection and counts it once against the per-host limits; an
//! HTTP/2 connection is simply checked out (`in_use`) while it carries at least one stream,
//! and goes back to the pool (idle, with the idle timeout and grace of any connection) when
//! its last stream ends. While checked out it sits in a map, so concurrent requests share it
//! instead of each taking (or dialling) a connection of its own.
//!
//! # Invariants
//! - An origin has at most one live shared connection in the map, or one dial in flight
//!   (`Slot::Dialing`); everyone else waits for that dial instead of dialling too.
//! - `Shared::streams` is only raised under the map lock, so a lease that takes it to zero
//!   and then finds it still zero under the lock knows no one can raise it again once the
//!   slot is gone: it gives the connection back.
//! - A connection that closed (or got GOAWAY, which closes hyper's sender) leaves the map at
//!   the next request; its open streams finish on it, and the last one returns it to the pool,
//!   whose health check closes it.
//! - Once [`close`](H2Conns::close) ran, no stream opens: the map is emptied, a request fails
//!   with the closed error, and the streams in flight finish; the last one of a connection
//!   gives it back to the closed pool, which closes it.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use parking_lot::Mutex;
use pool_core::{KeyedPool, KeyedPooled};
use tokio::sync::Notify;

use crate::manager::Dialer;
use crate::request::RequestBody;
use crate::{Error, Origin};

/// Most `https` origins remembered as HTTP/2 at once.
const MAX_NEGOTIATED: usize = 4096;

type H2Sender = hyper::client::conn::http2::SendRequest<RequestBody>;

/// The shared HTTP/2 connections of a client, by origin.
#[derive(Default)]
pub(crate) struct H2Conns {
    map: Mutex<HashMap<Origin, Slot>>,
    /// `https` origins whose server chose HTTP/2 in ALPN.
    negotiated: Mutex<HashSet<Origin>>,
    /// Streams open on every connection, those that left the map (closing) included.
    open_streams: AtomicUsize,
    /// The client was closed: no new stream.
    closed: AtomicBool,
}

enum Slot {
    /// A dial (or a pool checkout) is in flight; waiters are woken when it ends.
    Dialing(Arc<Notify>),
    Ready(Arc<Shared>),
}

/// One HTTP/2 connection while it is checked out of the pool.
pub(crate) struct Shared {
    sender: H2Sender,
    /// Streams open on it now.
    streams: AtomicUsize,
    /// The pool's guard: given back when the last stream ends.
    conn: Mutex<Option<KeyedPooled<'static, Dialer>>>,
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

/// Removes a dial's slot and wakes its waiters if the dial did not finish (failed or was
/// cancelled), so the next request can try.
struct DialSlot<'a> {
    conns: &'a H2Conns,
    origin: &'a Origin,
    done: bool,
}

impl Drop for DialSlot<'_> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let slot = self.conns.map.lock().remove(self.origin);
        if let Some(Slot::Dialing(waiters)) = slot {
            waiters.notify_waiters();
        }
    }
}

impl H2Conns {
    /// Streams open now on `origin`'s shared connection.
    pub fn streams(&self, origin: &Origin) -> usize {
        match self.map.lock().get(origin) {
            Some(Slot::Ready(s)) => s.streams.load(Ordering::Acquire),
            _ => 0,
        }
    }

    /// Whether `origin`'s server chose HTTP/2 (ALPN) on the last connection made to it.
    pub fn negotiated_h2(&self, origin: &Origin) -> bool {
        self.negotiated.lock().contains(origin)
    }

    /// Makes `conn`, a new HTTP/2 connection of `origin` (chosen in ALPN), the origin's
    /// shared connection unless one is live already, and opens a stream on it.
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
        let sender = conn.sender.h2().expect("an HTTP/2 connection").clone();
        let shared = Arc::new(Shared {
            sender,
            streams: AtomicUsize::new(1),
            conn: Mutex::new(Some(conn)),
        });
        let mut map = self.map.lock();
        let live = matches!(map.get(origin), Some(Slot::Ready(s)) if !s.sender.is_closed());
        if !live
            && let Some(Slot::Dialing(waiters)) =
                map.insert(origin.clone(), Slot::Ready(shared.clone()))
        {
            waiters.notify_waiters();
        }
        // Otherwise this one serves its stream and idles; the live one stays the shared one.
        drop(map);
        self.open_streams.fetch_add(1, Ordering::AcqRel);
        StreamLease {
            conns: self.clone(),
            origin: origin.clone(),
            shared,
            reused,
        }
    }

    /// Streams open now on all connections.
    pub fn total_streams(&self) -> usize {
        self.open_streams.load(Ordering::Acquire)
    }

    /// A stream on `origin`'s shared connection: the live one, or one from the pool (idle or
    /// dialled) that becomes the shared one.
    ///
    /// # Cancel safety
    /// Dropped while waiting, nothing is held; dropped while its own dial is in flight, the
    /// waiters are woken and the dial's connection (which the pool completes regardless)
    /// goes idle.
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
            let mut dead = None;
            let waiting = {
                let mut map = self.map.lock();
                match map.get(origin) {
                    Some(Slot::Ready(shared)) if !shared.sender.is_closed() => {
                        shared.streams.fetch_add(1, Ordering::AcqRel);
                        self.open_streams.fetch_add(1, Ordering::AcqRel);
                        // Another stream opened it: it is reused.
                        return Ok(Some(StreamLease {
                            conns: self.clone(),
                            origin: origin.clone(),
                            shared: shared.clone(),
                            reused: true,
                        }));
                    }
                    Some(Slot::Ready(_)) => {
                        // Closed or GOAWAY: no new streams on it.
                        if let Some(Slot::Ready(gone)) = map.remove(origin)
                            && gone.streams.load(Ordering::Acquire) == 0
                        {
                            dead = gone.conn.lock().take();
                        }
                        None
                    }
                    Some(Slot::Dialing(waiters)) => {
                        let mut notified = Box::pin(waiters.clone().notified_owned());
                        notified.as_mut().enable();
                        Some(notified)
                    }
                    None => {
                        map.insert(origin.clone(), Slot::Dialing(Arc::new(Notify::new())));
                        None
                    }
                }
            };
            drop(dead);
            if let Some(notified) = waiting {
                notified.await;
                continue;
            }
            if self.map.lock().get(origin).is_none() {
                // The dead one was removed above: take the slot for a dial of our own.
                continue;
            }
            return self.dial(pool, origin).await;
        }
    }

    /// The client is closed: no stream opens from now on. The connections carrying streams
    /// leave the map; each goes back to the (closed) pool when its last stream ends, and
    /// closes there. Requests waiting for a dial are woken and fail.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        let slots: Vec<Slot> = self.map.lock().drain().map(|(_, slot)| slot).collect();
        for slot in slots {
            if let Slot::Dialing(waiters) = slot {
                waiters.notify_waiters();
            }
        }
    }

    /// Holds the `Dialing` slot of `origin` while a connection comes from the pool.
    async fn dial(
        self: &Arc<Self>,
        pool: &KeyedPool<Dialer>,
        origin: &Origin,
    ) -> Result<Option<StreamLease>, Error> {
        let mut slot = DialSlot {
            conns: self,
            origin,
            done: false,
        };
        let mut conn = pool.get_owned(origin).await.map_err(Error::pool)?;
        conn.link.checked_out();
        let reused = conn.uses > 0;
        conn.uses += 1;
        let Some(sender) = conn.sender.h2().cloned() else {
            // An `https` server that answered ALPN with HTTP/1.1 this time: the connection
            // goes back to the pool for the HTTP/1.1 path.
            self.negotiated.lock().remove(origin);
            return Ok(None);
        };
        let shared = Arc::new(Shared {
            sender,
            streams: AtomicUsize::new(1),
            conn: Mutex::new(Some(conn)),
        });
        let previous = self
            .map
            .lock()
            .insert(origin.clone(), Slot::Ready(shared.clone()));
        slot.done = true;
        self.open_streams.fetch_add(1, Ordering::AcqRel);
        if let Some(Slot::Dialing(waiters)) = previous {
            waiters.notify_waiters();
        }
        Ok(Some(StreamLease {
            conns: self.clone(),
            origin: origin.clone(),
            shared,
            reused,
        }))
    }
}

impl Drop for StreamLease {
    fn drop(&mut self) {
        self.conns.open_streams.fetch_sub(1, Ordering::AcqRel);
        if self.shared.streams.fetch_sub(1, Ordering::AcqRel) != 1 {
            return;
        }
        let conn = {
            let mut map = self.conns.map.lock();
            if self.shared.streams.load(Ordering::Acquire) != 0 {
                return;
            }
            if matches!(map.get(&self.origin), Some(Slot::Ready(s)) if Arc::ptr_eq(s, &self.shared))
            {
                map.remove(&self.origin);
            }
            self.shared.conn.lock().take()
        };
        // Back to the pool (idle), or closed there if the connection is gone.
        drop(conn);
    }
}
