//! The reaper: one task per pool, asleep until the state's nearest deadline.
//!
//! It holds only a `Weak` to the pool, so dropping the last handle ends it; while asleep it
//! holds no reference at all. The state wakes it (through `Notify`) when a new, earlier
//! deadline appears; a notification sent while it works is kept as a permit, so none is lost.

use std::sync::{Arc, Weak};

use tokio::sync::Notify;
use tokio::time::Instant;

use crate::KeyedManager;
use crate::shell::Shared;
use crate::state::Effects;
use crate::table::Table;

pub(crate) async fn run<M: KeyedManager, T: Table<M>>(
    pool: Weak<Shared<M, T>>,
    notify: Arc<Notify>,
) {
    loop {
        let next = {
            let Some(shared) = pool.upgrade() else { return };
            let mut fx = Effects::default();
            let (next, closed) = {
                let mut st = shared.state.lock();
                st.handle_timeout(Instant::now(), &mut fx);
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
                let _ = tokio::time::timeout_at(at, notify.notified()).await;
            }
            None => notify.notified().await,
        }
    }
}
