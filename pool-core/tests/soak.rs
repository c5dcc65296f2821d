//! Soak: a million pool operations (checkouts, each ending one of many ways) by 64 tasks under
//! random cancellation, with the scripted manager failing, stalling and panicking at random,
//! hooks panicking at random, user code panicking with a guard in hand, and the limits changed
//! while it runs. At the end nothing may be lost: every resource accounted for, the hard cap
//! held, the books balanced, and the pool still serving.
//!
//! Bounded in CI (100,000 operations); `SOAK=full` runs 1,000,000 (`SOAK_OPS=n` any number).

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use pool_core::testing::load::{Load, soak_ops};
use pool_core::testing::{Res, ScriptedManager, assert_drained};
use pool_core::{GotConn, Hooks, Pool, Pooled, Returned};
use support::{builder, settled};

/// The most `max_open` is ever set to while the soak runs.
const TOP: usize = 16;

/// Hooks that panic once in a thousand calls; clones share the counts.
#[derive(Clone, Default)]
struct PanickyHooks {
    calls: Arc<AtomicU64>,
    panics: Arc<AtomicU64>,
}

impl PanickyHooks {
    fn maybe_panic(&self) {
        if self.calls.fetch_add(1, Ordering::Relaxed) % 1000 == 999 {
            self.panics.fetch_add(1, Ordering::Relaxed);
            panic!("soak: a hook panics");
        }
    }
}

impl Hooks for PanickyHooks {
    fn got_conn(&self, _key: &(), _info: &GotConn) {
        self.maybe_panic();
    }

    fn put_idle(&self, _key: &(), _id: u64, _returned: Returned) {
        self.maybe_panic();
    }
}

/// What a checkout does with its resource before letting it go.
#[derive(Debug, Clone, Copy)]
enum End {
    /// Gives it back at once.
    Return,
    /// Holds it across a few yields or a short sleep, then gives it back.
    Hold,
    /// Marks it broken (the next check closes it).
    Break,
    /// Marks it dirty (a reset runs before reuse).
    Dirty,
    /// Discards it.
    Discard,
    /// Takes it out of the pool for good.
    Detach,
    /// Panics while holding it (in a task of its own).
    Panic,
}

fn pick(rng: &mut fastrand::Rng) -> End {
    match rng.u32(..1000) {
        0..550 => End::Return,
        550..920 => End::Hold,
        920..940 => End::Break,
        940..990 => End::Dirty,
        990..995 => End::Discard,
        995..998 => End::Detach,
        _ => End::Panic,
    }
}

async fn use_and_end(mut c: Pooled<'static, ScriptedManager>, end: End, rng: &mut fastrand::Rng) {
    match end {
        End::Return => {}
        End::Hold => {
            if rng.bool() {
                for _ in 0..rng.u8(1..4) {
                    tokio::task::yield_now().await;
                }
            } else {
                tokio::time::sleep(Duration::from_micros(rng.u64(50..500))).await;
            }
        }
        End::Break => c.broken = true,
        End::Dirty => c.dirty = true,
        End::Discard => Pooled::discard(c),
        End::Detach => {
            c.disown();
            drop::<Res>(Pooled::detach(c));
        }
        End::Panic => {
            let r = tokio::spawn(async move {
                let _held = c;
                panic!("soak: user code panics holding a connection");
            })
            .await;
            assert!(r.unwrap_err().is_panic());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_million_operations_under_random_faults_lose_nothing() {
    // The panics are the point; keep their messages out of the output.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let text = info.to_string();
        if !text.contains("soak:") && !text.contains("scripted panic") {
            default_hook(info);
        }
    }));

    let ops = soak_ops(100_000, 1_000_000);
    let m = ScriptedManager::new()
        .with_validate_after(Duration::from_millis(1))
        .with_random_faults(7, 20);
    let hooks = PanickyHooks::default();
    let pool = builder(&m)
        .max_open(TOP)
        .max_idle(4)
        .idle_grace(Duration::from_millis(5))
        .max_lifetime(Duration::from_millis(20))
        .max_idle_time(Duration::from_millis(5))
        .acquire_timeout(Duration::from_millis(50))
        .create_timeout(Duration::from_millis(20))
        .hook_timeout(Duration::from_millis(10))
        .breaker_backoff(Duration::from_millis(1))
        .breaker_max_backoff(Duration::from_millis(10))
        .hooks(hooks.clone())
        .build()
        .unwrap();

    // The limits change while it runs (as an operator would, through the setters).
    let stop_tuning = Arc::new(AtomicBool::new(false));
    let tuner = tokio::spawn({
        let (pool, stop) = (pool.clone(), stop_tuning.clone());
        async move {
            let mut rng = fastrand::Rng::with_seed(99);
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_millis(rng.u64(5..50))).await;
                pool.set_max_open(rng.usize(2..=TOP));
                pool.set_max_idle(rng.usize(0..=8));
            }
            pool.set_max_open(TOP);
        }
    });

    let started = std::time::Instant::now();
    let load = Load::start(64, 1..100, Some(ops), {
        let pool: Pool<ScriptedManager> = pool.clone();
        move |rng| {
            let pool = pool.clone();
            let end = pick(rng);
            let mut rng = fastrand::Rng::with_seed(rng.u64(..));
            async move {
                let c = pool.get_owned().await?;
                use_and_end(c, end, &mut rng).await;
                Ok::<(), pool_core::Error>(())
            }
        }
    });
    let tally = load.finish().await;
    stop_tuning.store(true, Ordering::Relaxed);
    tuner.await.unwrap();
    let took = started.elapsed();

    // Settled: nothing checked out or waiting, every live resource is an open one, and
    // created - closed - detached == open.
    let s = settled(&pool, &m).await;
    let injected = m.injected();
    eprintln!(
        "soak: {} operations in {took:?}: {tally:?}; injected {injected:?}, hook panics {}; \
         peak open {} (manager: {}); {s:?}",
        tally.calls(),
        hooks.panics.load(Ordering::Relaxed),
        s.peak_open,
        m.high_water()
    );
    assert_eq!(
        tally.calls(),
        ops,
        "every operation ended one way or another"
    );
    assert!(
        m.high_water() <= TOP && s.peak_open <= TOP,
        "the hard cap was passed: manager {}, pool {}",
        m.high_water(),
        s.peak_open
    );
    assert!(tally.ok > ops / 2, "mostly served: {tally:?}");
    assert!(
        injected.failures > 0 && injected.panics > 0 && injected.slow > 0,
        "{injected:?}"
    );
    assert!(hooks.panics.load(Ordering::Relaxed) > 0);
    assert!(
        tally.slowest_failure < Duration::from_millis(50 + 500),
        "acquire_timeout (50 ms) bounds every failure: {tally:?}"
    );

    // Once the faults stop, it serves again (within the breaker's backoff), then closes with
    // nothing left alive.
    m.calm();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        match pool.get().await {
            Ok(c) => break drop(c),
            Err(e) => assert!(
                std::time::Instant::now() < deadline,
                "the pool does not serve after the soak: {e:?}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    pool.close();
    let live = m.clone();
    let s = assert_drained(&pool, move || live.live(), Duration::from_secs(10)).await;
    assert_eq!(m.live(), 0, "{s:?}");
}
