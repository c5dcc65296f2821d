//! The contenders of the core micro benchmarks behind one trait: our pool, deadpool, bb8,
//! mobc, and the floor (a tokio `Semaphore` plus a `parking_lot::Mutex<Vec<T>>`: the least a
//! correct async pool can do).

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

/// One pool under test, holding `u64` resources that cost nothing to create.
pub trait Contender: Clone + Send + Sync + 'static {
    /// The name in reports.
    const NAME: &'static str;
    /// A pool of at most `size` resources, pre-filled.
    fn build(size: usize) -> impl Future<Output = Self>;
    /// One checkout and return.
    fn get_release(&self) -> impl Future<Output = ()> + Send;
    /// One checkout held across a `yield_now`, then returned.
    fn get_yield_release(&self) -> impl Future<Output = ()> + Send;
    /// One checkout with a guard that owns a reference to the pool (to move into a task),
    /// and return. Pools whose only guard is owned do what `get_release` does.
    fn get_owned_release(&self) -> impl Future<Output = ()> + Send {
        self.get_release()
    }
}

/// The two checkout methods, for a contender whose `self.0.get()` returns a `Result` guard.
macro_rules! checkouts {
    () => {
        async fn get_release(&self) {
            drop(self.0.get().await.expect("get"));
        }
        async fn get_yield_release(&self) {
            let c = self.0.get().await.expect("get");
            tokio::task::yield_now().await;
            drop(c);
        }
    };
}

/// Checks out `size` resources at once and returns them, so the pool starts full (sequential
/// checkouts would reuse one resource).
async fn prefill<G, F: Future<Output = G>>(size: usize, get: impl Fn() -> F) {
    let mut held = Vec::with_capacity(size);
    for _ in 0..size {
        held.push(get().await);
    }
    drop(held);
}

// ---- ours ----

pub struct OursManager;

#[pool_core::async_trait]
impl pool_core::Manager for OursManager {
    type Resource = u64;
    type Error = Infallible;
    async fn create(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
}

#[derive(Clone)]
pub struct Ours(pool_core::Pool<OursManager>);

impl Contender for Ours {
    const NAME: &'static str = "pool-core";
    async fn build(size: usize) -> Self {
        let pool = pool_core::Pool::builder(OursManager)
            .max_open(size)
            .max_idle(size)
            .build()
            .expect("valid knobs");
        prefill(size, || async { pool.get().await.expect("get") }).await;
        Ours(pool)
    }
    checkouts!();
    async fn get_owned_release(&self) {
        drop(self.0.get_owned().await.expect("get"));
    }
}

// ---- deadpool ----

pub struct DeadpoolManager;

impl deadpool::managed::Manager for DeadpoolManager {
    type Type = u64;
    type Error = Infallible;
    async fn create(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
    async fn recycle(
        &self,
        _: &mut u64,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

#[derive(Clone)]
pub struct Deadpool(deadpool::managed::Pool<DeadpoolManager>);

impl Contender for Deadpool {
    const NAME: &'static str = "deadpool";
    async fn build(size: usize) -> Self {
        let pool = deadpool::managed::Pool::builder(DeadpoolManager)
            .max_size(size)
            .build()
            .expect("valid knobs");
        prefill(size, || async { pool.get().await.expect("get") }).await;
        Deadpool(pool)
    }
    checkouts!();
}

// ---- bb8 ----

pub struct Bb8Manager;

impl bb8::ManageConnection for Bb8Manager {
    type Connection = u64;
    type Error = Infallible;
    async fn connect(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
    async fn is_valid(&self, _: &mut u64) -> Result<(), Infallible> {
        Ok(())
    }
    fn has_broken(&self, _: &mut u64) -> bool {
        false
    }
}

#[derive(Clone)]
pub struct Bb8(bb8::Pool<Bb8Manager>);

impl Contender for Bb8 {
    const NAME: &'static str = "bb8";
    async fn build(size: usize) -> Self {
        // bb8 tests a connection on every checkout by default; turned off as deadpool and we
        // do not ping either.
        let pool = bb8::Pool::builder()
            .max_size(size as u32)
            .min_idle(Some(size as u32))
            .test_on_check_out(false)
            .build(Bb8Manager)
            .await
            .expect("build");
        Bb8(pool)
    }
    checkouts!();
    async fn get_owned_release(&self) {
        drop(self.0.get_owned().await.expect("get"));
    }
}

// ---- mobc ----

pub struct MobcManager;

#[mobc::async_trait]
impl mobc::Manager for MobcManager {
    type Connection = u64;
    type Error = Infallible;
    async fn connect(&self) -> Result<u64, Infallible> {
        Ok(0)
    }
    async fn check(&self, conn: u64) -> Result<u64, Infallible> {
        Ok(conn)
    }
}

#[derive(Clone)]
pub struct Mobc(mobc::Pool<MobcManager>);

impl Contender for Mobc {
    const NAME: &'static str = "mobc";
    async fn build(size: usize) -> Self {
        let pool = mobc::Pool::builder()
            .max_open(size as u64)
            .max_idle(size as u64)
            .build(MobcManager);
        prefill(size, || async { pool.get().await.expect("get") }).await;
        Mobc(pool)
    }
    checkouts!();
}

// ---- the floor ----

pub struct FloorInner {
    permits: tokio::sync::Semaphore,
    idle: parking_lot::Mutex<Vec<u64>>,
}

/// The least a correct async pool can do: a semaphore for the cap, a mutex-guarded stack.
#[derive(Clone)]
pub struct Floor(Arc<FloorInner>);

pub struct FloorGuard<'a> {
    pool: &'a FloorInner,
    res: Option<u64>,
    _permit: tokio::sync::SemaphorePermit<'a>,
}

impl Drop for FloorGuard<'_> {
    fn drop(&mut self) {
        if let Some(r) = self.res.take() {
            self.pool.idle.lock().push(r);
        }
    }
}

impl Floor {
    async fn get(&self) -> FloorGuard<'_> {
        let permit = self.0.permits.acquire().await.expect("never closed");
        let res = self.0.idle.lock().pop().unwrap_or(0);
        FloorGuard {
            pool: &self.0,
            res: Some(res),
            _permit: permit,
        }
    }
}

impl Contender for Floor {
    const NAME: &'static str = "floor";
    async fn build(size: usize) -> Self {
        Floor(Arc::new(FloorInner {
            permits: tokio::sync::Semaphore::new(size),
            idle: parking_lot::Mutex::new(vec![0; size]),
        }))
    }
    async fn get_release(&self) {
        drop(self.get().await);
    }
    async fn get_yield_release(&self) {
        let c = self.get().await;
        tokio::task::yield_now().await;
        drop(c);
    }
    async fn get_owned_release(&self) {
        // The owned form: a reference to the pool, and the permit given back by hand.
        let pool = self.0.clone();
        pool.permits.acquire().await.expect("never closed").forget();
        let res = pool.idle.lock().pop().unwrap_or(0);
        drop(FloorOwned {
            pool,
            res: Some(res),
        });
    }
}

/// The floor's owned guard.
pub struct FloorOwned {
    pool: Arc<FloorInner>,
    res: Option<u64>,
}

impl Drop for FloorOwned {
    fn drop(&mut self) {
        if let Some(r) = self.res.take() {
            self.pool.idle.lock().push(r);
        }
        self.pool.permits.add_permits(1);
    }
}
