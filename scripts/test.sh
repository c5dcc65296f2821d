#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: unit, law, config, proptest and doc
# tests, then the shuttle model check (in its own target dir, built with --cfg shuttle).
# Needs only Rust; later crates' services (PostgreSQL) are set up here too when they land.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"

echo "== cargo test --workspace (unit, laws, proptest model, doc tests)"
cargo test --workspace --all-features --locked

echo "== shuttle model check (RUSTFLAGS=--cfg shuttle)"
CARGO_TARGET_DIR="$target/shuttle" RUSTFLAGS="--cfg shuttle" \
  cargo test -p pool-core --test shuttle --locked
