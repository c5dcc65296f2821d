//! A [`metrics`] recorder for tests (features `testing` and `metrics`): [`Capture`] keeps the
//! last value of every series, named `name{label=value,...}`, to assert on.
//!
//! ```
//! let capture = pool_core::testing::metrics::Capture::default();
//! metrics::with_local_recorder(&capture, || {
//!     metrics::gauge!("pool_open", "pool" => "db").set(3.0);
//! });
//! assert_eq!(capture.get("pool_open{pool=db}"), Some(3.0));
//! ```

use std::collections::HashMap;
use std::sync::Arc;

use metrics::{
    Counter, CounterFn, Gauge, GaugeFn, Histogram, Key, KeyName, Metadata, Recorder, SharedString,
    Unit,
};
use parking_lot::Mutex;

/// Every series' last value, by name.
pub type Values = Arc<Mutex<HashMap<String, f64>>>;

/// A recorder that keeps the last value of every counter and gauge, named
/// `name{label=value,...}` (labels in the order given); histograms are dropped. Install it
/// with [`metrics::with_local_recorder`] around the code under test.
#[derive(Default, Debug)]
pub struct Capture(pub Values);

impl Capture {
    /// The last value of the series `name` (`name{label=value,...}`).
    pub fn get(&self, name: &str) -> Option<f64> {
        self.0.lock().get(name).copied()
    }

    /// Every series captured, with its last value.
    pub fn all(&self) -> HashMap<String, f64> {
        self.0.lock().clone()
    }
}

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
