//! Lifecycle hooks fire once per event with the right flags: a counting hook checked against
//! the stats, on the plain and the keyed pool; a panicking hook costs nothing but its call.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pool_core::testing::{KeyedScripted, ScriptedManager, Step};
use pool_core::{CloseReason, Error, GotConn, Hooks, KeyedPool, Pool, Pooled, Returned, Stats};
use support::{eventually, settled};

#[derive(Debug, Default, Clone)]
struct Counts {
    get: usize,
    got: usize,
    got_idle: usize,
    got_handoff: usize,
    got_new: usize,
    idle_time_seen: bool,
    create_start: usize,
    create_ok: usize,
    create_err: usize,
    put: HashMap<&'static str, usize>,
    closed: HashMap<CloseReason, usize>,
    /// Keys seen by `get_conn`, in order.
    keys: Vec<String>,
}

#[derive(Clone, Default)]
struct Counter(Arc<Mutex<Counts>>);

impl Counter {
    fn get(&self) -> Counts {
        self.0.lock().clone()
    }
}

impl<K: std::fmt::Debug> Hooks<K> for Counter {
    fn get_conn(&self, key: &K) {
        let mut c = self.0.lock();
        c.get += 1;
        c.keys.push(format!("{key:?}"));
    }

    fn got_conn(&self, _key: &K, info: &GotConn) {
        let mut c = self.0.lock();
        c.got += 1;
        match (info.reused, info.was_idle) {
            (true, true) => c.got_idle += 1,
            (true, false) => c.got_handoff += 1,
            (false, false) => c.got_new += 1,
            (false, true) => panic!("a new connection cannot have been idle: {info:?}"),
        }
        if !info.was_idle {
            assert_eq!(info.idle_time, Duration::ZERO);
        }
        c.idle_time_seen |= info.idle_time >= Duration::from_millis(50);
    }

    fn create_start(&self, _key: &K) {
        self.0.lock().create_start += 1;
    }

    fn create_done(&self, _key: &K, result: Result<u64, &Error>) {
        let mut c = self.0.lock();
        match result {
            Ok(_) => c.create_ok += 1,
            Err(_) => c.create_err += 1,
        }
    }

    fn put_idle(&self, _key: &K, _id: u64, returned: Returned) {
        *self.0.lock().put.entry(returned.as_str()).or_default() += 1;
    }

    fn closed(&self, _key: &K, _id: u64, reason: CloseReason) {
        *self.0.lock().closed.entry(reason).or_default() += 1;
    }
}

/// The hook's counts agree with the pool's stats.
fn compare(c: &Counts, s: &Stats, gets: usize) {
    assert_eq!(c.get, gets, "get_conn once per checkout");
    assert_eq!(c.got_idle as u64, s.hits, "was_idle = served from idle");
    assert_eq!(
        c.got_handoff as u64, s.handoffs,
        "reused, not idle = handed off"
    );
    assert_eq!(c.got_idle + c.got_handoff + c.got_new, c.got);
    assert_eq!(c.create_start, c.create_ok + c.create_err);
    assert_eq!(c.create_ok as u64, s.created);
    assert_eq!(c.create_err as u64, s.create_errors);
    let closed: usize = c.closed.values().sum();
    assert_eq!(
        closed as u64,
        s.closed(),
        "closed once per close: {:?}",
        c.closed
    );
    for (reason, n) in [
        (CloseReason::MaxIdle, s.max_idle_closed),
        (CloseReason::Broken, s.broken_closed),
        (CloseReason::Shutdown, s.shutdown_closed),
        (CloseReason::Grace, s.grace_closed),
    ] {
        assert_eq!(
            c.closed.get(&reason).copied().unwrap_or(0) as u64,
            n,
            "{reason}"
        );
    }
    assert_eq!(
        c.put.get("detached").copied().unwrap_or(0) as u64,
        s.detached
    );
}

