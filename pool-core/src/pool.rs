//! [`Pool`], the plain pool: the one-key case of the shell in `shell/`, with an inline
//! fast path for the common checkout.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::config::{check_duration, check_positive};
use crate::hooks::Hooks;
use crate::machine::{Conn, KeyId, State};
use crate::shell::guard::Guard;
use crate::shell::guard::leak::{LeakBook, Track};
use crate::shell::{GetFuture, Owner, Shared, Wrap, clock};
use crate::{Config, Error, Manager, Pooled, Stats};

type Table<M> = State<<M as crate::KeyedManager>::Resource>;
type PoolShared<M> = Shared<M, Table<M>>;
/// The plain pool's leak book: its key handle is `()`.
type Leaks = Option<Arc<LeakBook<()>>>;

/// The future of [`Pool::get`].
///
/// Its first poll serves an idle connection inline when it can (one lock, no allocation);
/// anything else (waiting, creating, hooks) continues in a boxed future, whose cost is small
/// next to the wait itself. Dropping it at any point is safe: see [`Pool::get`].
#[must_use = "futures do nothing unless polled"]
pub struct Get<'a, M: Manager>(GetFuture<'a, 'a, M, Table<M>, Pooled<'a, M>>);

impl<'a, M: Manager> Future for Get<'a, M> {
    type Output = Result<Pooled<'a, M>, Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<'a, M: Manager> Wrap<'a, M, Table<M>> for Pooled<'a, M> {
    #[inline]
    fn wrap(guard: Guard<'a, M, Table<M>>) -> Self {
        Pooled(guard)
    }
}

/// The future [`Pool::get_owned`] returns: [`Get`]'s, with a guard that owns a reference to
/// the pool.
#[must_use = "futures do nothing unless awaited"]
pub struct GetOwned<'a, M: Manager>(GetFuture<'a, 'a, M, Table<M>, Owned<M>>);

/// The owned guard, as the checkout future makes it.
struct Owned<M: Manager>(Pooled<'static, M>);

impl<'a, M: Manager> Wrap<'a, M, Table<M>> for Owned<M> {
    #[inline]
    fn wrap(guard: Guard<'a, M, Table<M>>) -> Self {
        Owned(Pooled(guard.into_owned()))
    }

    #[inline]
    fn fresh(
        shared: &'a Arc<Shared<M, Table<M>>>,
        conn: Conn<M::Resource>,
        handle: (),
        track: &Track<'a, ()>,
    ) -> Self {
        let mut guard = Guard::owned(shared.clone(), conn, handle);
        track.start(&mut guard);
        Owned(Pooled(guard))
    }
}

impl<M: Manager> Future for GetOwned<'_, M> {
    type Output = Result<Pooled<'static, M>, Error>;

    #[inline]
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map_ok(|Owned(conn)| conn)
    }
}

impl<'a, M: Manager> GetOwned<'a, M> {
    /// Reports a leak of the connection this checkout gives at `caller` instead of the line
    /// that called `get_owned` (see [`Config::leak_threshold`](crate::Config::leak_threshold)): for
    /// a library that checks out on its user's behalf from a `#[track_caller]` function, so
    /// the report names the user's line, not the library's.
    ///
    /// ```
    /// use pool_core::{GetOwned, Manager, Pool};
    ///
    /// /// A library's checkout: a leak is reported at its caller's line.
    /// #[track_caller]
    /// pub fn session<M: Manager>(pool: &Pool<M>) -> GetOwned<'_, M> {
    ///     pool.get_owned().called_from(std::panic::Location::caller())
    /// }
    /// ```
    #[must_use = "futures do nothing unless polled"]
    pub fn called_from(mut self, caller: &'static std::panic::Location<'static>) -> Self {
        self.0.called_from(caller);
        self
    }
}

impl<M: Manager> std::fmt::Debug for GetOwned<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetOwned")
            .field("waiting", &self.0.is_waiting())
            .field("caller", self.0.track())
            .finish()
    }
}

impl<'a, M: Manager> Get<'a, M> {
    /// Reports a leak of the connection this checkout gives at `caller` instead of the line
    /// that called `get` (see [`Config::leak_threshold`](crate::Config::leak_threshold)): for
    /// a library that checks out on its user's behalf from a `#[track_caller]` function, so
    /// the report names the user's line, not the library's.
    #[must_use = "futures do nothing unless polled"]
    pub fn called_from(mut self, caller: &'static std::panic::Location<'static>) -> Self {
        self.0.called_from(caller);
        self
    }
}

impl<M: Manager> std::fmt::Debug for Get<'_, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Get")
            .field("waiting", &self.0.is_waiting())
            .field("caller", self.0.track())
            .finish()
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
    shared: Arc<PoolShared<M>>,
    /// The guards out, when leak detection is on.
    leaks: Leaks,
    _owner: Arc<Owner<M, Table<M>>>,
}

