//! The checkout path: the future both pools return (an idle hit inline on its first poll),
//! the general path behind it (waiting, creating, hooks, retries), `try_get`, and the
//! tickets of a checkout under way (`Waiter`, `Checkout`).

use std::borrow::Borrow;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Instant;

use super::Shared;
use super::clock;
use super::guard::Guard;
use super::guard::leak::Track;
use super::rt::timeout_at;
use super::trace::Traced;
use super::util::{CatchUnwind, Deadline};
use crate::error::Kind;
use crate::hooks::{self, GotConn};
use crate::machine::{Acquired, Conn, KeyId, Table, Via, WaitPoll, WaiterId};
use crate::{CloseReason, Error, Health, KeyedManager};

impl<M: KeyedManager, T: Table<M>> Shared<M, T> {
    /// Runs `validate` or `reset` under `hook_timeout` and the checkout's deadline.
    pub(super) async fn run_hook(
        &self,
        hook: &'static str,
        fut: Pin<Box<dyn Future<Output = Result<(), M::Error>> + Send + '_>>,
        deadline: Option<Instant>,
        conn: u64,
    ) -> Result<(), HookFailed> {
        let limit = Instant::now() + self.timeouts.hook;
        let at = deadline.map_or(limit, |d| d.min(limit));
        match timeout_at(at, CatchUnwind(fut)).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => {
                tracing::debug!(target: "pool_core", conn, hook, error = %e, "connection failed its hook; discarded");
                Err(HookFailed::Failed)
            }
            Ok(Err(panic)) => {
                tracing::error!(target: "pool_core", conn, hook, panic, "manager panicked; connection discarded");
                Err(HookFailed::Failed)
            }
            Err(_) if deadline.is_some_and(|d| d <= Instant::now()) => Err(HookFailed::Deadline),
            Err(_) => {
                tracing::warn!(target: "pool_core", conn, hook, "hook timed out; connection discarded");
                Err(HookFailed::Failed)
            }
        }
    }

    /// Makes a connection ready for its caller: check, reset, validate. `Ok(None)` means it
    /// was discarded and the caller should try again (keeping its turn).
    async fn prepare(
        self: &Arc<Self>,
        key: KeyId,
        conn: Conn<M::Resource>,
        via: Via,
        deadline: &mut Deadline,
    ) -> Result<Option<Conn<M::Resource>>, Error> {
        if via == Via::Created {
            return Ok(Some(conn));
        }
        let mut checkout = Checkout {
            shared: self,
            key,
            conn: Some(conn),
        };
        let c = checkout
            .conn
            .as_mut()
            .expect("checkout holds the connection");
        if c.check_panicked {
            return Ok(None);
        }
        let health = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.manager.check(&mut c.res)
        }));
        let needs_reset = match health {
            Ok(Health::Ready) => false,
            Ok(Health::NeedsReset) => true,
            Ok(_) => return Ok(None),
            Err(panic) => {
                tracing::error!(target: "pool_core", conn = c.id, panic = super::util::panic_message(panic.as_ref()), "manager panicked in check");
                return Ok(None);
            }
        };
        if needs_reset || c.must_validate {
            let at = deadline.get();
            let id = c.id;
            let steps: [(&'static str, bool); 2] =
                [("reset", needs_reset), ("validate", c.must_validate)];
            for (hook, due) in steps {
                if !due {
                    continue;
                }
                let c = checkout
                    .conn
                    .as_mut()
                    .expect("checkout holds the connection");
                let fut = if hook == "reset" {
                    self.manager.reset(&mut c.res)
                } else {
                    self.manager.validate(&mut c.res)
                };
                match self.run_hook(hook, fut, at, id).await {
                    Ok(()) => {}
                    Err(HookFailed::Failed) => return Ok(None),
                    Err(HookFailed::Deadline) => {
                        return Err(self.with_state(key, |st, _, _| st.timeout_error()));
                    }
                }
            }
        }
        let mut conn = checkout.conn.take().expect("checkout holds the connection");
        conn.must_validate = false;
        Ok(Some(conn))
    }

    /// Whether an idle connection can be handed out as it is (`check` says ready and no
    /// reset or validation is due).
    /// A panic in `check` is decisive: the connection is marked and `prepare` discards it.
    #[inline]
    pub fn is_ready(&self, conn: &mut Conn<M::Resource>) -> bool {
        if conn.must_validate || conn.check_panicked {
            return false;
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.manager.check(&mut conn.res)
        })) {
            Ok(health) => health == Health::Ready,
            Err(panic) => {
                tracing::error!(target: "pool_core", conn = conn.id, panic = super::util::panic_message(panic.as_ref()), "manager panicked in check");
                conn.check_panicked = true;
                false
            }
        }
    }

    /// Every checkout that is not a plain idle hit: waiting, creating, hooks, retries.
    /// `idle` is a connection the fast path took that needs more than `is_ready`.
    /// Owns its key (a clone), so the boxed future needs no wrapper around it.
    pub async fn get_slow<'a>(
        self: &'a Arc<Self>,
        key: M::Key,
        mut idle: Option<(Conn<M::Resource>, T::Handle)>,
        acquire_timeout: Option<Duration>,
    ) -> Result<(Guard<'a, M, T>, Via), Error> {
        let key = &key;
        let started = self.hooks.as_ref().map(|h| {
            hooks::call("get_conn", || h.get_conn(key));
            Instant::now()
        });
        // One look at the subscriber for both trace events of this checkout.
        let traced = tracing::enabled!(target: "pool_core", tracing::Level::TRACE);
        if traced {
            tracing::trace!(target: "pool_core", "checkout started");
        }
        let mut deadline = Deadline::new(acquire_timeout);
        let mut retry = false;
        loop {
            let (mut conn, via, handle) = match idle.take() {
                Some((conn, handle)) => (conn, Via::Idle, handle),
                None => {
                    let at = deadline.get();
                    Waiter {
                        shared: self,
                        key,
                        at: None,
                        // A retry's first wait is already counted: time only the new one.
                        started: if retry { None } else { deadline.started() },
                        retry,
                        done: false,
                    }
                    .wait(at)
                    .await?
                }
            };
            let conn = if via == Via::Created || self.is_ready(&mut conn) {
                conn
            } else {
                match Box::pin(self.prepare(T::key_id(&handle), conn, via, &mut deadline)).await? {
                    Some(conn) => conn,
                    None => {
                        retry = true;
                        continue;
                    }
                }
            };
            let info = (started.is_some() || traced).then(|| {
                self.got_conn_info(&conn, via, started.map(|t| t.elapsed()).unwrap_or_default())
            });
            let guard = Guard::borrowed(self, conn, handle);
            if let Some(info) = info {
                self.report_got(key, &info);
            }
            return Ok((guard, via));
        }
    }

    /// An idle connection of `key` that is ready as it is, or `None` (see `Pool::try_get`).
    pub fn try_get<Q>(self: &Arc<Self>, key: &Q) -> Option<Guard<'_, M, T>>
    where
        M::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        // Each turn takes one connection out of idle; one that is not ready goes back through
        // the return path (reset on return, or closed), so the loop ends.
        for _ in 0..8 {
            let (mut conn, surplus, handle) =
                self.with_table(|t, now, fx| t.try_pop(key, now, fx))?;
            if !self.is_ready(&mut conn) {
                drop(Guard::borrowed(self, conn, handle));
                continue;
            }
            let key_id = T::key_id(&handle);
            self.with_state(key_id, |st, now, fx| st.count_hit(surplus, now, fx));
            let info = (self.hooks.is_some()
                || tracing::enabled!(target: "pool_core", tracing::Level::TRACE))
            .then(|| self.got_conn_info(&conn, Via::Idle, Duration::ZERO));
            let guard = Guard::borrowed(self, conn, handle);
            if let Some(info) = info {
                let key = guard.key();
                self.hook("get_conn", |h| h.get_conn(key));
                self.report_got(key, &info);
            }
            return Some(guard);
        }
        None
    }

    /// What the `got_conn` hook and trace event say of a checkout.
    fn got_conn_info(&self, conn: &Conn<M::Resource>, via: Via, wait: Duration) -> GotConn {
        GotConn {
            id: conn.id,
            reused: via != Via::Created,
            was_idle: via == Via::Idle,
            idle_time: match (via, conn.idle_since(Some(self.origin))) {
                (Via::Idle, Some(t)) => clock::elapsed(t),
                _ => Duration::ZERO,
            },
            wait,
        }
    }

    /// The trace event and `got_conn` hook of a served checkout.
    fn report_got(&self, key: &M::Key, info: &GotConn) {
        tracing::trace!(target: "pool_core", conn = info.id, reused = info.reused, was_idle = info.was_idle, idle_time = ?info.idle_time, "got a connection");
        self.hook("got_conn", |h| h.got_conn(key, info));
    }
}

