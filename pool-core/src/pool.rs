//! The async shell around [`State`]: `Pool`, checkout, and the tasks that create and close.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::config::{Timeouts, check_duration, check_positive};
use crate::error::Kind;
use crate::rt::{Mutex, Runtime, timeout_at};
use crate::state::{Acquired, Conn, Effects, Now, Rare, State, Via, WaitPoll};
use crate::util::{CatchUnwind, Deadline};
use crate::waiters::WaiterId;
use crate::{CloseReason, Config, Error, Health, Manager, Pooled, Stats};

/// What every handle, guard and task of one pool shares.
pub(crate) struct Shared<M: Manager> {
    pub manager: M,
    pub state: Mutex<State<M::Resource>>,
    timeouts: Timeouts,
    runtime: Runtime,
    reaper: Arc<Notify>,
    drained: Notify,
}

impl<M: Manager> Shared<M> {
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
        } = rare;
        for w in wakes {
            w.wake();
        }
        for tag in creates {
            self.spawn_create(tag);
        }
        for (conn, reason) in closes {
            self.spawn_close(conn, reason);
        }
        if notify_reaper {
            self.reaper.notify_one();
        }
        if drained {
            self.drained.notify_waiters();
        }
    }

    /// Locks the state, runs `f`, unlocks, then applies the effects.
    pub fn with_state<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut State<M::Resource>, &mut Now, &mut Effects<M::Resource>) -> R,
    ) -> R {
        let mut now = Now::lazy();
        let mut fx = Effects::default();
        let r = f(&mut self.state.lock(), &mut now, &mut fx);
        self.apply(fx);
        r
    }

    fn spawn_create(self: &Arc<Self>, tag: Option<WaiterId>) {
        let ticket = CreateTicket {
            shared: self.clone(),
            tag,
            done: false,
        };
        self.runtime.spawn(async move {
            let mut ticket = ticket;
            let shared = ticket.shared.clone();
            tracing::debug!(target: "pool_core", "creating a connection");
            let result = timeout_at(
                Instant::now() + shared.timeouts.create,
                CatchUnwind(shared.manager.create()),
            )
            .await;
            ticket.finish(result);
        });
    }

    fn spawn_close(self: &Arc<Self>, conn: Conn<M::Resource>, reason: CloseReason) {
        let ticket = CloseTicket {
            shared: self.clone(),
            reason,
        };
        let id = conn.id;
        self.runtime.spawn(async move {
            let shared = ticket.shared.clone();
            tracing::debug!(target: "pool_core", conn = id, reason = reason.as_str(), "closing a connection");
            match timeout_at(Instant::now() + shared.timeouts.hook, CatchUnwind(shared.manager.close(conn.res))).await {
                Ok(Ok(())) => {}
                Ok(Err(panic)) => tracing::error!(target: "pool_core", conn = id, panic, "manager panicked in close"),
                Err(_) => tracing::warn!(target: "pool_core", conn = id, "close timed out; the resource was dropped"),
            }
            drop(ticket);
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
        conn: Conn<M::Resource>,
        via: Via,
        deadline: &mut Deadline,
    ) -> Result<Option<Conn<M::Resource>>, Error> {
        if via == Via::Created {
            return Ok(Some(conn));
        }
        let mut checkout = Checkout {
            shared: self,
            conn: Some(conn),
        };
        let c = checkout
            .conn
            .as_mut()
            .expect("checkout holds the connection");
        let health = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.manager.check(&mut c.res)
        }));
        let needs_reset = match health {
            Ok(Health::Ready) => c.needs_reset,
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
                    Err(HookFailed::Deadline) => return Err(self.state.lock().timeout_error()),
                }
            }
        }
        let mut conn = checkout.conn.take().expect("checkout holds the connection");
        conn.needs_reset = false;
        conn.must_validate = false;
        Ok(Some(conn))
    }
}

impl<M: Manager> Shared<M> {
    /// Whether an idle connection can be handed out as it is (`check` says ready and no
    /// reset or validation is due).
    #[inline]
    fn is_ready(&self, conn: &mut Conn<M::Resource>) -> bool {
        !conn.needs_reset
            && !conn.must_validate
            && matches!(
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self
                    .manager
                    .check(&mut conn.res))),
                Ok(Health::Ready)
            )
    }

    /// Every checkout that is not a plain idle hit: waiting, creating, hooks, retries.
    /// `idle` is a connection `pop_fast` took that needs more than `is_ready`.
    async fn get_slow(
        self: &Arc<Self>,
        mut idle: Option<Conn<M::Resource>>,
    ) -> Result<Pooled<'_, M>, Error> {
        let mut deadline = Deadline::new(self.timeouts.acquire);
        let mut retry = false;
        loop {
            let (mut conn, via) = match idle.take() {
                Some(conn) => (conn, Via::Idle),
                None => {
                    Waiter {
                        shared: self,
                        id: None,
                        retry,
                        done: false,
                    }
                    .wait(deadline.get())
                    .await?
                }
            };
            if via == Via::Created || self.is_ready(&mut conn) {
                return Ok(Pooled::borrowed(self, conn));
            }
            match Box::pin(self.prepare(conn, via, &mut deadline)).await? {
                Some(conn) => return Ok(Pooled::borrowed(self, conn)),
                None => retry = true,
            }
        }
    }
}

