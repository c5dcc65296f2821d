//! Tracing spans: each checkout (`get`, `get_owned`, `get_timeout`) is a `checkout` span
//! (target `pool_core`, level DEBUG) inside the caller's span, with `conn`, `reused`, `via`
//! and `waited` recorded when it is served (`error` when it fails, `cancelled` when the
//! caller left), and `key` when the keyed manager names its keys; a create it started is a
//! `create` span that follows from it. All on paused time, so `waited` is exact.

mod support;

use std::sync::OnceLock;
use std::time::Duration;

use pool_core::testing::spans::{Capture, CapturedSpan};
use pool_core::testing::{KeyedScripted, ScriptedManager};
use pool_core::{KeyedManager, KeyedPool, Pool, async_trait};
use support::settled;
use tokio::time::sleep;
use tracing::Instrument;

/// One capture for the whole test binary, the global default: each test reads the spans of
/// its own thread (its current-thread runtime runs the pool's tasks there).
fn capture() -> Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE
        .get_or_init(|| {
            let capture = Capture::new();
            tracing::subscriber::set_global_default(capture.clone())
                .expect("no other global subscriber in this binary");
            capture
        })
        .clone()
}

fn checkouts(capture: &Capture) -> Vec<CapturedSpan> {
    capture.spans_named("pool_core", "checkout")
}

#[tokio::test(start_paused = true)]
async fn a_checkout_span_says_how_its_connection_came_and_how_long_it_waited() {
    let capture = capture();
    let m = ScriptedManager::new();
    let pool = Pool::builder(m.clone()).max_open(1).build().unwrap();

    // Created for this checkout.
    let first = pool.get().await.unwrap();
    let first_id = pool_core::Pooled::id(&first);
    drop(first);
    // Idle.
    let second = pool.get().await.unwrap();
    // Handed over by a release, after 3 s in the queue.
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move { pool_core::Pooled::id(&pool.get().await.unwrap()) }
    });
    sleep(Duration::from_secs(3)).await;
    drop(second);
    assert_eq!(waiting.await.unwrap(), first_id);

    let spans = checkouts(&capture);
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let fields = |s: &CapturedSpan| {
        ["conn", "reused", "via", "waited"].map(|f| s.field(f).unwrap_or("-").to_owned())
    };
    let id = first_id.to_string();
    assert_eq!(fields(&spans[0]), [id.as_str(), "false", "created", "0ns"]);
    assert_eq!(fields(&spans[1]), [id.as_str(), "true", "idle", "0ns"]);
    assert_eq!(fields(&spans[2]), [id.as_str(), "true", "released", "3s"]);
    assert!(spans.iter().all(|s| s.field("error").is_none()));
    assert!(spans.iter().all(|s| s.level == tracing::Level::DEBUG));
    // No key field: an unkeyed pool has none.
    assert!(spans.iter().all(|s| s.field("key").is_none()));

    // The create the first checkout started is a span of its own linked to it (a child
    // would keep the checkout's span open until the create ends), and the create's own
    // events are inside that.
    let creates = capture.spans_named("pool_core", "create");
    assert_eq!(creates.len(), 1);
    assert_eq!(creates[0].parent, None);
    assert_eq!(creates[0].follows, [spans[0].id]);
    let created = capture
        .events()
        .into_iter()
        .find(|e| e.message == "created a connection")
        .expect("the create's event");
    assert_eq!(created.span, Some(creates[0].id));
    settled(&pool, &m).await;
}

#[tokio::test(start_paused = true)]
async fn a_checkout_that_times_out_records_its_error_and_its_wait() {
    let capture = capture();
    let m = ScriptedManager::new();
    let pool = Pool::builder(m.clone()).max_open(1).build().unwrap();
    let held = pool.get().await.unwrap();
    let err = pool
        .get_timeout(Duration::from_millis(1500))
        .await
        .unwrap_err();
    assert!(err.is_timeout());
    let spans = checkouts(&capture);
    assert_eq!(spans.len(), 2);
    let failed = &spans[1];
    assert_eq!(failed.field("error"), Some(err.to_string().as_str()));
    assert_eq!(failed.field("waited"), Some("1.5s"));
    assert_eq!(failed.field("conn"), None);
    assert_eq!(failed.field("reused"), None);
    drop(held);
    settled(&pool, &m).await;
}

#[tokio::test(start_paused = true)]
async fn a_checkout_the_caller_left_says_so_and_a_create_started_by_a_return_links_nothing() {
    let capture = capture();
    let m = ScriptedManager::new();
    let pool = Pool::builder(m.clone()).max_open(1).build().unwrap();
    let held = pool.get().await.unwrap();
    let gave_up = tokio::time::timeout(Duration::from_secs(2), pool.get()).await;
    assert!(gave_up.is_err());
    let spans = checkouts(&capture);
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[1].field("cancelled"), Some("true"));
    assert_eq!(spans[1].field("waited"), Some("2s"));
    assert_eq!(spans[1].field("conn"), None);
    assert_eq!(spans[1].field("error"), None);

    // A checkout waits; the held connection is discarded outside it, in a span of the
    // caller's own: the create that replaces it links to nothing (the span current at the
    // return is not the waiting checkout's).
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move { pool_core::Pooled::id(&pool.get().await.unwrap()) }
    });
    tokio::task::yield_now().await;
    let other = tracing::info_span!(target: "app", "another_request");
    other.in_scope(|| pool_core::Pooled::discard(held));
    waiting.await.unwrap();
    let creates = capture.spans_named("pool_core", "create");
    assert_eq!(creates.len(), 2);
    assert_eq!(creates[1].parent, None);
    assert!(creates[1].follows.is_empty(), "{:?}", creates[1]);
    settled(&pool, &m).await;
}

