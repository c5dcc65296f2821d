//! The machine's tests: no runtime, a virtual clock, a driver that runs creates and closes
//! the way the shell would.
//!
//! - `rules.rs`: unit tests of the state's rules, step by step.
//! - `model.rs`: the state against a simple reference model (proptest).
//! - `keyed.rs`: the keyed table, each key against that model, plus what spans keys.
//! - `timing.rs`: the reaper's deadlines under time (proptest): never late, never spinning.

use std::time::{Duration, Instant};

use super::{Clock, State};
use crate::Config;

mod keyed;
mod model;
mod rules;
mod timing;

/// The shell's clocks: a test reads the precise one once, as its virtual clock's start
/// (every step then runs at an instant the test sets), and waits with no deadline read the
/// coarse one.
pub(super) const CLOCK: Clock = crate::shell::clock::CLOCK;

/// The start of a test's virtual clock.
pub(super) fn epoch() -> Instant {
    (CLOCK.now)()
}

fn state(config: Config) -> State<u32> {
    let (limits, _) = config.validate(None).unwrap();
    State::new(limits, config.max_idle, config.lifetime_jitter)
}

fn cfg(max_open: usize, max_idle: usize, grace: Duration) -> Config {
    Config {
        max_open,
        max_idle,
        idle_grace: grace,
        breaker_threshold: 0,
        ..Config::default()
    }
}

const SEC: Duration = Duration::from_secs(1);
