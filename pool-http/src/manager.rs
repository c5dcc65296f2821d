//! The pooled connection and the [`KeyedManager`] that dials it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// Counters the pool does not keep: what happened to responses and retries.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub requests: AtomicU64,
    pub retried: AtomicU64,
    pub drained: AtomicU64,
    pub drain_failed: AtomicU64,
    pub body_eof: AtomicU64,
    pub not_reusable: AtomicU64,
}

impl Counters {
    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
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
