//! [`Pooled`]: the RAII guard of a checked-out connection.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::pool::Shared;
use crate::state::Conn;
use crate::{CloseReason, Health, Manager};

/// A checked-out connection. Dropping it returns the connection to the pool (to the head
/// waiter, else to idle) after [`Manager::check`]; [`discard`](Pooled::discard) closes it
/// instead and [`detach`](Pooled::detach) takes it out of the pool. Each consumes the guard,
/// so a connection cannot be returned twice.
///
/// If the thread is panicking when the guard drops, the connection is discarded (counted in
/// `broken_closed`), as database/sql closes a connection whose user panicked: it may be in
/// any state.
pub struct Pooled<M: Manager> {
    conn: Option<Conn<M::Resource>>,
    shared: Arc<Shared<M>>,
}

impl<M: Manager> Pooled<M> {
    pub(crate) fn new(shared: Arc<Shared<M>>, conn: Conn<M::Resource>) -> Self {
        Pooled {
            conn: Some(conn),
            shared,
        }
    }

    fn conn(&self) -> &Conn<M::Resource> {
        self.conn
            .as_ref()
            .expect("a Pooled always holds its connection until dropped")
    }

    /// The resource.
    pub fn get_ref(&self) -> &M::Resource {
        &self.conn().res
    }

    /// The resource, mutably.
    pub fn get_mut(&mut self) -> &mut M::Resource {
        &mut self
            .conn
            .as_mut()
            .expect("a Pooled always holds its connection until dropped")
            .res
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
            this.shared
                .with_state(|st, _, fx| st.begin_close(conn, CloseReason::Broken, fx));
        }
    }

    /// Takes the resource out of the pool for good, freeing its slot (counted in `detached`).
    pub fn detach(mut this: Self) -> M::Resource {
        let conn = this
            .conn
            .take()
            .expect("a Pooled always holds its connection until dropped");
        this.shared.with_state(|st, now, fx| st.detach(now, fx));
        conn.res
    }
}

impl<M: Manager> Deref for Pooled<M> {
    type Target = M::Resource;
    fn deref(&self) -> &M::Resource {
        self.get_ref()
    }
}

impl<M: Manager> DerefMut for Pooled<M> {
    fn deref_mut(&mut self) -> &mut M::Resource {
        self.get_mut()
    }
}

impl<M: Manager> std::fmt::Debug for Pooled<M>
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

impl<M: Manager> Drop for Pooled<M> {
    fn drop(&mut self) {
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let health = if std::thread::panicking() {
            Health::Broken
        } else {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.shared.manager.check(&mut conn.res))).unwrap_or_else(|panic| {
                tracing::error!(target: "pool_core", conn = conn.id, panic = crate::util::panic_message(panic.as_ref()), "manager panicked in check on release");
                Health::Broken
            })
        };
        self.shared.with_state(|st, now, fx| match health {
            Health::Ready | Health::NeedsReset => {
                conn.needs_reset = health == Health::NeedsReset;
                st.release(conn, now, fx);
            }
            _ => st.begin_close(conn, CloseReason::Broken, fx),
        });
    }
}

#[allow(dead_code)]
fn _assert_send_sync<M: Manager>()
where
    M::Resource: Sync,
{
    fn is<T: Send + Sync>() {}
    is::<Pooled<M>>();
    let _ = Instant::now;
}
