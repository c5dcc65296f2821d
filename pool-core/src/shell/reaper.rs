//! The reaper: one task per pool, quinn's `drive_timer`. A turn runs
//! `Table::handle_timeout` at one reading of the clock, then the task sleeps until
//! `Table::poll_timeout()`, the one source of its deadline (see `machine/timers.rs`).
//!
//! It holds only a `Weak` to the pool, so dropping the last handle ends it; while asleep it
//! holds no reference at all. A step wakes it (through `Notify`) when it arms an earlier
//! deadline or changes a knob; a notification sent while it works is kept as a permit, so
//! none is lost.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;

use super::Shared;
use super::clock::CLOCK;
use crate::KeyedManager;
use crate::machine::{Effects, Now, Table};

/// Says, when dropped, that the reaper stopped: it returned, or its runtime shut down and
/// dropped it (then the next step of the pool on a live runtime starts another, see
/// `Shared::revive_reaper`).
pub(crate) struct Alive(pub Arc<AtomicBool>);

impl Drop for Alive {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

pub(crate) async fn run<M: KeyedManager, T: Table<M>>(
    pool: Weak<Shared<M, T>>,
    notify: Arc<Notify>,
    alive: Alive,
) {
    let _alive = alive;
    loop {
        let next = {
            let Some(shared) = pool.upgrade() else { return };
            let mut fx = Effects::default();
            let (next, closed) = {
                let mut st = shared.state.lock();
                st.handle_timeout(&mut Now::lazy(CLOCK), &mut fx);
                (st.poll_timeout(), st.is_closed())
            };
            shared.apply(fx);
            if closed {
                tracing::debug!("pool closed: reaper exits");
                return;
            }
            next
        };
        match next {
            Some(at) => {
                let at = Instant::from_std(at);
                let _ = tokio::time::timeout_at(at, notify.notified()).await;
            }
            None => notify.notified().await,
        }
    }
}