/// Why a hook did not succeed.
pub(super) enum HookFailed {
    /// It failed, panicked or ran past `hook_timeout`: the connection is discarded.
    Failed,
    /// The checkout's deadline passed first: the caller times out.
    Deadline,
}

/// A connection being checked, reset or validated; dropped half way (the caller left, or a
/// hook failed) it is discarded: a resource cut mid-protocol is never handed out.
struct Checkout<'a, M: KeyedManager, T: Table<M>> {
    shared: &'a Arc<Shared<M, T>>,
    key: KeyId,
    conn: Option<Conn<M::Resource>>,
}

impl<M: KeyedManager, T: Table<M>> Drop for Checkout<'_, M, T> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared.with_state(self.key, |st, _, fx| {
                st.begin_close(conn, CloseReason::Broken, fx)
            });
        }
    }
}

/// A checkout that is not a plain idle hit. Its first poll finds the key's state and runs
/// `acquire` (an idle connection, or a place in the queue with this poll's waker already
/// stored); later polls look at its slot. Dropped before it was served, it leaves the queue
/// at once; if a connection was handed to it meanwhile, that connection moves on to the next
/// waiter.
struct Waiter<'a, 'k, M: KeyedManager, T: Table<M>> {
    shared: &'a Arc<Shared<M, T>>,
    key: &'k M::Key,
    /// The key's state, this waiter's place in its queue and the key's handle; `None` until
    /// queued.
    at: Option<(KeyId, WaiterId, T::Handle)>,
    /// When the checkout started, if its deadline read the clock for it (a precise start
    /// for `wait_duration`).
    started: Option<Instant>,
    /// The caller's connection turned out broken: it keeps its turn.
    retry: bool,
    done: bool,
}

