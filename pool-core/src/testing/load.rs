//! [`Load`]: many tasks calling a pool in a loop, for chaos and soak tests, with the caller's
//! side of the laws measured: how every call ended and how long the slowest failure took.

use std::future::Future;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Whether the full soak and chaos runs were asked for: `SOAK=full` in the environment.
pub fn full_run() -> bool {
    std::env::var("SOAK").is_ok_and(|v| v == "full")
}

/// The operations of a soak test: `SOAK_OPS` if set, else `full` under `SOAK=full`, else
/// `bounded` (the form CI runs).
pub fn soak_ops(bounded: u64, full: u64) -> u64 {
    env_number("SOAK_OPS").unwrap_or(if full_run() { full } else { bounded })
}

/// How long a chaos test flaps its backend: `CHAOS_SECS` if set, else 30 s under
/// `SOAK=full`, else 2 s (the form CI runs).
pub fn chaos_secs() -> u64 {
    env_number("CHAOS_SECS").unwrap_or(if full_run() { 30 } else { 2 })
}

fn env_number(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|s| s.parse().ok())
}

/// How the calls of a [`Load`] ended so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Tally {
    /// Calls that returned `Ok`.
    pub ok: u64,
    /// Calls that returned `Err`.
    pub failed: u64,
    /// Calls the caller gave up on (their future dropped at the random patience).
    pub cancelled: u64,
    /// The longest a failed call took to fail: a pool that bounds its waits keeps this under
    /// its timeouts however the backend behaves.
    pub slowest_failure: Duration,
}

impl Tally {
    /// Every call that ended, however.
    pub fn calls(&self) -> u64 {
        self.ok + self.failed + self.cancelled
    }
}

#[derive(Default)]
struct Counts {
    ok: AtomicU64,
    failed: AtomicU64,
    cancelled: AtomicU64,
    slowest_failure_ns: AtomicU64,
    /// Calls started, the limit's counter.
    started: AtomicU64,
}

impl Counts {
    fn tally(&self) -> Tally {
        Tally {
            ok: self.ok.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            cancelled: self.cancelled.load(Ordering::Relaxed),
            slowest_failure: Duration::from_nanos(self.slowest_failure_ns.load(Ordering::Relaxed)),
        }
    }
}

/// A running workload: `tasks` tasks, each calling `call` in a loop until [`stop`](Load::stop)
/// or until `limit` calls were started in all.
///
/// Each call gets a random patience from `patience_ms`; a call still running then is dropped
/// (the caller gave up: random cancellation at any await point of the pool and the client).
/// After a failure a task pauses 1-20 ms, as a real caller would before trying again. Panics
/// in `call` (failed asserts) come out of [`stop`](Load::stop).
pub struct Load {
    stop: Arc<AtomicBool>,
    counts: Arc<Counts>,
    tasks: Vec<JoinHandle<()>>,
}

impl Load {
    /// Starts the tasks. `call` gets the task's own seeded random generator (runs repeat) and
    /// returns the call's future.
    pub fn start<F, Fut, E>(
        tasks: u64,
        patience_ms: Range<u64>,
        limit: Option<u64>,
        call: F,
    ) -> Load
    where
        F: Fn(&mut fastrand::Rng) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), E>> + Send + 'static,
        E: Send + 'static,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let call = Arc::new(call);
        let tasks = (0..tasks)
            .map(|t| {
                let (stop, counts, call) = (stop.clone(), counts.clone(), call.clone());
                let patience_ms = patience_ms.clone();
                tokio::spawn(async move {
                    let mut rng = fastrand::Rng::with_seed(t);
                    while !stop.load(Ordering::Relaxed) {
                        let n = counts.started.fetch_add(1, Ordering::Relaxed);
                        if limit.is_some_and(|l| n >= l) {
                            break;
                        }
                        let patience = Duration::from_millis(rng.u64(patience_ms.clone()));
                        let fut = call(&mut rng);
                        let started = Instant::now();
                        match tokio::time::timeout(patience, fut).await {
                            Ok(Ok(())) => {
                                counts.ok.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok(Err(_)) => {
                                let took = started.elapsed().as_nanos() as u64;
                                counts.slowest_failure_ns.fetch_max(took, Ordering::Relaxed);
                                counts.failed.fetch_add(1, Ordering::Relaxed);
                                tokio::time::sleep(Duration::from_millis(rng.u64(1..20))).await;
                            }
                            Err(_) => {
                                counts.cancelled.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        tokio::task::yield_now().await;
                    }
                })
            })
            .collect();
        Load {
            stop,
            counts,
            tasks,
        }
    }

    /// How the calls ended so far.
    pub fn tally(&self) -> Tally {
        self.counts.tally()
    }

    /// Waits until `what` of the tally (say `|t| t.ok`) reaches `n`; panics after 30 s.
    pub async fn wait_for(&self, what: impl Fn(&Tally) -> u64, n: u64) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while what(&self.tally()) < n {
            assert!(
                Instant::now() < deadline,
                "load: {:?} after 30 s, waiting for {n}",
                self.tally()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// Stops the tasks after their current call and waits for them; a panic in a task
    /// (a failed assert in `call`) is raised here.
    pub async fn stop(self) -> Tally {
        self.stop.store(true, Ordering::Relaxed);
        self.finish().await
    }

    /// Waits for the tasks to end on their own (with a `limit`), then as [`stop`](Load::stop).
    pub async fn finish(self) -> Tally {
        for t in self.tasks {
            if let Err(e) = t.await
                && e.is_panic()
            {
                std::panic::resume_unwind(e.into_panic());
            }
        }
        self.counts.tally()
    }
}

impl std::fmt::Debug for Load {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Load")
            .field("tasks", &self.tasks.len())
            .field("tally", &self.tally())
            .finish()
    }
}
