//! [`Pooled`]: the RAII guard of a checked-out connection.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use crate::pool::Shared;
use crate::state::{Conn, Effects, Now};
use crate::{CloseReason, Health, Manager};

/// A checked-out connection. Dropping it returns the connection to the pool (to the head
/// waiter, else to idle) after [`Manager::check`]; [`discard`](Pooled::discard) closes it
/// instead and [`detach`](Pooled::detach) takes it out of the pool. Each consumes the guard,
/// so a connection cannot be returned twice.
///
/// If the thread is panicking when the guard drops, the connection is discarded (counted in
/// `broken_closed`), as database/sql closes a connection whose user panicked: it may be in
/// any state.
///
/// [`Pool::get`](crate::Pool::get) returns a guard that borrows the pool (no reference count
/// is touched on the hot path); [`Pool::get_owned`](crate::Pool::get_owned) or
/// [`Pooled::into_owned`] give a `Pooled<'static, M>` to move into a spawned task or keep in
/// a struct.
pub struct Pooled<'a, M: Manager> {
    conn: Option<Conn<M::Resource>>,
    pool: PoolRef<'a, M>,
}

/// The guard's way back to its pool.
enum PoolRef<'a, M: Manager> {
    Borrowed(&'a Arc<Shared<M>>),
    Owned(Arc<Shared<M>>),
}

const HELD: &str = "a Pooled holds its connection until it is consumed";

impl<'a, M: Manager> Pooled<'a, M> {
    pub(crate) fn borrowed(shared: &'a Arc<Shared<M>>, conn: Conn<M::Resource>) -> Self {
        Pooled {
            conn: Some(conn),
            pool: PoolRef::Borrowed(shared),
        }
    }

    #[inline]
    fn shared(&self) -> &Arc<Shared<M>> {
        match &self.pool {
            PoolRef::Borrowed(s) => s,
            PoolRef::Owned(s) => s,
        }
    }

    fn conn(&self) -> &Conn<M::Resource> {
        self.conn.as_ref().expect(HELD)
    }

    /// Turns a borrowing guard into one that owns a reference to the pool.
    pub fn into_owned(mut this: Self) -> Pooled<'static, M> {
        let shared = this.shared().clone();
        Pooled {
            conn: this.conn.take(),
            pool: PoolRef::Owned(shared),
        }
    }

    /// The resource.
    pub fn get_ref(&self) -> &M::Resource {
        &self.conn().res
    }

    /// The resource, mutably.
    pub fn get_mut(&mut self) -> &mut M::Resource {
        &mut self.conn.as_mut().expect(HELD).res
    }

    /// The pool's id of this connection (as in its tracing events), unique per pool.
    pub fn id(this: &Self) -> u64 {
        this.conn().id
    }

    /// How long ago the connection was created.
    pub fn age(this: &Self) -> Duration {
        this.conn().created_at.elapsed()
    }

    /// Closes the connection instead of returning it (it is broken, or in a state you do not
    /// want the next caller to see). Counted in `broken_closed`; its slot frees when the close
    /// completes.
    pub fn discard(mut this: Self) {
        if let Some(conn) = this.conn.take() {
            this.shared()
                .with_state(|st, _, fx| st.begin_close(conn, CloseReason::Broken, fx));
        }
    }

    /// Takes the resource out of the pool for good, freeing its slot (counted in `detached`).
    pub fn detach(mut this: Self) -> M::Resource {
        let conn = this.conn.take().expect(HELD);
        this.shared().with_state(|st, now, fx| st.detach(now, fx));
        conn.res
    }
}

impl<M: Manager> Deref for Pooled<'_, M> {
    type Target = M::Resource;
    fn deref(&self) -> &M::Resource {
        self.get_ref()
    }
}

impl<M: Manager> DerefMut for Pooled<'_, M> {
    fn deref_mut(&mut self) -> &mut M::Resource {
        self.get_mut()
    }
}

impl<M: Manager> std::fmt::Debug for Pooled<'_, M>
where
    M::Resource: std::fmt::Debug,
{
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pooled")
            .field("id", &self.conn().id)
            .field("resource", &self.conn().res)
            .finish()
    }
}

impl<M: Manager> Drop for Pooled<'_, M> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let shared = self.shared();
        let health = if std::thread::panicking() {
            Health::Broken
        } else {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| shared.manager.check(&mut conn.res))).unwrap_or_else(|panic| {
                let panic = crate::util::panic_message(panic.as_ref());
                tracing::error!(target: "pool_core", conn = conn.id, panic, "manager panicked in check on release");
                Health::Broken
            })
        };
        let mut st = shared.state.lock();
        if health == Health::Ready {
            conn.needs_reset = false;
            conn = match st.push_fast(conn) {
                Ok(()) => return,
                Err(conn) => conn,
            };
        }
        let mut now = Now::lazy();
        let mut fx = Effects::default();
        match health {
            Health::Ready | Health::NeedsReset => {
                conn.needs_reset = health == Health::NeedsReset;
                st.release(conn, &mut now, &mut fx);
            }
            _ => st.begin_close(conn, CloseReason::Broken, &mut fx),
        }
        drop(st);
        shared.apply(fx);
    }
}
