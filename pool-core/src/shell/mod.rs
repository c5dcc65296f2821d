//! The async shell both pools share, around the pure [`machine`](crate::machine): the tasks
//! that create, close and reset, the checkout path (waiting, hooks, retries), the guard that
//! returns a connection, the reaper, and the RAII tickets that keep the state's counts right
//! whatever is dropped when. Generic over the [`Table`] it locks: one state for
//! [`Pool`](crate::Pool), one per key for [`KeyedPool`](crate::KeyedPool).
//!
//! The shell owns every clock read and random draw: it passes the machine its clock
//! ([`clock::CLOCK`], read lazily through `Now`) and the lifetime jitter of each new
//! connection.
//!
//! - `mod.rs`: [`Shared`], what every handle, guard and task of one pool shares; running a
//!   step's effects after the lock.
//! - `checkout.rs`: the checkout future both pools return, the general path behind it and
//!   its tickets (`Waiter`, `Checkout`).
//! - `tickets.rs`: the create, close and reset tasks and their tickets, and the general
//!   return path.
//! - `guard.rs`: the checked-out connection.
//! - `reaper.rs`: the reaper task.
//! - `clock.rs`, `rt.rs`, `util.rs`: the clocks, the runtime seam, small helpers.

mod checkout;
pub(crate) mod clock;
pub(crate) mod guard;
mod reaper;
mod rt;
mod tickets;
mod trace;
pub(crate) mod util;

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;

pub(crate) use checkout::{GetFuture, Wrap};

use crate::config::Timeouts;
use crate::error::Kind;
use crate::hooks::{self, Hooks};
use crate::machine::{Effects, KeyId, Now, Rare, State, Table, WaitPoll, WaiterId};
use crate::{Error, KeyedManager};
use clock::CLOCK;
use rt::{Mutex, Runtime};

/// What every handle, guard and task of one pool shares.
pub(crate) struct Shared<M: KeyedManager, T> {
    pub manager: M,
    pub state: Mutex<T>,
    pub timeouts: Timeouts,
    runtime: Runtime,
    reaper: Arc<Notify>,
    /// The reaper task runs (false once it returned or its runtime dropped it).
    reaper_alive: Arc<std::sync::atomic::AtomicBool>,
    drained: Notify,
    pub hooks: Option<Arc<dyn Hooks<M::Key>>>,
    /// The next connection id: unique per pool, across keys.
    next_id: std::sync::atomic::AtomicU64,
    /// What the pool's stamps count from: its start, by the shell's clock (see
    /// `machine::idle::Stamp`).
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
        let shared = Arc::new(Shared {
            manager,
            state: Mutex::new(table),
            timeouts,
            runtime,
            reaper: Arc::new(Notify::new()),
            reaper_alive: Arc::default(),
            drained: Notify::new(),
            hooks,
            next_id: std::sync::atomic::AtomicU64::new(1),
            origin,
        });
        if shared.runtime.has_timers() {
            shared.spawn_reaper();
        }
        Ok(shared)
    }

    fn spawn_reaper(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        self.reaper_alive.store(true, Ordering::Release);
        let alive = reaper::Alive(self.reaper_alive.clone());
        self.runtime.spawn(reaper::run(
            Arc::downgrade(self),
            self.reaper.clone(),
            alive,
        ));
    }

    /// Starts a reaper again when the runtime of the last one shut down (the pool lives on
    /// in another runtime): on the rare path only, where timed work is armed.
    #[cold]
    fn revive_reaper(self: &Arc<Self>) {
        use std::sync::atomic::Ordering;
        if self.reaper_alive.load(Ordering::Acquire)
            || !self.runtime.has_timers()
            || self.state.lock().is_closed()
        {
            return;
        }
        #[cfg(not(shuttle))]
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        tracing::debug!(target: "pool_core", "the reaper's runtime shut down: a new reaper starts");
        self.spawn_reaper();
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
        if !self.reaper_alive.load(std::sync::atomic::Ordering::Acquire) {
            self.revive_reaper();
        }
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

    /// Polls a queued checkout: its connection or error, or its waker stored.
    #[inline]
    pub fn poll_waiter(
        self: &Arc<Self>,
        key: KeyId,
        id: WaiterId,
        waker: &std::task::Waker,
    ) -> WaitPoll<M::Resource> {
        // The wait's end, read before the lock: a coarse reading costs a few ns, but not
        // while the other core waits for the lock.
        let mut now = Now::lazy(CLOCK).with_coarse((CLOCK.coarse)());
        let mut fx = Effects::default();
        let polled = self
            .state
            .lock()
            .poll_waiter(key, id, waker, &mut now, &mut fx);
        self.apply(fx);
        polled
    }

    /// Locks the table, runs `f`, unlocks, then applies the effects.
    pub fn with_table<R>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut T, &mut Now, &mut Effects<M::Resource>) -> R,
    ) -> R {
        let mut now = Now::lazy(CLOCK);
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
        self.with_table(|t, now, fx| t.close(now, fx));
    }
}

/// Closes the pool when the last public handle drops (guards and tasks do not count).
pub(crate) struct Owner<M: KeyedManager, T: Table<M>>(pub Arc<Shared<M, T>>);

impl<M: KeyedManager, T: Table<M>> Drop for Owner<M, T> {
    fn drop(&mut self) {
        self.0.close();
    }
}
