#!/usr/bin/env bash
# The log benchmark of the closing notes, in one run on one directory: the disk's own limit, then a standalone
# (metadata, 3 bookies and a proxy in one process, all on this disk), and `dlog-bench log` at 1 KiB with one
# writer on one stream and with 32 writers on 4 streams, each directly (the core library, one writer per
# stream) and through the proxy, each verified. Prints a table: writes/s, latency, tail latency, and the
# ratio proxy/direct.
# Usage: scripts/bench-log.sh [DIR] [SECONDS]   (needs `make release` first, and jq)
set -euo pipefail
dir=${1:-/tmp/dlog-bench-log}
secs=${2:-10}
bin=$(cd "$(dirname "$0")/.." && pwd)/.build/release
rm -rf "$dir"
mkdir -p "$dir"
base=$((20000 + RANDOM % 20000))
cleanup() { kill "${pid:-}" 2>/dev/null || true; }
trap cleanup EXIT

echo "## disk ($dir)"
"$bin/dlog-bench" disk --dir "$dir" --duration 5 --size 4096 --json | tee "$dir/disk.json"
"$bin/dlogd" standalone --data "$dir/data" --base-port "$base" --log-level warning > "$dir/standalone.out" 2>&1 &
pid=$!
for _ in $(seq 300); do grep -q listening "$dir/standalone.out" 2>/dev/null && break; sleep 0.1; done
uri="dlog://127.0.0.1:$base"
proxy="127.0.0.1:$((base + 10))"

printf '%-8s %-8s %10s %9s %9s %10s %10s\n' load via writes/s "p50 ms" "p99 ms" "tail p50" "tail p99" > "$dir/table"
for load in "1 1" "4 32"; do
  set -- $load
  for via in direct proxy; do
    args=(--metadata "$uri")
    [ "$via" = proxy ] && args+=(--proxy "$proxy")
    echo "## $1 stream(s), $2 writer(s), $via"
    "$bin/dlog-bench" log "${args[@]}" --streams "$1" --clients "$2" --size 1024 --duration "$secs" --json \
      --acked-log "$dir/acked-$1-$via.log" | tee "$dir/log-$1-$via.json"
    "$bin/dlog-bench" verify --metadata "$uri" --acked-log "$dir/acked-$1-$via.log"
    j=$dir/log-$1-$via.json
    printf '%-8s %-8s %10.0f %9.3f %9.3f %10.3f %10.3f\n' "${1}x$2" "$via" "$(jq .ops_per_sec "$j")" "$(jq .p50_ms "$j")" \
      "$(jq .p99_ms "$j")" "$(jq .tail_p50_ms "$j")" "$(jq .tail_p99_ms "$j")" >> "$dir/table"
  done
done
echo "## disk: $(jq -r '"\(.syncs_per_sec) write+fdatasync/s of \(.size) B, p50 \(.p50_ms) ms"' "$dir/disk.json")"
cat "$dir/table"
for n in 1 4; do
  echo "proxy/direct at $n stream(s): $(jq -n "$(jq .ops_per_sec "$dir/log-$n-proxy.json") / $(jq .ops_per_sec "$dir/log-$n-direct.json")")"
done
