#!/usr/bin/env bash
# The metadata benchmark of the closing notes, in one run on one directory: the disk's own fdatasync rate, then
# compare-and-set updates against the metadata role and against a single-member etcd on the same disk, at 1 and
# 16 clients, each followed by `dlog-bench verify --metadata`.
# Usage: scripts/bench-metadata.sh [DIR] [SECONDS]   (needs `make release` first, and etcd-server installed)
set -euo pipefail
dir=${1:-/tmp/dlog-bench-metadata}
secs=${2:-10}
bin=$(cd "$(dirname "$0")/.." && pwd)/.build/release
rm -rf "$dir"
mkdir -p "$dir"
port=$((10000 + RANDOM % 20000))  # below the ephemeral port range (32768 and up), which outgoing connections take
etcd_port=$((port + 1))
cleanup() { kill "${md_pid:-}" "${etcd_pid:-}" 2>/dev/null || true; }
trap cleanup EXIT

echo "## disk ($dir)"
"$bin/dlog-bench" disk --dir "$dir" --duration 5 --size 4096

"$bin/dlogd" metadata --data-dir "$dir/metadata" --port "$port" --log-level warning > "$dir/metadata.out" 2>&1 &
md_pid=$!
etcd --data-dir "$dir/etcd" --listen-client-urls "http://127.0.0.1:$etcd_port" \
  --advertise-client-urls "http://127.0.0.1:$etcd_port" --listen-peer-urls "http://127.0.0.1:$((port + 2))" \
  --initial-advertise-peer-urls "http://127.0.0.1:$((port + 2))" \
  --initial-cluster "default=http://127.0.0.1:$((port + 2))" > "$dir/etcd.out" 2>&1 &
etcd_pid=$!
for _ in $(seq 100); do grep -q listening "$dir/metadata.out" 2>/dev/null && break; sleep 0.1; done
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$etcd_port/health" >/dev/null 2>&1 && break; sleep 0.1; done

for target in "dlog://127.0.0.1:$port" "etcd://127.0.0.1:$etcd_port/bench"; do
  for clients in 1 16; do
    echo "## $target, $clients client(s)"
    "$bin/dlog-bench" metadata --target "$target" --clients "$clients" --duration "$secs" \
      --acked-log "$dir/acked-${target%%:*}-$clients.log"
    "$bin/dlog-bench" verify --metadata "$target" --acked-log "$dir/acked-${target%%:*}-$clients.log"
  done
done
