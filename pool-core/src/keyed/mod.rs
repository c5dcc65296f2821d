//! [`KeyedPool`]: connections pooled per key (scheme, host, port, or any key), with per-key
//! limits and a global idle cap, as Go's `http.Transport`.
//!
//! Each key gets the plain pool's state machine (the same FIFO hand-off, late binding,
//! grace, breaker and stats), all behind the pool's one lock with the keyed table
//! (`machine/keyed_table.rs`) on top: it evicts the least recently idled connection of any
//! key above the global `max_idle`, and forgets a key once it holds nothing.

mod config;

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

pub use config::KeyedConfig;

use crate::config::{check_duration, check_positive};
use crate::hooks::Hooks;
use crate::machine::{Conn, Effects, KeyTable, Now, State, Table};
use crate::shell::guard::leak::{LeakBook, Track};
use crate::shell::guard::{Guard, guard_api};
use crate::shell::{GetFuture, Owner, Shared, Wrap, clock};
use crate::{Error, KeyedManager, Stats};

type Keys<M> = KeyTable<<M as KeyedManager>::Key, <M as KeyedManager>::Resource>;
/// How a guard knows its key.
type KeyHandle<M> = <Keys<M> as Table<M>>::Handle;
/// A keyed pool's leak book: its entries hold their keys' handles.
type Leaks<M> = Option<Arc<LeakBook<KeyHandle<M>>>>;

/// A pool of `M::Resource`s per key: a cheap, cloneable handle.
///
/// Per key it behaves as a [`Pool`](crate::Pool): `per_key.max_open` is never exceeded
/// (creates in flight included; Go's `MaxConnsPerHost`), checkouts of one key are served
/// first come, first served, and only ever with that key's connections. Across keys, at most
/// [`max_idle`](KeyedConfig::max_idle) connections stay idle (`MaxIdleConns`), at every
/// instant: above it the least recently idled connection of any key closes at once, grace or
/// not (grace keeps a key's surplus within it). A key that holds nothing (no connection, no waiter) leaves no state
/// behind. Dropping the last handle closes the pool.
///
/// # Examples
///
/// ```
/// # use pool_core::{async_trait, KeyedManager, KeyedPool};
/// # struct Dialer;
/// # #[async_trait]
/// # impl KeyedManager for Dialer {
/// #     type Key = String;
/// #     type Resource = String;
/// #     type Error = std::io::Error;
/// #     async fn create(&self, host: &String) -> Result<String, std::io::Error> {
/// #         Ok(format!("connection to {host}"))
/// #     }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pool_core::Error> {
/// let pool = KeyedPool::builder(Dialer)
///     .max_open_per_key(4)
///     .max_idle_per_key(2)
///     .max_idle(100)
///     .build()?;
/// let conn = pool.get(&"db1:5432".to_string()).await?;
/// assert_eq!(*conn, "connection to db1:5432");
/// drop(conn);
/// assert_eq!(pool.key_stats(&"db1:5432".to_string()).unwrap().idle, 1);
/// # Ok(()) }
/// ```
pub struct KeyedPool<M: KeyedManager> {
    shared: Arc<Shared<M, Keys<M>>>,
    /// The guards out, when leak detection is on.
    leaks: Leaks<M>,
    _owner: Arc<Owner<M, Keys<M>>>,
}

impl<M: KeyedManager> Clone for KeyedPool<M> {
    fn clone(&self) -> Self {
        KeyedPool {
            shared: self.shared.clone(),
            leaks: self.leaks.clone(),
            _owner: self._owner.clone(),
        }
    }
}

impl<M: KeyedManager> std::fmt::Debug for KeyedPool<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedPool")
            .field("keys", &self.key_count())
            .field("stats", &self.stats())
            .finish()
    }
}

impl<M: KeyedManager> KeyedPool<M> {
    /// A [`KeyedBuilder`] with the default [`KeyedConfig`].
    pub fn builder(manager: M) -> KeyedBuilder<M> {
        KeyedBuilder {
            manager,
            config: KeyedConfig::default(),
            hooks: None,
        }
    }

