#!/usr/bin/env bash
# The full reliability run (issue 7): the soak tests at full size (10^6 pool-core operations,
# 10^5 statements and 10^5 requests), the chaos tests flapping for 30 s, the black-hole,
# latency and panic tests, one at a time so that each prints its figures undisturbed.
# CI runs the same tests in their bounded form through ./scripts/test.sh.
# Needs what ./scripts/test.sh needs (it installs it); takes about 5 minutes on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
export SOAK=full
cargo nextest run --workspace --all-features --locked --profile soak --no-capture \
  -E 'binary(soak) | binary(chaos) | binary(panics)' 2>&1 |
  tee "${SOAK_LOG:-/tmp/pools-soak.log}" |
  grep -E '^(soak|sql soak|http soak|chaos|black hole|latency):|PASS|FAIL|Summary'
