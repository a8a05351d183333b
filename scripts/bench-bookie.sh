#!/usr/bin/env bash
# One bookie against Redis 7 in one run on one directory, the comparison of the bookie core's CPU per write:
# the disk's own limit, then for each size (100 B, 1 KiB) and write cache (WRITE_CACHES, MiB):
#   - a bookie alone (no metadata), `dlog-bench bookie` with 32 connections x 16 adds in flight;
#   - Redis (Debian's redis-server, appendonly with appendfsync always), redis-benchmark XADD with 32 clients x
#     16 pipelined requests over 512 streams;
# each for SECONDS, measuring the server's CPU (user + system, from /proc) and RSS at the end, and the client's CPU
# (the two share the machine's cores). Prints a table with writes/s, server and client CPU seconds per 100k
# acknowledged writes, RSS, the ratios against Redis, and the share of the disk's sequential bandwidth a bookie's
# two copies of each entry take.
# Usage: scripts/bench-bookie.sh [DIR] [SECONDS] [WRITE_CACHES]   (needs `make release`; installs jq and
# redis-server if missing). WRITE_CACHES defaults to "64", the shipped default; e.g. "64 256 1024" compares.
set -euo pipefail
dir=${1:-/tmp/dlog-bench-bookie}
secs=${2:-10}
caches=${3:-64}
bin=$(cd "$(dirname "$0")/.." && pwd)/.build/release
for tool in jq:jq redis-server:redis-server redis-benchmark:redis-tools; do
  command -v "${tool%%:*}" > /dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${tool#*:}" > /dev/null
done
rm -rf "$dir"
mkdir -p "$dir"
port=$((10000 + RANDOM % 20000))  # below the ephemeral port range (32768 and up), which outgoing connections take
redis_port=$((port + 1))
pid=
cleanup() {
  [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true
  redis-cli -p "$redis_port" shutdown nosave > /dev/null 2>&1 || true
}
trap cleanup EXIT
hz=$(getconf CLK_TCK)
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
rss_mb() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }

echo "## disk ($dir)"
"$bin/dlog-bench" disk --dir "$dir" --duration 5 --size 4096 --json | tee "$dir/disk.json"
# The disk's sequential limit: 1 MiB writes, O_DIRECT and RWF_DSYNC. A bookie writes each entry twice (journal,
# then entry log), so the table's "disk share" is twice its payload bytes per second over this.
"$bin/dlog-bench" disk --dir "$dir" --duration 3 --size 1048576 --sync dsync --json | tee "$dir/disk-seq.json"
seq_mb=$(jq .mb_per_sec "$dir/disk-seq.json")

# CPU seconds (user + system) of every child this shell has waited for, into $children_cpu: the `times` builtin
# must run in this shell, not in a subshell of a command substitution.
children_cpu=0
take_children_cpu() {
  times > "$dir/times"
  children_cpu=$(tail -n 1 "$dir/times" | awk '{ split($1, u, "m"); split($2, s, "m"); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }')
}
printf '%-6s %-9s %10s %10s %12s %8s %13s %9s %9s %10s\n' size server writes/s "p99 ms" "cpu s/100k" "rss MB" "client s/100k" "w ratio" "cpu ratio" "disk share" > "$dir/table"
for size in 100 1024; do
  # Redis first: its figures are what each bookie row is held against.
  rm -rf "$dir/redis"; mkdir -p "$dir/redis"
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir/redis" --appendonly yes --appendfsync always \
    --save '' --daemonize yes --logfile "$dir/redis/redis.log" --pidfile "$dir/redis/pid"
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping > /dev/null 2>&1 && break; sleep 0.1; done
  rpid=$(cat "$dir/redis/pid")
  payload=$(head -c "$size" /dev/zero | tr '\0' x)
  # About SECONDS of work: a short probe run sizes the request count.
  probe=$(redis-benchmark -p "$redis_port" -c 32 -n 20000 -r 512 -P 16 --csv XADD "s:__rand_int__" '*' f "$payload" | tail -n 1)
  rate=$(echo "$probe" | tr -d '"' | cut -d, -f2)
  requests=$(jq -n "($rate * $secs) | floor")
  before=$(cpu_ticks "$rpid")
  take_children_cpu; c_before=$children_cpu
  row=$(redis-benchmark -p "$redis_port" -c 32 -n "$requests" -r 512 -P 16 --csv XADD "s:__rand_int__" '*' f "$payload" | tail -n 1 | tr -d '"')
  after=$(cpu_ticks "$rpid")
  take_children_cpu
  r_client=$(jq -n "($children_cpu - $c_before) / $requests * 100000")
  r_rps=$(echo "$row" | cut -d, -f2)
  r_p99=$(echo "$row" | cut -d, -f7)
  r_cpu=$(jq -n "($after - $before) / $hz / $requests * 100000")
  r_rss=$(rss_mb "$rpid")
  redis-cli -p "$redis_port" shutdown nosave > /dev/null 2>&1 || true
  printf '%-6s %-9s %10.0f %10.3f %12.3f %8s %13.3f %9s %9s %10s\n' "$size" redis "$r_rps" "$r_p99" "$r_cpu" "$r_rss" "$r_client" - - - >> "$dir/table"

  for cache in $caches; do
    rm -rf "$dir/b"
    cat > "$dir/bookie.conf" <<CONF
journal_dirs = $dir/b/journal
ledger_dirs = $dir/b/ledgers
allow_shared_device = true
write_cache_bytes = $((cache << 20))
CONF
    "$bin/dlogd" bookie --config "$dir/bookie.conf" --port "$port" --log-level warning > "$dir/bookie.out" 2>&1 &
    pid=$!
    "$bin/dlog-bench" index --target "127.0.0.1:$port" --probe > /dev/null
    before=$(cpu_ticks "$pid")
    take_children_cpu; c_before=$children_cpu
    "$bin/dlog-bench" bookie --target "127.0.0.1:$port" --clients 32 --pipeline 16 --size "$size" --duration "$secs" \
      --json | tee "$dir/bookie-$size-$cache.json"
    after=$(cpu_ticks "$pid")
    take_children_cpu
    b=$dir/bookie-$size-$cache.json
    ops=$(jq .ops "$b")
    b_client=$(jq -n "($children_cpu - $c_before) / $ops * 100000")
    b_cpu=$(jq -n "($after - $before) / $hz / $ops * 100000")
    b_rss=$(rss_mb "$pid")
    kill -9 "$pid"; wait "$pid" 2>/dev/null || true
    pid=
    printf '%-6s %-9s %10.0f %10.3f %12.3f %8s %13.3f %9.2f %9.2f %10.2f\n' "$size" "bookie-$cache" "$(jq .ops_per_sec "$b")" \
      "$(jq .p99_ms "$b")" "$b_cpu" "$b_rss" "$b_client" "$(jq -n "$(jq .ops_per_sec "$b") / $r_rps")" "$(jq -n "$b_cpu / $r_cpu")" \
      "$(jq -n "2 * $(jq .mb_per_sec "$b") / $seq_mb")" >> "$dir/table"
  done
done
echo "## disk: $(jq -r '"\(.syncs_per_sec) write+fdatasync/s of \(.size) B, p50 \(.p50_ms) ms"' "$dir/disk.json");" \
  "$seq_mb MB/s in 1 MiB O_DIRECT+dsync writes"
echo "## bookie-N: write cache N MiB; w ratio = writes/s over Redis's; cpu ratio = CPU per write over Redis's;" \
  "disk share = payload bytes written twice (journal, entry log) over the disk's sequential MB/s"
cat "$dir/table"
