//! A generic async resource pool with database/sql's knobs, strict first-come-first-served
//! hand-off, and a grace-period idle reaper that removes burst churn.
//!
//! Implement [`Manager`] for your resource, build a [`Pool`], and [`get`](Pool::get)
//! connections; a [`Pooled`] guard returns its connection when dropped.
//!
//! ```
//! use pool_core::{async_trait, Manager, Pool};
//!
//! struct Conn { id: u32 }
//! struct Dialer;
//!
//! #[async_trait]
//! impl Manager for Dialer {
//!     type Resource = Conn;
//!     type Error = std::io::Error;
//!     async fn create(&self) -> Result<Conn, std::io::Error> {
//!         Ok(Conn { id: 7 })
//!     }
//! }
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), pool_core::Error> {
//! let pool = Pool::builder(Dialer).max_open(16).max_idle(4).build()?;
//! let conn = pool.get().await?;
//! assert_eq!(conn.id, 7);
//! # Ok(()) }
//! ```
//!
//! # `max_idle` against `max_open`
//! `max_open` caps connections (creates in flight included); `max_idle` is how many may sit
//! idle for good. database/sql closes every connection released above `max_idle` at once, so
//! a burst of 100 on `max_idle = 20` opens and closes 80 connections every time. Here those
//! 80 stay as *surplus* for `idle_grace` (30 s by default) and the next burst reuses them;
//! the reaper closes surplus that sat unused for the whole grace period, least recently used
//! first. `idle_grace = 0` gives database/sql's behaviour exactly.
//!
//! # Where things are
//! - [`Manager`]: create, check, validate, reset, close.
//! - [`Config`] / [`Builder`]: every knob, validated at build ([`Error::knob`] names the bad one).
//! - [`Stats`]: database/sql's `DBStats` names plus grace, hand-off and close-reason counters.
//! - [`testing`] (feature `testing`): the scripted manager, cancellation drivers and leak
//!   guard the test suites use.

#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]

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
pub use config::{Binding, Config, IdleOrder, MAX_DURATION};
pub use error::{Error, Panicked};
pub use hooks::{GotConn, Hooks, Returned};
pub use keyed::{KeyedBuilder, KeyedConfig, KeyedGet, KeyedGetOwned, KeyedPool, KeyedPooled};
pub use manager::{Health, KeyedManager, Manager};
pub use pool::{Builder, Get, GetOwned, Pool};
pub use shell::guard::Pooled;
pub use stats::{CloseReason, Stats};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;

/// This crate's README (its crates.io page), compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct CrateReadmeDoctests;
