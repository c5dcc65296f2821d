//! The RAII guards of checked-out connections: [`Pooled`] for a plain pool,
//! [`KeyedPooled`](crate::KeyedPooled) for a keyed one, both thin wrappers of one [`Guard`];
//! `leak.rs`: the leak detection a guard takes part in.

pub(crate) mod leak;

use std::sync::Arc;
use std::time::Duration;

use super::{Shared, clock};
use crate::hooks::Returned;
use crate::machine::{Conn, Pushed, State, Table};
use crate::{CloseReason, Health, KeyedManager, Manager};

/// A checked-out connection and its way back to the pool.
pub(crate) struct Guard<'a, M: KeyedManager, T: Table<M>> {
    conn: Option<Conn<M::Resource>>,
    pool: PoolRef<'a, M, T>,
    handle: T::Handle,
    /// Its entry in the pool's leak book; `None` when leak detection is off. Dropped with
    /// the guard, after the connection went back.
    leak: Option<leak::LeakTicket<T::Handle>>,
}

/// The guard's way back to its pool.
enum PoolRef<'a, M: KeyedManager, T> {
    Borrowed(&'a Arc<Shared<M, T>>),
    Owned(Arc<Shared<M, T>>),
}

const HELD: &str = "a guard holds its connection until it is consumed";

impl<'a, M: KeyedManager, T: Table<M>> Guard<'a, M, T> {
    pub fn borrowed(
        shared: &'a Arc<Shared<M, T>>,
        conn: Conn<M::Resource>,
        handle: T::Handle,
    ) -> Self {
        Guard {
            conn: Some(conn),
            pool: PoolRef::Borrowed(shared),
            handle,
            leak: None,
        }
    }

    /// A guard that owns a reference to the pool, made at once (not from a borrowed one,
    /// whose drop glue would run too).
    pub fn owned(
        shared: Arc<Shared<M, T>>,
        conn: Conn<M::Resource>,
        handle: T::Handle,
    ) -> Guard<'static, M, T> {
        Guard {
            conn: Some(conn),
            pool: PoolRef::Owned(shared),
            handle,
            leak: None,
        }
    }

    #[inline]
    fn shared(&self) -> &Arc<Shared<M, T>> {
        match &self.pool {
            PoolRef::Borrowed(s) => s,
            PoolRef::Owned(s) => s,
        }
    }

    pub fn conn(&self) -> &Conn<M::Resource> {
        self.conn.as_ref().expect(HELD)
    }

    pub fn conn_mut(&mut self) -> &mut Conn<M::Resource> {
        self.conn.as_mut().expect(HELD)
    }

    pub fn key(&self) -> &M::Key {
        T::key_of(&self.handle)
    }

    pub fn into_owned(mut self) -> Guard<'static, M, T> {
        let shared = self.shared().clone();
        Guard {
            conn: self.conn.take(),
            pool: PoolRef::Owned(shared),
            handle: self.handle.clone(),
            leak: self.leak.take(),
        }
    }

    pub fn age(&self) -> Duration {
        self.conn()
            .created_at(Some(self.shared().origin))
            .map_or(Duration::ZERO, clock::elapsed)
    }

    pub fn discard(mut self) {
        if let Some(conn) = self.conn.take() {
            let id = conn.id;
            let shared = self.shared();
            shared.with_state(T::key_id(&self.handle), |st, _, fx| {
                st.begin_close(conn, CloseReason::Broken, fx)
            });
            self.returned(id, Returned::Closed(CloseReason::Broken));
        }
    }

    pub fn detach(mut self) -> M::Resource {
        let conn = self.conn.take().expect(HELD);
        self.shared()
            .with_state(T::key_id(&self.handle), |st, now, fx| st.detach(now, fx));
        self.returned(conn.id, Returned::Detached);
        conn.res
    }

    fn returned(&self, id: u64, returned: Returned) {
        let key = T::key_of(&self.handle);
        self.shared()
            .hook("put_idle", |h| h.put_idle(key, id, returned));
    }
}

impl<M: KeyedManager, T: Table<M>> Drop for Guard<'_, M, T> {
    fn drop(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let shared = match &self.pool {
            PoolRef::Borrowed(s) => *s,
            PoolRef::Owned(s) => s,
        };
        let health = if std::thread::panicking() {
            Health::Broken
        } else {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.manager.check(&mut conn.res))).unwrap_or_else(|panic| {
                let panic = super::util::panic_message(panic.as_ref());
                tracing::error!(target: "pool_core", conn = conn.id, panic, "manager panicked in check on release");
                Health::Broken
            })
        };
        let id = conn.id;
        let mut st = shared.state.lock();
        if health == Health::Ready {
            let returned = match st.push_fast(&mut self.conn, T::key_id(&self.handle), clock::now) {
                Pushed::Idle => Returned::Idle,
                Pushed::HandedOff(waker) => {
                    drop(st);
                    if let Some(w) = waker {
                        w.wake();
                    }
                    Returned::HandedOff
                }
                Pushed::Declined => {
                    return shared.put_back(st, &self.handle, &mut self.conn, health);
                }
            };
            tracing::trace!(target: "pool_core", conn = id, returned = returned.as_str(), "returned a connection");
            return;
        }
        shared.put_back(st, &self.handle, &mut self.conn, health);
    }
}