    /// Builds a keyed pool from a [`KeyedConfig`].
    ///
    /// # Errors
    /// A configuration error naming the knob ([`Error::knob`]), including `min_idle` (not
    /// supported per key) and `"runtime"` outside a tokio runtime.
    pub fn new(manager: M, config: KeyedConfig) -> Result<Self, Error> {
        Self::start(manager, config, None)
    }

    fn start(
        manager: M,
        config: KeyedConfig,
        hooks: Option<Arc<dyn Hooks<M::Key>>>,
    ) -> Result<Self, Error> {
        let (mut limits, timeouts) = config.validate(manager.validate_after())?;
        let leak = config.per_key.leak()?;
        limits.hooks = hooks.is_some();
        let origin = clock::now();
        let template = State::new(
            limits,
            config.per_key.max_idle,
            config.per_key.lifetime_jitter,
        )
        .with_origin(origin);
        let table = KeyTable::new(template, config.max_idle);
        let leaks = leak.map(|(threshold, trace)| {
            LeakBook::start::<M, Keys<M>>(threshold, trace, hooks.clone())
        });
        let shared = Shared::start(manager, table, timeouts, hooks, origin)?;
        Ok(KeyedPool {
            _owner: Arc::new(Owner(shared.clone())),
            shared,
            leaks,
        })
    }

    /// Checks out a connection for `key`: an idle one of that key (most recently used
    /// first), one released by another caller of that key, or a new one made by
    /// [`KeyedManager::create`] with the key.
    ///
    /// # Errors
    /// As [`Pool::get`](crate::Pool::get), per key: a timeout, a closed pool, the failed
    /// create of this caller, or the key's breaker being open.
    ///
    /// The key may be given in any form it borrows as, as with `HashMap::get`: `&str` for a
    /// `String` key (it is turned into an owned key only when the checkout has to wait).
    ///
    /// # Cancel safety
    /// As [`Pool::get`](crate::Pool::get): dropping the future at any point loses nothing.
    ///
    /// # Leak detection
    /// As [`Pool::get`](crate::Pool::get): a report names this call's file and line.
    #[track_caller]
    pub fn get<'a, 'k, Q>(&'a self, key: &'k Q) -> KeyedGet<'a, 'k, M, Q>
    where
        M::Key: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = M::Key> + ?Sized,
    {
        KeyedGet(GetFuture::new(&self.shared, key, Track::new(&self.leaks)))
    }

