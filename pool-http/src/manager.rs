//! The pooled connection and the [`KeyedManager`] that dials it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use pool_core::{Health, KeyedManager, async_trait};

use crate::body::RequestBody;
use crate::config::Settings;
use crate::connect::{Wire, dial};
use crate::{ConnectError, Origin};

/// hyper's sending half of a connection.
pub(crate) enum Sender {
    H1(hyper::client::conn::http1::SendRequest<RequestBody>),
    H2(hyper::client::conn::http2::SendRequest<RequestBody>),
}

impl Sender {
    pub fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }

    pub fn h1(&mut self) -> Option<&mut hyper::client::conn::http1::SendRequest<RequestBody>> {
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

/// One connection in the pool (HTTP/1.1, or HTTP/2 shared by many requests while checked
/// out: see [`h2`](crate::h2)).
pub(crate) struct HttpConn {
    pub sender: Sender,
    pub wire: Arc<Wire>,
    /// Requests sent on it so far; above 0 it is "reused" in Go's sense.
    pub uses: u64,
    /// Cleared when the connection must not carry another request (`Connection: close`, a
    /// close-delimited body, an error): `check` then says broken.
    pub reusable: bool,
    /// hyper's connection task: aborted when the connection leaves the pool, so a connection
    /// closed mid-request (a timeout, a caller that left) releases its socket at once.
    pub task: tokio::task::AbortHandle,
}

impl Drop for HttpConn {
    fn drop(&mut self) {
        self.task.abort();
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
}

#[async_trait]
impl KeyedManager for Dialer {
    type Key = Origin;
    type Resource = HttpConn;
    type Error = ConnectError;

    async fn create(&self, origin: &Origin) -> Result<HttpConn, ConnectError> {
        let dialed = dial(origin, &self.settings).await?;
        Ok(HttpConn {
            sender: dialed.sender,
            wire: dialed.wire,
            uses: 0,
            reusable: true,
            task: dialed.task,
        })
    }

    /// On release and before reuse: a connection the server closed (hyper's connection task
    /// saw the end) or one marked not reusable is broken.
    fn check(&self, conn: &mut HttpConn) -> Health {
        if !conn.reusable || conn.sender.is_closed() {
            Health::Broken
        } else {
            Health::Ready
        }
    }
}
