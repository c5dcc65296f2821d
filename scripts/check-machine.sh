#!/usr/bin/env bash
# The machine is pure (see pool-core/src/machine/mod.rs): no file under
# pool-core/src/machine/ may name the runtime, a random generator, a clock read or a global
# item, comments included. Time and jitter come in as arguments. Outside its tests, the
# machine never names the shell either (a test may read the shell's clock once, for the
# start of its virtual clock).
set -euo pipefail
cd "$(dirname "$0")/.."
dir=pool-core/src/machine
test -d "$dir" || { echo "check-machine: $dir is missing" >&2; exit 1; }

status=0
forbid() { # what, extended regex, grep options...
  local what=$1 re=$2
  shift 2
  if grep -rnE "$@" -- "$re" "$dir"; then
    echo "check-machine: $dir names $what (above)" >&2
    status=1
  fi
}
forbid "tokio" 'tokio'
forbid "a random generator" 'fastrand|rand::'
forbid "a clock read" 'Instant::now|SystemTime'
# `static` as an item (`static X`, `static mut`), not the `'static` lifetime.
forbid "a static item" "(^|[^'[:alnum:]_])static[[:space:]]"
forbid "a thread-local" 'thread_local'
forbid "the shell outside its tests" 'shell::' --exclude-dir=tests

if [ "$status" -eq 0 ]; then
  echo "check-machine: $dir is pure"
fi
exit "$status"