    /// Closes at once the idle connections of `key` that `dead` says are dead (their peer
    /// closed them, as seen from outside the pool): counted in `broken_closed`, never replaced
    /// by a create; the others keep their place and their idle time. Returns how many. `dead`
    /// runs under the pool's lock: keep it cheap (a flag, an atomic load), and it must not
    /// call the pool; a panic in it counts as "not dead".
    pub fn evict_idle_where<Q>(&self, key: &Q, dead: impl FnMut(&M::Resource) -> bool) -> usize
    where
        M::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shared.evict_idle_where(key, dead)
    }

    /// [`get`](KeyedPool::get) with this call's own deadline instead of the pool's
    /// `acquire_timeout` (see [`Pool::get_timeout`](crate::Pool::get_timeout)).
    ///
    /// # Errors
    /// As [`get`](KeyedPool::get).
    ///
    /// # Cancel safety
    /// As [`get`](KeyedPool::get).
    #[track_caller]
    pub fn get_timeout<'a, 'k, Q>(&'a self, key: &'k Q, timeout: Duration) -> KeyedGet<'a, 'k, M, Q>
    where
        M::Key: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = M::Key> + ?Sized,
    {
        KeyedGet(GetFuture::new(&self.shared, key, Track::new(&self.leaks)).with_timeout(timeout))
    }

    /// An idle connection of `key` that is ready as it is, now, or `None` (see
    /// [`Pool::try_get`](crate::Pool::try_get)).
    #[track_caller]
    pub fn try_get<Q>(&self, key: &Q) -> Option<KeyedPooled<'_, M>>
    where
        M::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut conn = self.shared.try_get(key).map(KeyedPooled)?;
        Track::new(&self.leaks).start(&mut conn.0);
        Some(conn)
    }

    /// [`get`](KeyedPool::get), returning a guard that owns a reference to the pool.
    ///
    /// # Errors
    /// As [`get`](KeyedPool::get).
    ///
    /// # Cancel safety
    /// As [`get`](KeyedPool::get).
    #[track_caller]
    pub fn get_owned<'a, 'k, Q>(&'a self, key: &'k Q) -> KeyedGetOwned<'a, 'k, M, Q>
    where
        M::Key: Borrow<Q>,
        Q: Hash + Eq + ToOwned<Owned = M::Key> + ?Sized,
    {
        KeyedGetOwned(GetFuture::new(&self.shared, key, Track::new(&self.leaks)))
    }

    /// The totals across keys, with the plain pool's names: gauges and counters summed over
    /// every key (forgotten keys' counters included); `max_open` is the per-key limit times
    /// the keys held (0: unlimited), so `open <= max_open` holds on the totals too.
    /// [`held_too_long`](Stats::held_too_long) is counted here only, not per key.
    pub fn stats(&self) -> Stats {
        let mut stats = self.shared.state.lock().stats();
        stats.held_too_long = self.leaks.as_ref().map_or(0, |l| l.reported());
        stats
    }

    /// One key's stats; `None` when the pool holds nothing for it (no connection, no waiter).
    /// Its [`held_too_long`](Stats::held_too_long) is 0: the
    /// [`held_too_long`](crate::Hooks::held_too_long) hook has the key of each report.
    pub fn key_stats<Q>(&self, key: &Q) -> Option<Stats>
    where
        M::Key: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shared.state.lock().key_stats(key)
    }

    /// Every key the pool holds state for now, with its stats.
    pub fn all_key_stats(&self) -> Vec<(Arc<M::Key>, Stats)> {
        self.shared.state.lock().all_key_stats()
    }

    /// How many keys the pool holds state for now.
    pub fn key_count(&self) -> usize {
        self.shared.state.lock().key_count()
    }

    /// The manager.
    pub fn manager(&self) -> &M {
        &self.shared.manager
    }

    /// Whether [`close`](KeyedPool::close) was called (or every handle dropped).
    pub fn is_closed(&self) -> bool {
        <Keys<M> as Table<M>>::is_closed(&self.shared.state.lock())
    }

    /// Closes the pool: queued checkouts of every key fail at once with a closed error, idle
    /// connections close, checked-out ones close when they come back. Idempotent.
    pub fn close(&self) {
        self.shared.close();
    }

    /// [`close`](KeyedPool::close), then waits up to `timeout` for every connection to come
    /// back and close.
    ///
    /// # Errors
    /// [`is_timeout`](Error::is_timeout) if connections are still open after `timeout`.
    pub async fn close_and_wait(&self, timeout: Duration) -> Result<(), Error> {
        self.close();
        self.shared.drained(timeout).await
    }

    fn each_key(
        &self,
        f: impl FnMut(&mut State<M::Resource>, &mut Now, &mut Effects<M::Resource>),
    ) {
        self.shared.with_table(|t, now, fx| t.for_each(now, fx, f));
    }

    /// Sets `max_idle` across keys (`MaxIdleConns`); idle connections above it close at once,
    /// least recently idled first, grace or not (counted in `max_idle_closed`).
    pub fn set_max_idle(&self, n: usize) {
        self.shared
            .with_table(|t, now, fx| t.set_max_idle(n, now, fx));
    }

    /// Sets `max_open` per key (`MaxConnsPerHost`; 0 = unlimited); connections above it
    /// close as they come back.
    pub fn set_max_open_per_key(&self, n: usize) {
        self.each_key(|st, now, fx| st.set_max_open(n, now, fx));
    }

    /// Sets `max_idle` per key (`MaxIdleConnsPerHost`); idle connections of a key above it
    /// close at once (counted in `max_idle_closed`).
    pub fn set_max_idle_per_key(&self, n: usize) {
        self.each_key(|st, now, fx| st.set_max_idle(n, now, fx));
    }

    /// Sets `max_lifetime`; applies to open connections too.
    ///
    /// # Errors
    /// A config error for zero or more than a year (use `None` for no limit).
    pub fn set_max_lifetime(&self, d: Option<Duration>) -> Result<(), Error> {
        let d = check_positive("max_lifetime", d)?;
        self.each_key(|st, _, fx| st.set_max_lifetime(d, fx));
        Ok(())
    }

    /// Sets `max_idle_time` per key (`IdleConnTimeout`); applies to idle connections too.
    ///
    /// # Errors
    /// A config error for zero or more than a year (use `None` for no limit).
    pub fn set_max_idle_time(&self, d: Option<Duration>) -> Result<(), Error> {
        let d = check_positive("max_idle_time", d)?;
        self.each_key(|st, now, fx| st.set_max_idle_time(d, now, fx));
        Ok(())
    }

    /// Sets `idle_grace`, per key (within the global idle cap).
    ///
    /// # Errors
    /// A config error for more than a year, or while
    /// [`adaptive_idle`](crate::Config::adaptive_idle) is on (the grace is not used then).
    pub fn set_idle_grace(&self, d: Duration) -> Result<(), Error> {
        let d = check_duration("idle_grace", d)?;
        let mut result = Ok(());
        self.each_key(|st, _, fx| {
            if let Err(e) = st.set_idle_grace(d, fx) {
                result = Err(e);
            }
        });
        result
    }
}