impl<M: Manager> Clone for Pool<M> {
    fn clone(&self) -> Self {
        Pool {
            shared: self.shared.clone(),
            leaks: self.leaks.clone(),
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
            hooks: None,
        }
    }

    /// Builds a pool from a [`Config`].
    ///
    /// # Errors
    /// A configuration error naming the knob ([`Error::knob`]); also when called outside a
    /// tokio runtime (knob `"runtime"`): the pool's reaper and creates run on it.
    pub fn new(manager: M, config: Config) -> Result<Self, Error> {
        Self::start(manager, config, None)
    }

    fn start(manager: M, config: Config, hooks: Option<Arc<dyn Hooks>>) -> Result<Self, Error> {
        let (mut limits, timeouts) = config.validate(Manager::validate_after(&manager))?;
        let leak = config.leak()?;
        limits.stamp = hooks.is_some();
        limits.hooks = hooks.is_some();
        let origin = clock::now();
        let state = State::new(limits, config.max_idle, config.lifetime_jitter).with_origin(origin);
        let leaks = leak.map(|(threshold, trace)| {
            LeakBook::start::<M, Table<M>>(threshold, trace, hooks.clone())
        });
        let shared = Shared::start(manager, state, timeouts, hooks, origin)?;
        Ok(Pool {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
            leaks,
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
    ///
    /// # Leak detection
    /// With [`Config::leak_threshold`] set, the file and line of this call
    /// (`#[track_caller]`) are what a report of its guard names; so do the other checkouts
    /// (`get_timeout`, `get_owned`, `try_get`). A wrapper of its own that should be named
    /// instead can be `#[track_caller]` too (a synchronous one: not an `async fn`).
    #[track_caller]
    pub fn get(&self) -> Get<'_, M> {
        Get(GetFuture::new(&self.shared, &(), Track::new(&self.leaks)))
    }

    /// [`get`](Pool::get) with this call's own deadline instead of the pool's
    /// `acquire_timeout` (Go: a context deadline on `db.Conn(ctx)`). The error at the
    /// deadline is the pool's own, [`is_timeout`](Error::is_timeout), with the last create
    /// error as its source when there was one; wrapping `get` in `tokio::time::timeout`
    /// loses that.
    ///
    /// # Errors
    /// As [`get`](Pool::get).
    ///
    /// # Cancel safety
    /// As [`get`](Pool::get).
    #[track_caller]
    pub fn get_timeout(&self, timeout: Duration) -> Get<'_, M> {
        Get(GetFuture::new(&self.shared, &(), Track::new(&self.leaks)).with_timeout(timeout))
    }

    /// Closes at once the idle connections that `dead` says are dead (see
    /// [`KeyedPool::evict_idle_where`](crate::KeyedPool::evict_idle_where)). Returns how many.
    pub fn evict_idle_where(&self, dead: impl FnMut(&M::Resource) -> bool) -> usize {
        self.shared.evict_idle_where(&(), dead)
    }

    /// An idle connection that is ready as it is, now, or `None`: nothing idle, callers
    /// queued (it never overtakes them), or the connection in turn needs a validation first.
    /// It never waits and never creates. A connection it finds broken or needing a reset
    /// goes back through the return path, and the next idle one is tried.
    #[track_caller]
    pub fn try_get(&self) -> Option<Pooled<'_, M>> {
        let mut conn = self.shared.try_get(&()).map(Pooled)?;
        Track::new(&self.leaks).start(&mut conn.0);
        Some(conn)
    }

