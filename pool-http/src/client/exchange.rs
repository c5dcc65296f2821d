//! One request on the wire: a try on an HTTP/1.1 connection of its own or as a stream of a
//! shared HTTP/2 connection, Go's retry rule over the tries, and what holds a connection
//! while its request is in flight (closed, or rescued, when the caller leaves).

use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use http::{Method, Request, Version};
use pool_core::KeyedPooled;
use tokio::time::Instant;

use super::{Client, Head, Inner};
use crate::body::{Body, Hold, Lease};
use crate::config::Settings;
use crate::h2::StreamLease;
use crate::manager::{Counters, Dialer, DrainTicket};
use crate::request::{
    RequestBody, Snapshot, Written, as_h2, asks_close, closed_early, keeps_alive, unprocessed,
    upgrading,
};
use crate::{ConnectError, Error, Origin, Phase};

/// Most tries of one request: each retry needs another reused connection, so this only bounds
/// a pathological run of dead idle connections.
const MAX_TRIES: u32 = 16;

/// Longest a request waits for a reused HTTP/1.1 connection to take it (hyper turning the
/// connection around after its last exchange takes microseconds) before the connection is
/// closed and the request goes to another one.
pub(crate) const READY_WAIT: Duration = Duration::from_millis(50);

/// What every try of one request shares: its deadline, the timeout it came from (for the
/// message), and its span (to record the connection's reuse).
#[derive(Clone, Copy)]
pub(super) struct Call<'a> {
    pub(super) deadline: Option<Instant>,
    pub(super) timeout: Option<Duration>,
    pub(super) span: &'a tracing::Span,
}

/// A try that failed, and what the retry rule needs to know about it.
struct Failed {
    error: Error,
    /// The connection had carried a request before (a fresh one is never retried).
    reused: bool,
    /// The request, when provably nothing of it was sent.
    back: Option<Request<RequestBody>>,
    /// The connection ended before a byte of response (Go's `errServerClosedIdle`).
    closed_early: bool,
    /// HTTP/2 says the server never processed the stream (refused, or above a graceful
    /// GOAWAY's last stream): any request may go again.
    unprocessed: bool,
    /// Not a byte of the request left (Go's `nothingWrittenError`): any request may go again
    /// if its body can be sent twice.
    nothing_written: bool,
}

impl Failed {
    /// Not retried whatever the request.
    fn fatal(error: Error) -> Failed {
        Failed {
            error,
            reused: false,
            back: None,
            closed_early: false,
            unprocessed: false,
            nothing_written: false,
        }
    }
}

/// Waits for the response head, under `response_header_timeout` when set: as Go's
/// `ResponseHeaderTimeout`, it counts from when the request is written, its body included
/// (`written`: hyper has taken the body's last frame). Until then only the response (a server
/// may answer early) or the whole-request timeout ends the wait. `sending` is best a pinned
/// reference (`pin!`): an `async fn` holds its argument and then the timeout around it, twice
/// the future's size.
async fn with_header_timeout<T, F>(
    settings: &Settings,
    written: &Written,
    sending: F,
) -> Result<T, Failed>
where
    F: std::future::Future<Output = T> + Unpin,
{
    let Some(t) = settings.response_header_timeout else {
        return Ok(sending.await);
    };
    let mut sending = sending;
    let early = std::future::poll_fn(|cx| {
        if let Poll::Ready(response) = std::pin::Pin::new(&mut sending).poll(cx) {
            return Poll::Ready(Some(response));
        }
        written.poll_written(cx).map(|()| None)
    })
    .await;
    if let Some(response) = early {
        return Ok(response);
    }
    tokio::time::timeout(t, sending)
        .await
        .map_err(|_| Failed::fatal(Error::timeout_after(Phase::ResponseHeader, t)))
}

/// The response of an HTTP/1.1 request, while awaited.
type PendingResponse = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = Result<
                    http::Response<hyper::body::Incoming>,
                    hyper::client::conn::TrySendError<Request<RequestBody>>,
                >,
            > + Send,
    >,
>;

