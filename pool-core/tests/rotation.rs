//! Lifetime rotation (`Config::rotate_lifetime`), under paused time: a connection near its
//! end is replaced before it expires, so a steady load never waits on a create because of a
//! lifetime, within `max_open`, only while the pool is in use, never under a holder.

mod support;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pool_core::testing::{KeyedScripted, ScriptedManager, Step, assert_settled};
use pool_core::{Builder, Config, KeyedPool, Pool, Stats};
use support::{builder, eventually, settled};
use tokio::time::Instant;

const SEC: Duration = Duration::from_secs(1);
const MS: Duration = Duration::from_millis(1);
/// Every create takes this long.
const CREATE: Duration = Duration::from_millis(30);
const LIFETIME: Duration = Duration::from_secs(30);

/// A manager whose creates take [`CREATE`].
fn slow_creates() -> ScriptedManager {
    let m = ScriptedManager::new();
    m.script_create(std::iter::repeat_n(Step::Slow(CREATE), 100_000));
    m
}

/// What a steady load saw after its warm-up.
struct Seen {
    checkouts: usize,
    /// Checkouts that did not find a connection ready (they took virtual time).
    waited: usize,
    stats: Stats,
}

/// `workers` callers, each holding a connection 2-5 ms and thinking 5 ms, for `run`;
/// checkouts in the first second (the warm-up) are not counted.
async fn steady(pool: &Pool<ScriptedManager>, workers: u32, run: Duration) -> Seen {
    let start = Instant::now();
    let end = start + run;
    let waits = Arc::new(Mutex::new((0usize, 0usize)));
    let mut tasks = Vec::new();
    for w in 0..workers {
        let pool = pool.clone();
        let waits = waits.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < end {
                let t = Instant::now();
                let c = pool.get().await.unwrap();
                let waited = t.elapsed() > Duration::ZERO;
                if t >= start + SEC {
                    let mut w = waits.lock();
                    w.0 += 1;
                    w.1 += usize::from(waited);
                }
                tokio::time::sleep(MS * (2 + w % 4)).await;
                drop(c);
                tokio::time::sleep(5 * MS).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (checkouts, waited) = *waits.lock();
    Seen {
        checkouts,
        waited,
        stats: pool.stats(),
    }
}

fn pool(b: Builder<ScriptedManager>) -> Pool<ScriptedManager> {
    b.max_lifetime(LIFETIME).build().unwrap()
}

#[tokio::test(start_paused = true)]
async fn a_steady_load_never_waits_on_a_create_for_a_lifetime() {
    // Five lifetimes: every connection expires four times or more.
    let run = 5 * LIFETIME;
    let m = slow_creates();
    let on = pool(builder(&m).max_open(24).max_idle(16));
    let seen = steady(&on, 16, run).await;
    let s = seen.stats;
    assert!(seen.checkouts > 100_000, "{}", seen.checkouts);
    assert!(s.rotated >= 4 * 12, "too few rotations: {s:?}");
    assert!(s.max_lifetime_closed >= 4 * 12, "{s:?}");
    assert_eq!(seen.waited, 0, "checkouts waited on a create: {s:?}");
    assert!(s.peak_open <= 24 && m.high_water() <= 24, "{s:?}");
    settled(&on, &m).await;

    // Without rotation the same load waits at expiries: the test can fail.
    let m = slow_creates();
    let off = pool(builder(&m).max_open(24).max_idle(16).rotate_lifetime(false));
    let seen = steady(&off, 16, run).await;
    assert_eq!(seen.stats.rotated, 0);
    assert!(seen.waited > 0, "the load never needed a create");
    settled(&off, &m).await;
}

#[tokio::test(start_paused = true)]
async fn at_max_open_rotation_does_nothing_and_the_pool_behaves_as_before() {
    let run = 3 * LIFETIME;
    let m = slow_creates();
    let full = pool(builder(&m).max_open(8).max_idle(8));
    let seen = steady(&full, 16, run).await;
    let s = seen.stats;
    assert!(s.peak_open <= 8 && m.high_water() <= 8, "{s:?}");
    // Only in the moments an expiry closed a connection and left a slot free (the machine's
    // unit test `at_max_open_nothing_rotates` pins the rule itself).
    assert!(s.rotated * 4 <= s.max_lifetime_closed, "{s:?}");
    settled(&full, &m).await;

    // One slot of room: rotation uses it and never more.
    let m = slow_creates();
    let tight = pool(builder(&m).max_open(9).max_idle(9));
    let seen = steady(&tight, 8, run).await;
    assert!(seen.stats.rotated > 0, "{:?}", seen.stats);
    assert!(seen.stats.peak_open <= 9 && m.high_water() <= 9);
    settled(&tight, &m).await;
}

#[tokio::test(start_paused = true)]
async fn an_idle_pool_does_not_rotate() {
    let m = slow_creates();
    let pool = pool(builder(&m).max_idle(4));
    let held: Vec<_> = futures_join(&pool, 4).await;
    drop(held);
    tokio::time::sleep(3 * LIFETIME).await;
    let s = settled(&pool, &m).await;
    assert_eq!((s.rotated, s.created), (0, 4), "{s:?}");
    assert_eq!((s.max_lifetime_closed, s.open), (4, 0), "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn go_mode_does_not_rotate() {
    let m = slow_creates();
    let mut config = Config::go();
    config.max_open = 24;
    config.max_idle = 16;
    let go = pool(builder(&m).config(config));
    let seen = steady(&go, 16, 2 * LIFETIME).await;
    assert_eq!(seen.stats.rotated, 0, "{:?}", seen.stats);
    assert!(seen.stats.max_lifetime_closed > 0);
    settled(&go, &m).await;
}

#[tokio::test(start_paused = true)]
async fn a_checked_out_connection_is_never_closed_under_its_holder() {
    let m = slow_creates();
    let pool = pool(builder(&m).max_idle(2).lifetime_jitter(Duration::ZERO));
    drop(pool.get().await.unwrap());
    // Due (the lead is 2 s until a create was timed): checked out, its replacement starts.
    tokio::time::sleep(LIFETIME - SEC).await;
    let old = pool.get().await.unwrap();
    assert_eq!(old.id, 1);
    eventually("the replacement landed", || pool.stats().created == 2).await;
    assert_eq!(pool.stats().rotated, 1);
    tokio::time::sleep(100 * MS).await;
    assert_eq!(
        (m.close_calls(), m.live()),
        (0, 2),
        "closed under its holder"
    );
    let new = pool.get().await.unwrap();
    assert_eq!(new.id, 2, "the replacement was not idle");
    drop(new);
    drop(old);
    let s = settled(&pool, &m).await;
    assert_eq!((s.max_lifetime_closed, s.open, s.idle), (1, 1, 1), "{s:?}");
}

#[tokio::test(start_paused = true)]
async fn a_failed_replacement_loses_nothing() {
    let m = ScriptedManager::new();
    m.script_create([Step::Slow(CREATE)]);
    let pool = pool(builder(&m).max_idle(2).lifetime_jitter(Duration::ZERO));
    drop(pool.get().await.unwrap());
    // The server refuses every create from now on.
    m.fail_all_creates(true);
    tokio::time::sleep(LIFETIME - SEC).await;
    let c = pool.get().await.unwrap();
    drop(c);
    eventually("the replacement failed", || pool.stats().create_errors == 1).await;
    // The old connection still serves, at once, until it expires.
    for _ in 0..5 {
        let t = Instant::now();
        let c = pool.get().await.unwrap();
        assert_eq!((c.id, t.elapsed()), (1, Duration::ZERO));
        drop(c);
        tokio::time::sleep(100 * MS).await;
    }
    let s = settled(&pool, &m).await;
    assert_eq!((s.open, s.max_lifetime_closed), (1, 0), "{s:?}");
    assert!(s.rotated >= 1, "{s:?}");
}

/// `n` connections checked out at once.
async fn futures_join(
    pool: &Pool<ScriptedManager>,
    n: usize,
) -> Vec<pool_core::Pooled<'static, ScriptedManager>> {
    let tasks: Vec<_> = (0..n)
        .map(|_| {
            let pool = pool.clone();
            tokio::spawn(async move { pool.get_owned().await.unwrap() })
        })
        .collect();
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

#[tokio::test(start_paused = true)]
async fn each_key_of_a_keyed_pool_rotates_its_own() {
    let m = KeyedScripted::<u32>::new();
    m.inner
        .script_create(std::iter::repeat_n(Step::Slow(CREATE), 100_000));
    let pool = KeyedPool::builder(m.clone())
        .max_open_per_key(8)
        .max_idle_per_key(8)
        .max_lifetime(LIFETIME)
        .build()
        .unwrap();
    let start = Instant::now();
    let end = start + 3 * LIFETIME;
    let mut tasks = Vec::new();
    for w in 0..8u32 {
        let pool = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut waited = 0;
            while Instant::now() < end {
                let t = Instant::now();
                let c = pool.get(&(w % 2)).await.unwrap();
                waited += usize::from(t >= start + SEC && t.elapsed() > Duration::ZERO);
                tokio::time::sleep(MS * (2 + w % 4)).await;
                drop(c);
                tokio::time::sleep(5 * MS).await;
            }
            waited
        }));
    }
    let mut waited = 0;
    for t in tasks {
        waited += t.await.unwrap();
    }
    for key in 0..2 {
        let s = pool.key_stats(&key).unwrap();
        assert!(s.rotated >= 4 && s.peak_open <= 8, "key {key}: {s:?}");
    }
    assert_eq!(
        waited,
        0,
        "checkouts waited on a create: {:?}",
        pool.stats()
    );
    let inner = m.inner.clone();
    assert_settled(&pool, move || inner.live(), support::SETTLE).await;
}