type Served<M, T> = (
    Conn<<M as KeyedManager>::Resource>,
    Via,
    <T as Table<M>>::Handle,
);

impl<M: KeyedManager, T: Table<M>> Future for Waiter<'_, '_, M, T> {
    type Output = Result<Served<M, T>, Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let Some((key, id, _)) = &self.at else {
            let (retry, started) = (self.retry, self.started);
            let acquired = self.shared.with_table(|t, now, fx| {
                let (key, handle) = t.enter(self.key)?;
                let r = t.with(key, now, fx, |st, now, fx| {
                    st.acquire(
                        now,
                        retry,
                        Some(cx.waker()),
                        started.map(Instant::into_std),
                        fx,
                    )
                })?;
                Ok((key, handle, r))
            });
            return match acquired {
                Ok((key, handle, Acquired::Wait(id))) => {
                    tracing::debug!(target: "pool_core", "waiting for a connection");
                    self.at = Some((key, id, handle));
                    Poll::Pending
                }
                Ok((_, handle, Acquired::Ready(conn))) => {
                    self.done = true;
                    Poll::Ready(Ok((conn, Via::Idle, handle)))
                }
                Err(e) => {
                    self.done = true;
                    Poll::Ready(Err(e))
                }
            };
        };
        let (key, id) = (*key, *id);
        let polled = self.shared.poll_waiter(key, id, cx.waker());
        match polled {
            WaitPoll::Pending(old_waker) => {
                drop(old_waker);
                Poll::Pending
            }
            WaitPoll::Ready(r) => {
                self.done = true;
                let handle = self.at.take().expect("a queued waiter has its place").2;
                Poll::Ready(r.map(|(conn, via)| (conn, via, handle)))
            }
        }
    }
}