enum HookFailed {
    Failed,
    Deadline,
}

/// A connection being checked, reset or validated; dropped half way (the caller left, or a
/// hook failed) it is discarded: a resource cut mid-protocol is never handed out.
struct Checkout<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    conn: Option<Conn<M::Resource>>,
}

impl<M: Manager> Drop for Checkout<'_, M> {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            self.shared
                .with_state(|st, _, fx| st.begin_close(conn, CloseReason::Broken, fx));
        }
    }
}

/// A create in flight. Dropped unfinished (its runtime shut down) it still frees its slot.
struct CreateTicket<M: Manager> {
    shared: Arc<Shared<M>>,
    tag: Option<WaiterId>,
    done: bool,
}

type CreateResult<M> = Result<
    Result<Result<<M as Manager>::Resource, <M as Manager>::Error>, String>,
    crate::rt::Elapsed,
>;

impl<M: Manager> CreateTicket<M> {
    fn finish(&mut self, result: CreateResult<M>) {
        self.done = true;
        let tag = self.tag;
        self.shared.with_state(|st, now, fx| match result {
            Ok(Ok(Ok(res))) => {
                let id = st.handle_created(res, tag, now, fx);
                tracing::debug!(target: "pool_core", conn = id, "created a connection");
            }
            Ok(Ok(Err(e))) => {
                tracing::warn!(target: "pool_core", error = %e, "failed to create a connection");
                st.handle_create_failed(
                    Error::with_cause(Kind::Create, Some(Arc::new(e))),
                    tag,
                    now,
                    fx,
                );
            }
            Ok(Err(panic)) => {
                tracing::error!(target: "pool_core", panic, "manager panicked in create");
                let cause = Arc::new(crate::error::Panicked(panic));
                st.handle_create_failed(Error::with_cause(Kind::Panic, Some(cause)), tag, now, fx);
            }
            Err(_) => {
                tracing::warn!(target: "pool_core", "create timed out");
                st.handle_create_failed(Error::new(Kind::CreateTimeout), tag, now, fx);
            }
        });
    }
}

impl<M: Manager> Drop for CreateTicket<M> {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            let tag = self.tag;
            let cause = Arc::new(crate::error::CreateAbandoned);
            self.shared.with_state(|st, now, fx| {
                st.handle_create_failed(Error::with_cause(Kind::Create, Some(cause)), tag, now, fx)
            });
        }
    }
}

/// A close in flight: its slot frees and its reason is counted when this drops.
struct CloseTicket<M: Manager> {
    shared: Arc<Shared<M>>,
    reason: CloseReason,
}

impl<M: Manager> Drop for CloseTicket<M> {
    fn drop(&mut self) {
        let reason = self.reason;
        self.shared
            .with_state(|st, now, fx| st.handle_closed(reason, now, fx));
    }
}

/// A checkout that is not a plain idle hit. Its first poll runs `acquire` (an idle
/// connection, or a place in the queue with this poll's waker already stored); later polls
/// look at its slot. Dropped before it was served, it leaves the queue at once; if a
/// connection was handed to it meanwhile, that connection moves on to the next waiter.
struct Waiter<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    /// `None` until queued.
    id: Option<WaiterId>,
    /// The caller's connection turned out broken: it keeps its turn.
    retry: bool,
    done: bool,
}

impl<M: Manager> Future for Waiter<'_, M> {
    type Output = Result<(Conn<M::Resource>, Via), Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut now = Now::lazy();
        let Some(id) = self.id else {
            let retry = self.retry;
            let acquired = self
                .shared
                .with_state(|st, _, fx| st.acquire(&mut now, retry, Some(cx.waker()), fx));
            return match acquired {
                Ok(Acquired::Wait(id)) => {
                    tracing::debug!(target: "pool_core", "waiting for a connection");
                    self.id = Some(id);
                    Poll::Pending
                }
                Ok(Acquired::Ready(conn)) => {
                    self.done = true;
                    tracing::trace!(target: "pool_core", conn = conn.id, "reusing an idle connection");
                    Poll::Ready(Ok((conn, Via::Idle)))
                }
                Err(e) => {
                    self.done = true;
                    Poll::Ready(Err(e))
                }
            };
        };
        let polled = self.shared.state.lock().poll_waiter(id, cx.waker());
        match polled {
            WaitPoll::Pending(old_waker) => {
                drop(old_waker);
                Poll::Pending
            }
            WaitPoll::Ready(r) => {
                self.done = true;
                Poll::Ready(r)
            }
        }
    }
}

