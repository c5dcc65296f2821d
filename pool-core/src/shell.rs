//! The async shell both pools share: the tasks that create and close, the checkout path
//! (waiting, hooks, retries) and the RAII tickets that keep the state's counts right
//! whatever is dropped when. Generic over the [`Table`] it locks: one state for
//! [`Pool`](crate::Pool), one per key for [`KeyedPool`](crate::KeyedPool).

use std::borrow::Borrow;
use std::future::Future;
use std::hash::Hash;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::Timeouts;
use crate::error::Kind;
use crate::guard::Guard;
use crate::hooks::{self, GotConn, Hooks};
use crate::rt::{Mutex, Runtime, timeout_at};
use crate::state::{Acquired, Conn, Effects, KeyId, Now, Rare, State, Via, WaitPoll};
use crate::table::Table;
use crate::util::{CatchUnwind, Deadline};
use crate::waiters::WaiterId;
use crate::{CloseReason, Error, Health, KeyedManager};

/// What every handle, guard and task of one pool shares.
pub(crate) struct Shared<M: KeyedManager, T> {
    pub manager: M,
    pub state: Mutex<T>,
    pub timeouts: Timeouts,
    runtime: Runtime,
    reaper: Arc<Notify>,
    drained: Notify,
    pub hooks: Option<Arc<dyn Hooks<M::Key>>>,
    /// The next connection id: unique per pool, across keys.
    next_id: std::sync::atomic::AtomicU64,
    /// What the pool's stamps count from: its start (see `state::Stamp`).
    pub origin: Instant,
}

