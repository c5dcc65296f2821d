//! Examples live beside this file; run them with `cargo run -p examples --example NAME`.
//! This library holds what several examples share: a local HTTP server.

pub mod http_server;