impl<M: Manager> Waiter<'_, M> {
    async fn wait(mut self, deadline: Option<Instant>) -> Result<(Conn<M::Resource>, Via), Error> {
        let Some(at) = deadline else {
            return (&mut self).await;
        };
        match timeout_at(at, &mut self).await {
            Ok(r) => r,
            Err(_) => {
                self.done = true;
                let Some(id) = self.id else {
                    return Err(self.shared.state.lock().timeout_error());
                };
                let r = self.shared.with_state(|st, _, _| st.timeout_waiter(id));
                if r.is_err() {
                    tracing::debug!(target: "pool_core", "checkout timed out");
                }
                r
            }
        }
    }
}

impl<M: Manager> Drop for Waiter<'_, M> {
    fn drop(&mut self) {
        if let (false, Some(id)) = (self.done, self.id) {
            self.shared
                .with_state(|st, now, fx| st.cancel_waiter(id, now, fx));
        }
    }
}

type SlowGet<'a, M> = Pin<Box<dyn Future<Output = Result<Pooled<'a, M>, Error>> + Send + 'a>>;

/// The future of [`Pool::get`].
///
/// Its first poll serves an idle connection inline when it can (one lock, no allocation);
/// anything else (waiting, creating, hooks) continues in a boxed future, whose cost is small
/// next to the wait itself. Dropping it at any point is safe: see [`Pool::get`].
#[must_use = "futures do nothing unless polled"]
pub struct Get<'a, M: Manager> {
    shared: &'a Arc<Shared<M>>,
    slow: Option<SlowGet<'a, M>>,
}

impl<'a, M: Manager> Future for Get<'a, M> {
    type Output = Result<Pooled<'a, M>, Error>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let shared = this.shared;
        let slow = match &mut this.slow {
            Some(slow) => slow,
            None => {
                let idle = shared.state.lock().pop_fast();
                let idle = match idle {
                    Some(mut conn) => {
                        if shared.is_ready(&mut conn) {
                            return Poll::Ready(Ok(Pooled::borrowed(shared, conn)));
                        }
                        Some(conn)
                    }
                    None => None,
                };
                this.slow.insert(Box::pin(shared.get_slow(idle)))
            }
        };
        slow.as_mut().poll(cx)
    }
}

impl<M: Manager> std::fmt::Debug for Get<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Get")
            .field("waiting", &self.slow.is_some())
            .finish()
    }
}

/// Closes the pool when the last [`Pool`] handle drops (guards and tasks do not count).
struct Owner<M: Manager>(Arc<Shared<M>>);

impl<M: Manager> Drop for Owner<M> {
    fn drop(&mut self) {
        self.0.with_state(|st, _, fx| st.close(fx));
    }
}

/// A pool of `M::Resource`s: a cheap, cloneable handle.
///
/// Checkouts are served first come, first served: a released connection goes straight to
/// the head waiter, and a newcomer never overtakes the queue. `max_open` is never exceeded,
/// creates in flight included. Dropping the last handle closes the pool (the reaper stops and
/// idle connections close), so a pool per request cannot leak.
///
/// # Examples
///
/// ```
/// # use pool_core::{async_trait, Manager, Pool};
/// # struct Counter;
/// # #[async_trait]
/// # impl Manager for Counter {
/// #     type Resource = u64;
/// #     type Error = std::io::Error;
/// #     async fn create(&self) -> Result<u64, std::io::Error> { Ok(42) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pool_core::Error> {
/// let pool = Pool::builder(Counter).max_open(8).max_idle(4).build()?;
/// let conn = pool.get().await?;
/// assert_eq!(*conn, 42);
/// drop(conn); // back to idle
/// assert_eq!(pool.stats().idle, 1);
/// # Ok(()) }
/// ```
pub struct Pool<M: Manager> {
    shared: Arc<Shared<M>>,
    _owner: Arc<Owner<M>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool {
            shared: self.shared.clone(),
            _owner: self._owner.clone(),
        }
    }
}

