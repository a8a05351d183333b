#!/usr/bin/env bash
# The log benchmark of the closing notes, in one run on one directory: the disk's own limit, then a standalone
# (metadata, 3 bookies and a proxy in one process, all on this disk) beside Redis 7 (Debian's redis-server,
# appendonly with appendfsync always, the single-copy store a user would pick instead), and at 1 KiB:
#   - a direct replicated ledger add, 1 writer (E=3 Qw=3 Qa=2), the floor for one stream's latency, just before
#     and just after the 1 x 1 writes through the proxy that are compared with it;
#   - for each load (1 stream x 1 writer, 4 x 32, 100 x 100): `dlog-bench log` directly (the core library, one
#     writer per stream) and through the proxy, each with a tailing reader per stream (tail latency) and
#     verified after; through the proxy again with writes alone ("proxy-w", like redis-benchmark, which reads
#     nothing back); then redis-benchmark XADD with the same number of clients, one request in flight each, over
#     the same number of streams.
# Prints one table side by side and the ratios the goals are stated in (against Redis: the writes-alone row).
# Usage: scripts/bench-log.sh [DIR] [SECONDS]   (needs `make release` first; installs jq and redis-server if missing)
set -euo pipefail
dir=${1:-/tmp/dlog-bench-log}
secs=${2:-10}
bin=$(cd "$(dirname "$0")/.." && pwd)/.build/release
for tool in jq:jq redis-server:redis-server redis-benchmark:redis-tools; do
  command -v "${tool%%:*}" > /dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${tool#*:}" > /dev/null
done
rm -rf "$dir"
mkdir -p "$dir/redis"
base=$((10000 + RANDOM % 20000))  # below the ephemeral port range (32768 and up), which outgoing connections take
redis_port=$((base + 20))
cleanup() {
  kill "${pid:-}" 2>/dev/null || true
  redis-cli -p "$redis_port" shutdown nosave > /dev/null 2>&1 || true
}
trap cleanup EXIT

echo "## disk ($dir)"
"$bin/dlog-bench" disk --dir "$dir" --duration 5 --size 4096 --json | tee "$dir/disk.json"
"$bin/dlogd" standalone --data "$dir/data" --base-port "$base" --log-level warning > "$dir/standalone.out" 2>&1 &
pid=$!
for _ in $(seq 300); do grep -q listening "$dir/standalone.out" 2>/dev/null && break; sleep 0.1; done
uri="dlog://127.0.0.1:$base"
proxy="127.0.0.1:$((base + 10))"
# Redis as its users run it when every write must survive a power cut: one fsync per write (batched by Redis
# across clients), no snapshots.
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir/redis" --appendonly yes --appendfsync always \
  --save '' --daemonize yes --logfile "$dir/redis/redis.log"
for _ in $(seq 100); do redis-cli -p "$redis_port" ping > /dev/null 2>&1 && break; sleep 0.1; done

# The floor for one stream's latency: a direct replicated ledger add, 1 writer, measured just before and just after
# the 1 x 1 writes through the proxy, so the machine's drift during the run falls on both sides of that ratio.
ledger_add() { # NAME
  echo "## direct replicated ledger, 1 writer ($1)"
  "$bin/dlog-bench" ledger --metadata "$uri" --clients 1 --size 1024 --duration "$secs" --json | tee "$dir/ledger-$1.json"
}

payload=$(head -c 1024 /dev/zero | tr '\0' x)
# Redis rows: "rps p50 p99" from redis-benchmark's CSV, run for about as many requests as the log did in its time.
redis_row() { # STREAMS CLIENTS REQUESTS
  redis-benchmark -p "$redis_port" -c "$2" -n "$3" -r "$1" -P 1 --csv XADD "s$1:__rand_int__" '*' f "$payload" \
    | tail -1 | awk -F'","' '{ print $2, $5, $7 }'
}

printf '%-9s %-7s %10s %9s %9s %10s %10s\n' load via writes/s "p50 ms" "p99 ms" "tail p50" "tail p99" > "$dir/table"
for load in "1 1" "4 32" "100 100"; do
  set -- $load
  for via in direct proxy proxy-w; do
    if [ "$1 $via" = "1 proxy-w" ]; then ledger_add before; fi
    args=(--metadata "$uri")
    [ "$via" != direct ] && args+=(--proxy "$proxy")
    [ "$via" = proxy-w ] && args+=(--no-tail)
    echo "## $1 stream(s), $2 writer(s), $via"
    "$bin/dlog-bench" log "${args[@]}" --streams "$1" --clients "$2" --size 1024 --duration "$secs" --json \
      --acked-log "$dir/acked-$1-$via.log" | tee "$dir/log-$1-$via.json"
    "$bin/dlog-bench" verify --metadata "$uri" --acked-log "$dir/acked-$1-$via.log"
    j=$dir/log-$1-$via.json
    tail50=$(jq .tail_p50_ms "$j") tail99=$(jq .tail_p99_ms "$j")
    [ "$via" = proxy-w ] && tail50=- tail99=-
    printf '%-9s %-7s %10.0f %9.3f %9.3f %10s %10s\n' "${1}x$2" "$via" "$(jq .ops_per_sec "$j")" "$(jq .p50_ms "$j")" \
      "$(jq .p99_ms "$j")" "$tail50" "$tail99" >> "$dir/table"
    if [ "$1 $via" = "1 proxy-w" ]; then ledger_add after; fi
  done
  echo "## $1 stream(s), $2 client(s), redis XADD"
  requests=$(jq -n "[($(jq .ops_per_sec "$dir/log-$1-proxy-w.json") * $secs | floor), 1000] | max")
  read -r rps p50 p99 < <(redis_row "$1" "$2" "$requests")
  echo "{\"ops_per_sec\": $rps, \"p50_ms\": $p50, \"p99_ms\": $p99}" | tee "$dir/redis-$1.json"
  printf '%-9s %-7s %10.0f %9.3f %9.3f %10s %10s\n' "${1}x$2" redis "$rps" "$p50" "$p99" - - >> "$dir/table"
done

echo
echo "## disk: $(jq -r '"\(.syncs_per_sec) write+fdatasync/s of \(.size) B, p50 \(.p50_ms) ms"' "$dir/disk.json")"
for when in before after; do
  echo "## direct replicated ledger add, 1 writer, $when 1x1 proxy-w:" \
    "$(jq -r '"\(.ops_per_sec | floor)/s, p50 \(.p50_ms) ms, p99 \(.p99_ms) ms"' "$dir/ledger-$when.json")"
done
cat "$dir/table"
ratio() { jq -n "($1) * 100 | round / 100"; }
ledger_p50="($(jq .p50_ms "$dir/ledger-before.json") + $(jq .p50_ms "$dir/ledger-after.json")) / 2"
echo "proxy-w 1x1 p50 / ledger add p50 (mean of before and after): $(ratio "$(jq .p50_ms "$dir/log-1-proxy-w.json") / ($ledger_p50)") (goal <= 1.3)"
for n in 1 4 100; do
  p=$dir/log-$n-proxy-w.json r=$dir/redis-$n.json
  echo "streams $n: proxy-w/redis writes/s $(ratio "$(jq .ops_per_sec "$p") / $(jq .ops_per_sec "$r")"), p99 $(ratio "$(jq .p99_ms "$p") / $(jq .p99_ms "$r")");" \
    "proxy/direct writes/s (both tailed) $(ratio "$(jq .ops_per_sec "$dir/log-$n-proxy.json") / $(jq .ops_per_sec "$dir/log-$n-direct.json")")"
done
