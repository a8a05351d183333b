#!/usr/bin/env bash
# The cost of metrics on a bookie's hot path, in one run on one directory: one bookie (no metadata, the disk of
# DIR) started with its latency histograms recorded (the default) and with `latency_histograms = false`,
# alternating ROUNDS times so both see the same machine. Each start measures `dlog-bench bookie` at 1 KiB,
# 32 connections x 16 in flight and 1 x 1, with the bookie's CPU (user + system) per 100k acknowledged adds.
# Both starts serve metrics on a port (nobody scrapes it during the run), so only the recording differs.
# Prints the disk's own limit, one table, then each case with histograms against without, in the same round:
# the median over the rounds of each round's ratio (adds/s, CPU) and difference (p50).
# Usage: scripts/bench-metrics.sh [DIR] [SECONDS] [ROUNDS]   (needs `make release` first; installs jq if missing)
set -euo pipefail
dir=${1:-/tmp/dlog-bench-metrics}
secs=${2:-8}
rounds=${3:-4}
size=${SIZE:-1024}
bin=$(cd "$(dirname "$0")/.." && pwd)/.build/release
command -v jq > /dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq > /dev/null
rm -rf "$dir"
mkdir -p "$dir"
port=$((10000 + RANDOM % 20000))  # below the ephemeral port range (32768 and up), which outgoing connections take
pid=""
cleanup() { [ -z "$pid" ] || kill -9 "$pid" 2>/dev/null || true; }
trap cleanup EXIT
hz=$(getconf CLK_TCK)

# The disk's own limit: one 4 KiB write and fdatasync at a time.
"$bin/dlog-bench" disk --dir "$dir" --duration 5 --size 4096 --json > "$dir/disk.json"

wait_port() { for _ in $(seq 300); do (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

start_bookie() { # on|off
  local data="$dir/$1"
  rm -rf "$data"; mkdir -p "$data"
  { echo "role = bookie"; echo "journal_dirs = $data/journal"; echo "ledger_dirs = $data/ledgers"; echo "port = $port"
    echo "allow_shared_device = true"; echo "log_level = warning"; echo "metrics_port = 0"
    [ "$1" = on ] || echo "latency_histograms = false"; } > "$data/bookie.conf"
  "$bin/dlogd" --config "$data/bookie.conf" > "$data/bookie.out" 2>&1 & pid=$!
  wait_port "$port"
}

stop_bookie() { # on|off
  kill "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  pid=""
  rm -rf "${dir:?}/$1"
}

printf '%-5s %-6s %-10s %10s %9s %9s %12s\n' round load histograms adds/s "p50 ms" "p99 ms" "cpu s/100k" > "$dir/table"
run_case() { # on|off LOAD CLIENTS PIPELINE
  local before; before=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
  "$bin/dlog-bench" bookie --target "127.0.0.1:$port" --clients "$3" --pipeline "$4" --size "$size" --duration "$secs" --json > "$dir/$1-$2.json"
  local j=$dir/$1-$2.json after; after=$(awk '{ print $14 + $15 }' "/proc/$pid/stat")
  local cpu; cpu=$(awk -v a="$before" -v b="$after" -v hz="$hz" -v n="$(jq .ops "$j")" 'BEGIN { printf "%.3f", (b - a) / hz / n * 100000 }')
  printf '%-5s %-6s %-10s %10.0f %9.3f %9.3f %12s\n' "$round" "$2" "$1" "$(jq .ops_per_sec "$j")" "$(jq .p50_ms "$j")" "$(jq .p99_ms "$j")" \
    "$cpu" | tee -a "$dir/table"
}

for round in $(seq "$rounds"); do
  order="on off"; [ $((round % 2)) = 0 ] && order="off on"
  for mode in $order; do
    start_bookie "$mode"
    run_case "$mode" 32x16 32 16
    run_case "$mode" 1x1 1 1
    stop_bookie "$mode"
  done
done

echo
cat "$dir/table"
echo
echo "## disk: $(jq -r '"\(.syncs_per_sec) write+fdatasync/s of \(.size) B, p50 \(.p50_ms) ms"' "$dir/disk.json")"
echo "## $size B adds, histograms recorded against not, in the same round: medians over $rounds rounds"
for load in 32x16 1x1; do
  awk -v l="$load" '
    function median(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                       return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    $2 == l && $3 == "off" { w0[$1] = $4; p0[$1] = $5; c0[$1] = $7 }
    $2 == l && $3 == "on" { w1[$1] = $4; p1[$1] = $5; c1[$1] = $7 }
    END { for (r in w1) if (r in w0) { n++; w[n] = w1[r] / w0[r]; p[n] = p1[r] - p0[r]; u[n] = c1[r] / c0[r]; q[n] = p1[r] / p0[r]
                                       all = all sprintf(" %.3f", w[n]) }
          printf "%-6s adds/s %.3fx, p50 %+.3f ms (%.3fx), cpu %.3fx   (adds/s ratio per round:%s)\n", l, median(w, n),
                 median(p, n), median(q, n), median(u, n), all }' "$dir/table"
done
