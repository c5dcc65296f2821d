//! The [`Lease`] of a connection (or an HTTP/2 stream) to a response body: how it goes back
//! to the pool at the body's end, is closed on an error, or is drained when the body is
//! dropped early ([`Draining`], on the connection's own task).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::Body as HttpBody;
use hyper::body::Incoming;
use pool_core::KeyedPooled;
use tokio::time::{Instant, Sleep};

use super::Body;
use crate::config::Drain;
use crate::h2::StreamLease;
use crate::manager::{Counters, Dialer, DrainTicket};

/// Longest a connection whose response ended before its request waits for hyper to finish
/// writing the request before it is closed instead of pooled (Go's
/// `maxWriteWaitBeforeConnReuse`).
pub(crate) const WRITE_WAIT: Duration = Duration::from_millis(50);

/// What a response body holds while it streams.
pub(crate) enum Hold {
    /// An HTTP/1.1 connection, whole.
    Conn(KeyedPooled<'static, Dialer>),
    /// One stream of a shared HTTP/2 connection.
    Stream(StreamLease),
}

/// A connection (or a stream of one) lent to a response body.
pub(crate) struct Lease {
    pub hold: Hold,
    /// The response allows another request on this connection.
    pub keep: bool,
    pub drain: Drain,
    pub counters: Arc<Counters>,
    /// The client's whole-request `timeout`, for the message of a body that runs out of it.
    pub timeout: Option<Duration>,
}

impl Lease {
    /// The origin the response came from.
    pub(super) fn origin(&self) -> &crate::Origin {
        match &self.hold {
            Hold::Conn(conn) => KeyedPooled::key(conn),
            Hold::Stream(stream) => stream.origin(),
        }
    }

    /// The body ended: back to the pool, or closed when the response (or the request) said
    /// so. A response that ended before its streamed request body was written waits for
    /// hyper (see [`WRITE_WAIT`]).
    pub(super) fn finish(self) {
        if self.keep {
            Counters::bump(&self.counters.body_eof);
        } else {
            Counters::bump(&self.counters.not_reusable);
        }
        match self.hold {
            Hold::Conn(mut conn) => {
                conn.reusable &= self.keep;
                if conn.reusable && conn.link.is_writing() {
                    return wrote_request(conn, &self.counters);
                }
                drop(conn);
            }
            Hold::Stream(stream) => drop(stream),
        }
    }

    /// The body failed or was abandoned: an HTTP/1.1 connection is closed; an HTTP/2 stream
    /// is reset by hyper and its connection goes on.
    pub(super) fn close(self) {
        match self.hold {
            Hold::Conn(conn) => KeyedPooled::discard(conn),
            Hold::Stream(stream) => drop(stream),
        }
    }

    /// Marks a drain of this connection as in flight (HTTP/1.1 only).
    fn ticket(&self) -> Option<DrainTicket> {
        match &self.hold {
            Hold::Conn(conn) => Some(DrainTicket::new(&self.counters, KeyedPooled::key(conn))),
            Hold::Stream(_) => None,
        }
    }

    /// A dropped HTTP/2 body costs only its stream: nothing to drain.
    fn is_stream(&self) -> bool {
        matches!(self.hold, Hold::Stream(_))
    }
}

/// A response ended while hyper was still writing its request (a server that answered before
/// reading the body): the connection is pooled only once hyper is ready for another request,
/// within [`WRITE_WAIT`]; otherwise it is closed. Meanwhile a request for the same origin
/// waits for it (as for a drain) instead of dialling.
fn wrote_request(mut conn: KeyedPooled<'static, Dialer>, counters: &Arc<Counters>) {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    match conn.sender.h1().map(|s| s.poll_ready(&mut cx)) {
        Some(Poll::Ready(Ok(()))) => return drop(conn),
        Some(Poll::Pending) => {}
        _ => return KeyedPooled::discard(conn),
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return KeyedPooled::discard(conn);
    };
    let ticket = DrainTicket::new(counters, KeyedPooled::key(&conn));
    drop(rt.spawn(async move {
        let ready = tokio::time::timeout(
            WRITE_WAIT,
            std::future::poll_fn(|cx| match conn.sender.h1() {
                Some(s) => s.poll_ready(cx),
                None => Poll::Ready(Ok(())),
            }),
        )
        .await;
        if matches!(ready, Ok(Ok(()))) {
            drop(conn);
        } else {
            tracing::debug!("the response ended before its request was written: closed");
            KeyedPooled::discard(conn);
        }
        drop(ticket);
    }));
}

