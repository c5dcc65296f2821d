//! Test support other crates reuse (feature `testing`): a [`ScriptedManager`] whose every
//! call can be told to succeed, fail, be slow, never finish or panic; cancellation drivers;
//! a leak guard that every integration test ends with; a fault-injecting TCP proxy
//! ([`proxy::FaultProxy`]) to put between a client and a real server; a workload of many
//! looping callers with random cancellation ([`load::Load`]) for chaos and soak tests; and a
//! capturing `tracing` subscriber ([`spans::Capture`]) for tests of spans.

pub mod load;
#[cfg(feature = "metrics")]
pub mod metrics;
pub mod proxy;
pub mod spans;

/// Polls `cond` until it holds, every 2 ms (tokio time), and panics naming `what` if it still
/// does not after 10 s. For integration tests that wait on real I/O.
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

use std::collections::VecDeque;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::Poll;
use std::time::Duration;

use parking_lot::Mutex;

use crate::{Health, KeyedManager, KeyedPool, Manager, Pool, Stats, async_trait};

/// What one scripted call does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Succeed at once.
    Ok,
    /// Fail at once with a [`ScriptError`] carrying this text.
    Fail(&'static str),
    /// Succeed after this long (tokio time: instant under paused time).
    Slow(Duration),
    /// Fail after this long.
    SlowFail(Duration, &'static str),
    /// Never finish.
    Never,
    /// Panic.
    Panic,
}

/// The error a scripted call fails with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scripted failure: {0}")]
pub struct ScriptError(pub &'static str);

/// A resource made by [`ScriptedManager`]. It counts itself alive until dropped.
#[derive(Debug)]
pub struct Res {
    /// Creation order, from 1.
    pub id: u64,
    /// Set it and `check` reports [`Health::Broken`].
    pub broken: bool,
    /// Set it and `check` reports [`Health::NeedsReset`].
    pub dirty: bool,
    /// Set it and `check` panics.
    pub panics: bool,
    /// No longer counted toward the high-water mark (see [`Res::disown`]).
    disowned: bool,
    counts: Arc<Counts>,
}

impl Res {
    /// Stops counting this resource toward [`ScriptedManager::high_water`] (it still counts
    /// as live until dropped). Call it before `Pooled::detach`: a detached resource is
    /// outside the pool's cap, and disowning it first keeps the manager's count at or below
    /// the pool's in between.
    pub fn disown(&mut self) {
        if !std::mem::replace(&mut self.disowned, true) {
            self.counts.occupied.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Res {
    fn drop(&mut self) {
        if !self.disowned {
            self.counts.occupied.fetch_sub(1, Ordering::SeqCst);
        }
        self.counts.live.fetch_sub(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Default)]
struct Counts {
    live: AtomicUsize,
    /// Live resources plus creates in progress.
    occupied: AtomicUsize,
    high_water: AtomicUsize,
    create_calls: AtomicUsize,
    validate_calls: AtomicUsize,
    reset_calls: AtomicUsize,
    close_calls: AtomicUsize,
    next_id: AtomicU64,
}

impl Counts {
    fn occupy(&self) {
        let now = self.occupied.fetch_add(1, Ordering::SeqCst) + 1;
        self.high_water.fetch_max(now, Ordering::SeqCst);
    }
}

#[derive(Debug, Default)]
struct Scripts {
    create: VecDeque<Step>,
    check: VecDeque<Step>,
    validate: VecDeque<Step>,
    reset: VecDeque<Step>,
    close: VecDeque<Step>,
}

/// A [`Manager`] for state-machine tests. Clone it to keep a handle while the pool owns it.
///
/// Each call takes the next scripted [`Step`] of its kind, or the default (`create`:
/// [`Step::Ok`] unless changed with [`fail_all_creates`](ScriptedManager::fail_all_creates);
/// other hooks: `Ok`). It counts live resources through their `Drop` and keeps the
/// high-water mark of live resources plus creates in progress, to check `max_open` against.
#[derive(Debug, Clone, Default)]
pub struct ScriptedManager {
    counts: Arc<Counts>,
    scripts: Arc<Mutex<Scripts>>,
    creates_fail: Arc<AtomicBool>,
    validate_after: Option<Duration>,
    random: Option<Arc<Mutex<RandomFaults>>>,
}

/// Faults drawn at random for every unscripted call: see
/// [`ScriptedManager::with_random_faults`].
#[derive(Debug)]
struct RandomFaults {
    rng: fastrand::Rng,
    per_mille: u16,
    injected: Injected,
}

/// The faults [`ScriptedManager::with_random_faults`] injected so far, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Injected {
    /// Calls that failed.
    pub failures: u64,
    /// Calls that panicked.
    pub panics: u64,
    /// Calls made slow (up to 2 ms).
    pub slow: u64,
}

impl RandomFaults {
    /// The step for an unscripted call: see [`ScriptedManager::with_random_faults`].
    fn draw(&mut self) -> Step {
        let roll = self.rng.u32(..10_000);
        let p = u32::from(self.per_mille) * 10;
        let slow = Duration::from_micros(self.rng.u64(100..2_000));
        if roll < p / 10 {
            self.injected.panics += 1;
            Step::Panic
        } else if roll < p {
            self.injected.failures += 1;
            Step::Fail("random fault")
        } else if roll < 2 * p {
            self.injected.slow += 1;
            Step::Slow(slow)
        } else if roll < 3 * p {
            self.injected.failures += 1;
            Step::SlowFail(slow, "random slow fault")
        } else {
            Step::Ok
        }
    }
}

/// Holds a slot of `occupied` while a create runs; released if the create fails or is dropped.
struct Occupancy(Arc<Counts>, bool);

impl Drop for Occupancy {
    fn drop(&mut self) {
        if !self.1 {
            self.0.occupied.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

async fn run(step: Step) -> Result<(), ScriptError> {
    match step {
        Step::Ok => Ok(()),
        Step::Fail(m) => Err(ScriptError(m)),
        Step::Slow(d) => {
            tokio::time::sleep(d).await;
            Ok(())
        }
        Step::SlowFail(d, m) => {
            tokio::time::sleep(d).await;
            Err(ScriptError(m))
        }
        Step::Never => std::future::pending().await,
        Step::Panic => panic!("scripted panic"),
    }
}

impl ScriptedManager {
    /// A manager whose calls all succeed until scripted otherwise.
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `validate` run for connections idle at least `after`.
    pub fn with_validate_after(mut self, after: Duration) -> Self {
        self.validate_after = Some(after);
        self
    }

    /// Makes every unscripted call (create, validate, reset, close) draw a fault at random.
    /// Of every thousand calls, `per_mille` fail at once (a tenth of them by panicking),
    /// `per_mille` succeed slowly and `per_mille` fail slowly (0.1-2 ms). Seeded. For soak
    /// tests.
    pub fn with_random_faults(mut self, seed: u64, per_mille: u16) -> Self {
        self.random = Some(Arc::new(Mutex::new(RandomFaults {
            rng: fastrand::Rng::with_seed(seed),
            per_mille,
            injected: Injected::default(),
        })));
        self
    }

    /// Stops the random faults (the backend heals); the counts stay.
    pub fn calm(&self) {
        if let Some(r) = &self.random {
            r.lock().per_mille = 0;
        }
    }

    /// The faults injected at random so far (all zero without
    /// [`with_random_faults`](ScriptedManager::with_random_faults)).
    pub fn injected(&self) -> Injected {
        self.random
            .as_ref()
            .map_or_else(Injected::default, |r| r.lock().injected)
    }

    /// Queues steps for the next `create` calls.
    pub fn script_create(&self, steps: impl IntoIterator<Item = Step>) {
        self.scripts.lock().create.extend(steps);
    }

    /// Queues steps for the next `check` calls (on release and at checkout): `Panic` panics,
    /// `Fail`/`SlowFail` report [`Health::Broken`], the others look at the resource as usual.
    pub fn script_check(&self, steps: impl IntoIterator<Item = Step>) {
        self.scripts.lock().check.extend(steps);
    }

    /// Queues steps for the next `validate` calls.
    pub fn script_validate(&self, steps: impl IntoIterator<Item = Step>) {
        self.scripts.lock().validate.extend(steps);
    }

    /// Queues steps for the next `reset` calls.
    pub fn script_reset(&self, steps: impl IntoIterator<Item = Step>) {
        self.scripts.lock().reset.extend(steps);
    }

    /// Queues steps for the next `close` calls.
    pub fn script_close(&self, steps: impl IntoIterator<Item = Step>) {
        self.scripts.lock().close.extend(steps);
    }

    /// Makes every unscripted create fail (`true`), as a backend that is down, or succeed.
    pub fn fail_all_creates(&self, fail: bool) {
        self.creates_fail.store(fail, Ordering::SeqCst);
    }

    /// Resources alive now (created and not yet dropped).
    pub fn live(&self) -> usize {
        self.counts.live.load(Ordering::SeqCst)
    }

    /// The most resources alive plus creates in progress at any instant.
    pub fn high_water(&self) -> usize {
        self.counts.high_water.load(Ordering::SeqCst)
    }

    /// Calls of `create` so far.
    pub fn create_calls(&self) -> usize {
        self.counts.create_calls.load(Ordering::SeqCst)
    }

    /// Calls of `validate` so far.
    pub fn validate_calls(&self) -> usize {
        self.counts.validate_calls.load(Ordering::SeqCst)
    }

    /// Calls of `reset` so far.
    pub fn reset_calls(&self) -> usize {
        self.counts.reset_calls.load(Ordering::SeqCst)
    }

    /// Calls of `close` so far.
    pub fn close_calls(&self) -> usize {
        self.counts.close_calls.load(Ordering::SeqCst)
    }

    fn next(&self, pick: impl FnOnce(&mut Scripts) -> Option<Step>) -> Step {
        let scripted = pick(&mut self.scripts.lock());
        scripted.unwrap_or_else(|| self.unscripted())
    }

    /// The step of a call with nothing scripted: `Ok`, or a random fault.
    fn unscripted(&self) -> Step {
        self.random.as_ref().map_or(Step::Ok, |r| r.lock().draw())
    }
}

#[async_trait]
impl Manager for ScriptedManager {
    type Resource = Res;
    type Error = ScriptError;

    async fn create(&self) -> Result<Res, ScriptError> {
        self.counts.create_calls.fetch_add(1, Ordering::SeqCst);
        self.counts.occupy();
        let mut slot = Occupancy(self.counts.clone(), false);
        let step = self.scripts.lock().create.pop_front();
        let step = step.unwrap_or_else(|| {
            if self.creates_fail.load(Ordering::SeqCst) {
                Step::Fail("backend down")
            } else {
                self.unscripted()
            }
        });
        run(step).await?;
        slot.1 = true;
        self.counts.live.fetch_add(1, Ordering::SeqCst);
        let id = self.counts.next_id.fetch_add(1, Ordering::SeqCst) + 1;
        Ok(Res {
            id,
            broken: false,
            dirty: false,
            panics: false,
            disowned: false,
            counts: self.counts.clone(),
        })
    }

    fn check(&self, r: &mut Res) -> Health {
        let scripted = self.scripts.lock().check.pop_front();
        match scripted {
            Some(Step::Panic) => panic!("scripted panic in check"),
            Some(Step::Fail(_) | Step::SlowFail(..)) => return Health::Broken,
            _ => {}
        }
        if r.panics {
            panic!("scripted panic in check");
        }
        if r.broken {
            Health::Broken
        } else if r.dirty {
            Health::NeedsReset
        } else {
            Health::Ready
        }
    }

    fn validate_after(&self) -> Option<Duration> {
        self.validate_after
    }

    async fn validate(&self, _r: &mut Res) -> Result<(), ScriptError> {
        self.counts.validate_calls.fetch_add(1, Ordering::SeqCst);
        run(self.next(|s| s.validate.pop_front())).await
    }

    async fn reset(&self, r: &mut Res) -> Result<(), ScriptError> {
        self.counts.reset_calls.fetch_add(1, Ordering::SeqCst);
        run(self.next(|s| s.reset.pop_front())).await?;
        r.dirty = false;
        Ok(())
    }

    async fn close(&self, r: Res) {
        self.counts.close_calls.fetch_add(1, Ordering::SeqCst);
        let step = self.next(|s| s.close.pop_front());
        let _ = run(step).await;
        drop(r);
    }
}

/// Polls `fut` at most `polls` times, then drops it; returns its output if it finished.
/// Between polls it sleeps 1 ms (tokio time), so other tasks run and paused time advances.
/// Call it inside a tokio runtime.
pub async fn drop_after_polls<F: Future>(fut: F, polls: usize) -> Option<F::Output> {
    let mut fut = pin!(fut);
    for _ in 0..polls {
        if let Poll::Ready(v) = std::future::poll_fn(|cx| Poll::Ready(fut.as_mut().poll(cx))).await
        {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    None
}

/// The cancellation grid: for n = 0, 1, 2, ... polls, makes a fresh future, drops it after n
/// polls, and runs `after_drop(n)`; stops once a future completes within n polls (its output
/// is returned) or after `max_polls`.
pub async fn cancel_at_every_point<F, Fut, A, AFut>(
    mut make: F,
    max_polls: usize,
    mut after_drop: A,
) -> Option<Fut::Output>
where
    F: FnMut() -> Fut,
    Fut: Future,
    A: FnMut(usize) -> AFut,
    AFut: Future<Output = ()>,
{
    for n in 0..=max_polls {
        if let Some(out) = drop_after_polls(make(), n).await {
            return Some(out);
        }
        after_drop(n).await;
    }
    None
}

/// Waits (polling, up to `within`) until the pool is at rest and its books balance, then
/// returns the stats; panics with the stats if it does not settle.
///
/// At rest means: nothing checked out, creating, closing or waiting (`in_use == 0`,
/// `waiting == 0`), the manager's live resources equal `open`, and
/// `created - closed - detached == open`.
pub async fn assert_settled(
    pool: &impl HasStats,
    live: impl Fn() -> usize,
    within: Duration,
) -> Stats {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let s = pool.stats();
        let balanced = s.created - s.closed() - s.detached == s.open as u64;
        if s.in_use == 0 && s.waiting == 0 && live() == s.open && s.open == s.idle && balanced {
            return s;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "pool did not settle within {within:?}: live = {}, stats = {s:#?}",
                live()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// Waits (polling, up to `within`) until a closed pool holds nothing and `live()` is zero.
pub async fn assert_drained(
    pool: &impl HasStats,
    live: impl Fn() -> usize,
    within: Duration,
) -> Stats {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let s = pool.stats();
        if s.open == 0 && live() == 0 && s.waiting == 0 {
            assert_eq!(
                s.created - s.closed() - s.detached,
                0,
                "counters do not balance: {s:#?}"
            );
            return s;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!(
                "pool did not drain within {within:?}: live = {}, stats = {s:#?}",
                live()
            );
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

/// A pool the leak guards can read: [`Pool`] and [`KeyedPool`] (its totals).
pub trait HasStats {
    /// The pool's stats (a keyed pool's totals).
    fn stats(&self) -> Stats;
}

impl<M: Manager> HasStats for Pool<M> {
    fn stats(&self) -> Stats {
        Pool::stats(self)
    }
}

impl<M: KeyedManager> HasStats for KeyedPool<M> {
    fn stats(&self) -> Stats {
        KeyedPool::stats(self)
    }
}

/// A resource of [`KeyedScripted`]: a scripted [`Res`] and the key it was made for.
#[derive(Debug)]
pub struct KeyedRes<K: std::hash::Hash + Eq> {
    /// The key `create` was called with.
    pub key: K,
    /// The scripted resource.
    pub res: Res,
    slot: KeySlot<K>,
}

/// Per-key occupancy of [`KeyedScripted`]: live resources plus creates in flight, and its
/// high-water mark.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct KeyCounts {
    /// Live resources and creates in flight now.
    pub occupied: usize,
    /// The most there ever were at once.
    pub high_water: usize,
    /// Calls to `create` with this key.
    pub creates: usize,
}

type PerKey<K> = Arc<Mutex<std::collections::HashMap<K, KeyCounts>>>;

/// Releases one unit of a key's occupancy when dropped.
#[derive(Debug)]
struct KeySlot<K: std::hash::Hash + Eq> {
    key: K,
    counts: PerKey<K>,
}

impl<K: std::hash::Hash + Eq> Drop for KeySlot<K> {
    fn drop(&mut self) {
        if let Some(c) = self.counts.lock().get_mut(&self.key) {
            c.occupied -= 1;
        }
    }
}

/// A [`KeyedManager`] over a [`ScriptedManager`] (one script for every key) that also counts
/// per key: occupancy with its high-water mark and creates, to check per-key limits.
/// Clones share their scripts and counts.
#[derive(Debug, Clone)]
pub struct KeyedScripted<K> {
    /// The scripted manager behind every key: script it, read its totals.
    pub inner: ScriptedManager,
    per_key: PerKey<K>,
}

impl<K: std::hash::Hash + Eq + Clone> KeyedScripted<K> {
    /// A keyed manager whose every call succeeds until scripted otherwise.
    pub fn new() -> Self {
        KeyedScripted {
            inner: ScriptedManager::new(),
            per_key: Arc::default(),
        }
    }

    /// The counts of one key (zero if never created).
    pub fn key_counts(&self, key: &K) -> KeyCounts {
        self.per_key.lock().get(key).copied().unwrap_or_default()
    }
}

impl<K: std::hash::Hash + Eq + Clone> Default for KeyedScripted<K> {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl<K> KeyedManager for KeyedScripted<K>
where
    K: std::hash::Hash + Eq + Clone + Send + Sync + std::fmt::Debug + 'static,
{
    type Key = K;
    type Resource = KeyedRes<K>;
    type Error = ScriptError;

    async fn create(&self, key: &K) -> Result<KeyedRes<K>, ScriptError> {
        {
            let mut map = self.per_key.lock();
            let c = map.entry(key.clone()).or_default();
            c.creates += 1;
            c.occupied += 1;
            c.high_water = c.high_water.max(c.occupied);
        }
        let slot = KeySlot {
            key: key.clone(),
            counts: self.per_key.clone(),
        };
        let res = Manager::create(&self.inner).await?;
        Ok(KeyedRes {
            key: key.clone(),
            res,
            slot,
        })
    }

    fn check(&self, r: &mut KeyedRes<K>) -> Health {
        Manager::check(&self.inner, &mut r.res)
    }

    fn validate_after(&self) -> Option<Duration> {
        self.inner.validate_after
    }

    async fn validate(&self, r: &mut KeyedRes<K>) -> Result<(), ScriptError> {
        Manager::validate(&self.inner, &mut r.res).await
    }

    async fn reset(&self, r: &mut KeyedRes<K>) -> Result<(), ScriptError> {
        Manager::reset(&self.inner, &mut r.res).await
    }

    async fn close(&self, r: KeyedRes<K>) {
        let KeyedRes { res, slot, .. } = r;
        Manager::close(&self.inner, res).await;
        drop(slot);
    }
}
