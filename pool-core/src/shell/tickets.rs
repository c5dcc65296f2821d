//! The pool's tasks (a create, a close, the reset of a returned connection), each owned by
//! an RAII ticket that reports to the state however the task ends, and the general return
//! path, which starts resets.

use std::sync::Arc;

use tokio::time::Instant;

use super::Shared;
use super::clock::CLOCK;
use super::rt::{MutexGuard, timeout_at};
use super::util::CatchUnwind;
use crate::error::Kind;
use crate::machine::{Conn, Effects, KeyId, Now, Table, WaiterId};
use crate::{CloseReason, Error, Health, KeyedManager};

impl<M: KeyedManager, T: Table<M>> Shared<M, T> {
    /// Runs a create in a task of its own, under `create_timeout`.
    pub(super) fn spawn_create(self: &Arc<Self>, key: KeyId, tag: Option<WaiterId>) {
        let ticket = CreateTicket {
            shared: self.clone(),
            key,
            tag,
            done: false,
        };
        let handle = self.handle(key);
        // A span of its own (a child would keep its parent open until the create ends),
        // linked to the checkout whose poll started it. Started elsewhere (a return, the
        // reaper, another create's failure), it is linked to nothing: the span current
        // there belongs to somebody else.
        let span = tracing::debug_span!(target: "pool_core", parent: None, "create");
        if !span.is_disabled() {
            let current = tracing::Span::current();
            if current
                .metadata()
                .is_some_and(|m| m.target() == "pool_core" && m.name() == "checkout")
            {
                span.follows_from(&current);
            }
        }
        let create = async move {
            let mut ticket = ticket;
            let shared = ticket.shared.clone();
            tracing::debug!(target: "pool_core", "creating a connection");
            shared.hook("create_start", |h| h.create_start(T::key_of(&handle)));
            let result = timeout_at(
                Instant::now() + shared.timeouts.create,
                CatchUnwind(shared.manager.create(T::key_of(&handle))),
            )
            .await;
            ticket.finish(result, T::key_of(&handle));
        };
        self.runtime
            .spawn(tracing::Instrument::instrument(create, span));
    }

    /// Runs a close in a task of its own, under `hook_timeout`.
    pub(super) fn spawn_close(
        self: &Arc<Self>,
        key: KeyId,
        conn: Conn<M::Resource>,
        reason: CloseReason,
    ) {
        let ticket = CloseTicket {
            shared: self.clone(),
            key,
            reason,
        };
        let id = conn.id;
        let handle = self.hooks.as_ref().map(|_| self.handle(key));
        self.runtime.spawn(async move {
            let shared = ticket.shared.clone();
            tracing::debug!(target: "pool_core", conn = id, reason = reason.as_str(), "closing a connection");
            match timeout_at(Instant::now() + shared.timeouts.hook, CatchUnwind(shared.manager.close(conn.res))).await {
                Ok(Ok(())) => {}
                Ok(Err(panic)) => tracing::error!(target: "pool_core", conn = id, panic, "manager panicked in close"),
                Err(_) => tracing::warn!(target: "pool_core", conn = id, "close timed out; the resource was dropped"),
            }
            drop(ticket);
            if let Some(handle) = handle {
                shared.hook("closed", |h| h.closed(T::key_of(&handle), id, reason));
            }
        });
    }

    /// A guard came back, and `Table::push_fast` declined it: the general return path (the
    /// caller holds the lock; `slot` holds the connection). Fires the `put_idle` hook, at
    /// once or, for a connection that needs a reset, once the reset is done.
    #[cold]
    #[inline(never)]
    pub fn put_back(
        self: &Arc<Self>,
        mut st: MutexGuard<'_, T>,
        handle: &T::Handle,
        slot: &mut Option<Conn<M::Resource>>,
        health: Health,
    ) {
        let Some(conn) = slot.take() else {
            return;
        };
        let mut now = Now::lazy(CLOCK);
        let mut fx = Effects::default();
        let id = conn.id;
        let mut to_reset = None;
        let returned = st.with(
            T::key_id(handle),
            &mut now,
            &mut fx,
            |st, now, fx| match health {
                Health::Ready => Some(st.release(conn, now, fx)),
                Health::NeedsReset if !st.is_closed() => {
                    st.begin_reset();
                    to_reset = Some(conn);
                    None
                }
                Health::NeedsReset => Some(st.begin_close(conn, CloseReason::Shutdown, fx)),
                _ => Some(st.begin_close(conn, CloseReason::Broken, fx)),
            },
        );
        drop(st);
        self.apply(fx);
        if let Some(conn) = to_reset {
            self.spawn_reset(handle.clone(), conn);
        }
        if let Some(returned) = returned {
            tracing::trace!(target: "pool_core", conn = id, returned = returned.as_str(), "returned a connection");
            self.hook("put_idle", |h| h.put_idle(T::key_of(handle), id, returned));
        }
    }

