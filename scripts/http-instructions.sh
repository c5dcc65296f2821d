#!/usr/bin/env bash
# Client instructions per request of each B6 contender (and, with `b7` or `all`, of each B7
# contender on 1 KiB bodies), counted by valgrind's callgrind: a count, not a time, so it
# repeats on a noisy shared machine where requests/s does not.
#
#   scripts/http-instructions.sh [SECS] [b6|b7|all]     (default 3 s per contender and cell; b6)
#
# `WHO="ours plain"` picks the B6 contenders (default: ours go hyper-util reqwest hyper;
# `plain` is ours without the client layers: no redirect policy, no Accept-Encoding), and
# `CELLS="1k/1 1k/64"` the cells (default: all four).
#
# B7 (bodies dropped after the status or after 100 bytes, the loop on the main thread in
# `block_on` or in a task on the runtime's worker) runs each contender twice, 1,000 and 4,000
# requests, and divides the difference by 3,000: start-up and warm-up cancel out.
#
# The server runs natively in a process of its own (`http_bench serve`); each client runs
# under callgrind against it (`--server`), so the count is the client's alone: its runtime,
# its connection, its pool, its parsing, its body handling. The process's start and the warm-up
# are included in B6's counts (under 2 % of the total at 3 s). Kernel work is not counted:
# B6's contenders make the same syscalls per request, and so do B7's with the body dropped
# after the status (`perf stat -e 'syscalls:sys_enter_*'` shows it).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-3}"
which="${2:-b6}"
case "$which" in b6|b7|all) ;; *) echo "usage: $0 [SECS] [b6|b7|all]" >&2; exit 2 ;; esac
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
if [ "$which" != b7 ]; then
    echo "| body/tasks | contender | instructions per request |"
    echo "|---|---|---|"
    for cell in ${CELLS:-1k/1 64k/1 1k/64 64k/64}; do
        for who in ${WHO:-ours go hyper-util reqwest hyper}; do
            [ "$who" = hyper ] && [ "${cell#*/}" != 1 ] && continue
            valgrind --tool=callgrind --callgrind-out-file="$work/cg" "$bin" throughput \
                --server "$addr" --rounds 1 --secs "$secs" --only "$who" --cell "$cell" \
                > /dev/null 2> "$work/valgrind.err"
            total="$(sed -n 's/^summary: //p' "$work/cg")"
            requests="$(tail -n 1 "$results" | sed -n 's/.*"requests_all":\([0-9]*\).*/\1/p')"
            echo "| $cell | $who | $((total / requests)) |"
        done
    done
fi
[ "$which" = b6 ] && exit 0
count() {
    valgrind --tool=callgrind --callgrind-out-file="$work/cg" "$bin" unread --server "$addr" \
        --rounds 1 --requests "$1" --cell 1k/1 --read "$2" --caller "$3" --only "$4" \
        > /dev/null 2> "$work/valgrind.err"
    sed -n 's/^summary: //p' "$work/cg"
}
echo
echo "| B7, 1 KiB | caller | contender | instructions per request |"
echo "|---|---|---|---|"
for read in status 100; do
    for caller in main worker; do
        for who in ours go hyper-util reqwest; do
            short="$(count 1000 "$read" "$caller" "$who")"
            long="$(count 4000 "$read" "$caller" "$who")"
            echo "| $read | $caller | $who | $(((long - short) / 3000)) |"
        done
    done
done