impl<M: KeyedManager, T: Table<M>> Waiter<'_, '_, M, T> {
    async fn wait(mut self, deadline: Option<Instant>) -> Result<Served<M, T>, Error> {
        let Some(at) = deadline else {
            return (&mut self).await;
        };
        match timeout_at(at, &mut self).await {
            Ok(r) => r,
            Err(_) => {
                self.done = true;
                let Some((key, id, handle)) = self.at.take() else {
                    return Err(Error::new(Kind::Timeout));
                };
                let r = self
                    .shared
                    .with_state(key, |st, now, fx| st.timeout_waiter(id, now, fx));
                if r.is_err() {
                    tracing::debug!(target: "pool_core", "checkout timed out");
                }
                r.map(|(conn, via)| (conn, via, handle))
            }
        }
    }
}

impl<M: KeyedManager, T: Table<M>> Drop for Waiter<'_, '_, M, T> {
    fn drop(&mut self) {
        if let (false, Some((key, id, _))) = (self.done, &self.at) {
            let (key, id) = (*key, *id);
            self.shared
                .with_state(key, |st, now, fx| st.cancel_waiter(id, now, fx));
        }
    }
}

type CheckedOut<'a, M, T> = Result<(Guard<'a, M, T>, Via), Error>;
type SlowGet<'a, M, T> = Pin<Box<dyn Future<Output = CheckedOut<'a, M, T>> + Send + 'a>>;

/// A public guard type built around a [`Guard`] (`Pooled`, `KeyedPooled`).
pub(crate) trait Wrap<'a, M: KeyedManager, T: Table<M>>: Sized {
    fn wrap(guard: Guard<'a, M, T>) -> Self;

    /// The guard of a connection the checkout's own poll took, entered in the leak book.
    /// The owned forms make theirs owned at once.
    #[inline]
    fn fresh(
        shared: &'a Arc<Shared<M, T>>,
        conn: Conn<M::Resource>,
        handle: T::Handle,
        track: &Track<'a, T::Handle>,
    ) -> Self {
        let mut guard = Guard::borrowed(shared, conn, handle);
        track.start(&mut guard);
        Self::wrap(guard)
    }
}

/// Boxes the general checkout path; out of line, so the idle hit stays small.
#[cold]
#[inline(never)]
fn start_slow<'a, M: KeyedManager, T: Table<M>, Q: ToOwned<Owned = M::Key> + ?Sized>(
    shared: &'a Arc<Shared<M, T>>,
    key: &Q,
    idle: Option<(Conn<M::Resource>, T::Handle)>,
    acquire_timeout: Option<Duration>,
) -> SlowGet<'a, M, T> {
    Box::pin(shared.get_slow(key.to_owned(), idle, acquire_timeout))
}

/// The checkout future of both pools. Its first poll serves an idle connection inline when
/// it can, and otherwise, under the same lock, takes its place in the queue with its waker
/// (or starts the create `acquire` decides); later polls look at that place. A wait for a
/// connection thus takes three lock acquisitions (queue, hand-off, take) and no allocation.
/// Hooks, a deadline, and a connection that needs more than `is_ready` (check, reset,
/// validate) continue in a boxed future, the general path.
/// The guard borrows the pool (`'a`), not the key (`'k`): the slow path owns a clone of the
/// key, so no bound ties the two lifetimes (one would make the future "not general enough"
/// inside spawned tasks).
pub(crate) struct GetFuture<
    'a,
    'k,
    M: KeyedManager,
    T: Table<M>,
    W,
    Q: ?Sized = <M as KeyedManager>::Key,
> {
    shared: &'a Arc<Shared<M, T>>,
    /// The key, or a borrowed form of it (`&str` for a `String` key), as `HashMap::get`.
    key: &'k Q,
    slow: Option<SlowGet<'a, M, T>>,
    /// Queued inline (no hooks, no deadline): the key's state, the place in its queue and the
    /// key's handle. Dropped while set, the checkout leaves the queue (a connection handed to
    /// it meanwhile moves on to the next waiter).
    queued: Option<(KeyId, WaiterId, T::Handle)>,
    /// This checkout's deadline: the pool's `acquire_timeout`, or the caller's own.
    acquire_timeout: Option<Duration>,
    /// Leak detection: the guard it yields is entered in the pool's book (see [`Track`]).
    track: Track<'a, T::Handle>,
    _out: std::marker::PhantomData<fn() -> W>,
}

