//! The `checkout` span of a checkout (target `pool_core`, level DEBUG; see the crate docs,
//! "Tracing"), made at its first poll only when a subscriber wants it.

use std::borrow::Borrow;
use std::panic::{AssertUnwindSafe, catch_unwind};

use tokio::time::Instant;

use super::Shared;
use super::checkout::CheckedOut;
use crate::KeyedManager;
use crate::machine::{Table, Via};

/// A checkout's span while it is under way. Dropped before [`finish`](Traced::finish) (the
/// caller gave up waiting), it records `cancelled`.
pub(super) struct Traced {
    span: tracing::Span,
    started: Instant,
    finished: bool,
}

impl Traced {
    /// The span of a checkout of `key`, or `None` when no subscriber wants it.
    pub fn start<M, T, Q>(shared: &Shared<M, T>, key: &Q) -> Option<Box<Traced>>
    where
        M: KeyedManager,
        T: Table<M>,
        Q: ToOwned<Owned = M::Key> + ?Sized,
        M::Key: Borrow<Q>,
    {
        use tracing::field::Empty;
        let span = tracing::debug_span!(
            target: "pool_core",
            "checkout",
            key = Empty,
            conn = Empty,
            reused = Empty,
            via = Empty,
            waited = Empty,
            error = Empty,
            cancelled = Empty,
        );
        if span.is_disabled() {
            return None;
        }
        let key = key.to_owned();
        // User code: a panic in it costs the span its key, not the checkout.
        let _ = catch_unwind(AssertUnwindSafe(|| {
            if let Some(name) = shared.manager.span_key(&key) {
                span.record("key", tracing::field::display(name));
            }
        }));
        Some(Box::new(Traced {
            span,
            started: Instant::now(),
            finished: false,
        }))
    }

    /// Runs `f` (a poll of the checkout) inside the span.
    pub fn in_scope<R>(&self, f: impl FnOnce() -> R) -> R {
        self.span.in_scope(f)
    }

    /// Records how the checkout ended.
    pub fn finish<M: KeyedManager, T: Table<M>>(&mut self, served: &CheckedOut<'_, M, T>) {
        self.finished = true;
        let span = &self.span;
        span.record("waited", tracing::field::debug(self.started.elapsed()));
        match served {
            Ok((guard, via)) => {
                span.record("conn", guard.conn().id);
                span.record("reused", *via != Via::Created);
                span.record(
                    "via",
                    match via {
                        Via::Idle => "idle",
                        Via::Release => "released",
                        Via::Created => "created",
                    },
                );
            }
            Err(e) => {
                span.record("error", tracing::field::display(e));
            }
        }
    }
}

impl Drop for Traced {
    fn drop(&mut self) {
        if !self.finished {
            self.span
                .record("waited", tracing::field::debug(self.started.elapsed()));
            self.span.record("cancelled", true);
        }
    }
}