impl<M: Manager> std::fmt::Debug for Pool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("stats", &self.stats())
            .finish()
    }
}

impl<M: Manager> Pool<M> {
    /// A [`Builder`] with the default [`Config`].
    pub fn builder(manager: M) -> Builder<M> {
        Builder {
            manager,
            config: Config::default(),
        }
    }

    /// Builds a pool from a [`Config`].
    ///
    /// # Errors
    /// A configuration error naming the knob ([`Error::knob`]); also when called outside a
    /// tokio runtime (knob `"runtime"`): the pool's reaper and creates run on it.
    pub fn new(manager: M, config: Config) -> Result<Self, Error> {
        let (limits, timeouts) = config.validate(manager.validate_after())?;
        let runtime = Runtime::current().ok_or_else(|| {
            Error::config(
                "runtime",
                "is missing: build the pool inside a tokio runtime",
            )
        })?;
        let reaper = Arc::new(Notify::new());
        let shared = Arc::new(Shared {
            manager,
            state: Mutex::new(State::new(limits, config.max_idle, config.lifetime_jitter)),
            timeouts,
            runtime,
            reaper: reaper.clone(),
            drained: Notify::new(),
        });
        if shared.runtime.has_timers() {
            shared
                .runtime
                .spawn(crate::reaper::run(Arc::downgrade(&shared), reaper));
        }
        Ok(Pool {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
        })
    }