/// Holds a connection while a request is on it. Dropped after the request started (the
/// caller left, or a timeout), the connection is never pooled busy: it is closed, or, when
/// the response is still awaited and the drain is on, rescued (see [`rescue`]).
struct InFlight<'a> {
    client: &'a Inner,
    conn: Option<KeyedPooled<'static, Dialer>>,
    sent: bool,
    /// The response, from the moment the request is sent until its head arrives.
    pending: Option<PendingResponse>,
    /// The request is a HEAD (its response has no body).
    head: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else { return };
        if !self.sent {
            return;
        }
        let settings = &self.client.settings;
        if let Some(pending) = self.pending.take()
            && !settings.drain.is_off()
            && !settings.disable_keep_alives
            && let Ok(rt) = tokio::runtime::Handle::try_current()
        {
            let counters = self.client.counters.clone();
            let ticket = DrainTicket::new(&counters, KeyedPooled::key(&conn));
            let settings = settings.clone();
            drop(rt.spawn(rescue(conn, pending, counters, settings, self.head, ticket)));
            return;
        }
        KeyedPooled::discard(conn);
    }
}

/// A request abandoned while its response was awaited (a timeout, or the caller left): the
/// server is answering it, and a connection that finishes that answer within the drain
/// budget (the head within `max_time`, then the body as a dropped body is drained) goes back
/// to the pool instead of being closed. Go closes it; under a latency spike past the callers'
/// timeouts that turns every timeout into a new connection, on a server already slow.
async fn rescue(
    conn: KeyedPooled<'static, Dialer>,
    pending: PendingResponse,
    counters: Arc<Counters>,
    settings: Arc<Settings>,
    head: bool,
    _ticket: DrainTicket,
) {
    match tokio::time::timeout(settings.drain.max_time, pending).await {
        Ok(Ok(response)) if keeps_alive(&response, head) => {
            Counters::bump(&counters.rescued);
            let lease = Lease {
                hold: Hold::Conn(conn),
                keep: true,
                drain: settings.drain,
                counters,
                timeout: None,
            };
            // Dropped at once: pooled now if the body already ended, else drained within the
            // budget like any body dropped early.
            drop(Body::new(response.into_body(), lease, None));
        }
        _ => KeyedPooled::discard(conn),
    }
}

impl Client {
    pub(super) async fn send(
        &self,
        origin: &Origin,
        mut req: Request<RequestBody>,
        sent: &Snapshot,
        call: Call<'_>,
    ) -> Result<Head, Error> {
        let settings = &self.inner.settings;
        if origin.is_https() && !settings.has_tls() {
            return Err(Error::dial(ConnectError::NoTls {
                host: origin.authority(),
            }));
        }
        let head = req.method() == Method::HEAD;
        let mut tries = 0;
        loop {
            tries += 1;
            let attempt = if self.speaks_h2(origin) {
                self.try_h2(origin, req, head, call).await
            } else {
                self.try_h1(origin, req, head, call).await
            };
            let failed = match attempt {
                Ok(response) => {
                    if tries > 1 && !call.span.is_disabled() {
                        call.span.record("retries", tries - 1);
                    }
                    return Ok(response);
                }
                Err(failed) => failed,
            };
            let again = if !failed.reused || tries >= MAX_TRIES {
                None
            } else if let Some(back) = failed.back {
                if back.version() == Version::HTTP_2 && !self.speaks_h2(origin) {
                    // In HTTP/2 form (absolute target, no `Host`), and the origin stopped
                    // offering HTTP/2: made again for HTTP/1.1.
                    self.again(sent)
                } else {
                    Some(back)
                }
            } else if failed.nothing_written
                || failed.unprocessed
                || (failed.closed_early && sent.idempotent())
            {
                self.again(sent)
            } else {
                None
            };
            match again {
                Some(next) => {
                    Counters::bump(&self.inner.counters.retried);
                    tracing::debug!(%origin, error = %failed.error, "retrying on another connection");
                    req = next;
                }
                None => {
                    if tries > 1 && !call.span.is_disabled() {
                        call.span.record("retries", tries - 1);
                    }
                    return Err(failed.error);
                }
            }
        }
    }

