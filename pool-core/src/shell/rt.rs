//! The runtime seam: tokio and parking_lot normally; shuttle's scheduler and mutex under
//! `--cfg shuttle`, so the model check explores the shell's interleavings (see
//! `tests/shuttle.rs`). Under shuttle there are no timers: timeouts never fire and the reaper
//! does not run.

use std::future::Future;

use tokio::time::Instant;

#[cfg(not(shuttle))]
pub(crate) use parking_lot::{Mutex, MutexGuard};

#[cfg(shuttle)]
pub(crate) use shuttle::sync::MutexGuard;

/// shuttle's mutex with parking_lot's signature.
#[cfg(shuttle)]
pub(crate) struct Mutex<T>(shuttle::sync::Mutex<T>);

#[cfg(shuttle)]
impl<T> Mutex<T> {
    pub fn new(value: T) -> Self {
        Mutex(shuttle::sync::Mutex::new(value))
    }

    pub fn lock(&self) -> shuttle::sync::MutexGuard<'_, T> {
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Where the pool's tasks (creates, closes, the reaper) run.
pub(crate) struct Runtime {
    #[cfg(not(shuttle))]
    handle: tokio::runtime::Handle,
}

impl Runtime {
    /// The runtime the caller is in, if any.
    pub fn current() -> Option<Self> {
        #[cfg(not(shuttle))]
        return tokio::runtime::Handle::try_current()
            .ok()
            .map(|handle| Runtime { handle });
        #[cfg(shuttle)]
        return Some(Runtime {});
    }

    /// Spawns `fut` on the caller's runtime when it is in one, else on the pool's (the one it
    /// was built in): a pool that outlives its first runtime (a client in a `static` shared
    /// by `#[tokio::test]`s, each with a runtime of its own) keeps creating and closing on
    /// the runtime that uses it, where a task spawned on the dead one would be dropped unrun.
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(&self, fut: F) {
        #[cfg(not(shuttle))]
        match tokio::runtime::Handle::try_current() {
            Ok(current) => drop(current.spawn(fut)),
            Err(_) => drop(self.handle.spawn(fut)),
        }
        #[cfg(shuttle)]
        drop(shuttle::future::spawn(fut));
    }

    /// Whether a background reaper can run (it needs timers).
    pub fn has_timers(&self) -> bool {
        cfg!(not(shuttle))
    }
}

/// A deadline passed.
#[derive(Debug)]
pub(crate) struct Elapsed;

/// `fut`, unless `at` comes first.
pub(crate) async fn timeout_at<F: Future>(at: Instant, fut: F) -> Result<F::Output, Elapsed> {
    #[cfg(not(shuttle))]
    return tokio::time::timeout_at(at, fut).await.map_err(|_| Elapsed);
    #[cfg(shuttle)]
    {
        let _ = at;
        Ok(fut.await)
    }
}