impl<M: KeyedManager, T: Table<M>> Shared<M, T> {
    /// Starts a pool around `table` (and its reaper, when the runtime has timers); `origin`
    /// is what the table's stamps count from.
    ///
    /// # Errors
    /// A config error (knob `"runtime"`) outside a tokio runtime.
    pub fn start(
        manager: M,
        table: T,
        timeouts: Timeouts,
        hooks: Option<Arc<dyn Hooks<M::Key>>>,
        origin: Instant,
    ) -> Result<Arc<Self>, Error> {
        let runtime = Runtime::current().ok_or_else(|| {
            Error::config(
                "runtime",
                "is missing: build the pool inside a tokio runtime",
            )
        })?;
        let reaper = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            manager,
            state: Mutex::new(table),
            timeouts,
            runtime,
            reaper: reaper.clone(),
            drained: Notify::new(),
            hooks,
            next_id: std::sync::atomic::AtomicU64::new(1),
            origin,
        });
        if shared.runtime.has_timers() {
            shared
                .runtime
                .spawn(crate::reaper::run(Arc::downgrade(&shared), reaper));
        }
        Ok(shared)
    }

    /// Runs what the state decided, after its lock was released.
    #[inline]
    pub fn apply(self: &Arc<Self>, fx: Effects<M::Resource>) {
        if let Some(w) = fx.wake {
            w.wake();
        }
        if let Some(rare) = fx.rare {
            self.apply_rare(*rare);
        }
    }

    #[cold]
    fn apply_rare(self: &Arc<Self>, rare: Rare<M::Resource>) {
        let Rare {
            wakes,
            creates,
            closes,
            notify_reaper,
            drained,
            stale,
        } = rare;
        drop(stale);
        for w in wakes {
            w.wake();
        }
        for (key, tag) in creates {
            self.spawn_create(key, tag);
        }
        for (key, conn, reason) in closes {
            self.spawn_close(key, conn, reason);
        }
        if notify_reaper {
            self.reaper.notify_one();
        }
        if drained {
            self.drained.notify_waiters();
        }
    }

    /// Locks the table, runs `f` on `key`'s state, unlocks, then applies the effects.
    pub fn with_state<R>(
        self: &Arc<Self>,
        key: KeyId,
        f: impl FnOnce(&mut State<M::Resource>, &mut Now, &mut Effects<M::Resource>) -> R,
    ) -> R {
        self.with_table(|t, now, fx| t.with(key, now, fx, f))
    }

    /// Locks the table, runs `f`, unlocks, then applies the effects.
    pub fn with_table<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut T, &mut Now, &mut Effects<M::Resource>) -> R,
    ) -> R {
        let mut now = Now::lazy();
        let mut fx = Effects::default();
        let r = f(&mut self.state.lock(), &mut now, &mut fx);
        self.apply(fx);
        r
    }

    /// The handle of a live key.
    pub fn handle(&self, key: KeyId) -> T::Handle {
        T::fixed_handle().unwrap_or_else(|| self.state.lock().handle(key))
    }

    /// Runs a lifecycle hook when hooks are set.
    #[inline]
    pub fn hook(&self, name: &'static str, f: impl FnOnce(&dyn Hooks<M::Key>)) {
        if let Some(h) = &self.hooks {
            hooks::call(name, || f(h.as_ref()));
        }
    }

    fn spawn_create(self: &Arc<Self>, key: KeyId, tag: Option<WaiterId>) {
        let ticket = CreateTicket {
            shared: self.clone(),
            key,
            tag,
            done: false,
        };
        let handle = self.handle(key);
        self.runtime.spawn(async move {
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
        });
    }

    fn spawn_close(self: &Arc<Self>, key: KeyId, conn: Conn<M::Resource>, reason: CloseReason) {
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

    /// Runs `validate` or `reset` under `hook_timeout` and the checkout's deadline.
    async fn run_hook(
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
                tracing::error!(target: "pool_core", conn = c.id, panic = crate::util::panic_message(panic.as_ref()), "manager panicked in check");
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
                tracing::error!(target: "pool_core", conn = conn.id, panic = crate::util::panic_message(panic.as_ref()), "manager panicked in check");
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
    ) -> Result<Guard<'a, M, T>, Error> {
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
            return Ok(guard);
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
                (Via::Idle, Some(t)) => t.elapsed(),
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

    /// Closes the idle connections of `key` that `dead` picks (see `KeyedPool::evict_idle_where`).
    /// A panic in `dead` counts as "not dead".
    pub fn evict_idle_where<Q>(
        self: &Arc<Self>,
        key: &Q,
        mut dead: impl FnMut(&M::Resource) -> bool,
    ) -> usize
    where
        M::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.with_table(|t, now, fx| {
            let Some(id) = t.find(key) else {
                return 0;
            };
            t.with(id, now, fx, |st, _, fx| {
                st.evict_idle(
                    |res| {
                        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dead(res)))
                            .unwrap_or(false)
                    },
                    fx,
                )
            })
        })
    }

    /// Waits (up to `timeout`) until every connection is closed.
    pub async fn drained(&self, timeout: Duration) -> Result<(), Error> {
        let drained = async {
            loop {
                let mut notified = std::pin::pin!(self.drained.notified());
                notified.as_mut().enable();
                if self.state.lock().open() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, drained)
            .await
            .map_err(|_| Error::new(Kind::CloseTimeout))
    }

    /// Closes every key.
    pub fn close(self: &Arc<Self>) {
        self.with_table(|t, _, fx| t.close(fx));
    }

    /// A guard came back, and `Table::push_fast` declined it: the general return path (the
    /// caller holds the lock; `slot` holds the connection). Fires the `put_idle` hook, at
    /// once or, for a connection that needs a reset, once the reset is done.
    #[cold]
    #[inline(never)]
    pub fn put_back(
        self: &Arc<Self>,
        mut st: crate::rt::MutexGuard<'_, T>,
        handle: &T::Handle,
        slot: &mut Option<Conn<M::Resource>>,
        health: Health,
    ) {
        let Some(conn) = slot.take() else {
            return;
        };
        let mut now = Now::lazy();
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

enum HookFailed {
    Failed,
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
    crate::rt::Elapsed,
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
                let id = shared
                    .next_id
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::debug!(target: "pool_core", conn = id, "created a connection");
                shared.hook("create_done", |h| h.create_done(key, Ok(id)));
                shared.with_state(self.key, |st, now, fx| {
                    st.handle_created(res, id, tag, now, fx)
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
                    st.acquire(now, retry, Some(cx.waker()), started, fx)
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
        let polled = self
            .shared
            .with_state(key, |st, now, _| st.poll_waiter(id, cx.waker(), now));
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

/// Closes the pool when the last public handle drops (guards and tasks do not count).
pub(crate) struct Owner<M: KeyedManager, T: Table<M>>(pub Arc<Shared<M, T>>);

impl<M: KeyedManager, T: Table<M>> Drop for Owner<M, T> {
    fn drop(&mut self) {
        self.0.close();
    }
}

type SlowGet<'a, M, T> = Pin<Box<dyn Future<Output = Result<Guard<'a, M, T>, Error>> + Send + 'a>>;

/// A public guard type built around a [`Guard`] (`Pooled`, `KeyedPooled`).
pub(crate) trait Wrap<'a, M: KeyedManager, T: Table<M>> {
    fn wrap(guard: Guard<'a, M, T>) -> Self;
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
/// it can (one lock, no allocation); anything else (waiting, creating, hooks) continues in a
/// boxed future, whose cost is small next to the wait itself.
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
    /// This checkout's deadline: the pool's `acquire_timeout`, or the caller's own.
    acquire_timeout: Option<Duration>,
    _out: std::marker::PhantomData<fn() -> W>,
}

impl<'a, 'k, M: KeyedManager, T: Table<M>, W, Q: ?Sized> GetFuture<'a, 'k, M, T, W, Q> {
    pub fn new(shared: &'a Arc<Shared<M, T>>, key: &'k Q) -> Self {
        GetFuture {
            shared,
            key,
            slow: None,
            acquire_timeout: shared.timeouts.acquire,
            _out: std::marker::PhantomData,
        }
    }

    /// The same checkout with its own deadline instead of the pool's `acquire_timeout`.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = Some(timeout);
        self
    }

    pub fn is_waiting(&self) -> bool {
        self.slow.is_some()
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
        let slow = match &mut this.slow {
            Some(slow) => slow,
            None => {
                let idle = shared.state.lock().pop_fast(this.key);
                let idle = match idle {
                    Some((mut conn, handle)) => {
                        if shared.is_ready(&mut conn) {
                            tracing::trace!(target: "pool_core", conn = conn.id, reused = true, was_idle = true, "got a connection");
                            return Poll::Ready(Ok(W::wrap(Guard::borrowed(shared, conn, handle))));
                        }
                        Some((conn, handle))
                    }
                    None => None,
                };
                this.slow
                    .insert(start_slow(shared, this.key, idle, this.acquire_timeout))
            }
        };
        slow.as_mut().poll(cx).map_ok(W::wrap)
    }
}