/// The future of [`KeyedPool::get`]: an idle connection of the key inline on its first
/// poll when there is one, the general path (boxed) otherwise. Dropping it at any point is
/// safe: see [`KeyedPool::get`].
///
/// The guard it yields borrows the pool (`'a`) but not the key (`'k`).
#[must_use = "futures do nothing unless polled"]
pub struct KeyedGet<'a, 'k, M: KeyedManager, Q: ?Sized = <M as KeyedManager>::Key>(
    GetFuture<'a, 'k, M, Keys<M>, KeyedPooled<'a, M>, Q>,
);

impl<'a, M: KeyedManager> Wrap<'a, M, Keys<M>> for KeyedPooled<'a, M> {
    #[inline]
    fn wrap(guard: Guard<'a, M, Keys<M>>) -> Self {
        KeyedPooled(guard)
    }
}

impl<'a, 'k, M, Q> std::future::Future for KeyedGet<'a, 'k, M, Q>
where
    M: KeyedManager,
    M::Key: Borrow<Q>,
    Q: Hash + Eq + ToOwned<Owned = M::Key> + ?Sized,
{
    type Output = Result<KeyedPooled<'a, M>, Error>;

    #[inline]
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx)
    }
}

/// The future [`KeyedPool::get_owned`] returns: [`KeyedGet`]'s, with a guard that owns a
/// reference to the pool.
#[must_use = "futures do nothing unless awaited"]
pub struct KeyedGetOwned<'a, 'k, M: KeyedManager, Q: ?Sized = <M as KeyedManager>::Key>(
    GetFuture<'a, 'k, M, Keys<M>, OwnedKeyed<M>, Q>,
);