impl Drop for Body {
    fn drop(&mut self) {
        let Some(lease) = self.lease.take() else {
            return;
        };
        if self.at_end() {
            lease.finish();
            return;
        }
        let Some(mut incoming) = self.incoming.take() else {
            return lease.close();
        };
        if lease.is_stream() {
            return lease.close();
        }
        if !lease.keep || lease.drain.is_off() {
            Counters::bump(&lease.counters.drain_failed);
            return lease.close();
        }
        // More left than the budget, as its length says: a drain could only fail, and the
        // next request of the origin would wait for it. Closed now.
        let budget = u64::try_from(lease.drain.max_bytes).unwrap_or(u64::MAX);
        if incoming.size_hint().lower() > budget {
            Counters::bump(&lease.counters.drain_failed);
            return lease.close();
        }
        // hyper has read the whole body and readied the connection for another request: the
        // rest, of a length within the budget, is in the body's channel and nothing is left to
        // drain. Dropped untouched, it does not wake hyper's connection task (taking a chunk
        // out of the channel would). A body of unknown length goes the way below, which
        // counts what is left against the budget.
        if incoming.size_hint().exact().is_some()
            && let Hold::Conn(conn) = &lease.hold
            && conn.sender.is_ready()
        {
            Counters::bump(&lease.counters.drained);
            return lease.finish();
        }
        // What hyper has already buffered is read here, so a small body needs no task and
        // its connection is idle before the next request looks.
        let mut left = lease.drain.max_bytes;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        loop {
            match Pin::new(&mut incoming).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    let n = frame.data_ref().map_or(0, Bytes::len);
                    if n > left {
                        break;
                    }
                    left -= n;
                    if incoming.is_end_stream() {
                        Counters::bump(&lease.counters.drained);
                        return lease.finish();
                    }
                }
                Poll::Ready(None) => {
                    Counters::bump(&lease.counters.drained);
                    return lease.finish();
                }
                Poll::Ready(Some(Err(_))) => break,
                // The rest goes to the connection's own task (see `Draining`).
                Poll::Pending => {
                    let Hold::Conn(conn) = &lease.hold else {
                        break;
                    };
                    let link = conn.link.clone();
                    let ticket = lease.ticket();
                    let body = Box::new(Draining {
                        incoming,
                        deadline: Instant::now().checked_add(lease.drain.max_time),
                        sleep: None,
                        lease,
                        left,
                        _ticket: ticket,
                    });
                    if let Err(body) = link.hand_drain(body) {
                        body.settle(false);
                    }
                    return;
                }
            }
        }
        Counters::bump(&lease.counters.drain_failed);
        lease.close();
    }
}

/// The rest of a body dropped early, read by its connection's own task (hyper's, driven by
/// `connect::drive`) within the drain budget: `left` bytes, until `deadline`. The connection
/// is pooled if the body ends within them, closed otherwise.
///
/// `_ticket` marks the drain as in flight until the connection is back (or closed): a
/// request for the same origin waits for it rather than dial.
pub(crate) struct Draining {
    incoming: Incoming,
    lease: Lease,
    left: usize,
    /// When the drain gives up (`None`: a `max_time` past what an `Instant` holds); its timer
    /// is armed only if the body does not end at once.
    deadline: Option<Instant>,
    sleep: Option<Pin<Box<Sleep>>>,
    _ticket: Option<DrainTicket>,
}

impl Draining {
    /// Reads what has arrived: `Ready(true)` at the body's end, `Ready(false)` past the
    /// budget, past the deadline or on an error.
    pub fn poll_rest(&mut self, cx: &mut Context<'_>) -> Poll<bool> {
        loop {
            let frame = match Pin::new(&mut self.incoming).poll_frame(cx) {
                Poll::Ready(frame) => frame,
                Poll::Pending => {
                    let Some(at) = self.deadline else {
                        return Poll::Pending;
                    };
                    let sleep = self
                        .sleep
                        .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(at)));
                    return match sleep.as_mut().poll(cx) {
                        Poll::Ready(()) => Poll::Ready(false),
                        Poll::Pending => Poll::Pending,
                    };
                }
            };
            match frame {
                Some(Ok(frame)) => {
                    let n = frame.data_ref().map_or(0, Bytes::len);
                    if n > self.left {
                        return Poll::Ready(false);
                    }
                    self.left -= n;
                    if self.incoming.is_end_stream() {
                        return Poll::Ready(true);
                    }
                }
                None => return Poll::Ready(true),
                Some(Err(_)) => return Poll::Ready(false),
            }
        }
    }

    /// Pools the connection (`drained`) or closes it.
    pub fn settle(self: Box<Self>, drained: bool) {
        // The ticket goes last: a request waiting for the drain then finds the connection.
        let Draining {
            incoming,
            lease,
            _ticket: ticket,
            ..
        } = *self;
        drop(incoming);
        if drained {
            Counters::bump(&lease.counters.drained);
            lease.finish();
        } else {
            Counters::bump(&lease.counters.drain_failed);
            lease.close();
        }
        drop(ticket);
    }
}
