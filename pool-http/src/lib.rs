//! An HTTP client on hyper 1.x with Go `http.Transport` semantics, on
//! [`pool-core`](pool_core)'s keyed pool: per-host limits, idle timeouts, connections reused
//! when a body reaches its end, and without Go's pitfalls.
//!
//! | Go | here |
//! |---|---|
//! | `http.Client` + `http.Transport` | [`Client`], built with [`ClientBuilder`] |
//! | `MaxIdleConns`, `MaxIdleConnsPerHost`, `MaxConnsPerHost`, `IdleConnTimeout` | same names in snake_case, same defaults |
//! | `resp.Body.Close()` before EOF closes the connection | the rest is drained within a [`Drain`] budget and the connection reused |
//! | idle connections above `MaxIdleConnsPerHost` closed at once | kept for `idle_grace` (30 s), so a burst does not reconnect |
//! | retry on a reused connection when nothing was written, or idempotent and closed idle | the same rule |
//! | a connection is reused once the response is read and the request written (`wroteRequest`) | the same rule; a reused connection not ready within 50 ms is closed and the request sent on another |
//! | `Connection: close` on the request or the response | never pooled |
//! | an idle connection the server closed stays in the idle list until a request trips on it | it leaves the pool as soon as hyper sees the close |
//! | after `101 Switching Protocols`, `Response.Body` is an `io.ReadWriteCloser` | [`Body::upgrade`] gives an [`Upgraded`] stream |
//! | URL userinfo becomes `Authorization: Basic` unless one is set | the same; userinfo never goes on the wire (nor in HTTP/2's `:authority`) |
//! | `httptrace` | [`ClientBuilder::hooks`] ([`pool_core::Hooks`]) |
//!
//! # Example
//!
//! Runs as a doc test against a one-line HTTP server on loopback (hidden below).
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
//! HTTP/1.1; HTTP/2 with prior knowledge ([`ClientBuilder::http2_prior_knowledge`]) or,
//! with the `tls` feature, negotiated by ALPN: one connection per origin then carries all
//! concurrent requests. TLS through rustls ([`ClientBuilder::tls`], feature `tls`).

#![cfg_attr(docsrs, feature(doc_cfg))]
mod body;
mod client;
mod config;
mod connect;
mod error;
mod h2;
mod manager;
mod origin;
mod request;
#[cfg(feature = "tls")]
mod tls;

pub use body::{Body, Upgraded};
pub use client::{Client, ClientStats, Response};
pub use config::{ClientBuilder, Drain};
pub use error::{ConnectError, Error, Phase};
pub use origin::Origin;
pub use pool_core::{Hooks, Stats};
pub use request::{BoxError, RequestBody};

/// This crate's README (its crates.io page), compiled as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct CrateReadmeDoctests;
