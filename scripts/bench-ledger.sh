#!/usr/bin/env bash
# The replicated-ledger benchmark of the closing notes, in one run on one directory: the disk's own limit, then a
# metadata role and 3 bookies (all on this one disk), and for each size (100 B, 1 KiB) and load (1x1, 32x16):
#   dlog-bench ledger  E=3 Qw=3 Qa=2 through the ledger client (each add written to all 3 bookies), then
#   dlog-bench bookie  the same load against one of those bookies alone,
# and a table of the ratio ledger/bookie. The ledger runs log their confirmations and are verified after.
# Usage: scripts/bench-ledger.sh [DIR] [SECONDS]   (needs `make release` first, and jq, which `make deps` installs)
set -euo pipefail
dir=${1:-/tmp/dlog-bench-ledger}
secs=${2:-10}
bin=$(cd "$(dirname "$0")/.." && pwd)/.build/release
rm -rf "$dir"
mkdir -p "$dir"
port=$((10000 + RANDOM % 20000))  # below the ephemeral port range (32768 and up), which outgoing connections take
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT

wait_listening() { for _ in $(seq 300); do grep -q listening "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "no start: $1" >&2; exit 1; }

echo "## disk ($dir)"
"$bin/dlog-bench" disk --dir "$dir" --duration 5 --size 4096 --json | tee "$dir/disk.json"

"$bin/dlogd" metadata --data-dir "$dir/metadata" --port "$port" --log-level warning > "$dir/metadata.out" 2>&1 &
pids+=($!)
wait_listening "$dir/metadata.out"
uri="dlog://127.0.0.1:$port"
"$bin/dlogctl" cluster init --metadata "$uri"
for i in 0 1 2; do
  # GC off for the run: `dlog-bench bookie` writes ledgers that metadata does not know, which GC would delete.
  # No spinning for the next add: three bookies share this host's cores (docs/storage.md, "Spinning").
  cat > "$dir/bookie$i.conf" <<CONF
journal_dirs = $dir/b$i/journal
ledger_dirs = $dir/b$i/ledgers
allow_shared_device = true
metadata = $uri
bookie_id = bench-$i
gc_interval_ms = 86400000
journal_spin_us = 0
CONF
  "$bin/dlogd" bookie --config "$dir/bookie$i.conf" --port $((port + 1 + i)) --log-level warning > "$dir/bookie$i.out" 2>&1 &
  pids+=($!)
done
for i in 0 1 2; do wait_listening "$dir/bookie$i.out"; done
sleep 1  # registrations

printf '%-6s %-6s %12s %12s %7s %7s %9s %9s %10s %10s\n' size load ledger/s bookie/s ratio copies "l p50 ms" "b p50 ms" "l p99 ms" "b p99 ms" > "$dir/table"
for size in 100 1024; do
  for cp in "1 1" "32 16"; do
    set -- $cp
    echo "## size $size, ${1}x$2"
    "$bin/dlog-bench" ledger --metadata "$uri" --ensemble 3 --write-quorum 3 --ack-quorum 2 --clients "$1" \
      --pipeline "$2" --size "$size" --duration "$secs" --json --acked-log "$dir/acked-$size-$1.log" | tee "$dir/ledger-$size-$1.json"
    "$bin/dlog-bench" verify --metadata "$uri" --acked-log "$dir/acked-$size-$1.log"
    "$bin/dlog-bench" bookie --target "127.0.0.1:$((port + 1))" --clients "$1" --pipeline "$2" --size "$size" \
      --duration "$secs" --json | tee "$dir/bookie-$size-$1.json"
    l=$dir/ledger-$size-$1.json b=$dir/bookie-$size-$1.json
    ratio=$(jq -n "$(jq .ops_per_sec "$l") / $(jq .ops_per_sec "$b")")
    printf '%-6s %-6s %12.0f %12.0f %7.2f %7.2f %9.3f %9.3f %10.3f %10.3f\n' "$size" "${1}x$2" \
      "$(jq .ops_per_sec "$l")" "$(jq .ops_per_sec "$b")" "$ratio" "$(jq -n "$ratio * 3")" \
      "$(jq .p50_ms "$l")" "$(jq .p50_ms "$b")" "$(jq .p99_ms "$l")" "$(jq .p99_ms "$b")" >> "$dir/table"
  done
done
echo "## disk: $(jq -r '"\(.syncs_per_sec) write+fdatasync/s of \(.size) B, p50 \(.p50_ms) ms"' "$dir/disk.json")"
echo "## ratio = ledger adds/s over bookie adds/s; copies = ratio x 3 (each ledger add is written to 3 bookies on this disk)"
cat "$dir/table"
