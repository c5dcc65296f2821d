// The README's links (absolute docs.rs URLs there, for crates.io) resolve here to this
// version's items: the first definition of a link label wins. Items behind a feature keep
// the README's URL when it is off.
#![doc = "[`Body`]: crate::Body"]
#![doc = "[`Body::upgrade`]: crate::Body::upgrade"]
#![doc = "[`Client`]: crate::Client"]
#![cfg_attr(
    feature = "cookies",
    doc = "[`ClientBuilder::cookie_store`]: crate::ClientBuilder::cookie_store"
)]
#![doc = "[`ClientBuilder::no_proxy`]: crate::ClientBuilder::no_proxy"]
#![doc = "[`ClientBuilder::proxy`]: crate::ClientBuilder::proxy"]
#![doc = "[`NoProxy`]: crate::NoProxy"]
#![doc = "[`Proxy`]: crate::Proxy"]
#![doc = "[`Client::get`]: crate::Client::get"]
#![doc = "[`Client::new`]: crate::Client::new"]
#![doc = "[`Client::request`]: crate::Client::request"]
#![doc = "[`ClientBuilder::body_limit`]: crate::ClientBuilder::body_limit"]
#![doc = "[`ClientBuilder::disable_compression`]: crate::ClientBuilder::disable_compression"]
#![doc = "[`Error::is_builder`]: crate::Error::is_builder"]
#![doc = "[`Error::is_status`]: crate::Error::is_status"]
#![doc = "[`Error::status`]: crate::Error::status"]
#![doc = "[`HeaderMap`]: crate::HeaderMap"]
#![doc = "[`Method`]: crate::Method"]
#![doc = "[`redirect::Policy`]: crate::redirect::Policy"]
#![doc = "[`RequestBody::file`]: crate::RequestBody::file"]
#![doc = "[`RequestBody::stream`]: crate::RequestBody::stream"]
#![doc = "[`RequestBuilder`]: crate::RequestBuilder"]
#![doc = "[`Response`]: crate::Response"]
#![doc = "[`StatusCode`]: crate::StatusCode"]
#![doc = "[`Uri`]: crate::Uri"]
#![cfg_attr(
    feature = "testing",
    doc = "[`Client::fail_next_writes`]: crate::Client::fail_next_writes"
)]
#![doc = "[`ClientBuilder`]: crate::ClientBuilder"]
#![doc = "[`ClientBuilder::go_mode`]: crate::ClientBuilder::go_mode"]
#![doc = "[`ClientBuilder::hooks`]: crate::ClientBuilder::hooks"]
#![doc = "[`ClientBuilder::http2_prior_knowledge`]: crate::ClientBuilder::http2_prior_knowledge"]
#![cfg_attr(
    feature = "tls",
    doc = "[`ClientBuilder::tls`]: crate::ClientBuilder::tls"
)]
#![doc = "[`Drain`]: crate::Drain"]
#![doc = "[`Drain::NONE`]: crate::Drain::NONE"]
#![doc = "[`Error`]: crate::Error"]
#![doc = "[`Hooks`]: crate::Hooks"]
#![doc = "[`Upgraded`]: crate::Upgraded"]
#![doc = include_str!("../README.md")]
//!
//! # An example that runs
//!
//! The quick start above, as a doc test against a one-line HTTP server on loopback (hidden).
//!
//! ```
//! # use tokio::io::{AsyncReadExt, AsyncWriteExt};
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
//! # let addr = listener.local_addr()?;
//! # tokio::spawn(async move {
//! #     while let Ok((mut s, _)) = listener.accept().await {
//! #         tokio::spawn(async move {
//! #             let mut buf = [0u8; 4096];
//! #             while let Ok(n) = s.read(&mut buf).await {
//! #                 if n == 0 { break }
//! #                 let body = "[1,2,3]";
//! #                 let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
//! #                 if s.write_all((head + body).as_bytes()).await.is_err() { break }
//! #             }
//! #         });
//! #     }
//! # });
//! use std::time::Duration;
//!
//! let client = pool_http::Client::builder()
//!     .max_conns_per_host(16)
//!     .timeout(Duration::from_secs(10))
//!     .build()?;
//! let url = format!("http://{addr}/items");
//! for _ in 0..3 {
//!     let response = client.get(&url).await?;
//!     assert!(response.status().is_success());
//!     let body = response.into_body().bytes().await?; // pooled again at the last byte
//!     assert_eq!(&body[..], b"[1,2,3]");
//! }
//! assert_eq!(client.stats().pool.created, 1, "one connection served all three");
//! # Ok(()) }
//! ```
//!
//! # Conventions of this API
//!
//! - [`Client`], [`ClientBuilder`], [`Response`], [`Body`] and [`Error`] are `Send + Sync`:
//!   build a client in one task and move it (or the builder) to another. [`RequestBody`]
//!   and [`Upgraded`] are `Send`.
//! - Every public type implements `Debug`, and neither `Debug` nor `Display` prints a
//!   secret: no URL userinfo (`user:password@`), no rustls configuration, no hooks.
//! - No type here derefs to another, so every operation is a method (`body.upgrade()`,
//!   `client.close()`). pool-core's guards, which deref to the pooled resource, name
//!   their own operations as associated functions instead (`Pooled::discard(conn)`), so
//!   that they cannot shadow the resource's methods.
//! - One opaque [`Error`] with predicates (`is_timeout`, `is_connect_refused`, ...);
//!   `Display` says this level's fact and [`source`](std::error::Error::source) the cause.
//! - Structs with public fields ([`Drain`], [`ClientStats`]) and the public enums are
//!   `#[non_exhaustive]`: build a [`Drain`] with [`Drain::new`] or from its default.
//! - [`ClientBuilder`] and its methods are `#[must_use]`: a builder does nothing until
//!   [`build`](ClientBuilder::build).
//! - [`pool_core`] is re-exported whole, and at the root [`Stats`], [`Hooks`] and the types
//!   its hooks take ([`GotConn`], [`Returned`], [`CloseReason`]; `create_done`'s error is
//!   `pool_http::pool_core::Error`): implementing hooks or reading stats needs no direct
//!   dependency on pool-core, nor a matching version of it.

#![cfg_attr(docsrs, feature(doc_cfg))]
mod auth;
mod body;
mod builder;
mod client;
mod config;
mod connect;
#[cfg(feature = "cookies")]
#[cfg_attr(docsrs, doc(cfg(feature = "cookies")))]
pub mod cookie;
mod decompress;
mod error;
mod h2;
mod manager;
mod origin;
mod proxy;
pub mod redirect;
mod request;
mod response;
#[cfg(feature = "tower")]
mod service;
#[cfg(feature = "tls")]
mod tls;

pub use body::{Body, Upgraded};
pub use builder::RequestBuilder;
pub use client::{Client, ClientStats};
pub use config::{ClientBuilder, Drain};
pub use error::{ConnectError, Error, Phase};
pub use http;
pub use http::{HeaderMap, Method, StatusCode, Uri};
pub use origin::Origin;
pub use pool_core;
pub use pool_core::{CloseReason, GotConn, Hooks, Returned, Stats};
pub use proxy::{NoProxy, Proxy};
pub use request::{BoxError, RequestBody};
pub use response::Response;
/// Feature `json`: serde_json, re-exported so that `json!` and `Value` need no dependency of
/// your own.
#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
pub use serde_json;