/// The owned guard, as the checkout future makes it.
struct OwnedKeyed<M: KeyedManager>(KeyedPooled<'static, M>);

impl<'a, M: KeyedManager> Wrap<'a, M, Keys<M>> for OwnedKeyed<M> {
    #[inline]
    fn wrap(guard: Guard<'a, M, Keys<M>>) -> Self {
        OwnedKeyed(KeyedPooled(guard.into_owned()))
    }

    #[inline]
    fn fresh(
        shared: &'a Arc<Shared<M, Keys<M>>>,
        conn: Conn<M::Resource>,
        handle: KeyHandle<M>,
        track: &Track<'a, KeyHandle<M>>,
    ) -> Self {
        let mut guard = Guard::owned(shared.clone(), conn, handle);
        track.start(&mut guard);
        OwnedKeyed(KeyedPooled(guard))
    }
}

impl<M, Q> std::future::Future for KeyedGetOwned<'_, '_, M, Q>
where
    M: KeyedManager,
    M::Key: Borrow<Q>,
    Q: Hash + Eq + ToOwned<Owned = M::Key> + ?Sized,
{
    type Output = Result<KeyedPooled<'static, M>, Error>;

    #[inline]
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0)
            .poll(cx)
            .map_ok(|OwnedKeyed(conn)| conn)
    }
}

impl<'a, 'k, M: KeyedManager, Q: ?Sized> KeyedGetOwned<'a, 'k, M, Q> {
    /// Reports a leak of the connection this checkout gives at `caller` instead of the line
    /// that called `get_owned` (see [`Config::leak_threshold`](crate::Config::leak_threshold)): for
    /// a library that checks out on its user's behalf from a `#[track_caller]` function, so
    /// the report names the user's line, not the library's.
    #[must_use = "futures do nothing unless polled"]
    pub fn called_from(mut self, caller: &'static std::panic::Location<'static>) -> Self {
        self.0.called_from(caller);
        self
    }
}

impl<M: KeyedManager, Q: ?Sized> std::fmt::Debug for KeyedGetOwned<'_, '_, M, Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedGetOwned")
            .field("waiting", &self.0.is_waiting())
            .field("caller", self.0.track())
            .finish()
    }
}

impl<'a, 'k, M: KeyedManager, Q: ?Sized> KeyedGet<'a, 'k, M, Q> {
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

impl<M: KeyedManager, Q: ?Sized> std::fmt::Debug for KeyedGet<'_, '_, M, Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedGet")
            .field("waiting", &self.0.is_waiting())
            .field("caller", self.0.track())
            .finish()
    }
}

/// A connection checked out of a [`KeyedPool`]: a [`Pooled`](crate::Pooled) that also knows
/// its key. Dropping it returns the connection to its key's waiters or idle list.
pub struct KeyedPooled<'a, M: KeyedManager>(Guard<'a, M, Keys<M>>);

guard_api!(KeyedPooled, KeyedManager);

impl<M: KeyedManager> KeyedPooled<'_, M> {
    /// The key this connection belongs to.
    pub fn key(this: &Self) -> &M::Key {
        this.0.key()
    }
}

/// Builds a [`KeyedPool`]; each knob has a setter, named as in [`KeyedConfig`] with
/// `_per_key` where the plain pool's knob applies per key.
#[must_use = "a builder does nothing until `build` is called"]
pub struct KeyedBuilder<M: KeyedManager> {
    manager: M,
    config: KeyedConfig,
    hooks: Option<Arc<dyn Hooks<M::Key>>>,
}

impl<M: KeyedManager> std::fmt::Debug for KeyedBuilder<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedBuilder")
            .field("config", &self.config)
            .field("hooks", &self.hooks.is_some())
            .finish_non_exhaustive()
    }
}

