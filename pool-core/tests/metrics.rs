//! The `metrics` feature: the stats reach a recorder with the documented names and labels.

use std::collections::HashMap;
use std::sync::Arc;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use parking_lot::Mutex;
use pool_core::testing::{KeyedScripted, ScriptedManager};
use pool_core::{KeyedPool, Pool};

type Values = Arc<Mutex<HashMap<String, f64>>>;

/// Keeps the last value of every series, named `name{label=value,...}`.
#[derive(Default)]
struct Capture(Values);

struct Series(String, Values);

impl CounterFn for Series {
    fn increment(&self, v: u64) {
        *self.1.lock().entry(self.0.clone()).or_default() += v as f64;
    }
    fn absolute(&self, v: u64) {
        self.1.lock().insert(self.0.clone(), v as f64);
    }
}

impl GaugeFn for Series {
    fn increment(&self, v: f64) {
        *self.1.lock().entry(self.0.clone()).or_default() += v;
    }
    fn decrement(&self, v: f64) {
        *self.1.lock().entry(self.0.clone()).or_default() -= v;
    }
    fn set(&self, v: f64) {
        self.1.lock().insert(self.0.clone(), v);
    }
}

impl Capture {
    fn series(&self, key: &Key) -> Arc<Series> {
        let labels: Vec<String> = key
            .labels()
            .map(|l| format!("{}={}", l.key(), l.value()))
            .collect();
        Arc::new(Series(
            format!("{}{{{}}}", key.name(), labels.join(",")),
            self.0.clone(),
        ))
    }
}

impl Recorder for Capture {
    fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        Counter::from_arc(self.series(key))
    }
    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        Gauge::from_arc(self.series(key))
    }
    fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
        Histogram::noop()
    }
}

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
