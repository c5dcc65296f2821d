//! The clocks the shell reads and lends the machine ([`CLOCK`]): the runtime's precise clock
//! (paused time included) as the machine's `std::time::Instant`, and a coarse clock for
//! statistics.
//!
//! `Stats::wait_duration` needs a reading when a checkout starts waiting and when it ends.
//! `Instant::now()` costs 35-40 ns on the machines we measured, twice per wait; the kernel's
//! coarse monotonic clock costs a few ns. Its resolution is one scheduler tick (1-4 ms), but
//! a wait's start falls anywhere within a tick, so the measured differences are unbiased and
//! their sum, which is what `wait_duration` reports, converges on the true total.
//! A wait with a deadline (`acquire_timeout`, `get_timeout`) already read tokio's clock to
//! compute it, so its start is known precisely and it is timed by tokio's clock (paused time
//! included). Deadlines, lifetimes and idle times use tokio's precise clock, never this one.

use std::time::{Duration, Instant};

use crate::machine::Clock;

/// What the shell passes the machine: read lazily, at most once per step (`Now`).
pub(crate) const CLOCK: Clock = Clock {
    now,
    coarse: coarse_now,
};

/// tokio's clock now (paused or auto-advanced in tests), in the machine's type: a tokio
/// `Instant` wraps a std one, and `from_std` turns it back exactly.
#[inline]
pub(crate) fn now() -> Instant {
    tokio::time::Instant::now().into_std()
}

/// How long since `t` (an instant of [`now`]'s clock), by tokio's clock.
pub(crate) fn elapsed(t: Instant) -> Duration {
    now().saturating_duration_since(t)
}

/// Time since an arbitrary fixed point, for differences only.
#[cfg(target_os = "linux")]
#[inline]
pub(crate) fn coarse_now() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::MonotonicCoarse);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// Time since an arbitrary fixed point, for differences only.
#[cfg(not(target_os = "linux"))]
pub(crate) fn coarse_now() -> Duration {
    static EPOCH: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed()
}
