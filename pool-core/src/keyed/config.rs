//! [`KeyedConfig`]: a keyed pool's knobs, Go `http.Transport`'s per-host and global limits.

use crate::config::{Limits, Timeouts};
use crate::{Config, Error};

/// A keyed pool's knobs: the global idle cap plus the knobs each key's pool gets.
///
/// The Go names map as: `MaxIdleConns` is [`max_idle`](KeyedConfig::max_idle),
/// `MaxIdleConnsPerHost` is `per_key.max_idle`, `MaxConnsPerHost` is `per_key.max_open`,
/// `IdleConnTimeout` is `per_key.max_idle_time`.
///
/// As [`Config`], it is `#[non_exhaustive]`: start from [`KeyedConfig::default`] and assign
/// the fields (or use [`KeyedBuilder`](crate::KeyedBuilder), which has a setter per knob).
///
/// # Examples
///
/// ```
/// use pool_core::KeyedConfig;
/// use std::time::Duration;
///
/// let mut config = KeyedConfig::default();
/// config.max_idle = 100;
/// config.per_key.max_open = 16;
/// config.per_key.max_idle = 4;
/// config.per_key.max_idle_time = Some(Duration::from_secs(90));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
#[cfg_attr(feature = "serde", serde(default, deny_unknown_fields))]
#[non_exhaustive]
pub struct KeyedConfig {
    /// Most idle connections across every key (`MaxIdleConns`). Default 100; 0 keeps none.
    /// A ceiling at every instant, grace or not: above it, the least recently idled
    /// connection of any key is closed at once (so hosts a user supplies cannot exhaust file
    /// descriptors). (Go's 0 means no limit; use `usize::MAX` for that.)
    pub max_idle: usize,
    /// The knobs of each key, with the plain pool's meanings: `max_open` is per key and
    /// counts creates in flight (`MaxConnsPerHost`; default 0, unlimited), `max_idle` per key
    /// (`MaxIdleConnsPerHost`; default 2; Go's 0 means 2, ours keeps none), `idle_grace`
    /// keeps a key's surplus within the global cap, `leak_threshold` applies to the guards of
    /// every key. `min_idle` must stay 0: a keyed pool keeps no connection ready for a key
    /// nobody asked for.
    pub per_key: Config,
}

impl Default for KeyedConfig {
    fn default() -> Self {
        KeyedConfig {
            max_idle: 100,
            per_key: Config::default(),
        }
    }
}

impl KeyedConfig {
    /// Checks every knob and returns what each key's state runs with.
    pub(crate) fn validate(
        &self,
        manager_validate_after: Option<std::time::Duration>,
    ) -> Result<(Limits, Timeouts), Error> {
        if self.per_key.min_idle > 0 {
            return Err(Error::config(
                "min_idle",
                "is not supported per key: a keyed pool creates only on demand",
            ));
        }
        let (mut limits, timeouts) = self.per_key.validate(manager_validate_after)?;
        limits.keyed = true;
        limits.stamp = true;
        Ok((limits, timeouts))
    }
}