macro_rules! per_key {
    ($(#[$doc:meta])* $name:ident => $field:ident: $ty:ty => $value:expr) => {
        $(#[$doc])*
        pub fn $name(mut self, $field: $ty) -> Self {
            self.config.per_key.$field = $value;
            self
        }
    };
}

impl<M: KeyedManager> KeyedBuilder<M> {
    /// See [`KeyedConfig::max_idle`]: most idle connections across keys.
    pub fn max_idle(mut self, max_idle: usize) -> Self {
        self.config.max_idle = max_idle;
        self
    }
    per_key!(/// `max_open` of each key (`MaxConnsPerHost`; see [`Config::max_open`](crate::Config::max_open)).
        max_open_per_key => max_open: usize => max_open);
    per_key!(/// `max_idle` of each key (`MaxIdleConnsPerHost`; see [`Config::max_idle`](crate::Config::max_idle)).
        max_idle_per_key => max_idle: usize => max_idle);
    per_key!(/// See [`Config::idle_grace`](crate::Config::idle_grace); per key, within the global cap.
        idle_grace => idle_grace: Duration => idle_grace);
    per_key!(/// See [`Config::adaptive_idle`](crate::Config::adaptive_idle); each key learns its own traffic, within the global cap.
        adaptive_idle => adaptive_idle: Duration => Some(adaptive_idle));
    per_key!(/// See [`Config::max_lifetime`](crate::Config::max_lifetime).
        max_lifetime => max_lifetime: Duration => Some(max_lifetime));
    per_key!(/// See [`Config::lifetime_jitter`](crate::Config::lifetime_jitter).
        lifetime_jitter => lifetime_jitter: Duration => Some(lifetime_jitter));
    per_key!(/// See [`Config::rotate_lifetime`](crate::Config::rotate_lifetime); each key rotates its own.
        rotate_lifetime => rotate_lifetime: bool => rotate_lifetime);
    per_key!(/// See [`Config::max_idle_time`](crate::Config::max_idle_time) (`IdleConnTimeout`).
        max_idle_time => max_idle_time: Duration => Some(max_idle_time));
    per_key!(/// See [`Config::acquire_timeout`](crate::Config::acquire_timeout).
        acquire_timeout => acquire_timeout: Duration => Some(acquire_timeout));
    per_key!(/// See [`Config::create_timeout`](crate::Config::create_timeout).
        create_timeout => create_timeout: Duration => Some(create_timeout));
    per_key!(/// See [`Config::validate_after`](crate::Config::validate_after).
        validate_after => validate_after: Duration => Some(validate_after));
    per_key!(/// See [`Config::hook_timeout`](crate::Config::hook_timeout).
        hook_timeout => hook_timeout: Duration => hook_timeout);
    per_key!(/// See [`Config::idle_order`](crate::Config::idle_order).
        idle_order => idle_order: crate::IdleOrder => idle_order);
    per_key!(/// See [`Config::breaker_threshold`](crate::Config::breaker_threshold); each key has its own breaker.
        breaker_threshold => breaker_threshold: u32 => breaker_threshold);
    per_key!(/// See [`Config::breaker_backoff`](crate::Config::breaker_backoff).
        breaker_backoff => breaker_backoff: Duration => breaker_backoff);
    per_key!(/// See [`Config::breaker_max_backoff`](crate::Config::breaker_max_backoff).
        breaker_max_backoff => breaker_max_backoff: Duration => breaker_max_backoff);
    per_key!(/// See [`Config::binding`](crate::Config::binding).
        binding => binding: crate::Binding => binding);
    per_key!(/// See [`Config::leak_threshold`](crate::Config::leak_threshold): report a guard of any
        /// key held longer than this (the hook gets its key).
        leak_threshold => leak_threshold: Duration => Some(leak_threshold));
    per_key!(/// See [`Config::leak_trace`](crate::Config::leak_trace).
        leak_trace => leak_trace: crate::LeakTrace => leak_trace);

    /// Replaces every knob with `config`.
    pub fn config(mut self, config: KeyedConfig) -> Self {
        self.config = config;
        self
    }

    /// Lifecycle [`Hooks`], called with the key. Default none, which costs nothing.
    pub fn hooks(mut self, hooks: impl Hooks<M::Key>) -> Self {
        self.hooks = Some(Arc::new(hooks));
        self
    }

    /// Validates the knobs and starts the pool (and its reaper).
    ///
    /// # Errors
    /// See [`KeyedPool::new`].
    pub fn build(self) -> Result<KeyedPool<M>, Error> {
        KeyedPool::start(self.manager, self.config, self.hooks)
    }
}