impl<'a, 'k, M: KeyedManager, T: Table<M>, W, Q: ?Sized> GetFuture<'a, 'k, M, T, W, Q> {
    pub fn new(shared: &'a Arc<Shared<M, T>>, key: &'k Q, track: Track<'a, T::Handle>) -> Self {
        GetFuture {
            shared,
            key,
            slow: None,
            queued: None,
            acquire_timeout: shared.timeouts.acquire,
            track,
            _out: std::marker::PhantomData,
        }
    }

    /// Names `caller` in a leak report instead of the checkout's own line.
    pub fn called_from(&mut self, caller: &'static std::panic::Location<'static>) {
        self.track.called_from(caller);
    }

    /// Where a leak report names this checkout, for `Debug`.
    pub fn track(&self) -> &Track<'a, T::Handle> {
        &self.track
    }

    /// The same checkout with its own deadline instead of the pool's `acquire_timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = Some(timeout);
        self
    }

    pub fn is_waiting(&self) -> bool {
        self.slow.is_some() || self.queued.is_some()
    }
}

impl<M: KeyedManager, T: Table<M>, W, Q: ?Sized> Drop for GetFuture<'_, '_, M, T, W, Q> {
    fn drop(&mut self) {
        if let Some((key, id, _)) = self.queued.take() {
            self.shared
                .with_state(key, |st, now, fx| st.cancel_waiter(id, now, fx));
        }
    }
}

impl<'a, 'k, M, T, W, Q> Future for GetFuture<'a, 'k, M, T, W, Q>
where
    M: KeyedManager,
    T: Table<M>,
    W: Wrap<'a, M, T>,
    M::Key: Borrow<Q>,
    Q: Hash + Eq + ToOwned<Owned = M::Key> + ?Sized,
{
    type Output = Result<W, Error>;

    #[inline]
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let shared = this.shared;
        let track = &this.track;
        if let Some(slow) = &mut this.slow {
            return slow
                .as_mut()
                .poll(cx)
                .map_ok(|served| unwrap_slow(track, served));
        }
        let (mut conn, via, handle) = match this.queued {
            Some((key, id, _)) => match shared.poll_waiter(key, id, cx.waker()) {
                WaitPoll::Pending(old_waker) => {
                    drop(old_waker);
                    return Poll::Pending;
                }
                WaitPoll::Ready(served) => {
                    let (_, _, handle) = this.queued.take().expect("queued");
                    let (conn, via) = served?;
                    (conn, via, handle)
                }
            },
            // The first poll. A subscriber that wants the `checkout` span gets it on the
            // general path (boxed, entered at every poll); otherwise this costs one look at
            // the level filter.
            None => {
                if tracing::enabled!(target: "pool_core", tracing::Level::DEBUG)
                    && let Some(traced) = start_traced(shared, this.key, this.acquire_timeout)
                {
                    let slow = this.slow.insert(traced);
                    return slow
                        .as_mut()
                        .poll(cx)
                        .map_ok(|served| unwrap_slow(track, served));
                }
                let mut table = shared.state.lock();
                match table.pop_fast(this.key) {
                    Some((conn, handle)) => {
                        drop(table);
                        (conn, Via::Idle, handle)
                    }
                    None if shared.hooks.is_none() && this.acquire_timeout.is_none() => {
                        match queue(shared, table, this.key, cx)? {
                            Queued::Wait(key, id, handle) => {
                                tracing::debug!(target: "pool_core", "waiting for a connection");
                                this.queued = Some((key, id, handle));
                                return Poll::Pending;
                            }
                            Queued::Ready(conn, handle) => (conn, Via::Idle, handle),
                        }
                    }
                    None => {
                        drop(table);
                        let slow = this.slow.insert(start_slow(
                            shared,
                            this.key,
                            None,
                            this.acquire_timeout,
                        ));
                        return slow
                            .as_mut()
                            .poll(cx)
                            .map_ok(|served| unwrap_slow(track, served));
                    }
                }
            }
        };
        if via == Via::Created || shared.is_ready(&mut conn) {
            tracing::trace!(target: "pool_core", conn = conn.id, reused = via != Via::Created, was_idle = via == Via::Idle, "got a connection");
            return Poll::Ready(Ok(W::fresh(shared, conn, handle, track)));
        }
        // It needs a check, a reset or a validation: the general path, with this connection.
        let slow = this.slow.insert(start_slow(
            shared,
            this.key,
            Some((conn, handle)),
            this.acquire_timeout,
        ));
        slow.as_mut()
            .poll(cx)
            .map_ok(|served| unwrap_slow(track, served))
    }
}

