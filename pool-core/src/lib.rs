#![doc = include_str!("../README.md")]
//!
//! ## `max_idle` against `max_open`
//! `max_open` caps connections (creates in flight included); `max_idle` is how many may sit
//! idle for good. database/sql closes every connection released above `max_idle` at once, so
//! a burst of 100 on `max_idle = 20` opens and closes 80 connections every time. Here those
//! 80 stay as *surplus* for `idle_grace` (30 s by default) and the next burst reuses them;
//! the reaper closes surplus that sat unused for the whole grace period, least recently used
//! first. `idle_grace = 0` gives database/sql's behaviour exactly.
//!
//! ## Where things are
//! - [`Manager`] (and [`KeyedManager`]): create, check, validate, reset, close.
//! - [`Builder`] / [`Config`]: every knob, validated at build ([`Error::knob`] names the bad
//!   one); [`KeyedBuilder`] / [`KeyedConfig`] for a [`KeyedPool`].
//! - [`Pooled`]: the guard; its operations are associated functions
//!   ([`Pooled::discard`], [`Pooled::detach`], [`Pooled::into_owned`]).
//! - [`Stats`]: database/sql's `DBStats` names plus grace, hand-off and close-reason
//!   counters, and [`held_too_long`](Stats::held_too_long) for leak detection
//!   ([`Config::leak_threshold`]).
//! - [`Hooks`]: httptrace-like callbacks, [`Hooks::held_too_long`] among them.
//! - [`testing`] (feature `testing`): the scripted manager, cancellation drivers and leak
//!   guard the test suites use.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![warn(missing_debug_implementations)]

mod config;
mod error;
mod hooks;
mod keyed;
mod machine;
mod manager;
#[cfg(feature = "metrics")]
mod metrics;
mod pool;
mod shell;
mod stats;

#[cfg(feature = "testing")]
pub mod testing;

pub use async_trait::async_trait;
pub use config::{Binding, Config, IdleOrder, LeakTrace, MAX_DURATION};
pub use error::{Error, Panicked};
pub use hooks::{GotConn, HeldTooLong, Hooks, Returned};
pub use keyed::{KeyedBuilder, KeyedConfig, KeyedGet, KeyedGetOwned, KeyedPool, KeyedPooled};
pub use manager::{Health, KeyedManager, Manager};
pub use pool::{Builder, Get, GetOwned, Pool};
pub use shell::guard::Pooled;
pub use stats::{CloseReason, Stats};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
