//! Examples live beside this file; run them with `cargo run -p examples --example NAME`.
