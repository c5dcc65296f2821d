//! The traffic shapes issue 22 measures idle retention on, as seeded trace generators: the
//! same shape, seed and length give the same trace, call for call, on every machine.
//!
//! | name | shape |
//! |---|---|
//! | `bursts-5s` | a burst of 32 calls every 5 s (the calls of a burst start within 20 ms) |
//! | `bursts-45s` | the same, every 45 s: longer than the default 30 s grace |
//! | `bursts-5min` | the same, every 5 minutes |
//! | `diurnal` | Poisson arrivals whose rate follows a day (5 to 200 calls per second, lowest at the start and the end), a day compressed into 24 minutes: one minute stands for an hour |
//! | `spike` | a quiet 2 calls per second (Poisson) with one spike of 64 calls at a fifth of the trace |
//! | `poisson` | Poisson arrivals at 20 calls per second |
//!
//! Every call holds its connection for a duration drawn around 50 ms (uniform from 25 to
//! 75 ms). [`Length::Quick`] shortens every trace (fewer bursts, a shorter day) for CI.

use std::time::Duration;

use super::trace::{Call, Trace};

/// How long the generated traces run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// The benchmark's length: 60 bursts (bursts every 5 min: 24), a 24-minute day, 10
    /// minutes of Poisson and spike traffic.
    Full,
    /// About a fifth of that, for CI.
    Quick,
}

/// One of the shapes of the table above.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// [`BURST`] calls at once every `every`.
    Bursts {
        /// From one burst to the next.
        every: Duration,
    },
    /// A compressed day of Poisson arrivals.
    Diurnal,
    /// One spike on a quiet background.
    Spike,
    /// Poisson arrivals at a steady rate.
    Poisson,
}

/// Calls per burst in the burst shapes.
pub const BURST: usize = 32;
/// Calls in the spike.
pub const SPIKE: usize = 64;

impl Shape {
    /// Every shape of the table, in its order.
    pub fn all() -> [Shape; 6] {
        [
            Shape::Bursts {
                every: Duration::from_secs(5),
            },
            Shape::Bursts {
                every: Duration::from_secs(45),
            },
            Shape::Bursts {
                every: Duration::from_secs(300),
            },
            Shape::Diurnal,
            Shape::Spike,
            Shape::Poisson,
        ]
    }

    /// The shape's name in the table above.
    pub fn name(&self) -> String {
        match self {
            Shape::Bursts { every } if every.as_secs() >= 60 && every.as_secs() % 60 == 0 => {
                format!("bursts-{}min", every.as_secs() / 60)
            }
            Shape::Bursts { every } => format!("bursts-{}", humantime::format_duration(*every)),
            Shape::Diurnal => "diurnal".into(),
            Shape::Spike => "spike".into(),
            Shape::Poisson => "poisson".into(),
        }
    }

    /// The shape of that name (see the table above).
    ///
    /// # Errors
    /// The names there are, when `name` is none of them.
    pub fn from_name(name: &str) -> Result<Shape, String> {
        Shape::all()
            .into_iter()
            .find(|s| s.name() == name)
            .ok_or_else(|| {
                let names: Vec<String> = Shape::all().iter().map(Shape::name).collect();
                format!(
                    "no trace shape `{}`: {}",
                    super::trace::shorten(name),
                    names.join(", ")
                )
            })
    }

    /// The trace of this shape for `seed`: the same seed gives the same trace.
    pub fn generate(&self, seed: u64, length: Length) -> Trace {
        let mut rng = fastrand::Rng::with_seed(seed);
        let quick = length == Length::Quick;
        match *self {
            Shape::Bursts { every } => {
                let bursts = match (every >= Duration::from_secs(300), quick) {
                    (false, false) => 60,
                    (true, false) => 24,
                    (false, true) => 12,
                    (true, true) => 6,
                };
                let mut calls = Vec::with_capacity(bursts * BURST);
                for b in 0..bursts {
                    let at = every * b as u32;
                    for _ in 0..BURST {
                        calls.push(Call {
                            start: at + micros(&mut rng, 20_000),
                            duration: hold(&mut rng),
                        });
                    }
                }
                // Observed until the next burst would have come.
                Trace::new(calls, every * bursts as u32)
            }
            Shape::Diurnal => {
                let day = Duration::from_secs(if quick { 288 } else { 1440 });
                let (low, high) = (5.0, 200.0);
                let rate = |t: f64| {
                    let phase = t / day.as_secs_f64();
                    low + (high - low) * 0.5 * (1.0 - (2.0 * std::f64::consts::PI * phase).cos())
                };
                Trace::new(poisson(&mut rng, day, high, rate), day)
            }
            Shape::Spike => {
                let span = Duration::from_secs(if quick { 120 } else { 600 });
                let mut calls = poisson(&mut rng, span, 2.0, |_| 2.0);
                let at = span / 5;
                for _ in 0..SPIKE {
                    calls.push(Call {
                        start: at + micros(&mut rng, 20_000),
                        duration: hold(&mut rng),
                    });
                }
                Trace::new(calls, span)
            }
            Shape::Poisson => {
                let span = Duration::from_secs(if quick { 120 } else { 600 });
                Trace::new(poisson(&mut rng, span, 20.0, |_| 20.0), span)
            }
        }
    }
}

/// A uniform offset below `max_us` microseconds.
fn micros(rng: &mut fastrand::Rng, max_us: u64) -> Duration {
    Duration::from_micros(rng.u64(0..max_us))
}

/// A call's hold: 25 to 75 ms, uniform, to the microsecond.
fn hold(rng: &mut fastrand::Rng) -> Duration {
    Duration::from_micros(rng.u64(25_000..75_000))
}

/// Poisson arrivals over `span` at `rate(t)` calls per second (at most `max_rate`), by
/// thinning: candidates at `max_rate`, each kept with probability `rate(t) / max_rate`.
fn poisson(
    rng: &mut fastrand::Rng,
    span: Duration,
    max_rate: f64,
    rate: impl Fn(f64) -> f64,
) -> Vec<Call> {
    let mut calls = Vec::new();
    let mut t = 0.0;
    let end = span.as_secs_f64();
    loop {
        // An exponential gap; 1 - f64() is in (0, 1], so the log is finite.
        t += -(1.0 - rng.f64()).ln() / max_rate;
        if t >= end {
            return calls;
        }
        if rng.f64() * max_rate < rate(t) {
            calls.push(Call {
                // To the microsecond, as a CSV trace is written.
                start: Duration::from_micros((t * 1e6) as u64),
                duration: hold(rng),
            });
        }
    }
}
