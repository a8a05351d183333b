#!/usr/bin/env bash
# The many-streams benchmark of the closing notes, with every role in its own process as a cluster runs them:
# a metadata role, 3 bookies and one proxy (streams_max 200,000), all on this machine and disk.
#   - `dlog-bench streams`: N streams get their first write (CONCURRENCY in flight), which makes the proxy own
#     them (open time, refusals), then a trickle of 1,000 writes/s for 10 s to streams chosen at random (p50, p99,
#     p99.9);
#   - idle: the CPU of each role over two minutes, one at a time, with the N streams owned and nothing written, and
#     the RSS of the proxy and of the metadata role. The bookies' GC passes once a minute: the first minute's pass
#     lists every ledger's metadata, because the opens brought more new ledgers to each bookie than it reads one by
#     one; the second minute is the steady idle, with nothing to look at;
#   - stop: SIGTERM to the proxy and the time until it exited (its drain completes every stream's segment), with
#     the CPU each role spent meanwhile and the metadata role's commits, group commits and bytes written.
# Usage: scripts/bench-streams.sh [STREAMS] [CONCURRENCY] [DIR]   (needs `make release` first)
set -euo pipefail
n=${1:-100000}
concurrency=${2:-1024}
dir=${3:-/tmp/dlog-bench-streams}
bin=$(cd "$(dirname "$0")/.." && pwd)/.build/release
rm -rf "$dir"
mkdir -p "$dir"
base=$((10000 + RANDOM % 20000))  # below the ephemeral port range (32768 and up), which outgoing connections take
metrics=$((base + 20))
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT
started() { for _ in $(seq 300); do grep -q listening "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "no start: $1" >&2; cat "$1" >&2; exit 1; }

printf 'role = metadata\ndata_dir = %s\nhost = 127.0.0.1\nport = %s\nmetrics_port = %s\n' \
  "$dir/metadata" "$base" "$metrics" > "$dir/metadata.conf"
"$bin/dlogd" metadata --config "$dir/metadata.conf" --log-level warning > "$dir/metadata.out" 2>&1 &
metadata=$!
pids+=("$metadata")
started "$dir/metadata.out"
uri="dlog://127.0.0.1:$base"
"$bin/dlogctl" cluster init --metadata "$uri" > /dev/null
bookies=()
for i in 0 1 2; do
  # No spinning for the next add: three bookies share this host's cores (docs/storage.md, "Spinning").
  printf 'journal_dirs = %s\nledger_dirs = %s\nallow_shared_device = true\nmetadata = %s\nbookie_id = bench-%s\njournal_spin_us = 0\n' \
    "$dir/bookie$i/journal" "$dir/bookie$i/ledgers" "$uri" "$i" > "$dir/bookie$i.conf"
  "$bin/dlogd" bookie --config "$dir/bookie$i.conf" --port $((base + 1 + i)) --log-level warning > "$dir/bookie$i.out" 2>&1 &
  bookies+=($!)
  pids+=($!)
done
for i in 0 1 2; do started "$dir/bookie$i.out"; done
printf 'role = proxy\nmetadata = %s\nhost = 127.0.0.1\nport = %s\nstreams_max = 200000\n' "$uri" $((base + 10)) > "$dir/proxy.conf"
"$bin/dlogd" proxy --config "$dir/proxy.conf" --log-level warning > "$dir/proxy.out" 2>&1 &
proxy=$!
pids+=("$proxy")
started "$dir/proxy.out"

echo "## $n streams, $concurrency first writes in flight, then 1,000 writes/s for 10 s"
"$bin/dlog-bench" streams --proxy 127.0.0.1:$((base + 10)) --streams "$n" --concurrency "$concurrency" \
  --trickle-rate 1000 --trickle-secs 10 2> "$dir/bench.err" || true

# CPU time (user + system, in 1/100 s) of the given processes, from /proc.
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo "$t"; }
rss() { awk '/VmRSS/ { printf "%d MB", $2 / 1024 }' "/proc/$1/status"; }
metric() { curl -s "127.0.0.1:$metrics/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
written() { awk '$1 == "write_bytes:" { print $2 }' "/proc/$metadata/io"; }
cores() { echo "scale=3; $1 / 100 / $2" | bc; }

echo "## idle, $n streams owned"
sleep 15
all=("$metadata" "${bookies[@]}" "$proxy")
for minute in first second; do
  before=$(ticks "${all[@]}")
  proxy_before=$(ticks "$proxy")
  metadata_before=$(ticks "$metadata")
  sleep 60
  echo "$minute minute: whole cluster $(cores $(( $(ticks "${all[@]}") - before )) 60) cores" \
    "(proxy $(cores $(( $(ticks "$proxy") - proxy_before )) 60), metadata $(cores $(( $(ticks "$metadata") - metadata_before )) 60));" \
    "RSS: proxy $(rss "$proxy"), metadata $(rss "$metadata")"
done

echo "## SIGTERM to the proxy (drain)"
commits=$(metric dlog_metadata_commits_total)
batches=$(metric dlog_metadata_batches_total)
bytes=$(written)
m0=$(ticks "$metadata"); b0=$(ticks "${bookies[@]}"); p0=$(ticks "$proxy"); p1=$p0
t0=$(date +%s%3N)
kill -TERM "$proxy"
while kill -0 "$proxy" 2> /dev/null; do p1=$(ticks "$proxy" 2> /dev/null || echo "$p1"); sleep 0.05; done
t1=$(date +%s%3N)
echo "drained in $((t1 - t0)) ms; CPU: proxy $(cores $((p1 - p0)) 1) s, metadata $(cores $(( $(ticks "$metadata") - m0 )) 1) s," \
  "bookies $(cores $(( $(ticks "${bookies[@]}") - b0 )) 1) s; metadata: $(echo "$(metric dlog_metadata_commits_total) - $commits" | bc)" \
  "commits in $(echo "$(metric dlog_metadata_batches_total) - $batches" | bc) group commits, $(( ($(written) - bytes) >> 20 )) MiB written"
grep -h "<[0-3]>" "$dir"/*.out | head -5 || true