    /// Checks out a connection: an idle one (most recently used first), one released by
    /// another caller, or a new one.
    ///
    /// # Errors
    /// [`is_timeout`](Error::is_timeout) after `acquire_timeout` (with the last create error
    /// as source while creates fail), [`is_closed`](Error::is_closed),
    /// [`is_create`](Error::is_create) when the create started for this caller failed,
    /// [`is_unavailable`](Error::is_unavailable) while the breaker is open.
    ///
    /// # Cancel safety
    /// Dropping the future at any point loses nothing: a queued caller leaves the queue at
    /// once, a connection handed to it moves on, a create it started completes and serves the
    /// next caller, and a connection cut mid-reset or mid-validation is discarded.
    pub fn get(&self) -> Get<'_, M> {
        Get {
            shared: &self.shared,
            slow: None,
        }
    }

    /// [`get`](Pool::get), returning a guard that owns a reference to the pool, to move into
    /// a spawned task or keep in a struct.
    ///
    /// # Errors
    /// As [`get`](Pool::get).
    ///
    /// # Cancel safety
    /// As [`get`](Pool::get).
    pub async fn get_owned(&self) -> Result<Pooled<'static, M>, Error> {
        self.get().await.map(Pooled::into_owned)
    }

    /// A snapshot of the gauges and counters.
    pub fn stats(&self) -> Stats {
        self.shared.state.lock().stats()
    }

    /// The manager.
    pub fn manager(&self) -> &M {
        &self.shared.manager
    }

    /// Whether [`close`](Pool::close) was called (or every handle dropped).
    pub fn is_closed(&self) -> bool {
        self.shared.state.lock().is_closed()
    }

    /// Closes the pool: queued checkouts fail at once with a closed error, idle connections
    /// close, checked-out ones close when they come back, and the reaper exits. Idempotent.
    pub fn close(&self) {
        self.shared.with_state(|st, _, fx| st.close(fx));
    }

    /// [`close`](Pool::close), then waits up to `timeout` for every connection to come back
    /// and close.
    ///
    /// # Errors
    /// [`is_timeout`](Error::is_timeout) if connections are still open after `timeout`.
    pub async fn close_and_wait(&self, timeout: Duration) -> Result<(), Error> {
        self.close();
        let drained = async {
            loop {
                let mut notified = std::pin::pin!(self.shared.drained.notified());
                notified.as_mut().enable();
                if self.shared.state.lock().open() == 0 {
                    return;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, drained)
            .await
            .map_err(|_| Error::new(Kind::CloseTimeout))
    }

    /// Sets `max_open` (database/sql's `SetMaxOpenConns`; 0 = unlimited). `max_idle` is
    /// clamped again; connections above the new limit close as they come back.
    pub fn set_max_open(&self, n: usize) {
        self.shared
            .with_state(|st, now, fx| st.set_max_open(n, now, fx));
    }

    /// Sets `max_idle` (`SetMaxIdleConns`). Idle connections above it close at once, grace or
    /// not (counted in `max_idle_closed`); `min_idle` is lowered to it if needed.
    pub fn set_max_idle(&self, n: usize) {
        self.shared
            .with_state(|st, now, fx| st.set_max_idle(n, now, fx));
    }

    /// Sets `min_idle`; the reaper refills toward it.
    ///
    /// # Errors
    /// A config error if `n` is more than `max_idle`.
    pub fn set_min_idle(&self, n: usize) -> Result<(), Error> {
        self.shared
            .with_state(|st, now, fx| st.set_min_idle(n, now, fx))
    }

    /// Sets `max_lifetime` (`SetConnMaxLifetime`); applies to open connections too.
    ///
    /// # Errors
    /// A config error for zero or more than a year (use `None` for no limit).
    pub fn set_max_lifetime(&self, d: Option<Duration>) -> Result<(), Error> {
        let d = check_positive("max_lifetime", d)?;
        self.shared
            .with_state(|st, _, fx| st.set_max_lifetime(d, fx));
        Ok(())
    }

    /// Sets `max_idle_time` (`SetConnMaxIdleTime`); applies to idle connections too.
    ///
    /// # Errors
    /// A config error for zero or more than a year (use `None` for no limit).
    pub fn set_max_idle_time(&self, d: Option<Duration>) -> Result<(), Error> {
        let d = check_positive("max_idle_time", d)?;
        self.shared
            .with_state(|st, now, fx| st.set_max_idle_time(d, now, fx));
        Ok(())
    }

    /// Sets `idle_grace`; zero closes surplus at the reaper's next turn, then at once on release.
    ///
    /// # Errors
    /// A config error for more than a year.
    pub fn set_idle_grace(&self, d: Duration) -> Result<(), Error> {
        let d = check_duration("idle_grace", d)?;
        self.shared.with_state(|st, _, fx| st.set_idle_grace(d, fx));
        Ok(())
    }
}

/// Builds a [`Pool`]; every knob of [`Config`] has a setter of the same name.
///
/// # Examples
///
/// ```
/// # use pool_core::{async_trait, Manager, Pool};
/// # use std::time::Duration;
/// # struct Counter;
/// # #[async_trait]
/// # impl Manager for Counter {
/// #     type Resource = u64;
/// #     type Error = std::io::Error;
/// #     async fn create(&self) -> Result<u64, std::io::Error> { Ok(42) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// let err = Pool::builder(Counter).max_lifetime(Duration::ZERO).build().unwrap_err();
/// assert_eq!(err.knob(), Some("max_lifetime"));
/// # }
/// ```
#[must_use = "a builder does nothing until `build` is called"]
pub struct Builder<M: Manager> {
    manager: M,
    config: Config,
}

macro_rules! knob {
    ($(#[$doc:meta])* $name:ident: $ty:ty => $value:expr) => {
        $(#[$doc])*
        pub fn $name(mut self, $name: $ty) -> Self {
            self.config.$name = $value;
            self
        }
    };
}

impl<M: Manager> Builder<M> {
    knob!(/// See [`Config::max_open`].
        max_open: usize => max_open);
    knob!(/// See [`Config::max_idle`].
        max_idle: usize => max_idle);
    knob!(/// See [`Config::min_idle`].
        min_idle: usize => min_idle);
    knob!(/// See [`Config::idle_grace`].
        idle_grace: Duration => idle_grace);
    knob!(/// See [`Config::max_lifetime`].
        max_lifetime: Duration => Some(max_lifetime));
    knob!(/// See [`Config::lifetime_jitter`].
        lifetime_jitter: Duration => Some(lifetime_jitter));
    knob!(/// See [`Config::max_idle_time`].
        max_idle_time: Duration => Some(max_idle_time));
    knob!(/// See [`Config::acquire_timeout`].
        acquire_timeout: Duration => Some(acquire_timeout));
    knob!(/// See [`Config::create_timeout`].
        create_timeout: Duration => Some(create_timeout));
    knob!(/// See [`Config::validate_after`].
        validate_after: Duration => Some(validate_after));
    knob!(/// See [`Config::hook_timeout`].
        hook_timeout: Duration => hook_timeout);
    knob!(/// See [`Config::idle_order`].
        idle_order: crate::IdleOrder => idle_order);
    knob!(/// See [`Config::breaker_threshold`].
        breaker_threshold: u32 => breaker_threshold);
    knob!(/// See [`Config::breaker_backoff`].
        breaker_backoff: Duration => breaker_backoff);
    knob!(/// See [`Config::breaker_max_backoff`].
        breaker_max_backoff: Duration => breaker_max_backoff);

    /// Replaces every knob with `config`.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Validates the knobs and starts the pool (and its reaper; `min_idle` warms up).
    ///
    /// # Errors
    /// See [`Pool::new`].
    pub fn build(self) -> Result<Pool<M>, Error> {
        Pool::new(self.manager, self.config)
    }
}
