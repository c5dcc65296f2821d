//! The `metrics` feature: the stats reach a recorder with the documented names and labels.

use std::collections::HashMap;

use pool_core::testing::metrics::Capture;
use pool_core::testing::{KeyedScripted, ScriptedManager};
use pool_core::{KeyedPool, Pool};

#[tokio::test(start_paused = true)]
async fn stats_are_exported_as_gauges_and_counters_per_pool_and_per_key() {
    let pool = Pool::builder(ScriptedManager::new())
        .max_open(4)
        .build()
        .unwrap();
    let held = pool.get().await.unwrap();
    drop(pool.get().await.unwrap());
    let keyed = KeyedPool::builder(KeyedScripted::<u32>::new())
        .build()
        .unwrap();
    drop(keyed.get(&7).await.unwrap());
    drop(keyed.get(&7).await.unwrap());

    let capture = Capture::default();
    let values = capture.0.clone();
    metrics::with_local_recorder(&capture, || {
        pool.record_metrics("db");
        keyed.record_metrics("http");
    });
    let v = values.lock();
    let get = |name: &str| {
        *v.get(name)
            .unwrap_or_else(|| panic!("{name} not exported: {v:?}"))
    };
    assert_eq!(get("pool_max_open{pool=db}"), 4.0);
    assert_eq!(get("pool_open{pool=db}"), 2.0);
    assert_eq!(get("pool_in_use{pool=db}"), 1.0);
    assert_eq!(get("pool_idle{pool=db}"), 1.0);
    assert_eq!(get("pool_created{pool=db}"), 2.0);
    assert_eq!(get("pool_wait_count{pool=db}"), 0.0);
    assert_eq!(get("pool_created{pool=http}"), 1.0);
    assert_eq!(get("pool_hits{pool=http}"), 1.0);
    assert_eq!(get("pool_idle{pool=http,key=7}"), 1.0);
    assert_eq!(get("pool_hits{pool=http,key=7}"), 1.0);
    drop(held);
}

/// The `key` label values among the captured series of pool `pool`.
fn key_labels(values: &HashMap<String, f64>, pool: &str) -> std::collections::BTreeSet<String> {
    let prefix = format!("pool={pool},key=");
    values
        .keys()
        .filter_map(|name| {
            let labels = name.split_once('{')?.1.strip_suffix('}')?;
            labels.strip_prefix(&prefix).map(str::to_owned)
        })
        .collect()
}

/// 1,000 keys each holding one connection, and keys 500..520 holding three.
async fn thousand_keys() -> (
    KeyedPool<KeyedScripted<u32>>,
    Vec<pool_core::KeyedPooled<'static, KeyedScripted<u32>>>,
) {
    let pool = KeyedPool::builder(KeyedScripted::<u32>::new())
        .max_idle(usize::MAX)
        .build()
        .unwrap();
    let mut held = Vec::new();
    for key in 0..1_000u32 {
        let n = if (500..520).contains(&key) { 3 } else { 1 };
        for _ in 0..n {
            held.push(pool.get_owned(&key).await.unwrap());
        }
    }
    (pool, held)
}

/// Regression (issue 17, point 10): one label set per key, so 100,000 hosts made 100,000
/// series. Now: the 20 keys with the most open connections, plus `key="other"` for the rest.
#[tokio::test(start_paused = true)]
async fn a_keyed_pool_exports_the_top_keys_and_one_other_bucket_not_a_series_per_key() {
    let (pool, held) = thousand_keys().await;
    let capture = Capture::default();
    let values = capture.0.clone();
    metrics::with_local_recorder(&capture, || pool.record_metrics("http"));
    let v = values.lock();
    let keys = key_labels(&v, "http");
    assert!(keys.len() <= 21, "{} key labels for 1,000 keys", keys.len());
    let mut want: std::collections::BTreeSet<String> =
        (500..520u32).map(|k| k.to_string()).collect();
    want.insert("other".to_owned());
    assert_eq!(keys, want, "the 20 busiest keys and `other`");
    // 27 series of totals, 26 per key shown, 7 for `other`: 554 (26,000 before).
    assert_eq!(v.len(), 27 + 20 * 26 + 7, "series for 1,000 keys");
    let get = |name: &str| *v.get(name).unwrap_or_else(|| panic!("{name} not exported"));
    assert_eq!(get("pool_open{pool=http}"), 1_040.0);
    assert_eq!(get("pool_keys{pool=http}"), 1_000.0);
    assert_eq!(get("pool_open{pool=http,key=510}"), 3.0);
    assert_eq!(get("pool_created{pool=http,key=510}"), 3.0);
    // `other` sums the gauges of the 980 keys not shown.
    assert_eq!(get("pool_open{pool=http,key=other}"), 980.0);
    assert_eq!(get("pool_in_use{pool=http,key=other}"), 980.0);
    assert_eq!(get("pool_idle{pool=http,key=other}"), 0.0);
    assert_eq!(get("pool_keys{pool=http,key=other}"), 980.0);
    drop(v);
    drop(held);
}

#[tokio::test(start_paused = true)]
async fn the_number_of_keys_exported_is_a_parameter() {
    let (pool, held) = thousand_keys().await;
    let capture = Capture::default();
    let values = capture.0.clone();
    metrics::with_local_recorder(&capture, || pool.record_metrics_top("few", 5));
    metrics::with_local_recorder(&capture, || pool.record_metrics_top("none", 0));
    metrics::with_local_recorder(&capture, || pool.record_metrics_top("all", usize::MAX));
    let v = values.lock();
    let few = key_labels(&v, "few");
    assert_eq!(few.len(), 6, "{few:?}");
    assert!(few.contains("other"));
    assert!(
        few.iter()
            .all(|k| k == "other" || (500..520).contains(&k.parse::<u32>().unwrap()))
    );
    assert_eq!(v["pool_open{pool=few,key=other}"], 1_040.0 - 15.0);
    assert_eq!(
        key_labels(&v, "none").into_iter().collect::<Vec<_>>(),
        ["other"]
    );
    assert_eq!(v["pool_open{pool=none,key=other}"], 1_040.0);
    let all = key_labels(&v, "all");
    assert_eq!(
        all.len(),
        1_001,
        "every key, opted in, and an empty `other`"
    );
    assert_eq!(v["pool_open{pool=all,key=other}"], 0.0);
    drop(v);
    drop(held);
}
