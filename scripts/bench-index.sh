#!/usr/bin/env bash
# The ledger index at a million ledgers, on one bookie running alone (no metadata, so nothing deletes the ledgers):
#   1. dlog-bench index: one 100 B entry to each of LEDGERS fresh ledgers, then ROUNDS rounds that each add an
#      entry to 1,000 of them and time the checkpoint that records them (GET_INFO's lastCheckpoint);
#   2. RSS and CPU of the bookie idle with those ledgers (CPU over 10 s, from /proc);
#   3. restart after SIGTERM, and after SIGKILL: from starting dlogd to its first GET_INFO answer (dlog-bench
#      index --probe), with the part that read the ledger index (the bookie's "ledger index loaded" line), then
#      RSS once idle; and the same restart of the empty bookie before the fill, for what a restart costs anyway;
#   4. the index files' sizes.
# Usage: scripts/bench-index.sh [DIR] [LEDGERS] [ROUNDS]   (needs `make release` first, and jq, which `make deps` installs)
# SHARDS=N sets the bookie's write_cache_shards (unset: the bookie's default for this machine).
set -euo pipefail
dir=${1:-/tmp/dlog-bench-index}
ledgers=${2:-1000000}
rounds=${3:-10}
bin=$(cd "$(dirname "$0")/.." && pwd)/.build/release
rm -rf "$dir"
mkdir -p "$dir"
port=$((10000 + RANDOM % 20000))  # below the ephemeral port range (32768 and up), which outgoing connections take
pid=
cleanup() { [[ -n $pid ]] && kill -9 "$pid" 2>/dev/null || true; }
trap cleanup EXIT

cat > "$dir/bookie.conf" <<CONF
journal_dirs = $dir/journal
ledger_dirs = $dir/ledgers
allow_shared_device = true
checkpoint_interval_ms = 1000
CONF
if [[ -n ${SHARDS:-} ]]; then echo "write_cache_shards = $SHARDS" >> "$dir/bookie.conf"; fi

hz=$(getconf CLK_TCK)
rss_mb() { awk '/^VmRSS/ { printf "%.0f", $2 / 1024 }' "/proc/$1/status"; }
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
# Starts the bookie and waits for its first GET_INFO answer: sets pid, ready_s (seconds from start to answer)
# and ready_ledgers.
start() {
  local t0 probe
  t0=$(date +%s.%N)
  "$bin/dlogd" bookie --config "$dir/bookie.conf" --port "$port" --log-level info >> "$dir/bookie.out" 2>&1 &
  pid=$!
  probe=$("$bin/dlog-bench" index --target "127.0.0.1:$port" --probe)
  ready_s=$(jq -n "${probe% *} - $t0" | xargs printf '%.3f')
  ready_ledgers=${probe#* }
  index_s=$(grep "ledger index loaded" "$dir/bookie.out" | tail -n 1 | sed -n 's/.*elapsed=\([0-9.e-]*\) seconds.*/\1/p' \
    | xargs printf '%.3f')
}
# Lets the start-up checkpoint and the first ones after it pass, then sets rss (MB) and cores (CPU over 10 s).
idle() {
  sleep 5
  local before after
  before=$(cpu_ticks "$pid")
  sleep 10
  after=$(cpu_ticks "$pid")
  rss=$(rss_mb "$pid")
  cores=$(jq -n "($after - $before) / $hz / 10")
}

start
echo "## first start (empty): $ready_s s"
kill -TERM "$pid"; wait "$pid" || true
start
empty_s=$ready_s
echo "## restart (empty): $ready_s s, of which reading the ledger index $index_s s"
echo "## fill and rounds"
"$bin/dlog-bench" index --target "127.0.0.1:$port" --ledgers "$ledgers" --changed 1000 --rounds "$rounds" --json \
  | tee "$dir/index.json"
idle
fill_rss=$rss fill_cores=$cores
echo "## idle after the fill: RSS $rss MB, CPU $cores cores"

kill -TERM "$pid"; wait "$pid" || true
start
idle
term_s=$ready_s term_index_s=$index_s term_rss=$rss term_cores=$cores
echo "## restart after SIGTERM: $ready_s s to serve $ready_ledgers ledgers, of which reading the ledger index $index_s s;"\
  "idle RSS $rss MB, CPU $cores cores"

# Some changes since the last checkpoint, so the restart replays a journal too.
"$bin/dlog-bench" index --target "127.0.0.1:$port" --ledgers 1000 --changed 1000 --rounds 0 --json > /dev/null
kill -KILL "$pid"; wait "$pid" || true
start
idle
kill_s=$ready_s kill_index_s=$index_s kill_rss=$rss kill_cores=$cores
echo "## restart after SIGKILL: $ready_s s to serve $ready_ledgers ledgers, of which reading the ledger index $index_s s;"\
  "idle RSS $rss MB, CPU $cores cores"

index_mb=$(du -sm "$dir/ledgers" --apparent-size | cut -f1)
files=$(ls -l "$dir"/ledgers/ledgers.index* | awk '{ printf "%s %d B; ", $NF, $5 }')
echo "## ledger directory: $index_mb MB; $files"
jq -n --argjson r "$(cat "$dir/index.json")" \
  --arg empty_s "$empty_s" --arg term_index_s "$term_index_s" --arg kill_index_s "$kill_index_s" \
  --arg rss "$fill_rss" --arg cores "$fill_cores" --arg term_s "$term_s" --arg term_rss "$term_rss" --arg term_cores "$term_cores" \
  --arg kill_s "$kill_s" --arg kill_rss "$kill_rss" --arg kill_cores "$kill_cores" \
  '{ledgers: $r.bookie_ledgers, fill_adds_per_sec: $r.fill_adds_per_sec,
    delta_checkpoint_p50_ms: $r.delta_checkpoint_p50_ms, delta_checkpoint_max_ms: $r.delta_checkpoint_max_ms,
    delta_index_bytes_p50: $r.delta_index_bytes_p50, snapshots: [$r.rounds[] | select(.snapshot)],
    idle_rss_mb: ($rss | tonumber), idle_cores: ($cores | tonumber),
    restart_empty_s: ($empty_s | tonumber),
    restart_after_term_s: ($term_s | tonumber), index_load_after_term_s: ($term_index_s | tonumber), rss_after_term_restart_mb: ($term_rss | tonumber),
    idle_cores_after_term_restart: ($term_cores | tonumber),
    restart_after_kill_s: ($kill_s | tonumber), index_load_after_kill_s: ($kill_index_s | tonumber), rss_after_kill_restart_mb: ($kill_rss | tonumber),
    idle_cores_after_kill_restart: ($kill_cores | tonumber)}' | tee "$dir/summary.json"
