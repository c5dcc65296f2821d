//! Examples live beside this file; run them with `cargo run -p examples --example NAME`.
//! This library holds what several examples share (a local HTTP server) and pool-lab's
//! measurement core ([`lab`]), which the `pool-lab` binary drives.

pub mod http_server;
pub mod lab;
