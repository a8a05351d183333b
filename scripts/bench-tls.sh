#!/usr/bin/env bash
# The cost of TLS, in one run on one directory: two clusters of separate processes (each a metadata role, 3 bookies
# and a proxy, on loopback and this one disk), one started with tls_mode = off and one with tls_mode = required
# (certificates from `dlogctl tls`, the bench connecting as an admin), both running at once.
# Each round starts both and runs each case, at 1 KiB, on one cluster and straight after on the other:
#   - bookie: `dlog-bench bookie` on one bookie, 32 connections x 16 in flight, and 1 x 1;
#   - ledger: `dlog-bench ledger`, replicated (E=3 Qw=3 Qa=2), 32 writers x 16 in flight, and 1 x 1;
#   - log:    `dlog-bench log` through the proxy, 4 streams x 32 writers, and 1 x 1 (writes alone, no tail);
# with the CPU (user + system) of the five daemons of the cluster measured and of the bench itself, per 100k
# acknowledged writes (the other cluster sits idle meanwhile). A case's two runs follow each other within seconds,
# and which goes first alternates by round, so a drift of the shared machine falls on both alike. Prints the disk's
# own limit, one table, then each case's TLS figures against the plaintext ones of the same round: the median over
# the rounds of each round's ratio (writes/s, CPU) and difference (p50), and the writes/s ratio and p50 difference
# of each round in order.
# Usage: scripts/bench-tls.sh [DIR] [SECONDS] [ROUNDS]   (needs `make release` first; installs jq if missing)
set -euo pipefail
dir=${1:-/tmp/dlog-bench-tls}
secs=${2:-8}
rounds=${3:-2}
bin=$(cd "$(dirname "$0")/.." && pwd)/.build/release
command -v jq > /dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q jq > /dev/null
rm -rf "$dir"
mkdir -p "$dir"
# Ports below the ephemeral range (32768 and up), which outgoing connections take: the plaintext cluster's from
# base, the TLS cluster's from base + 20.
base=$((10000 + RANDOM % 20000))
declare -A first_port=([off]=$base [required]=$((base + 20)))
declare -A pids=([off]="" [required]="")  # each cluster's daemons
cleanup() { for p in ${pids[off]} ${pids[required]}; do kill -9 "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
hz=$(getconf CLK_TCK)
cpu_ticks() { # MODE: the CPU ticks of that cluster's daemons
  local t=0; for p in ${pids[$1]}; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$p/stat"))); done; echo "$t"
}

# The disk's own limit: one 4 KiB write and fdatasync at a time.
"$bin/dlog-bench" disk --dir "$dir" --duration 5 --size 4096 --json > "$dir/disk.json"

"$bin/dlogctl" tls init-ca --dir "$dir/tls" > /dev/null
for role in metadata bookie proxy; do
  "$bin/dlogctl" tls issue --dir "$dir/tls" --role "$role" --name "$role" --host 127.0.0.1 > /dev/null
done
"$bin/dlogctl" tls issue --dir "$dir/tls" --role admin --name bench > /dev/null
client_tls=(--tls-ca "$dir/tls/ca.crt" --tls-cert "$dir/tls/bench.crt" --tls-key "$dir/tls/bench.key")

tls_lines() { # MODE ROLE
  echo "tls_mode = $1"
  [ "$1" = off ] && return
  echo "tls_cert_file = $dir/tls/$2.crt"
  echo "tls_key_file = $dir/tls/$2.key"
  echo "tls_ca_file = $dir/tls/ca.crt"
}

wait_port() { for _ in $(seq 300); do (exec 3<> "/dev/tcp/127.0.0.1/$1") 2> /dev/null && return; sleep 0.1; done; echo "port $1 never opened" >&2; exit 1; }

start_cluster() { # MODE
  local data="$dir/$1" base=${first_port[$1]}
  local uri="dlog://127.0.0.1:$base"
  rm -rf "$data"; mkdir -p "$data"
  { echo "role = metadata"; echo "data_dir = $data/metadata"; echo "port = $base"; echo "log_level = warning"; tls_lines "$1" metadata; } > "$data/metadata.conf"
  "$bin/dlogd" --config "$data/metadata.conf" > "$data/metadata.out" 2>&1 & pids[$1]+=" $!"
  wait_port "$base"
  local args=(--metadata "$uri"); [ "$1" = off ] || args+=("${client_tls[@]}")
  "$bin/dlogctl" cluster init "${args[@]}" > /dev/null
  for i in 0 1 2; do
    { echo "role = bookie"; echo "journal_dirs = $data/b$i/journal"; echo "ledger_dirs = $data/b$i/ledgers"
      # Three bookies share this host's cores: they do not spin for the next add (docs/storage.md, "Spinning").
      echo "port = $((base + 1 + i))"; echo "metadata = $uri"; echo "bookie_id = bookie-$i"; echo "allow_shared_device = true"
      echo "journal_spin_us = 0"
      echo "log_level = warning"; tls_lines "$1" bookie; } > "$data/bookie$i.conf"
    "$bin/dlogd" --config "$data/bookie$i.conf" > "$data/bookie$i.out" 2>&1 & pids[$1]+=" $!"
  done
  for i in 0 1 2; do wait_port $((base + 1 + i)); done
  { echo "role = proxy"; echo "metadata = $uri"; echo "port = $((base + 10))"; echo "log_level = warning"; tls_lines "$1" proxy; } > "$data/proxy.conf"
  "$bin/dlogd" --config "$data/proxy.conf" > "$data/proxy.out" 2>&1 & pids[$1]+=" $!"
  wait_port $((base + 10))
}

# Stops the daemons and removes their data (each start preallocates journals: about 2 GB a start).
stop_cluster() { # MODE
  for p in ${pids[$1]}; do kill "$p" 2>/dev/null || true; done
  for p in ${pids[$1]}; do wait "$p" 2>/dev/null || true; done
  pids[$1]=""
  rm -rf "$dir/$1"
}

# CPU seconds (user + system) of every child this shell has waited for, into $children_cpu (see bench-bookie.sh).
children_cpu=0
take_children_cpu() {
  times > "$dir/times"
  children_cpu=$(tail -n 1 "$dir/times" | awk '{ split($1, u, "m"); split($2, s, "m"); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }')
}

printf '%-5s %-7s %-6s %-8s %10s %9s %9s %12s %13s\n' round case load tls writes/s "p50 ms" "p99 ms" "cpu s/100k" "client s/100k" > "$dir/table"
run_case() { # MODE NAME LOAD ARGS...  (in round $round)
  local mode=$1 name=$2 load=$3; shift 3
  local tls_args=(); [ "$mode" = off ] || tls_args=("${client_tls[@]}")
  local before_ticks=$(cpu_ticks "$mode")
  take_children_cpu; local before_client=$children_cpu
  "$bin/dlog-bench" "$@" "${tls_args[@]}" --size 1024 --duration "$secs" --json > "$dir/$mode-$name-$load.json"
  take_children_cpu
  local j=$dir/$mode-$name-$load.json
  local ops=$(jq '.ops' "$j")
  local server=$(awk -v a="$before_ticks" -v b="$(cpu_ticks "$mode")" -v hz="$hz" -v n="$ops" 'BEGIN { printf "%.3f", (b - a) / hz / n * 100000 }')
  local client=$(awk -v a="$before_client" -v b="$children_cpu" -v n="$ops" 'BEGIN { printf "%.3f", (b - a) / n * 100000 }')
  printf '%-5s %-7s %-6s %-8s %10.0f %9.3f %9.3f %12s %13s\n' "$round" "$name" "$load" "$mode" "$(jq .ops_per_sec "$j")" "$(jq .p50_ms "$j")" \
    "$(jq .p99_ms "$j")" "$server" "$client" | tee -a "$dir/table"
}

# One case on both clusters, one run after the other, in this round's order.
both() { # NAME LOAD ARGS...  ("PORT" in ARGS stands for the cluster's first port plus the number after it)
  local name=$1 load=$2; shift 2
  for mode in $order; do
    local args=() a
    for a in "$@"; do
      if [[ $a =~ ^(.*)PORT\+([0-9]+)$ ]]; then a=${BASH_REMATCH[1]}$((${first_port[$mode]} + ${BASH_REMATCH[2]})); fi
      args+=("$a")
    done
    run_case "$mode" "$name" "$load" "${args[@]}"
  done
}

for round in $(seq "$rounds"); do
  order="off required"; [ $((round % 2)) = 0 ] && order="required off"
  echo "## round $round: both clusters up, each case run on them in the order $order"
  for mode in $order; do start_cluster "$mode"; done
  sleep 2  # registrations and the proxies' first metadata reads settle
  both bookie 32x16 bookie --target 127.0.0.1:PORT+1 --clients 32 --pipeline 16
  both bookie 1x1 bookie --target 127.0.0.1:PORT+1 --clients 1 --pipeline 1
  both ledger 32x16 ledger --metadata dlog://127.0.0.1:PORT+0 --clients 32 --pipeline 16
  both ledger 1x1 ledger --metadata dlog://127.0.0.1:PORT+0 --clients 1 --pipeline 1
  both log 4x32 log --metadata dlog://127.0.0.1:PORT+0 --proxy 127.0.0.1:PORT+10 --streams 4 --clients 32 --no-tail
  both log 1x1 log --metadata dlog://127.0.0.1:PORT+0 --proxy 127.0.0.1:PORT+10 --streams 1 --clients 1 --no-tail
  for mode in $order; do stop_cluster "$mode"; done
done

echo
cat "$dir/table"
echo
echo "## disk: $(jq -r '"\(.syncs_per_sec) write+fdatasync/s of \(.size) B, p50 \(.p50_ms) ms"' "$dir/disk.json")"
echo "## TLS against plaintext in the same round, medians over $rounds rounds (writes/s ratio, p50 difference, CPU ratio)"
for c in "bookie 32x16" "bookie 1x1" "ledger 32x16" "ledger 1x1" "log 4x32" "log 1x1"; do
  set -- $c
  awk -v c="$1" -v l="$2" -v rounds="$rounds" '
    function median(a, n,   i, j, t) { for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
                                       return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2 }
    $2 == c && $3 == l && $4 == "off" { w0[$1] = $5; p0[$1] = $6; c0[$1] = $8 + $9 }
    $2 == c && $3 == l && $4 == "required" { w1[$1] = $5; p1[$1] = $6; c1[$1] = $8 + $9 }
    END { for (r = 1; r <= rounds; r++) if ((r in w1) && (r in w0)) {
            n++; w[n] = w1[r] / w0[r]; p[n] = p1[r] - p0[r]; u[n] = c1[r] / c0[r]
            ws = ws sprintf(" %.2f", w[n]); ps = ps sprintf(" %+.3f", p[n]) }
          printf "%-7s %-6s writes %.2fx, p50 %+.3f ms, cpu (all) %.2fx   (by round: writes%s; p50%s)\n", c, l, median(w, n),
                 median(p, n), median(u, n), ws, ps }' "$dir/table"
done