#[tokio::test(start_paused = true)]
async fn a_counting_hook_agrees_with_the_stats_on_the_plain_pool() {
    let m = ScriptedManager::new();
    let hook = Counter::default();
    let pool = Pool::builder(m.clone())
        .max_open(2)
        .max_idle(1)
        .idle_grace(Duration::ZERO)
        .hooks(hook.clone())
        .build()
        .unwrap();
    let mut gets = 0;
    // New, then idle (after 100 ms idle).
    drop(pool.get().await.unwrap());
    tokio::time::advance(Duration::from_millis(100)).await;
    drop(pool.get().await.unwrap());
    gets += 2;
    // Two at once: one idle, one new; returning both closes one above max_idle.
    let a = pool.get().await.unwrap();
    let b = pool.get().await.unwrap();
    gets += 2;
    // A third waits and is handed `a`.
    let waiter = {
        let pool = pool.clone();
        tokio::spawn(async move { drop(pool.get().await.unwrap()) })
    };
    gets += 1;
    eventually("queued", || pool.stats().waiting == 1).await;
    drop(a);
    waiter.await.unwrap();
    Pooled::discard(b);
    let c = pool.get().await.unwrap();
    drop(Pooled::detach(c));
    gets += 1;
    // A failed create while `d` is in use: its caller stays queued and gets `d` back.
    m.script_create([Step::Ok, Step::Fail("refused")]);
    let d = pool.get().await.unwrap();
    let e = {
        let pool = pool.clone();
        tokio::spawn(async move { drop(pool.get().await.unwrap()) })
    };
    gets += 2;
    eventually("the create failed", || pool.stats().create_errors == 1).await;
    drop(d);
    e.await.unwrap();
    let s = settled(&pool, &m).await;
    let c = hook.get();
    compare(&c, &s, gets);
    assert!(c.idle_time_seen, "idle_time reported: {c:?}");
    assert_eq!(c.got_handoff, 2);
    assert_eq!(c.put.get("handed_off"), Some(&2));
    assert_eq!(c.put.get("broken"), Some(&1));
    assert_eq!(c.keys[0], "()");
    pool.close_and_wait(Duration::from_secs(1)).await.unwrap();
    eventually("closed hooks", || {
        hook.get().closed.values().sum::<usize>() as u64 == pool.stats().closed()
    })
    .await;
    compare(&hook.get(), &pool.stats(), gets);
}

#[tokio::test(start_paused = true)]
async fn a_counting_hook_agrees_with_the_stats_on_the_keyed_pool() {
    let m = KeyedScripted::<&'static str>::new();
    let hook = Counter::default();
    let pool = KeyedPool::builder(m.clone())
        .max_idle(1)
        .idle_grace(Duration::ZERO)
        .hooks(hook.clone())
        .build()
        .unwrap();
    let mut gets = 0;
    for host in ["a", "b", "a", "c", "a"] {
        drop(pool.get(&host).await.unwrap());
        tokio::time::advance(Duration::from_millis(60)).await;
        gets += 1;
    }
    pool.close_and_wait(Duration::from_secs(1)).await.unwrap();
    let s = pool.stats();
    eventually("closed hooks", || {
        hook.get().closed.values().sum::<usize>() as u64 == s.closed()
    })
    .await;
    let c = hook.get();
    compare(&c, &s, gets);
    assert_eq!(c.keys, ["\"a\"", "\"b\"", "\"a\"", "\"c\"", "\"a\""]);
    // The global cap of 1 closed the older idle connection each time another key idled,
    // so every checkout after the first created.
    assert_eq!((s.max_idle_closed, s.created), (4, 5), "{s:#?}");
}

struct Panicky;

impl Hooks for Panicky {
    fn get_conn(&self, _: &()) {
        panic!("hook panic in get_conn");
    }
    fn got_conn(&self, _: &(), info: &GotConn) {
        if info.id == 1 {
            panic!("hook panic in got_conn");
        }
    }
    fn put_idle(&self, _: &(), _: u64, _: Returned) {
        panic!("hook panic in put_idle");
    }
    fn closed(&self, _: &(), _: u64, _: CloseReason) {
        panic!("hook panic in closed");
    }
}

#[tokio::test(start_paused = true)]
async fn a_panicking_hook_costs_only_its_call() {
    let m = ScriptedManager::new();
    let pool = Pool::builder(m.clone()).hooks(Panicky).build().unwrap();
    // got_conn panics for connection 1: hooks observe, so the checkout gets it all the same.
    let c = pool.get().await.unwrap();
    assert_eq!(c.id, 1);
    drop(c);
    let c = pool.get().await.unwrap();
    assert_eq!(c.id, 1);
    drop(c);
    let s = settled(&pool, &m).await;
    assert_eq!((s.created, s.broken_closed, s.idle), (1, 0, 1));
}
