#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: unit, law, config, proptest and doc
# tests, then the shuttle model check (in its own target dir, built with --cfg shuttle).
# Needs only Rust; later crates' services (PostgreSQL) are set up here too when they land.
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"

if cargo nextest --version >/dev/null 2>&1; then
  echo "== cargo nextest run --workspace (unit, laws, proptest model; 60 s limit per test)"
  cargo nextest run --workspace --all-features --locked
  echo "== doc tests"
  cargo test --workspace --all-features --locked --doc
else
  echo "== cargo test --workspace (cargo-nextest not found: no per-test time limit)"
  cargo test --workspace --all-features --locked
fi

echo "== shuttle model check (RUSTFLAGS=--cfg shuttle)"
CARGO_TARGET_DIR="$target/shuttle" RUSTFLAGS="--cfg shuttle" \
  cargo test -p pool-core --test shuttle --locked
