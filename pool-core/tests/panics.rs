//! The panic audit: a panic in the manager (each of its calls), in a lifecycle hook (each of
//! them) and in user code (holding a guard, or dropping a checkout in flight), on every path
//! that reaches it, for a plain and a keyed pool. After each, the pool must go on serving, the
//! panicking call's resource must be accounted for (closed and counted once, or alive and
//! pooled), and the books must balance. A panic never crosses into the pool's caller except as
//! an error of the call that hit it.

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use pool_core::testing::{KeyedScripted, ScriptedManager, Step, assert_drained, assert_settled};
use pool_core::{CloseReason, GotConn, Hooks, KeyedPool, Pool, Returned};
use support::{SETTLE, builder, settled};

/// Keeps the expected panics' messages out of the test output.
fn quiet_panics() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info.to_string();
        if !text.contains("scripted panic") && !text.contains("audit:") {
            default_hook(info);
        }
    }));
}

/// The pool still serves, settles with balanced books, and drains on close.
async fn still_sound(pool: &Pool<ScriptedManager>, m: &ScriptedManager) -> pool_core::Stats {
    drop(pool.get().await.expect("the pool serves after the panic"));
    let s = settled(pool, m).await;
    pool.close();
    let live = m.clone();
    assert_drained(pool, move || live.live(), SETTLE).await;
    s
}

// ---- the manager ----