#[tokio::test(start_paused = true)]
async fn checkout_spans_sit_inside_the_callers_span() {
    let capture = capture();
    let m = ScriptedManager::new();
    let pool = Pool::builder(m.clone()).build().unwrap();
    let outer = tracing::info_span!(target: "app", "handle_order", order = 17);
    async {
        drop(pool.get().await.unwrap());
        drop(pool.get_owned().await.unwrap());
    }
    .instrument(outer)
    .await;
    let outer = &capture.spans_named("app", "handle_order")[0];
    let spans = checkouts(&capture);
    assert_eq!(spans.len(), 2);
    assert!(
        spans.iter().all(|s| s.parent == Some(outer.id)),
        "{spans:#?}"
    );
    settled(&pool, &m).await;
}

/// Keys are tenant names the logs may show.
#[derive(Clone)]
struct Tenants(KeyedScripted<String>);

#[async_trait]
impl KeyedManager for Tenants {
    type Key = String;
    type Resource = <KeyedScripted<String> as KeyedManager>::Resource;
    type Error = <KeyedScripted<String> as KeyedManager>::Error;

    async fn create(&self, key: &String) -> Result<Self::Resource, Self::Error> {
        self.0.create(key).await
    }

    fn span_key<'k>(&self, key: &'k String) -> Option<&'k dyn std::fmt::Display> {
        Some(key)
    }
}

#[tokio::test(start_paused = true)]
async fn a_keyed_checkout_names_its_key_only_when_the_manager_does() {
    let capture = capture();
    let named = KeyedPool::builder(Tenants(KeyedScripted::new()))
        .build()
        .unwrap();
    drop(named.get("acme").await.unwrap());
    drop(named.get_owned("acme").await.unwrap());
    drop(
        named
            .get_timeout("acme", Duration::from_secs(1))
            .await
            .unwrap(),
    );
    let spans = checkouts(&capture);
    assert_eq!(spans.len(), 3);
    for s in &spans {
        assert_eq!(s.field("key"), Some("acme"));
    }
    assert_eq!(spans[2].field("via"), Some("idle"));

    // The default: keys may hold secrets, so none is recorded.
    let unnamed = KeyedPool::builder(KeyedScripted::<String>::new())
        .build()
        .unwrap();
    drop(unnamed.get("secret-tenant").await.unwrap());
    let spans = checkouts(&capture);
    assert_eq!(spans.len(), 4);
    assert_eq!(spans[3].field("key"), None);
    assert_eq!(spans[3].field("via"), Some("created"));
    assert!(
        capture
            .spans()
            .iter()
            .all(|s| s.fields.values().all(|v| !v.contains("secret-tenant")))
    );
}

/// Hooks that do nothing: with hooks set, every checkout takes the general (boxed) path.
struct Quiet;

impl<K> pool_core::Hooks<K> for Quiet {}

#[tokio::test(start_paused = true)]
async fn checkouts_on_the_general_path_have_the_same_span() {
    let capture = capture();
    let m = ScriptedManager::new();
    let pool = Pool::builder(m.clone())
        .max_open(1)
        .hooks(Quiet)
        .build()
        .unwrap();
    let first = pool.get().await.unwrap();
    let id = pool_core::Pooled::id(&first).to_string();
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move { drop(pool.get().await.unwrap()) }
    });
    sleep(Duration::from_millis(250)).await;
    drop(first);
    waiting.await.unwrap();
    let spans = checkouts(&capture);
    assert_eq!(spans.len(), 2);
    let shown: Vec<_> = spans
        .iter()
        .map(|s| [s.field("conn"), s.field("via"), s.field("waited")])
        .collect();
    assert_eq!(
        shown,
        [
            [Some(id.as_str()), Some("created"), Some("0ns")],
            [Some(id.as_str()), Some("released"), Some("250ms")],
        ]
    );
    settled(&pool, &m).await;
}

/// Every return is a "returned a connection" event saying where the connection went, on the
/// one-step paths too: to idle, and handed to a queued caller (once a regression: the
/// one-step hand-off returned before the event).
#[tokio::test(start_paused = true)]
async fn every_return_says_where_the_connection_went() {
    let capture = capture();
    let m = ScriptedManager::new();
    let pool = Pool::builder(m.clone()).max_open(1).build().unwrap();
    let held = pool.get().await.unwrap();
    let id = pool_core::Pooled::id(&held);
    let waiting = tokio::spawn({
        let pool = pool.clone();
        async move { drop(pool.get().await.unwrap()) }
    });
    support::eventually("the second caller queued", || pool.stats().wait_count == 1).await;
    drop(held);
    waiting.await.unwrap();
    let returns: Vec<(String, String)> = capture
        .events()
        .into_iter()
        .filter(|e| e.target == "pool_core" && e.message == "returned a connection")
        .map(|e| (e.fields["conn"].clone(), e.fields["returned"].clone()))
        .collect();
    let id = id.to_string();
    assert_eq!(
        returns,
        [
            (id.clone(), "handed_off".to_string()),
            (id, "idle".to_string())
        ],
        "{returns:?}"
    );
}