/// The caller's guard from what the general path served, entered in the leak book.
fn unwrap_slow<'a, M: KeyedManager, T: Table<M>, W: Wrap<'a, M, T>>(
    track: &Track<'a, T::Handle>,
    (mut guard, _): (Guard<'a, M, T>, Via),
) -> W {
    track.start(&mut guard);
    W::wrap(guard)
}

/// The general path inside the checkout's `checkout` span (see [`Traced`]), or `None` when
/// the subscriber does not want the span after all.
#[cold]
#[inline(never)]
fn start_traced<'a, M: KeyedManager, T: Table<M>, Q>(
    shared: &'a Arc<Shared<M, T>>,
    key: &Q,
    acquire_timeout: Option<Duration>,
) -> Option<SlowGet<'a, M, T>>
where
    Q: ToOwned<Owned = M::Key> + ?Sized,
    M::Key: Borrow<Q>,
{
    let mut trace = Traced::start(shared, key)?;
    let span = trace.span().clone();
    let slow = tracing::Instrument::instrument(
        shared.get_slow(key.to_owned(), None, acquire_timeout),
        span,
    );
    Some(Box::pin(async move {
        let served = slow.await;
        match &served {
            Ok((guard, via)) => trace.served(guard.conn().id, *via),
            Err(e) => trace.failed(e),
        }
        trace.done();
        served
    }))
}

/// What the first poll's `acquire` gave.
enum Queued<M: KeyedManager, T: Table<M>> {
    /// A place in the queue of the key's state, with the key's handle.
    Wait(KeyId, WaiterId, T::Handle),
    /// A connection at once.
    Ready(Conn<M::Resource>, T::Handle),
}

/// The rest of a first poll that found nothing idle, under the lock it already holds: the
/// one-step wait when the table allows it (`Table::wait_fast`), else the key's state (made
/// if new), then `acquire` with the poll's waker. Unlocks, then applies the
/// effects (a create started for this waiter).
#[inline(never)]
fn queue<M, T, Q>(
    shared: &Arc<Shared<M, T>>,
    mut table: super::rt::MutexGuard<'_, T>,
    key: &Q,
    cx: &Context<'_>,
) -> Result<Queued<M, T>, Error>
where
    M: KeyedManager,
    T: Table<M>,
    M::Key: Borrow<Q>,
    Q: Hash + Eq + ToOwned<Owned = M::Key> + ?Sized,
{
    let mut now = crate::machine::Now::lazy(clock::CLOCK);
    // The pool full and no knob needing the clock: a place in the queue, nothing else.
    if let Some((id, waiter, handle)) = table.wait_fast(key, cx.waker(), &now) {
        drop(table);
        return Ok(Queued::Wait(id, waiter, handle));
    }
    let mut fx = crate::machine::Effects::default();
    let acquired = (|| {
        let (id, handle) = match table.find(key) {
            Some(id) => (id, table.handle(id)),
            None => table.enter(&key.to_owned())?,
        };
        let r = table.with(id, &mut now, &mut fx, |st, now, fx| {
            st.acquire(now, false, Some(cx.waker()), None, fx)
        })?;
        Ok(match r {
            Acquired::Wait(waiter) => Queued::Wait(id, waiter, handle),
            Acquired::Ready(conn) => Queued::Ready(conn, handle),
        })
    })();
    drop(table);
    shared.apply(fx);
    acquired
}
