//! [`Drain`]: what happens to a response body dropped before its end.

use std::time::Duration;

/// What happens to a response body dropped before its end (Go closes the connection).
///
/// The client reads the rest in the background, up to `max_bytes` and for at most
/// `max_time`. If the body ends within both, the connection goes back to the pool; otherwise
/// it is closed. [`Drain::NONE`] is Go's behaviour: always close. A zero in either field
/// turns the drain off; `max_time` above [`MAX_DURATION`] (365 days) is a config error at
/// [`build`](crate::ClientBuilder::build) (knob `drain.max_time`).
///
/// Marked `#[non_exhaustive]`: build one with [`Drain::new`], or from [`Drain::default`]
/// with [`with_max_bytes`](Drain::with_max_bytes) and [`with_max_time`](Drain::with_max_time)
/// (`Drain { .., ..Drain::default() }` does not compile outside this crate).
///
/// # Examples
///
/// ```
/// use std::time::Duration;
/// use pool_http::Drain;
///
/// // Up to 1 MiB within 100 ms.
/// let drain = Drain::new(1 << 20, Duration::from_millis(100));
/// let client = pool_http::Client::builder().drain(drain);
/// # drop(client);
/// // Only the time budget changed.
/// let drain = Drain::default().with_max_time(Duration::from_millis(10));
/// assert_eq!(drain.max_bytes, 256 * 1024);
/// ```
///
/// [`MAX_DURATION`]: pool_core::MAX_DURATION
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Drain {
    /// Most bytes read past the point where the body was dropped. Default 256 KiB.
    pub max_bytes: usize,
    /// Longest the drain may take. Default 50 ms; zero: no drain; at most [`MAX_DURATION`].
    ///
    /// [`MAX_DURATION`]: pool_core::MAX_DURATION
    pub max_time: Duration,
}

impl Drain {
    /// Never drain: a body dropped early closes its connection, as in Go.
    pub const NONE: Drain = Drain::new(0, Duration::ZERO);

    /// Reads up to `max_bytes` within `max_time` (a zero in either turns the drain off).
    pub const fn new(max_bytes: usize, max_time: Duration) -> Drain {
        Drain {
            max_bytes,
            max_time,
        }
    }

    /// This drain with `max_bytes` changed: `Drain::default().with_max_bytes(1 << 20)`.
    #[must_use = "returns a new `Drain`; `self` is unchanged"]
    pub const fn with_max_bytes(self, max_bytes: usize) -> Drain {
        Drain::new(max_bytes, self.max_time)
    }

    /// This drain with `max_time` changed: `Drain::default().with_max_time(d)`.
    #[must_use = "returns a new `Drain`; `self` is unchanged"]
    pub const fn with_max_time(self, max_time: Duration) -> Drain {
        Drain::new(self.max_bytes, max_time)
    }

    pub(crate) fn is_off(&self) -> bool {
        self.max_bytes == 0 || self.max_time.is_zero()
    }
}

impl Default for Drain {
    fn default() -> Self {
        Drain::new(256 * 1024, Duration::from_millis(50))
    }
}