    /// Whether the next try of `origin` goes over HTTP/2: ALPN chose it for an https
    /// origin, or prior knowledge for http (a forward proxy speaks HTTP/1.1: absolute-form
    /// requests).
    fn speaks_h2(&self, origin: &Origin) -> bool {
        if origin.is_https() {
            self.inner.h2.negotiated_h2(origin)
        } else {
            self.inner.settings.http2_prior_knowledge && !origin.is_proxy_forward()
        }
    }

    /// One try on an HTTP/1.1 connection of its own.
    async fn try_h1(
        &self,
        origin: &Origin,
        mut req: Request<RequestBody>,
        head: bool,
        call: Call<'_>,
    ) -> Result<Head, Failed> {
        let settings = &self.inner.settings;
        if self.inner.counters.drains.any()
            && self
                .inner
                .started_pool()
                .and_then(|pool| pool.key_stats(origin))
                .is_some_and(|s| s.idle == 0)
        {
            // A connection of this origin being drained is back within the drain budget.
            self.inner
                .counters
                .drains
                .wait_for(origin, settings.drain.max_time)
                .await;
        }
        let conn = self
            .inner
            .pool()
            .map_err(Failed::fatal)?
            .get_owned(origin)
            .await
            .map_err(|e| Failed::fatal(Error::pool(e)))?;
        conn.link.checked_out();
        let mut flight = InFlight {
            client: &self.inner,
            conn: Some(conn),
            sent: false,
            pending: None,
            head,
        };
        if flight
            .conn
            .as_ref()
            .is_some_and(|c| c.sender.h2().is_some())
        {
            // ALPN chose HTTP/2: this connection becomes the origin's shared one.
            let conn = flight.conn.take().expect("just checked");
            let stream = self.inner.h2.adopt(origin, conn);
            // Boxed: once per connection, and the HTTP/1.1 path's future stays small.
            return Box::pin(self.send_stream(origin, stream, req, head, call)).await;
        }
        let conn = flight.conn.as_mut().expect("just set");
        let reused = conn.uses > 0;
        conn.uses += 1;
        let wire = conn.wire.clone();
        // Either side's `close` means never pooled.
        let asks_close = asks_close(req.headers(), req.version());
        req.body_mut().track(&conn.link);
        let Some(sender) = conn.sender.h1() else {
            return Err(Failed::fatal(Error::config(
                "http2_prior_knowledge",
                "an HTTP/2 connection came back for an HTTP/1.1 origin",
            )));
        };
        // Ready at once almost always: no timer then. A reused connection that is not gets
        // `READY_WAIT` (hyper may be finishing the last exchange), then is closed: its last
        // request may be stuck behind a server that stopped reading.
        let ready = match std::future::poll_fn(|cx| Poll::Ready(sender.poll_ready(cx))).await {
            Poll::Ready(ready) => Some(ready),
            Poll::Pending if reused => {
                // Dropped while waiting here (a timeout, the caller left), it is closed.
                flight.sent = true;
                tokio::time::timeout(READY_WAIT, sender.ready()).await.ok()
            }
            Poll::Pending => Some(sender.ready().await),
        };
        let failed = |error| Failed {
            error,
            reused,
            back: None,
            closed_early: false,
            unprocessed: false,
            nothing_written: true,
        };
        match ready {
            Some(Ok(())) => {}
            // The connection died while idle; nothing was written.
            Some(Err(e)) => {
                flight.sent = true;
                return Err(Failed {
                    back: Some(req),
                    ..failed(Error::request(&origin.authority(), e))
                });
            }
            // Stuck: closed (by `flight`'s drop), and nothing was written on it.
            None => {
                tracing::debug!(%origin, "a reused connection was not ready in time; closed");
                return Err(Failed {
                    back: Some(req),
                    ..failed(Error::timeout_after(Phase::Acquire, READY_WAIT))
                });
            }
        }
        let (written, read) = (wire.written(), wire.read());
        let body_written = req.body_mut().watch_written();
        flight.sent = true;
        flight.pending = Some(Box::pin(sender.try_send_request(req)));
        let awaited = std::future::poll_fn(|cx| {
            flight
                .pending
                .as_mut()
                .expect("awaited until it completes")
                .as_mut()
                .poll(cx)
        });
        let result = with_header_timeout(settings, &body_written, std::pin::pin!(awaited)).await?;
        flight.pending = None;
        match result {
            Ok(response) => {
                let keep =
                    !settings.disable_keep_alives && !asks_close && keeps_alive(&response, head);
                let conn = flight.conn.take().expect("still held");
                Ok(self.respond(response, Hold::Conn(conn), keep, call))
            }
            Err(mut e) => {
                drop(flight);
                let nothing_written = wire.written() == written;
                let back = e.take_message().filter(|_| nothing_written);
                let e = e.into_error();
                Err(Failed {
                    closed_early: wire.read() == read && closed_early(&e),
                    error: Error::request(&origin.authority(), e),
                    reused,
                    back,
                    unprocessed: false,
                    nothing_written,
                })
            }
        }
    }

