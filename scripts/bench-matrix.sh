#!/usr/bin/env bash
# The bookie benchmark matrix of the closing notes, in one run on one directory:
#   dlog-bench disk (the disk's own limit), then for each journal engine and sync mode a fresh bookie and
#   dlog-bench bookie for each case (size, clients, pipeline).
# Usage: scripts/bench-matrix.sh [DIR] [SECONDS]   (needs `make release` first)
#   ENGINES="io_uring libaio blocking"  SYNCS="dsync fdatasync"  CASES="1024:1:1 1024:32:16 16384:32:16"
set -euo pipefail
dir=${1:-/tmp/dlog-bench-matrix}
secs=${2:-5}
engines=${ENGINES:-io_uring libaio blocking}
syncs=${SYNCS:-dsync fdatasync}
cases=${CASES:-1024:1:1 1024:32:16 16384:32:16}
bin=$(cd "$(dirname "$0")/.." && pwd)/.build/release
port=$((10000 + RANDOM % 20000))  # below the ephemeral port range (32768 and up), which outgoing connections take
mkdir -p "$dir"
echo "## disk ($dir)"
"$bin/dlog-bench" disk --dir "$dir" --duration "$secs" --size 4096
"$bin/dlog-bench" disk --dir "$dir" --duration "$secs" --size 4096 --sync dsync
"$bin/dlog-bench" disk --dir "$dir" --duration "$secs" --size 65536 --sync dsync
"$bin/dlog-bench" disk --dir "$dir" --duration "$secs" --size 1048576 --sync dsync
for engine in $engines; do
  for sync in $syncs; do
    rm -rf "$dir/bookie"
    mkdir -p "$dir/bookie"
    printf 'journal_engine = %s\njournal_sync = %s\nallow_shared_device = true\n' "$engine" "$sync" > "$dir/bookie/conf"
    "$bin/dlogd" bookie --config "$dir/bookie/conf" --journal-dir "$dir/bookie/j" --ledger-dir "$dir/bookie/l" \
      --port "$port" --log-level warning > "$dir/bookie/out" 2>&1 &
    pid=$!
    for _ in $(seq 100); do grep -q listening "$dir/bookie/out" 2>/dev/null && break; sleep 0.1; done
    echo "## bookie: engine $engine, sync $sync"
    for c in $cases; do
      IFS=: read -r size clients pipeline <<<"$c"
      "$bin/dlog-bench" bookie --target "127.0.0.1:$port" --clients "$clients" --pipeline "$pipeline" --size "$size" \
        --duration "$secs" || true
    done
    kill -TERM "$pid"; wait "$pid" || true
  done
done
"$bin/dlog-bench" disk --dir "$dir" --duration "$secs" --size 4096
rm -rf "$dir/bookie"
