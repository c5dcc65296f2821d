#!/usr/bin/env bash
# Runs the whole test suite on a fresh Debian machine: unit, law, config, proptest and doc
# tests (under nextest, one process per test, and under plain cargo test, tests of a binary
# sharing a process), then the shuttle model check (in its own target dir, built with --cfg shuttle).
# Needs Rust; installs PostgreSQL's server binaries and PgBouncer with apt-get when they are
# missing (the pool-sql tests start their own throw-away servers from them; no server needs
# to run).
set -euo pipefail
cd "$(dirname "$0")/.."

has_pg() {
  { command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; } ||
    ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1
}
has_bouncer() { command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ]; }
missing=()
if [ -z "${DATABASE_URL:-}" ]; then
  has_pg || missing+=(postgresql)
  has_bouncer || missing+=(pgbouncer)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (apt-get)"
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -q
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  # The packages start their own services where they can; the tests start private servers
  # on free ports and need none of them.
fi

target="${CARGO_TARGET_DIR:-$PWD/target}"

if cargo nextest --version >/dev/null 2>&1; then
  echo "== cargo nextest run --workspace (unit, laws, proptest model; 60 s limit per test)"
  cargo nextest run --workspace --all-features --locked
else
  echo "== (cargo-nextest not found: only the plain cargo test below runs)"
fi
# Plain cargo test too: the tests of one binary then share a process, so behaviour that
# depends on other pools or runtimes in the process (global state) cannot hide; doc tests.
echo "== cargo test --workspace (tests sharing a process, and doc tests)"
cargo test --workspace --all-features --locked

# pool-http without its default features: an https request says which feature to enable
# (with `rustls` on, every client has TLS, so only this build can show it).
echo "== pool-http without default features (tls only)"
cargo test -p pool-http --no-default-features --features tls,testing --test tls --locked

# pool-sql with TLS but no built-in config: `sslmode=require` without `DbBuilder::tls` is a
# config error naming the features (with the defaults, the built-in config serves it).
echo "== pool-sql without default features (tls only)"
cargo test -p pool-sql --no-default-features --features tls,testing --test tls --locked

echo "== shuttle model check (RUSTFLAGS=--cfg shuttle)"
CARGO_TARGET_DIR="$target/shuttle" RUSTFLAGS="--cfg shuttle" \
  cargo test -p pool-core --test shuttle --locked