/// Forwards the guard API to the inner [`Guard`] of a public guard type.
macro_rules! guard_api {
    ($name:ident, $bound:ident) => {
        impl<'a, M: $bound> $name<'a, M> {
            /// Turns a borrowing guard into one that owns a reference to the pool.
            pub fn into_owned(this: Self) -> $name<'static, M> {
                $name(this.0.into_owned())
            }

            /// The resource (what `*guard` gives).
            pub fn get_ref(this: &Self) -> &M::Resource {
                &this.0.conn().res
            }

            /// The resource, mutably (what `&mut *guard` gives).
            pub fn get_mut(this: &mut Self) -> &mut M::Resource {
                &mut this.0.conn_mut().res
            }

            /// The pool's id of this connection (as in its tracing events and hooks), unique
            /// per pool.
            pub fn id(this: &Self) -> u64 {
                this.0.conn().id
            }

            /// How long ago the connection was created.
            pub fn age(this: &Self) -> Duration {
                this.0.age()
            }

            /// Closes the connection instead of returning it (it is broken, or in a state you
            /// do not want the next caller to see). Counted in `broken_closed`; its slot frees
            /// when the close completes.
            pub fn discard(this: Self) {
                this.0.discard()
            }

            /// Takes the resource out of the pool for good, freeing its slot (counted in
            /// `detached`).
            pub fn detach(this: Self) -> M::Resource {
                this.0.detach()
            }
        }

        impl<M: $bound> std::ops::Deref for $name<'_, M> {
            type Target = M::Resource;
            fn deref(&self) -> &M::Resource {
                Self::get_ref(self)
            }
        }

        impl<M: $bound> std::ops::DerefMut for $name<'_, M> {
            fn deref_mut(&mut self) -> &mut M::Resource {
                Self::get_mut(self)
            }
        }

        /// Shows the connection's id and the resource, as `MutexGuard` shows its value:
        /// needs `M::Resource: Debug`, never `M: Debug`.
        impl<M: $bound> std::fmt::Debug for $name<'_, M>
        where
            M::Resource: std::fmt::Debug,
        {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name))
                    .field("id", &self.0.conn().id)
                    .field("resource", &self.0.conn().res)
                    .finish()
            }
        }
    };
}

pub(crate) use guard_api;

/// A checked-out connection. Dropping it returns the connection to the pool (to the head
/// waiter, else to idle) after [`Manager::check`]; [`discard`](Pooled::discard) closes it
/// instead and [`detach`](Pooled::detach) takes it out of the pool. Each consumes the guard,
/// so a connection cannot be returned twice.
///
/// The guard derefs to the resource, so its own operations are associated functions, called
/// as `Pooled::discard(conn)`, `Pooled::id(&conn)`, `Pooled::get_mut(&mut conn)` (as
/// `Arc::strong_count` and `Box::leak` are): a method of the guard would shadow the
/// resource's method of the same name, and `conn.get_ref()` on a `BufReader` or a TLS stream
/// would silently reach the guard instead of the stream.
///
/// # Examples
///
/// ```
/// # use pool_core::{async_trait, Manager, Pool, Pooled};
/// # struct Counter;
/// # #[async_trait]
/// # impl Manager for Counter {
/// #     type Resource = Vec<u8>;
/// #     type Error = std::io::Error;
/// #     async fn create(&self) -> Result<Vec<u8>, std::io::Error> { Ok(Vec::new()) }
/// # }
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), pool_core::Error> {
/// let pool = Pool::builder(Counter).build()?;
/// let mut conn = pool.get().await?;
/// conn.push(1); // the resource's own method, through `DerefMut`
/// assert_eq!(Pooled::id(&conn), 1);
/// Pooled::discard(conn); // closed, not returned: the next checkout gets a new one
/// assert_eq!(Pooled::id(&pool.get().await?), 2);
/// # Ok(()) }
/// ```
///
/// If the thread is panicking when the guard drops, the connection is discarded (counted in
/// `broken_closed`), as database/sql closes a connection whose user panicked: it may be in
/// any state.
///
/// [`Pool::get`](crate::Pool::get) returns a guard that borrows the pool (no reference count
/// is touched on the hot path); [`Pool::get_owned`](crate::Pool::get_owned) or
/// [`Pooled::into_owned`] give a `Pooled<'static, M>` to move into a spawned task or keep in
/// a struct.
///
/// With [`Config::leak_threshold`](crate::Config::leak_threshold) set, a guard held longer
/// than it is reported once (a warning naming the `get` call's file and line), while it is
/// still out.
pub struct Pooled<'a, M: Manager>(pub(crate) Guard<'a, M, State<M::Resource>>);

guard_api!(Pooled, Manager);
