//! Leak detection (`leak_threshold`, HikariCP's `leakDetectionThreshold`): a guard held past
//! the threshold is reported once, while still out, with the file and line of its `get`
//! call, in a `tracing` warning, the `held_too_long` hook and `Stats::held_too_long`; a guard
//! back in time is not; off, nothing runs. All on paused time: `sleep` moves the clock.

mod support;

use std::backtrace::BacktraceStatus;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use pool_core::testing::{KeyedScripted, ScriptedManager};
use pool_core::{HeldTooLong, Hooks, KeyedPool, LeakTrace, Pool, Pooled};
use support::settled;
use tokio::time::sleep;

const THRESHOLD: Duration = Duration::from_secs(30);
const SEC: Duration = Duration::from_secs(1);

/// One report through the hook.
#[derive(Debug, Clone, PartialEq)]
struct Report {
    key: String,
    id: u64,
    held: Duration,
    file: &'static str,
    line: u32,
    backtrace: Option<bool>,
}

/// Records every `held_too_long` call.
#[derive(Clone, Default)]
struct Reports(Arc<Mutex<Vec<Report>>>);

impl Reports {
    fn get(&self) -> Vec<Report> {
        self.0.lock().clone()
    }
}

impl<K: std::fmt::Debug> Hooks<K> for Reports {
    fn held_too_long(&self, key: &K, info: &HeldTooLong<'_>) {
        self.0.lock().push(Report {
            key: format!("{key:?}"),
            id: info.id,
            held: info.held,
            file: info.caller.file(),
            line: info.caller.line(),
            backtrace: info
                .backtrace
                .map(|b| b.status() == BacktraceStatus::Captured),
        });
    }
}

/// A `tracing` subscriber keeping pool_core's events at `info` and above, one line each (the
/// level, then `name=value` for every field, the message included), in a buffer of the
/// thread that emits them: each test's current-thread runtime runs the pool's tasks on the
/// test's thread, so a test reads its own pools' events.
///
/// It is the global default, installed before any test runs pool code (every test starts
/// with [`logs`]): a subscriber per thread (`set_default`) races with the interest tracing
/// caches per call site when tests run in parallel threads of one process, and loses an
/// event now and then.
struct Sink;