    /// Resets a returned connection in a task of its own, under `hook_timeout`: nobody gets
    /// it before the reset succeeds; a failed, timed-out or panicking reset closes it.
    fn spawn_reset(self: &Arc<Self>, handle: T::Handle, conn: Conn<M::Resource>) {
        let mut ticket = ResetTicket {
            shared: self.clone(),
            handle,
            conn: Some(conn),
        };
        self.runtime.spawn(async move {
            let shared = ticket.shared.clone();
            let conn = ticket
                .conn
                .as_mut()
                .expect("a reset ticket holds its connection");
            let id = conn.id;
            tracing::debug!(target: "pool_core", conn = id, "resetting a returned connection");
            let fut = shared.manager.reset(&mut conn.res);
            let ok = shared.run_hook("reset", fut, None, id).await.is_ok();
            ticket.finish(ok);
        });
    }
}

/// A returned connection being reset. Dropped unfinished (its runtime shut down), it closes
/// the connection as broken; finished, it releases it or closes it.
struct ResetTicket<M: KeyedManager, T: Table<M>> {
    shared: Arc<Shared<M, T>>,
    handle: T::Handle,
    conn: Option<Conn<M::Resource>>,
}

impl<M: KeyedManager, T: Table<M>> ResetTicket<M, T> {
    fn finish(&mut self, ok: bool) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        let id = conn.id;
        let returned = self
            .shared
            .with_state(T::key_id(&self.handle), |st, now, fx| {
                st.end_reset();
                if ok {
                    st.release(conn, now, fx)
                } else {
                    st.begin_close(conn, CloseReason::Broken, fx)
                }
            });
        tracing::trace!(target: "pool_core", conn = id, returned = returned.as_str(), "returned a connection after its reset");
        let key = T::key_of(&self.handle);
        self.shared
            .hook("put_idle", |h| h.put_idle(key, id, returned));
    }
}

impl<M: KeyedManager, T: Table<M>> Drop for ResetTicket<M, T> {
    fn drop(&mut self) {
        self.finish(false);
    }
}

/// A create in flight. Dropped unfinished (its runtime shut down) it still frees its slot.
struct CreateTicket<M: KeyedManager, T: Table<M>> {
    shared: Arc<Shared<M, T>>,
    key: KeyId,
    tag: Option<WaiterId>,
    done: bool,
}

type CreateResult<M> = Result<
    Result<Result<<M as KeyedManager>::Resource, <M as KeyedManager>::Error>, String>,
    super::rt::Elapsed,
>;

impl<M: KeyedManager, T: Table<M>> CreateTicket<M, T> {
    /// Runs the `create_done` hook, then hands the result to the state (so the hook sees the
    /// new connection before any caller does).
    fn finish(&mut self, result: CreateResult<M>, key: &M::Key) {
        self.done = true;
        let tag = self.tag;
        let (res, err) = match result {
            Ok(Ok(Ok(res))) => (Some(res), None),
            Ok(Ok(Err(e))) => {
                tracing::warn!(target: "pool_core", error = %e, "failed to create a connection");
                (
                    None,
                    Some(Error::with_cause(Kind::Create, Some(Arc::new(e)))),
                )
            }
            Ok(Err(panic)) => {
                tracing::error!(target: "pool_core", panic, "manager panicked in create");
                let cause = Arc::new(crate::error::Panicked(panic));
                (None, Some(Error::with_cause(Kind::Panic, Some(cause))))
            }
            Err(_) => {
                tracing::warn!(target: "pool_core", "create timed out");
                (None, Some(Error::new(Kind::CreateTimeout)))
            }
        };
        let shared = &self.shared;
        match res {
            Some(res) => {
                // The new connection's share of `lifetime_jitter`: the machine draws nothing.
                let jitter = fastrand::f32();
                let id = shared
                    .next_id
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(target: "pool_core", conn = id, "created a connection");
                shared.hook("create_done", |h| h.create_done(key, Ok(id)));
                shared.with_state(self.key, |st, now, fx| {
                    st.handle_created(res, id, tag, jitter, now, fx)
                });
            }
            None => {
                let err = err.expect("a failed create has an error");
                shared.hook("create_done", |h| h.create_done(key, Err(&err)));
                shared.with_state(self.key, |st, now, fx| {
                    st.handle_create_failed(err, tag, now, fx)
                });
            }
        }
    }
}

impl<M: KeyedManager, T: Table<M>> Drop for CreateTicket<M, T> {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            let tag = self.tag;
            let cause = Arc::new(crate::error::CreateAbandoned);
            self.shared.with_state(self.key, |st, now, fx| {
                st.handle_create_failed(Error::with_cause(Kind::Create, Some(cause)), tag, now, fx)
            });
        }
    }
}

/// A close in flight: its slot frees and its reason is counted when this drops.
struct CloseTicket<M: KeyedManager, T: Table<M>> {
    shared: Arc<Shared<M, T>>,
    key: KeyId,
    reason: CloseReason,
}

impl<M: KeyedManager, T: Table<M>> Drop for CloseTicket<M, T> {
    fn drop(&mut self) {
        let reason = self.reason;
        self.shared
            .with_state(self.key, |st, now, fx| st.handle_closed(reason, now, fx));
    }
}
