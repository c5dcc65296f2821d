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
//! | `httptrace` | [`ClientBuilder::hooks`] ([`pool_core::Hooks`]) |
//!
//! # Examples
//!
//! ```no_run
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), pool_http::Error> {
//! let client = pool_http::Client::builder().max_conns_per_host(16).build()?;
//! let response = client.get("http://127.0.0.1:8080/items").await?;
//! if response.status().is_success() {
//!     let body = response.into_body().bytes().await?;
//!     println!("{} bytes", body.len());
//! } // a body dropped unread is drained and its connection reused
//! println!("{:?}", client.stats());
//! # Ok(())
//! # }
//! ```
//!
//! HTTP/1.1, and HTTP/2 with prior knowledge ([`ClientBuilder::http2_prior_knowledge`]): one
//! connection per origin carries all concurrent requests. TLS comes next.

mod body;
mod client;
mod config;
mod connect;
mod error;
mod h2;
mod manager;
mod origin;
#[cfg(feature = "tls")]
mod tls;

pub use body::{Body, BoxError, RequestBody};
pub use client::{Client, ClientStats, Response};
pub use config::{ClientBuilder, Drain};
pub use error::{ConnectError, Error, Phase};
pub use origin::Origin;
pub use pool_core::{Hooks, Stats};