thread_local! {
    static LINES: std::cell::RefCell<Vec<String>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl tracing::Subscriber for Sink {
    fn enabled(&self, meta: &tracing::Metadata<'_>) -> bool {
        meta.target() == "pool_core" && *meta.level() <= tracing::Level::INFO
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        struct Fields<'a>(&'a mut String);
        impl tracing::field::Visit for Fields<'_> {
            fn record_debug(&mut self, f: &tracing::field::Field, v: &dyn std::fmt::Debug) {
                let _ = write!(self.0, " {}={v:?}", f.name());
            }
        }
        let mut line = event.metadata().level().to_string();
        event.record(&mut Fields(&mut line));
        LINES.with(|l| l.borrow_mut().push(line));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// This thread's log lines since [`logs`].
struct Logs;

impl Logs {
    /// The lines at `level` ("WARN", "INFO").
    fn at(&self, level: &str) -> Vec<String> {
        let prefix = format!("{level} ");
        LINES.with(|l| {
            l.borrow()
                .iter()
                .filter(|l| l.starts_with(&prefix))
                .cloned()
                .collect()
        })
    }
}

/// Installs [`Sink`] once per process and empties this thread's lines.
fn logs() -> Logs {
    static INSTALLED: std::sync::OnceLock<()> = std::sync::OnceLock::new();
    INSTALLED.get_or_init(|| {
        tracing::subscriber::set_global_default(Sink).expect("no other global subscriber")
    });
    LINES.with(|l| l.borrow_mut().clear());
    Logs
}

fn pool(m: &ScriptedManager, hooks: &Reports) -> Pool<ScriptedManager> {
    Pool::builder(m.clone())
        .leak_threshold(THRESHOLD)
        .hooks(hooks.clone())
        .build()
        .unwrap()
}

/// Tasks alive on this runtime: the pool's reaper, creates in flight, the leak watcher.
fn tasks() -> usize {
    tokio::runtime::Handle::current()
        .metrics()
        .num_alive_tasks()
}

#[tokio::test(start_paused = true)]
async fn a_guard_held_past_the_threshold_is_reported_once_with_the_line_of_its_get() {
    let logs = logs();
    let (m, reports) = (ScriptedManager::new(), Reports::default());
    let pool = pool(&m, &reports);
    let (conn, line) = (pool.get().await.unwrap(), line!());
    sleep(THRESHOLD - SEC).await;
    assert_eq!(reports.get(), [], "not yet past the threshold");
    assert_eq!(pool.stats().held_too_long, 0);
    sleep(2 * SEC).await;
    let expected = Report {
        key: "()".into(),
        id: Pooled::id(&conn),
        held: THRESHOLD,
        file: file!(),
        line,
        backtrace: None,
    };
    assert_eq!(
        reports.get(),
        std::slice::from_ref(&expected),
        "reported at the threshold"
    );
    assert_eq!(pool.stats().held_too_long, 1);
    let warned = logs.at("WARN");
    assert_eq!(warned.len(), 1, "{warned:?}");
    let at = format!("caller={}:{line}:", file!());
    assert!(warned[0].contains(&at), "{} lacks {at}", warned[0]);
    assert!(warned[0].contains("leak_threshold"), "{}", warned[0]);
    // Once, however long it stays out.
    sleep(10 * THRESHOLD).await;
    assert_eq!(reports.get(), [expected]);
    assert_eq!(pool.stats().held_too_long, 1);
    assert_eq!(logs.at("WARN").len(), 1);
    // It comes back after all: said at `info`, and it is returned as usual.
    drop(conn);
    let back = logs.at("INFO");
    assert_eq!(back.len(), 1, "{back:?}");
    assert!(back[0].contains("came back"), "{}", back[0]);
    let s = settled(&pool, &m).await;
    assert_eq!((s.idle, s.held_too_long), (1, 1));
}

#[tokio::test(start_paused = true)]
async fn guards_back_before_the_threshold_are_never_reported() {
    let logs = logs();
    let (m, reports) = (ScriptedManager::new(), Reports::default());
    let pool = pool(&m, &reports);
    // Short holds, and one just under the threshold.
    for _ in 0..100 {
        let conn = pool.get().await.unwrap();
        sleep(Duration::from_millis(100)).await;
        drop(conn);
    }
    let conn = pool.get().await.unwrap();
    sleep(THRESHOLD - Duration::from_millis(1)).await;
    drop(conn);
    // Guards discarded or detached leave the book too.
    let conn = pool.get().await.unwrap();
    Pooled::discard(conn);
    let conn = pool.get().await.unwrap();
    drop(Pooled::detach(conn));
    sleep(10 * THRESHOLD).await;
    assert_eq!(reports.get(), []);
    assert_eq!(logs.at("WARN"), Vec::<String>::new());
    assert_eq!(settled(&pool, &m).await.held_too_long, 0);
}

#[tokio::test(start_paused = true)]
async fn each_guard_is_reported_at_its_own_deadline_and_every_checkout_form_names_its_caller() {
    let _logs = logs();
    let (m, reports) = (ScriptedManager::new(), Reports::default());
    let pool = pool(&m, &reports);
    let (a, line_a) = (pool.get().await.unwrap(), line!());
    sleep(10 * SEC).await;
    let (b, line_b) = (pool.get_owned().await.unwrap(), line!());
    sleep(10 * SEC).await;
    let (c, line_c) = (pool.get_timeout(SEC).await.unwrap(), line!());
    // An owned guard made from a borrowed one keeps its entry and its caller.
    let c = Pooled::into_owned(c);
    drop(a);
    let (a, line_a2) = (pool.try_get().unwrap(), line!());
    let lines = || reports.get().iter().map(|r| r.line).collect::<Vec<_>>();
    sleep(11 * SEC).await; // t = 31 s
    assert_eq!(lines(), [], "a came back in time; b is due at 40 s");
    sleep(10 * SEC).await; // t = 41 s
    assert_eq!(lines(), [line_b]);
    sleep(10 * SEC).await; // t = 51 s: c, and a's second checkout (at 20 s)
    let mut due = lines();
    due.sort();
    assert_eq!(due, [line_b, line_c, line_a2]);
    assert!(reports.get().iter().all(|r| r.held == THRESHOLD));
    assert_ne!(line_a, line_a2);
    // A checkout after every report (the watcher waits for it) is timed from its start.
    drop((a, b, c));
    let (d, line_d) = (pool.get().await.unwrap(), line!());
    sleep(THRESHOLD + SEC).await;
    assert_eq!(lines().last(), Some(&line_d));
    assert_eq!(pool.stats().held_too_long, 4);
    drop(d);
    settled(&pool, &m).await;
}

#[tokio::test(start_paused = true)]
async fn off_by_default_nothing_runs_and_nothing_is_reported() {
    let logs = logs();
    let (m, reports) = (ScriptedManager::new(), Reports::default());
    let before = tasks();
    let off = Pool::builder(m.clone())
        .hooks(reports.clone())
        .build()
        .unwrap();
    assert_eq!(tasks(), before + 1, "the reaper only: no leak watcher");
    let conn = off.get().await.unwrap();
    assert!(format!("{:?}", off.get()).contains("caller: off"));
    sleep(100 * THRESHOLD).await;
    assert_eq!(reports.get(), []);
    assert_eq!(logs.at("WARN"), Vec::<String>::new());
    assert_eq!(off.stats().held_too_long, 0);
    drop(conn);
    settled(&off, &m).await;

    // On, one task more: the watcher.
    let on = pool(&m, &reports);
    assert_eq!(tasks(), before + 3);
    drop(on);
}

#[tokio::test(start_paused = true)]
async fn the_watcher_outlives_the_pool_while_a_guard_is_out_and_ends_with_it() {
    let _logs = logs();
    let (m, reports) = (ScriptedManager::new(), Reports::default());
    let before = tasks();
    let pool = pool(&m, &reports);
    let (conn, line) = (pool.get_owned().await.unwrap(), line!());
    drop(pool);
    // A guard kept past its pool's end is a leak too.
    sleep(THRESHOLD + SEC).await;
    assert_eq!(
        reports.get().iter().map(|r| r.line).collect::<Vec<_>>(),
        [line]
    );
    drop(conn);
    support::eventually("the reaper and the leak watcher end", || tasks() == before).await;
}

#[tokio::test(start_paused = true)]
async fn a_keyed_pool_reports_the_key_and_counts_in_its_totals() {
    let _logs = logs();
    let (m, reports) = (KeyedScripted::<u32>::new(), Reports::default());
    let pool = KeyedPool::builder(m.clone())
        .leak_threshold(THRESHOLD)
        .hooks(reports.clone())
        .build()
        .unwrap();
    let (held, line) = (pool.get(&7).await.unwrap(), line!());
    let short = pool.get(&8).await.unwrap();
    drop(short);
    sleep(THRESHOLD + SEC).await;
    let got = reports.get();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!((got[0].key.as_str(), got[0].line), ("7", line));
    assert_eq!(pool.stats().held_too_long, 1);
    assert_eq!(pool.key_stats(&7).unwrap().held_too_long, 0, "totals only");
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn leak_trace_backtrace_adds_the_stack_of_the_checkout() {
    let _logs = logs();
    let (m, reports) = (ScriptedManager::new(), Reports::default());
    let pool = Pool::builder(m.clone())
        .leak_threshold(THRESHOLD)
        .leak_trace(LeakTrace::Backtrace)
        .hooks(reports.clone())
        .build()
        .unwrap();
    let conn = pool.get().await.unwrap();
    sleep(THRESHOLD + SEC).await;
    let got = reports.get();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].held, THRESHOLD, "reported at the threshold exactly");
    assert_eq!(got[0].backtrace, Some(true), "a captured backtrace");
    drop(conn);
}

/// Hooks observe: one that panics is caught and logged, the watcher goes on.
#[tokio::test(start_paused = true)]
async fn a_panicking_held_too_long_hook_costs_only_its_call() {
    let logs = logs();
    struct Panics;
    impl Hooks for Panics {
        fn held_too_long(&self, _: &(), _: &HeldTooLong<'_>) {
            panic!("hook panics");
        }
    }
    let m = ScriptedManager::new();
    let pool = Pool::builder(m.clone())
        .leak_threshold(THRESHOLD)
        .hooks(Panics)
        .build()
        .unwrap();
    let first = pool.get().await.unwrap();
    sleep(THRESHOLD + SEC).await;
    let second = pool.get().await.unwrap();
    sleep(THRESHOLD + SEC).await;
    assert_eq!(
        pool.stats().held_too_long,
        2,
        "the watcher survived the first"
    );
    assert_eq!(logs.at("WARN").len(), 2);
    assert_eq!(logs.at("ERROR").len(), 2, "each panic logged");
    drop((first, second));
    settled(&pool, &m).await;
}
