//! The `checkout` span of a checkout (target `pool_core`, level DEBUG; see the crate docs,
//! "Tracing"), made at its first poll only when a subscriber wants it. A traced checkout
//! runs the general (boxed) path inside its span; the idle hit stays as it is untraced.

use std::borrow::Borrow;
use std::panic::{AssertUnwindSafe, catch_unwind};

use tokio::time::Instant;

use super::Shared;
use crate::KeyedManager;
use crate::machine::{Table, Via};

/// A checkout's span while it is under way. Dropped before [`done`](Traced::done) (the
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

    /// The span, to run the checkout in.
    pub fn span(&self) -> &tracing::Span {
        &self.span
    }

    /// Records the connection the checkout was served.
    pub fn served(&self, conn: u64, via: Via) {
        let span = &self.span;
        span.record("waited", tracing::field::debug(self.started.elapsed()));
        span.record("conn", conn);
        span.record("reused", via != Via::Created);
        span.record(
            "via",
            match via {
                Via::Idle => "idle",
                Via::Release => "released",
                Via::Created => "created",
            },
        );
    }

    /// Records the checkout's error.
    pub fn failed(&self, e: &crate::Error) {
        self.span
            .record("waited", tracing::field::debug(self.started.elapsed()));
        self.span.record("error", tracing::field::display(e));
    }

    /// The checkout ended (served or failed): nothing to record on drop.
    pub fn done(&mut self) {
        self.finished = true;
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