    /// [`get`](Pool::get), returning a guard that owns a reference to the pool, to move into
    /// a spawned task or keep in a struct.
    ///
    /// # Errors
    /// As [`get`](Pool::get).
    ///
    /// # Cancel safety
    /// As [`get`](Pool::get).
    #[track_caller]
    pub fn get_owned(&self) -> GetOwned<'_, M> {
        GetOwned(GetFuture::new(&self.shared, &(), Track::new(&self.leaks)))
    }

    /// A snapshot of the gauges and counters.
    pub fn stats(&self) -> Stats {
        let mut stats = self.shared.state.lock().stats();
        stats.held_too_long = self.leaks.as_ref().map_or(0, |l| l.reported());
        stats
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
        self.shared.close();
    }

    /// [`close`](Pool::close), then waits up to `timeout` for every connection to come back
    /// and close.
    ///
    /// # Errors
    /// [`is_timeout`](Error::is_timeout) if connections are still open after `timeout`.
    pub async fn close_and_wait(&self, timeout: Duration) -> Result<(), Error> {
        self.close();
        self.shared.drained(timeout).await
    }

    /// Sets `max_open` (database/sql's `SetMaxOpenConns`; 0 = unlimited). `max_idle` is
    /// clamped again; connections above the new limit close as they come back.
    pub fn set_max_open(&self, n: usize) {
        self.shared
            .with_state(KeyId::ROOT, |st, now, fx| st.set_max_open(n, now, fx));
    }

    /// Sets `max_idle` (`SetMaxIdleConns`). Idle connections above it close at once, grace or
    /// not (counted in `max_idle_closed`); `min_idle` is lowered to it if needed.
    pub fn set_max_idle(&self, n: usize) {
        self.shared
            .with_state(KeyId::ROOT, |st, now, fx| st.set_max_idle(n, now, fx));
    }

    /// Sets `min_idle`; the reaper refills toward it.
    ///
    /// # Errors
    /// A config error if `n` is more than `max_idle`.
    pub fn set_min_idle(&self, n: usize) -> Result<(), Error> {
        self.shared
            .with_state(KeyId::ROOT, |st, now, fx| st.set_min_idle(n, now, fx))
    }

    /// Sets `max_lifetime` (`SetConnMaxLifetime`); applies to open connections too.
    ///
    /// # Errors
    /// A config error for zero or more than a year (use `None` for no limit).
    pub fn set_max_lifetime(&self, d: Option<Duration>) -> Result<(), Error> {
        let d = check_positive("max_lifetime", d)?;
        self.shared
            .with_state(KeyId::ROOT, |st, _, fx| st.set_max_lifetime(d, fx));
        Ok(())
    }

    /// Sets `max_idle_time` (`SetConnMaxIdleTime`); applies to idle connections too.
    ///
    /// # Errors
    /// A config error for zero or more than a year (use `None` for no limit).
    pub fn set_max_idle_time(&self, d: Option<Duration>) -> Result<(), Error> {
        let d = check_positive("max_idle_time", d)?;
        self.shared
            .with_state(KeyId::ROOT, |st, now, fx| st.set_max_idle_time(d, now, fx));
        Ok(())
    }

    /// Sets `idle_grace`; zero closes surplus at the reaper's next turn, then at once on release.
    ///
    /// # Errors
    /// A config error for more than a year, or while
    /// [`adaptive_idle`](Config::adaptive_idle) is on (the grace is not used then).
    pub fn set_idle_grace(&self, d: Duration) -> Result<(), Error> {
        let d = check_duration("idle_grace", d)?;
        self.shared
            .with_state(KeyId::ROOT, |st, _, fx| st.set_idle_grace(d, fx))
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
    hooks: Option<Arc<dyn Hooks>>,
}

impl<M: Manager> std::fmt::Debug for Builder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Builder")
            .field("config", &self.config)
            .field("hooks", &self.hooks.is_some())
            .finish_non_exhaustive()
    }
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
    knob!(/// See [`Config::adaptive_idle`]: learn the surplus retention from the traffic, with
          /// this break-even time (60 s suits most backends).
        adaptive_idle: Duration => Some(adaptive_idle));
    knob!(/// See [`Config::max_lifetime`].
        max_lifetime: Duration => Some(max_lifetime));
    knob!(/// See [`Config::lifetime_jitter`].
        lifetime_jitter: Duration => Some(lifetime_jitter));
    knob!(/// See [`Config::rotate_lifetime`].
        rotate_lifetime: bool => rotate_lifetime);
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
    knob!(/// See [`Config::binding`].
        binding: crate::Binding => binding);
    knob!(/// See [`Config::leak_threshold`]: report a guard held longer than this.
        leak_threshold: Duration => Some(leak_threshold));
    knob!(/// See [`Config::leak_trace`].
        leak_trace: crate::LeakTrace => leak_trace);

    /// database/sql's behaviour exactly: every knob as [`Config::go`] sets it (Go's defaults,
    /// no grace, no jitter, no breaker, [`Binding::Caller`](crate::Binding::Caller)). Set
    /// Go's other knobs after it.
    pub fn go_mode(mut self) -> Self {
        self.config = Config::go();
        self
    }

    /// Replaces every knob with `config`.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Lifecycle [`Hooks`] (httptrace-like callbacks). Default none, which costs nothing;
    /// with hooks, every checkout takes the general path.
    pub fn hooks(mut self, hooks: impl Hooks) -> Self {
        self.hooks = Some(Arc::new(hooks));
        self
    }

    /// Validates the knobs and starts the pool (and its reaper; `min_idle` warms up).
    ///
    /// # Errors
    /// See [`Pool::new`].
    pub fn build(self) -> Result<Pool<M>, Error> {
        Pool::start(self.manager, self.config, self.hooks)
    }
}
