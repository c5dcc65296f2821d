#!/usr/bin/env bash
# Client instructions per request of each B6 contender, counted by valgrind's callgrind: a
# count, not a time, so it repeats on a noisy shared machine where requests/s does not.
#
#   scripts/http-instructions.sh [SECS]     (default 3 s per contender and cell)
#
# The server runs natively in a process of its own (`http_bench serve`); each client runs
# under callgrind against it (`--server`), so the count is the client's alone: its runtime,
# its connection, its pool, its parsing, its body handling. The process's start and the warm-up
# are included (under 2 % of the total at 3 s). Kernel work (the same syscalls per request for
# every contender here) is not counted.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-3}"
command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
cargo build --release --locked -p benches --bin http_bench
bin="${CARGO_TARGET_DIR:-target}/release/http_bench"
work="$(mktemp -d)"
trap 'kill "${server_pid:-0}" 2>/dev/null || true; rm -rf "$work"' EXIT
"$bin" serve > "$work/serve.out" &
server_pid=$!
for _ in $(seq 100); do
    grep -q "serving on" "$work/serve.out" 2>/dev/null && break
    sleep 0.05
done
addr="$(sed -n 's/^serving on \([^ ]*\).*/\1/p' "$work/serve.out")"
[ -n "$addr" ] || { echo "the server did not start" >&2; exit 1; }
results="target/bench-results/http_bench.jsonl"
echo "| body/tasks | contender | instructions per request |"
echo "|---|---|---|"
for cell in 1k/1 64k/1 1k/64 64k/64; do
    for who in ours go hyper-util reqwest hyper; do
        [ "$who" = hyper ] && [ "${cell#*/}" != 1 ] && continue
        valgrind --tool=callgrind --callgrind-out-file="$work/cg" "$bin" throughput \
            --server "$addr" --rounds 1 --secs "$secs" --only "$who" --cell "$cell" \
            > /dev/null 2> "$work/valgrind.err"
        total="$(sed -n 's/^summary: //p' "$work/cg")"
        requests="$(tail -n 1 "$results" | sed -n 's/.*"requests_all":\([0-9]*\).*/\1/p')"
        echo "| $cell | $who | $((total / requests)) |"
    done
done