    /// One try as a stream of the origin's shared HTTP/2 connection. Byte counts say nothing
    /// here (other streams share the socket): only a request hyper gives back unsent is
    /// retried, as Go does for HTTP/2.
    async fn try_h2(
        &self,
        origin: &Origin,
        req: Request<RequestBody>,
        head: bool,
        call: Call<'_>,
    ) -> Result<Head, Failed> {
        let stream = match self
            .inner
            .h2
            .acquire(self.inner.pool().map_err(Failed::fatal)?, origin)
            .await
        {
            Ok(Some(stream)) => stream,
            // The server no longer offers HTTP/2: go again over HTTP/1.1.
            Ok(None) => {
                return Err(Failed {
                    error: Error::config("tls", "the server stopped offering HTTP/2"),
                    reused: true,
                    back: Some(req),
                    closed_early: false,
                    unprocessed: false,
                    nothing_written: true,
                });
            }
            Err(e) => return Err(Failed::fatal(e)),
        };
        self.send_stream(origin, stream, req, head, call).await
    }

    /// Sends `req` as one stream of a shared HTTP/2 connection.
    async fn send_stream(
        &self,
        origin: &Origin,
        stream: StreamLease,
        mut req: Request<RequestBody>,
        head: bool,
        call: Call<'_>,
    ) -> Result<Head, Failed> {
        as_h2(origin, &mut req);
        let written = req.body_mut().watch_written();
        let mut sender = stream.sender();
        let sending = std::pin::pin!(sender.try_send_request(req));
        let result = with_header_timeout(&self.inner.settings, &written, sending).await?;
        match result {
            Ok(response) => {
                let keep = keeps_alive(&response, head);
                Ok(self.respond(response, Hold::Stream(stream), keep, call))
            }
            Err(mut e) => {
                let back = e.take_message();
                let e = e.into_error();
                let never_ran = unprocessed(&e);
                Err(Failed {
                    back,
                    unprocessed: never_ran,
                    error: Error::request(&origin.authority(), e),
                    // A stream the server provably never processed may go again even on a
                    // fresh connection: nothing of it ran.
                    reused: stream.reused || never_ran,
                    closed_early: false,
                    nothing_written: false,
                })
            }
        }
    }

    fn respond(
        &self,
        response: http::Response<hyper::body::Incoming>,
        hold: Hold,
        keep: bool,
        call: Call<'_>,
    ) -> Head {
        if !call.span.is_disabled() {
            let reused = match &hold {
                // Counted before the request went out: more than one use is a reuse.
                Hold::Conn(conn) => conn.uses > 1,
                Hold::Stream(stream) => stream.reused,
            };
            call.span.record("reused", reused);
        }
        let hold = match hold {
            Hold::Conn(conn) if response.status() == http::StatusCode::SWITCHING_PROTOCOLS => {
                return upgrading(response, conn, &self.inner.counters);
            }
            hold => hold,
        };
        let lease = Lease {
            hold,
            keep,
            drain: self.inner.settings.drain,
            counters: self.inner.counters.clone(),
            timeout: call.timeout,
        };
        response.map(|incoming| Body::new(incoming, lease, call.deadline))
    }
}
