//! A coarse clock for statistics: `Stats::wait_duration` of waits with no deadline.
//!
//! `Stats::wait_duration` needs a reading when a checkout starts waiting and when it ends.
//! `Instant::now()` costs 35-40 ns on the machines we measured, twice per wait; the kernel's
//! coarse monotonic clock costs a few ns. Its resolution is one scheduler tick (1-4 ms), but
//! a wait's start falls anywhere within a tick, so the measured differences are unbiased and
//! their sum, which is what `wait_duration` reports, converges on the true total.
//! A wait with a deadline (`acquire_timeout`, `get_timeout`) already read tokio's clock to
//! compute it, so its start is known precisely and it is timed by tokio's clock (paused time
//! included). Deadlines, lifetimes and idle times use tokio's precise clock, never this one.

use std::time::Duration;

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
    static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    EPOCH.get_or_init(std::time::Instant::now).elapsed()
}
