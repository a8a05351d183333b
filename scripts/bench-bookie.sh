#!/usr/bin/env bash
# One bookie against Redis 7 in one run on one directory, the comparison of the bookie core's CPU per write:
# the disk's own limit, then ROUNDS rounds, each with both sizes (100 B, 1 KiB) and for each size:
#   - Redis (Debian's redis-server, appendonly with appendfsync always), redis-benchmark XADD with 32 clients x
#     16 pipelined requests over 512 streams;
#   - for each write cache (WRITE_CACHES, MiB), a bookie alone (no metadata), `dlog-bench bookie` with 32
#     connections x 16 adds in flight;
# Redis first in odd rounds, last in even ones. Each runs for SECONDS, measuring the server's CPU (user + system,
# from /proc) and RSS at the end, and the client's CPU (the two share the machine's cores). Prints a table with
# writes/s, server and client CPU seconds per 100k acknowledged writes, RSS, the ratios against Redis in the same
# round, the share of the disk's sequential bandwidth a bookie's two copies of each entry take, and the median
# ratios over the rounds.
# Usage: scripts/bench-bookie.sh [DIR] [SECONDS] [WRITE_CACHES] [ROUNDS]   (needs `make release`; installs jq and
# redis-server if missing). WRITE_CACHES defaults to "64", the shipped default; e.g. "64 256 1024" compares.
# ROUNDS defaults to 3.
set -euo pipefail
dir=${1:-/tmp/dlog-bench-bookie}
secs=${2:-10}
caches=${3:-64}
rounds=${4:-3}
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
# One row per server run: round size server writes/s p99 cpu rss client mb/s (the ratios are taken at the end,
# against Redis's row of the same round and size).
: > "$dir/runs"
run_redis() { # SIZE
  local size=$1
  rm -rf "$dir/redis"; mkdir -p "$dir/redis"
  redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir/redis" --appendonly yes --appendfsync always \
    --save '' --daemonize yes --logfile "$dir/redis/redis.log" --pidfile "$dir/redis/pid"
  for _ in $(seq 100); do redis-cli -p "$redis_port" ping > /dev/null 2>&1 && break; sleep 0.1; done
  local rpid; rpid=$(cat "$dir/redis/pid")
  local payload; payload=$(head -c "$size" /dev/zero | tr '\0' x)
  # About SECONDS of work: a short probe run sizes the request count.
  local probe; probe=$(redis-benchmark -p "$redis_port" -c 32 -n 20000 -r 512 -P 16 --csv XADD "s:__rand_int__" '*' f "$payload" | tail -n 1)
  local rate; rate=$(echo "$probe" | tr -d '"' | cut -d, -f2)
  local requests; requests=$(jq -n "($rate * $secs) | floor")
  local before; before=$(cpu_ticks "$rpid")
  take_children_cpu; local c_before=$children_cpu
  local row; row=$(redis-benchmark -p "$redis_port" -c 32 -n "$requests" -r 512 -P 16 --csv XADD "s:__rand_int__" '*' f "$payload" | tail -n 1 | tr -d '"')
  local after; after=$(cpu_ticks "$rpid")
  take_children_cpu
  local rss; rss=$(rss_mb "$rpid")
  redis-cli -p "$redis_port" shutdown nosave > /dev/null 2>&1 || true
  local rps; rps=$(echo "$row" | cut -d, -f2)
  echo "$round $size redis $rps $(echo "$row" | cut -d, -f7) $(jq -n "($after - $before) / $hz / $requests * 100000")" \
    "$rss $(jq -n "($children_cpu - $c_before) / $requests * 100000") $(jq -n "$rps * $size / 1e6")" >> "$dir/runs"
}
run_bookie() { # SIZE CACHE
  local size=$1 cache=$2
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
  local before; before=$(cpu_ticks "$pid")
  take_children_cpu; local c_before=$children_cpu
  local b=$dir/bookie-$size-$cache-$round.json
  "$bin/dlog-bench" bookie --target "127.0.0.1:$port" --clients 32 --pipeline 16 --size "$size" --duration "$secs" \
    --json | tee "$b"
  local after; after=$(cpu_ticks "$pid")
  take_children_cpu
  local ops; ops=$(jq .ops "$b")
  local rss; rss=$(rss_mb "$pid")
  kill -9 "$pid"; wait "$pid" 2>/dev/null || true
  pid=
  echo "$round $size bookie-$cache $(jq .ops_per_sec "$b") $(jq .p99_ms "$b") $(jq -n "($after - $before) / $hz / $ops * 100000")" \
    "$rss $(jq -n "($children_cpu - $c_before) / $ops * 100000") $(jq .mb_per_sec "$b")" >> "$dir/runs"
}

# Redis's figures swing from run to run on a shared machine (at 100 B, from 238k to 399k writes/s in our runs), so
# the servers take turns: each round runs Redis and the bookies at both sizes, Redis first in odd rounds and last in
# even ones, and each bookie row is held against Redis's row of its own round.
for round in $(seq "$rounds"); do
  for size in 100 1024; do
    if [ $((round % 2)) = 1 ]; then
      run_redis "$size"
      for cache in $caches; do run_bookie "$size" "$cache"; done
    else
      for cache in $caches; do run_bookie "$size" "$cache"; done
      run_redis "$size"
    fi
  done
done
echo "## disk: $(jq -r '"\(.syncs_per_sec) write+fdatasync/s of \(.size) B, p50 \(.p50_ms) ms"' "$dir/disk.json");" \
  "$seq_mb MB/s in 1 MiB O_DIRECT+dsync writes"
echo "## bookie-N: write cache N MiB; w ratio = writes/s over Redis's in the same round; cpu ratio = CPU per write"
echo "## over Redis's; disk share = payload bytes written twice (journal, entry log) over the disk's sequential MB/s"
awk -v seq="$seq_mb" '
  { r[NR] = $0; if ($3 == "redis") { rw[$1 " " $2] = $4; rc[$1 " " $2] = $6 } }
  END {
    printf "%-5s %-6s %-10s %10s %10s %12s %8s %13s %9s %9s %10s\n", "round", "size", "server", "writes/s", "p99 ms",
           "cpu s/100k", "rss MB", "client s/100k", "w ratio", "cpu ratio", "disk share"
    for (i = 1; i <= NR; i++) {
      split(r[i], f, " "); k = f[1] " " f[2]
      if (f[3] == "redis") ratios = sprintf("%9s %9s %10s", "-", "-", "-")
      else ratios = sprintf("%9.2f %9.2f %10.2f", f[4] / rw[k], f[6] / rc[k], 2 * f[9] / seq)
      printf "%-5s %-6s %-10s %10.0f %10.3f %12.3f %8s %13.3f %s\n", f[1], f[2], f[3], f[4], f[5], f[6], f[7], f[8], ratios
    }
  }' "$dir/runs" | tee "$dir/table"
echo "## medians over $rounds rounds of each round's ratios"
awk '
  function median(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                     return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
  NR > 1 && $3 != "redis" { k = $2 " " $3; n[k]++; w[k, n[k]] = $9; c[k, n[k]] = $10; all[k] = all[k] sprintf(" %.2f", $9) }
  END { for (k in n) { for (i = 1; i <= n[k]; i++) { ww[i] = w[k, i]; cc[i] = c[k, i] }
                       split(k, f, " ")
                       printf "%-6s %-10s writes %.2fx Redis, cpu per write %.2fx   (writes per round:%s)\n", f[1], f[2],
                              median(ww, n[k]), median(cc, n[k]), all[k] } }' "$dir/table" | sort -n