#[tokio::test(start_paused = true)]
async fn a_panicking_create_fails_only_its_caller() {
    quiet_panics();
    let m = ScriptedManager::new();
    m.script_create([Step::Panic]);
    let pool = builder(&m).build().unwrap();
    let err = pool.get().await.unwrap_err();
    assert!(err.is_create() && err.is_panic(), "{err:?}");
    let s = still_sound(&pool, &m).await;
    assert_eq!((s.create_errors, s.created), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_background_create_is_retried_and_counted() {
    quiet_panics();
    let m = ScriptedManager::new();
    m.script_create([Step::Panic]);
    let pool = builder(&m).min_idle(1).build().unwrap();
    support::eventually("min_idle refilled after the panic", || {
        pool.stats().idle == 1
    })
    .await;
    let s = still_sound(&pool, &m).await;
    // The checkout in `still_sound` took the idle one, so min_idle made another.
    assert_eq!((s.create_errors, s.created, s.idle), (1, 2, 2), "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_check_panicking_on_release_closes_the_connection_as_broken() {
    quiet_panics();
    let m = ScriptedManager::new();
    let pool = builder(&m).build().unwrap();
    let mut c = pool.get().await.unwrap();
    c.panics = true;
    drop(c); // the release's check panics
    let s = still_sound(&pool, &m).await;
    assert_eq!((s.broken_closed, s.created), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn a_check_panicking_at_checkout_moves_on_to_a_new_connection() {
    quiet_panics();
    let m = ScriptedManager::new();
    let pool = builder(&m).build().unwrap();
    // The release's check passes; the checkout's panics, once: that is decisive (before the
    // audit, a second look at the connection could still hand it out).
    m.script_check([Step::Ok, Step::Panic]);
    drop(pool.get().await.unwrap());
    let c = pool.get().await.unwrap();
    assert_eq!(c.id, 2, "the panicking connection was not handed out");
    drop(c);
    let s = still_sound(&pool, &m).await;
    assert_eq!(s.broken_closed, 1, "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_panicking_validate_or_reset_costs_the_connection_not_the_call() {
    quiet_panics();
    let m = ScriptedManager::new().with_validate_after(Duration::ZERO);
    m.script_validate([Step::Panic]);
    m.script_reset([Step::Panic]);
    let pool = builder(&m).build().unwrap();
    drop(pool.get().await.unwrap());
    let mut c = pool.get().await.unwrap(); // validate panics: a new one is made
    assert_eq!(c.id, 2);
    c.dirty = true;
    drop(c);
    let c = pool.get().await.unwrap(); // reset panics: a new one is made
    assert_eq!(c.id, 3);
    drop(c);
    let s = still_sound(&pool, &m).await;
    assert_eq!((s.broken_closed, m.validate_calls() >= 1), (2, true));
}

#[tokio::test(start_paused = true)]
async fn a_panicking_close_is_counted_once_on_every_closing_path() {
    quiet_panics();
    let m = ScriptedManager::new();
    // Four closes panic: broken, over max_idle, idle timeout, shutdown.
    m.script_close([Step::Panic, Step::Panic, Step::Panic, Step::Panic]);
    let pool = builder(&m)
        .max_idle(1)
        .idle_grace(Duration::ZERO)
        .max_idle_time(Duration::from_secs(60))
        .build()
        .unwrap();
    let mut a = pool.get().await.unwrap();
    a.broken = true;
    drop(a); // broken close
    let (b, c) = (pool.get().await.unwrap(), pool.get().await.unwrap());
    drop(b);
    drop(c); // over max_idle: closed at once
    tokio::time::sleep(Duration::from_secs(120)).await; // the reaper: idle timeout
    let d = pool.get().await.unwrap();
    drop(d);
    let s = settled(&pool, &m).await;
    assert_eq!(
        (s.broken_closed, s.max_idle_closed, s.max_idle_time_closed),
        (1, 1, 1),
        "{s:?}"
    );
    pool.close(); // shutdown close
    let live = m.clone();
    let s = assert_drained(&pool, move || live.live(), SETTLE).await;
    assert_eq!((s.shutdown_closed, m.close_calls()), (1, 4), "{s:?}");
}

// ---- hooks ----

/// Hooks that panic in the named hook once armed.
struct PanicWhen {
    at: &'static str,
    armed: Arc<AtomicBool>,
}

impl PanicWhen {
    fn hit(&self, hook: &str) {
        if hook == self.at && self.armed.load(Ordering::SeqCst) {
            panic!("audit: {hook} panics");
        }
    }
}

impl<K> Hooks<K> for PanicWhen {
    fn get_conn(&self, _key: &K) {
        self.hit("get_conn");
    }
    fn got_conn(&self, _key: &K, _info: &GotConn) {
        self.hit("got_conn");
    }
    fn create_start(&self, _key: &K) {
        self.hit("create_start");
    }
    fn create_done(&self, _key: &K, _result: Result<u64, &pool_core::Error>) {
        self.hit("create_done");
    }
    fn put_idle(&self, _key: &K, _id: u64, _returned: Returned) {
        self.hit("put_idle");
    }
    fn closed(&self, _key: &K, _id: u64, _reason: CloseReason) {
        self.hit("closed");
    }
}

const HOOKS: [&str; 6] = [
    "get_conn",
    "got_conn",
    "create_start",
    "create_done",
    "put_idle",
    "closed",
];

#[tokio::test(start_paused = true)]
async fn a_panic_in_any_hook_changes_nothing_the_pool_does() {
    quiet_panics();
    for at in HOOKS {
        let m = ScriptedManager::new();
        let armed = Arc::new(AtomicBool::new(true));
        let pool = builder(&m)
            .max_idle(1)
            .idle_grace(Duration::ZERO)
            .hooks(PanicWhen {
                at,
                armed: armed.clone(),
            })
            .build()
            .unwrap();
        // Every hook fires: creates, checkouts, releases, a close over max_idle.
        let (a, b) = (pool.get().await.unwrap(), pool.get().await.unwrap());
        drop(a);
        drop(b);
        let c = pool.get().await.unwrap();
        assert_eq!(c.id, 1, "{at}: the idle connection was reused");
        drop(c);
        let s = settled(&pool, &m).await;
        assert_eq!(
            (s.created, s.max_idle_closed, s.hits, s.open),
            (2, 1, 1, 1),
            "{at}: {s:?}"
        );
        pool.close();
        let live = m.clone();
        assert_drained(&pool, move || live.live(), SETTLE).await;
    }
}

// ---- user code ----

#[tokio::test(start_paused = true)]
async fn a_panic_holding_a_guard_closes_it_whether_owned_or_borrowed() {
    quiet_panics();
    let m = ScriptedManager::new();
    let pool = builder(&m).build().unwrap();
    let p = pool.clone();
    let owned = tokio::spawn(async move {
        let _c = p.get_owned().await.unwrap();
        panic!("audit: user code panics holding an owned guard");
    });
    assert!(owned.await.unwrap_err().is_panic());
    let p = pool.clone();
    let borrowed = tokio::spawn(async move {
        let _c = p.get().await.unwrap();
        panic!("audit: user code panics holding a borrowed guard");
    });
    assert!(borrowed.await.unwrap_err().is_panic());
    let s = still_sound(&pool, &m).await;
    assert_eq!((s.broken_closed, s.created), (2, 3));
}

#[tokio::test(start_paused = true)]
async fn a_panic_beside_a_waiting_checkout_leaves_no_waiter_behind() {
    quiet_panics();
    let m = ScriptedManager::new();
    let pool = builder(&m).max_open(1).build().unwrap();
    let held = pool.get().await.unwrap();
    let p = pool.clone();
    let t = tokio::spawn(async move {
        let waiting = p.get();
        let boom = async {
            tokio::time::sleep(Duration::from_millis(5)).await;
            panic!("audit: a sibling future panics while the checkout waits");
        };
        tokio::join!(waiting, boom).0.map(drop)
    });
    assert!(t.await.unwrap_err().is_panic());
    assert_eq!(
        pool.stats().waiting,
        0,
        "the dropped checkout left the queue"
    );
    drop(held);
    let s = still_sound(&pool, &m).await;
    assert_eq!((s.created, s.broken_closed), (1, 0));
}

// ---- a keyed pool, every path at once ----

#[tokio::test(start_paused = true)]
async fn a_keyed_pool_survives_a_panic_on_every_path() {
    quiet_panics();
    let m = KeyedScripted::<u32>::new();
    m.inner.script_create([Step::Panic]);
    let armed = Arc::new(AtomicBool::new(true));
    let pool = KeyedPool::builder(m.clone())
        .hooks(PanicWhen {
            at: "got_conn",
            armed: armed.clone(),
        })
        .build()
        .unwrap();
    // create panics: only its caller fails.
    assert!(pool.get(&1).await.unwrap_err().is_panic());
    // check panics on release.
    let mut c = pool.get(&1).await.unwrap();
    c.res.panics = true;
    drop(c);
    // reset and close panic.
    m.inner.script_reset([Step::Panic]);
    m.inner.script_close([Step::Panic]);
    let mut c = pool.get(&2).await.unwrap();
    c.res.dirty = true;
    drop(c);
    drop(pool.get(&2).await.unwrap());
    // user code panics holding a guard.
    let p = pool.clone();
    let t = tokio::spawn(async move {
        let _c = p.get_owned(&3).await.unwrap();
        panic!("audit: user code panics holding a keyed guard");
    });
    assert!(t.await.unwrap_err().is_panic());
    for key in 1..=3 {
        drop(pool.get(&key).await.expect("every key still serves"));
    }
    let live = m.inner.clone();
    let s = assert_settled(&pool, move || live.live(), SETTLE).await;
    assert_eq!(s.create_errors, 1, "{s:?}");
    assert!(s.broken_closed >= 3, "{s:?}");
    pool.close();
    let live = m.inner.clone();
    assert_drained(&pool, move || live.live(), SETTLE).await;
}
