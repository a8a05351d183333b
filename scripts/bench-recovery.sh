#!/usr/bin/env bash
# The re-replication benchmark, in one run on one directory: the disk's own limit, then a metadata role and 5
# bookies (all on this one disk, healing on: each bookie stands for auditor and runs a replication worker), and
#   large: at least SIZE bytes written into closed E=3 Qw=3 Qa=2 ledgers (dlog-bench ledger runs for a time, so
#          it is run several times: each run makes 16 ledgers, one per writer, and closes them at its end); a
#          foreground baseline (dlog-bench ledger, 1 KiB adds, --fg-secs); then the bookie holding the most bytes
#          outside the baseline's ledger is SIGKILLed and its directories deleted. Polled every second
#          (dlogctl recovery status, ledger list) until no ledger is marked and none names it, with the same
#          foreground load (--fg-slice runs back to back) from the moment it is declared lost until the copy is done.
#          Prints bytes re-replicated, copy throughput and its ratio to the disk's sequential bandwidth (measured
#          before the phase, and again after it), the disk's reads and writes and the CPU during the copy, time from
#          the loss to full durability (with and without the wait for lost_bookie_grace_s), foreground p99 during
#          the copy against before.
#   small: on a fresh cluster, --small-ledgers small closed ledgers (a few 1 KiB entries each), one bookie killed
#          the same way; prints ledgers re-replicated per minute.
#   --no-fg-copy: no foreground load during the large phase's copy (its baseline still runs), to time the copy alone.
# Usage: scripts/bench-recovery.sh [--phases large,small] [--rate BYTES] [--grace S] [--entry-size B] [--no-fg-copy]
#                                  [--in-flight N] [--fg-secs S] [--fg-slice S] [--small-ledgers N] [--max-wait S] [DIR] [SIZE]
#   SIZE: bytes to write in the large phase (1G, 512M, ...; default 1G). --rate: replication_rate_bytes (default
#   1G: high enough not to be the limit). (needs `make release` first, and jq and curl, which `make deps` installs)
set -euo pipefail
usage() { sed -n '16,20p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
phases=large,small rate=1G grace=5 ttl=3 entry_size=65536 in_flight=256 fg_secs=10 fg_slice=2 small_ledgers=3000 max_wait=900
fg_copy=yes
args=()
while [ $# -gt 0 ]; do
  case $1 in
    --phases) phases=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --grace) grace=$2; shift 2 ;;
    --entry-size) entry_size=$2; shift 2 ;;
    --in-flight) in_flight=$2; shift 2 ;;
    --fg-secs) fg_secs=$2; shift 2 ;;
    --fg-slice) fg_slice=$2; shift 2 ;;
    --no-fg-copy) fg_copy=no; shift ;;
    --small-ledgers) small_ledgers=$2; shift 2 ;;
    --max-wait) max_wait=$2; shift 2 ;;
    -h|--help) usage ;;
    -*) echo "unknown option $1" >&2; usage ;;
    *) args+=("$1"); shift ;;
  esac
done
dir=${args[0]:-/tmp/dlog-bench-recovery}
size=$(numfmt --from=iec "${args[1]:-1G}")
rate=$(numfmt --from=iec "$rate")
bin=$(cd "$(dirname "$0")/.." && pwd)/.build/release
for tool in jq curl; do command -v $tool >/dev/null || { echo "needs $tool (make deps)" >&2; exit 1; }; done
[ -x "$bin/dlogd" ] || { echo "no $bin/dlogd: run make release first" >&2; exit 1; }
rm -rf "$dir"
mkdir -p "$dir"
# Each byte written lands in 3 journals and 3 entry logs, and the copy adds one more: ask for 8 x SIZE free.
avail=$(df -B1 --output=avail "$dir" | tail -1)
if [[ ,$phases, == *,large,* ]] && [ "$avail" -lt $((size * 8)) ]; then
  echo "only $(numfmt --to=iec "$avail") free under $dir: give a SIZE of at most $(numfmt --to=iec $((avail / 8)))" >&2
  exit 1
fi
base=$((10000 + RANDOM % 20000))  # below the ephemeral port range (32768 and up), which outgoing connections take
pids=()
stop_flags=()
cleanup() { for f in "${stop_flags[@]}"; do touch "$f"; done; kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT

now_ms() { echo $((${EPOCHREALTIME/./} / 1000)); }
wait_listening() { for _ in $(seq 300); do grep -q listening "$1" 2>/dev/null && return 0; sleep 0.1; done; echo "no start: $1" >&2; exit 1; }
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }   # bytes -> MB, one decimal

# start_cluster DIR PORT: a metadata role on PORT, bookies bench-0..4 on PORT+1..5 (metrics on PORT+11..15).
# Sets uri, bookie_pid[i], metrics_port[i].
declare -A bookie_pid metrics_port
start_cluster() {
  local d=$1 port=$2 i
  mkdir -p "$d"
  "$bin/dlogd" metadata --data-dir "$d/metadata" --port "$port" --log-level warning > "$d/metadata.out" 2>&1 &
  pids+=($!)
  wait_listening "$d/metadata.out"
  uri="dlog://127.0.0.1:$port"
  "$bin/dlogctl" cluster init --metadata "$uri"
  for i in 0 1 2 3 4; do
    # Scrub off for the run: a pass at start would read the disk under the measurement. No spinning for the next
    # add: five bookies share this host's cores (docs/storage.md, "Spinning").
    cat > "$d/bookie$i.conf" <<CONF
journal_dirs = $d/b$i/journal
ledger_dirs = $d/b$i/ledgers
allow_shared_device = true
metadata = $uri
bookie_id = bench-$i
journal_spin_us = 0
registration_ttl_s = $ttl
lost_bookie_grace_s = $grace
replication_rate_bytes = $rate
replication_entries_in_flight = $in_flight
scrub_interval_s = 0
metrics_port = $((port + 11 + i))
CONF
    metrics_port[$i]=$((port + 11 + i))
    "$bin/dlogd" bookie --config "$d/bookie$i.conf" --port $((port + 1 + i)) --log-level notice > "$d/bookie$i.out" 2>&1 &
    bookie_pid[$i]=$!
    pids+=($!)
  done
  for i in 0 1 2 3 4; do wait_listening "$d/bookie$i.out"; done
  sleep 2  # registrations, auditor election
}

# Bookies first (SIGTERM: they deregister), then the metadata role, so the logs hold no shutdown noise.
stop_cluster() {
  local i
  for i in 0 1 2 3 4; do kill "${bookie_pid[$i]}" 2>/dev/null || true; done
  for i in 0 1 2 3 4; do wait "${bookie_pid[$i]}" 2>/dev/null || true; done
  kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; pids=()
}

# CPU jiffies since boot: "busy iowait total" (all cores).
cpu_now() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t - $5 - $6, $6, t }' /proc/stat; }
# cpu_share "BEFORE" "AFTER": busy and iowait percent of all cores between two cpu_now.
cpu_share() {
  read -r b0 w0 t0 <<< "$1"; read -r b1 w1 t1 <<< "$2"
  echo "$(((b1 - b0) * 100 / (t1 - t0)))% busy, $(((w1 - w0) * 100 / (t1 - t0)))% iowait over $(nproc) cores"
}

# A counter summed over the live bookies' metrics (all but bookie $1). One curl and one awk for them all: the
# samples run five times a second beside the copy they time, and two processes per bookie took a tenth of the
# two cores from it.
metric_sum() {
  local skip=$1 name=$2 i urls=()
  for i in 0 1 2 3 4; do [ "$i" = "$skip" ] || urls+=("http://127.0.0.1:${metrics_port[$i]}/metrics"); done
  { curl -sf --max-time 5 "${urls[@]}" || true; } | awk -v n="$name" '$1 == n { t += $2 } END { printf "%.0f\n", t }'
}

# Per bookie: the ledgers naming it and the bytes it holds of them, most bytes first. A fragment's bytes are
# the ledger's length pro rata of its entries (dlog-bench's entries are all one size within a ledger).
holdings() {
  jq -c '[.[] | select(.last_entry >= 0) | . as $l | ($l.last_entry + 1) as $n | range(0; $l.fragments | length) as $i
          | $l.fragments[$i] as $f
          | ((if $i + 1 < ($l.fragments | length) then [$l.fragments[$i + 1].first_entry, $n] | min else $n end) - $f.first_entry) as $e
          | $f.bookies[] | {x: ., id: $l.id, b: ($l.length * $e / $n)}]
         | group_by(.x) | map({bookie: .[0].x, ledgers: (map(.id) | unique | length), bytes: (map(.b) | add | round)})
         | sort_by(-.bytes)' "$1"
}

# fg NAME SECONDS: the foreground load, 1 KiB adds, one writer (so one ledger) with 16 in flight, E=3 Qw=3 Qa=2.
fg() {
  "$bin/dlog-bench" ledger --metadata "$uri" --ensemble 3 --write-quorum 3 --ack-quorum 2 --clients 1 --pipeline 16 \
    --size 1024 --duration "$2" --json > "$1.json" 2> "$1.err"
}

# Foreground slices of --fg-slice seconds back to back until $1 exists (short, so that some fall wholly inside
# a copy of a few seconds); each slice's start and end (ms) go to $2.times.
fg_loop() {
  local flag=$1 prefix=$2 n=0 s rc
  while [ ! -e "$flag" ]; do
    n=$((n + 1)); s=$(now_ms)
    rc=0; fg "$prefix-$n" "$fg_slice" || rc=$?
    echo "$n $s $(now_ms) $rc" >> "$prefix.times"
  done
}

# The device under the benchmark's directory, as /proc/diskstats names it (a partition, or the whole disk).
disk_name=""
# Every 0.2 s until $1 exists: "ms bytes sectors-read sectors-written cpu-busy cpu-iowait cpu-total" (the live
# workers' bytes_copied counters, all bookies but $2; the disk, in 512 B sectors since boot; the CPU, in jiffies
# of all cores), to $3. Only curl and awk are started per sample (bash reads the clock, /proc and the pause
# itself): the samples run beside the copy they time.
copy_sampler() {
  local ms user nice system idle iowait irq softirq steal name rs ws r w pause
  exec {pause}<> <(:)
  while [ ! -e "$1" ]; do
    ms=$((${EPOCHREALTIME/./} / 1000))
    read -r _ user nice system idle iowait irq softirq steal _ < /proc/stat
    r=0 w=0
    while read -r _ _ name _ _ rs _ _ _ ws _; do
      if [ "$name" = "$disk_name" ]; then r=$rs w=$ws; break; fi
    done < /proc/diskstats
    echo "$ms $(metric_sum "$2" dlog_recovery_bytes_copied_total) $r $w $((user + nice + system + irq + softirq + steal))" \
      "$iowait $((user + nice + system + idle + iowait + irq + softirq + steal))" >> "$3"
    read -r -t 0.2 -u "$pause" || true
  done
}

# heal D DEAD_INDEX T_KILL FG(yes/no): polls until DEAD is declared lost, no ledger is marked and none names it.
# Sets t_declared (ms, the auditor's since_ms), t_done (ms), marked_max, rate_max, healed (yes/no), and from the
# 0.2 s samples of the workers' counters t_copy_first / t_copy_last (first and last sample that saw bytes grow).
heal() {
  local d=$1 dead=bench-$2 t_kill=$3 with_fg=$4 s s_prev="" status under since names fgpid="" last_check=0
  local live live_prev=0 live_rate dt r lost_list under_bytes copied waiting
  local live_base; live_base=$(metric_sum "$2" dlog_recovery_bytes_copied_total)
  local sampler
  : > "$d/copy-samples"; rm -f "$d/sampler.stop"
  copy_sampler "$d/sampler.stop" "$2" "$d/copy-samples" &
  sampler=$!
  stop_flags+=("$d/sampler.stop")
  t_declared="" t_done="" marked_max=0 rate_max=0 healed=no resolution_ms=0 cpu_declared=""
  : > "$d/status.log"
  while :; do
    s=$(now_ms)
    if [ $(((s - t_kill) / 1000)) -ge "$max_wait" ]; then echo "## gave up after $max_wait s" >&2; break; fi
    status=$("$bin/dlogctl" recovery status --json --metadata "$uri" 2>> "$d/status.err") || { sleep 1; continue; }
    echo "$((s - t_kill)) $status" >> "$d/status.log"
    # One jq for every field (a jq per field cost the copy CPU).
    IFS='|' read -r under r since lost_list under_bytes copied waiting < <(jq -r --arg b "$dead" '[
      .under_replicated_ledgers, .copy_rate_bytes_per_second,
      ([.lost_bookies[] | select(.bookie == $b) | .since_ms][0] // ""), ([.lost_bookies[].bookie] | tojson),
      .under_replicated_bytes, .bytes_copied, (.waiting | tojson)] | map(tostring) | join("|")' <<< "$status")
    [ "$under" -gt "$marked_max" ] && marked_max=$under
    [ "$r" -gt "$rate_max" ] && rate_max=$r
    if [ -z "$t_declared" ] && [ -n "$since" ]; then
      t_declared=$since
      cpu_declared=$(cpu_now)
      echo "## $dead declared lost $(((t_declared - t_kill) / 1000)) s after the kill; $under ledgers marked"
      if [ "$with_fg" = yes ]; then
        fg_loop "$d/fg.stop" "$d/fg-during" &
        fgpid=$!
        stop_flags+=("$d/fg.stop")
      fi
    fi
    # The workers' own counters (their /metrics, live) next to what status reads from metadata.
    live=$(($(metric_sum "$2" dlog_recovery_bytes_copied_total) - live_base))
    dt=$(($(now_ms) - ${s_prev:-$s})); [ "$dt" -ge 1 ] || dt=1
    live_rate=$(((live - live_prev) * 1000 / dt))
    live_prev=$live
    printf '   t+%3d s: lost=%s marked=%s (%s MB) status: copied=%s MB rate=%s MB/s | live: copied=%s MB rate=%s MB/s | waiting=%s\n' \
      $(((s - t_kill) / 1000)) "$lost_list" "$under" "$(mb "$under_bytes")" "$(mb "$copied")" "$(mb "$r")" \
      "$(mb "$live")" "$(mb "$live_rate")" "$waiting"
    # Listing every ledger is heavy (it slows the auditor's marking): only once marks were seen (or 10 s after
    # the declaration), and at most every 10 s.
    if [ -n "$t_declared" ] && [ "$under" -eq 0 ] && { [ "$marked_max" -gt 0 ] || [ $((s - t_declared)) -ge 10000 ]; } \
       && [ $((s - last_check)) -ge 10000 ]; then
      last_check=$s
      "$bin/dlogctl" ledger list --json --metadata "$uri" > "$d/ledgers-after.json"
      names=$(jq --arg b "$dead" '[.[] | select(any(.fragments[].bookies[]; . == $b))] | length' "$d/ledgers-after.json")
      # Done at this poll's start (status reads the marks first, then samples the rate for a second).
      if [ "$names" -eq 0 ]; then t_done=$s; resolution_ms=$((s - ${s_prev:-$s})); healed=yes; break; fi
      echo "   no marks, but $names ledger(s) still name $dead"
    fi
    s_prev=$s
    # One status takes about a second (it samples the copy rate over one).
    [ $(($(now_ms) - s)) -lt 1000 ] && sleep 1
  done
  [ -n "$t_done" ] || t_done=$(now_ms)
  cpu_done=$(cpu_now)
  [ -n "$cpu_declared" ] || cpu_declared=$cpu_done
  if [ -n "$fgpid" ]; then touch "$d/fg.stop"; wait "$fgpid" || true; fi
  touch "$d/sampler.stop"; wait "$sampler" || true
  # t_copy_start: the sample before the first growth (the copy began after it).
  read -r t_copy_start t_copy_first t_copy_last < <(awk 'NR == 1 { max = $2; prev = $1; next }
    { if ($2 > max) { if (!first) { first = $1; start = prev } last = $1; max = $2 } prev = $1 }
    END { print (start ? start : 0), (first ? first : 0), (last ? last : 0) }' "$d/copy-samples")
  # The disk and the CPU between the sample before the first growth and the last growth: "MB/s read, MB/s
  # written, busy %, iowait %".
  copy_io=$(awk -v a="$t_copy_start" -v b="$t_copy_last" '$1 == a { r0 = $3; w0 = $4; c0 = $5; i0 = $6; t0 = $7 }
    $1 == b { r1 = $3; w1 = $4; c1 = $5; i1 = $6; t1 = $7 }
    END { s = (b - a) / 1000; if (s <= 0 || t1 <= t0) { print "n/a"; exit }
          printf "disk %.1f MB/s read + %.1f MB/s written, CPU %d%% busy, %d%% iowait", (r1 - r0) * 512 / 1e6 / s,
                 (w1 - w0) * 512 / 1e6 / s, (c1 - c0) * 100 / (t1 - t0), (i1 - i0) * 100 / (t1 - t0) }' "$d/copy-samples")
}

report_logs() {  # what the bookies said about healing that was not routine
  local d=$1
  echo "## bookie log lines (warnings and errors, at most 20 each):"
  for f in "$d"/bookie*.out; do
    grep -Ei 'warning|error|critical' "$f" | head -20 | sed "s|^|   $(basename "$f"): |" || true
  done
}

echo "## disk ($dir)"
sync  # dirty pages of earlier runs would otherwise be written back under the measurement
"$bin/dlog-bench" disk --dir "$dir" --duration 5 --size 1048576 --json | tee "$dir/disk-1m.json"
"$bin/dlog-bench" disk --dir "$dir" --duration 5 --size 4096 --json | tee "$dir/disk-4k.json"
disk_mbs=$(jq .mb_per_sec "$dir/disk-1m.json")
disk_name=$(basename "$(readlink -f "$(df --output=source "$dir" | tail -1)")")
echo "## disk: sequential $disk_mbs MB/s (1 MiB write+fdatasync), $(jq .syncs_per_sec "$dir/disk-4k.json") syncs/s at 4 KiB ($(jq .mb_per_sec "$dir/disk-4k.json") MB/s)"
summary=()

if [[ ,$phases, == *,large,* ]]; then
  d=$dir/large
  start_cluster "$d" "$base"
  echo "## large: writing $(mb "$size") MB in $entry_size B entries into closed E3/Qw3/Qa2 ledgers"
  # dlog-bench ledger runs for a time, not a size: a 3 s run measures the rate, the next ones aim below what is left.
  # Each run makes 16 ledgers (one per writer) and closes them at its end.
  written=0 run=0 secs=3
  while [ "$written" -lt "$size" ]; do
    run=$((run + 1))
    "$bin/dlog-bench" ledger --metadata "$uri" --ensemble 3 --write-quorum 3 --ack-quorum 2 --clients 16 --pipeline 4 \
      --size "$entry_size" --duration "$secs" --json > "$d/write-$run.json"
    written=$((written + $(jq '.ops * .size' "$d/write-$run.json")))
    # 60% of what is left at the last run's rate (the first runs are the slowest), at least 1 s.
    secs=$(jq -n "[1, ([60, ($size - $written) / ($(jq .mb_per_sec "$d/write-$run.json") * 1e6 + 1) * 0.6] | min)] | max * 10 | ceil / 10")
    echo "   run $run: $(jq .mb_per_sec "$d/write-$run.json") MB/s, p99 $(jq .p99_ms "$d/write-$run.json") ms; $(mb "$written") MB so far"
  done
  "$bin/dlogctl" ledger list --json --metadata "$uri" > "$d/ledgers-bulk.json"
  echo "## foreground baseline, ${fg_secs} s"
  fg "$d/fg-before" "$fg_secs"
  cat "$d/fg-before.json"
  "$bin/dlogctl" ledger list --json --metadata "$uri" > "$d/ledgers-before.json"
  echo "## ledgers: $(jq length "$d/ledgers-before.json"), states $(jq -c 'group_by(.state) | map({(.[0].state): length}) | add' "$d/ledgers-before.json")"
  holdings "$d/ledgers-before.json" | tee "$d/holdings.json"
  # The victim: the bookie holding the most bytes among those outside the baseline's ledger, so that only the
  # bulk ledgers (entries of --entry-size) are re-replicated: copying costs per entry, and the baseline's
  # 1 KiB entries would copy far slower per byte (see the small phase).
  fg_bookies=$(jq -c --slurpfile bulk "$d/ledgers-bulk.json" '[($bulk[0] | map(.id)) as $old | .[] | select(.id as $i | $old | index($i) | not) | .fragments[].bookies[]] | unique' "$d/ledgers-before.json")
  victim=$(jq -r --argjson fg "$fg_bookies" '(map(select(.bookie as $b | $fg | index($b) | not)) + .)[0].bookie' "$d/holdings.json")
  k=${victim#bench-}
  expected_bytes=$(jq --arg v "$victim" '.[] | select(.bookie == $v) | .bytes' "$d/holdings.json")
  expected_ledgers=$(jq --arg v "$victim" '.[] | select(.bookie == $v) | .ledgers' "$d/holdings.json")
  echo "## the baseline's ledger is on $fg_bookies"
  [ "$(jq '[.[] | select(.state != "closed")] | length' "$d/ledgers-before.json")" -eq 0 ] || echo "## WARNING: some ledgers are not closed"
  copied0=$(metric_sum "$k" dlog_recovery_bytes_copied_total)
  entries0=$(metric_sum "$k" dlog_recovery_entries_copied_total)
  repaired0=$(metric_sum "$k" dlog_recovery_ledgers_repaired_total)
  errors0=$(metric_sum "$k" dlog_recovery_copy_errors_total)

  echo "## SIGKILL $victim (pid ${bookie_pid[$k]}: $expected_ledgers ledgers, $(mb "$expected_bytes") MB) and delete its directories"
  t_kill=$(now_ms)
  kill -KILL "${bookie_pid[$k]}"
  rm -rf "$d/b$k"
  heal "$d" "$k" "$t_kill" "$fg_copy"
  copied=$(($(metric_sum "$k" dlog_recovery_bytes_copied_total) - copied0))
  entries=$(($(metric_sum "$k" dlog_recovery_entries_copied_total) - entries0))
  repaired=$(($(metric_sum "$k" dlog_recovery_ledgers_repaired_total) - repaired0))
  errors=$(($(metric_sum "$k" dlog_recovery_copy_errors_total) - errors0))
  report_logs "$d"
  if [ "$healed" = yes ]; then
    copy_ms=$((t_done - t_declared)); total_ms=$((t_done - t_kill))
    # The copy itself: from the declaration to the last 0.2 s sample that saw the workers' counters grow. Workers
    # start on the marks, which the auditor makes just before it declares: from the copy's start when earlier.
    t_copy_begin=$t_declared
    [ "$t_copy_start" -gt 0 ] && [ "$t_copy_start" -lt "$t_declared" ] && t_copy_begin=$t_copy_start
    copy_fine_ms=$((t_copy_last - t_copy_begin))
    [ "$t_copy_last" -gt 0 ] && [ "$copy_fine_ms" -gt 0 ] || copy_fine_ms=$copy_ms
    thr=$(jq -n "$copied / ($copy_fine_ms / 1000)")
    # The slices wholly inside the copy (ended before t_done): the median p99 of them, and the worst; when none
    # is, the first slice, with its overlap.
    [ "$fg_copy" = yes ] || : > "$d/fg-during.times"
    inside=$(awk -v done="$t_done" '$3 <= done { print $1 }' "$d/fg-during.times" \
      | while read -r n; do echo "$n $(jq .p99_ms "$d/fg-during-$n.json")"; done | sort -k2 -g)
    if [ -n "$inside" ]; then
      count=$(wc -l <<< "$inside")
      during=$(sed -n "$(((count + 1) / 2))p" <<< "$inside" | cut -d' ' -f1)
      worst=$(tail -1 <<< "$inside" | cut -d' ' -f1)
      what="median of the $count slices of $fg_slice s wholly inside the copy; the worst: $(jq .p99_ms "$d/fg-during-$worst.json") ms"
    elif [ "$fg_copy" = yes ]; then
      during=1
      read -r _ s e _ < <(head -1 "$d/fg-during.times")
      what="the first slice of $fg_slice s, $(jq -n "[100, (($t_done - $s) * 100 / ($e - $s))] | min | round")% inside the copy"
    fi
    p99b=$(jq .p99_ms "$d/fg-before.json")
    if [ "$fg_copy" = yes ]; then
      p99d=$(jq .p99_ms "$d/fg-during-$during.json")
      foreground=(
        "  foreground 1 KiB add p99:   before $p99b ms ($fg_secs s), during copy $p99d ms ($what) = $(jq -n "$p99d / $p99b * 100 | round / 100") x"
        "                              ops/s before $(jq .ops_per_sec "$d/fg-before.json"), during $(jq .ops_per_sec "$d/fg-during-$during.json")"
        "  every foreground slice:     $(while read -r n s e rc; do printf '#%s [%s%% in copy] p99 %s ms, %s adds/s, %s errors; ' "$n" "$(jq -n "[100, ([0, ($t_done - $s)] | max) * 100 / ($e - $s)] | min | round")" "$(jq .p99_ms "$d/fg-during-$n.json")" "$(jq .ops_per_sec "$d/fg-during-$n.json")" "$(jq .errors "$d/fg-during-$n.json")"; done < "$d/fg-during.times")"
      )
    else
      foreground=("  foreground 1 KiB add p99:   before $p99b ms ($fg_secs s); no foreground load during the copy (--no-fg-copy)")
    fi
    summary+=(
      "large phase: $(mb "$written") MB written, $(jq length "$d/ledgers-before.json") ledgers; killed $victim ($expected_ledgers ledgers, $(mb "$expected_bytes") MB of payload)"
      "  bytes re-replicated:        $copied B ($(mb "$copied") MB, $entries entries, $errors copy errors; $expected_ledgers ledgers named $victim, marked at most $marked_max at a poll; workers' ledgers_repaired counters +$repaired)"
      "  copy time:                  $(jq -n "$copy_fine_ms / 1000") s from the declaration (or the copy's start, $(jq -n "($t_copy_start - $t_declared) / 1000") s from it, when earlier) to the last byte copied (0.2 s samples; first growth seen $(jq -n "($t_copy_first - $t_declared) / 1000") s after the declaration); $(cpu_share "$cpu_declared" "$cpu_done")"
      "  copy throughput:            $(mb "$thr") MB/s, $(jq -n "$entries * 1000 / $copy_fine_ms | round") entries/s = $(jq -n "$thr / 1e6 / $disk_mbs * 1000 | round / 1000") x the disk's sequential $disk_mbs MB/s (peak sampled rate $(mb "$rate_max") MB/s)"
      "  during the copy:            $copy_io (every process on the machine)"
      "  loss -> full durability:    $(jq -n "$total_ms / 1000") s including the grace (declared lost $(jq -n "($t_declared - $t_kill) / 1000") s after the kill: registration_ttl_s $ttl + lost_bookie_grace_s $grace + auditor tick)"
      "                              $(jq -n "$copy_ms / 1000") s without it (from the declaration); no marks and no ledger naming it, seen by a poll within $(jq -n "$resolution_ms / 1000") s"
      "${foreground[@]}"
    )
  else
    summary+=("large phase: NOT HEALED within $max_wait s; see $d/status.log and $d/bookie*.out (copied $copied B, $errors copy errors)")
  fi
  stop_cluster
  # This shared disk's own figure drifts by a fifth between runs minutes apart: measured again once the cluster is
  # gone, the copy is also set against the mean of both.
  if [ "$healed" = yes ]; then
    "$bin/dlog-bench" disk --dir "$dir" --duration 5 --size 1048576 --json > "$dir/disk-1m-after.json"
    after_mbs=$(jq .mb_per_sec "$dir/disk-1m-after.json")
    summary+=("  the disk again, after:      $after_mbs MB/s; the copy = $(jq -n "$thr / 1e6 / (($disk_mbs + $after_mbs) / 2) * 1000 | round / 1000") x the mean of both")
  fi
fi

if [[ ,$phases, == *,small,* ]]; then
  d=$dir/small
  start_cluster "$d" $((base + 20))
  echo "## small: $small_ledgers closed ledgers of a few 1 KiB entries"
  made=0 run=0
  while [ "$made" -lt "$small_ledgers" ]; do
    run=$((run + 1))
    n=$((small_ledgers - made)); [ "$n" -gt 1000 ] && n=1000
    "$bin/dlog-bench" ledger --metadata "$uri" --ensemble 3 --write-quorum 3 --ack-quorum 2 --clients "$n" --pipeline 1 \
      --size 1024 --duration 0.3 --json > "$d/write-$run.json"
    made=$((made + n))
    echo "   run $run: $n ledgers, $(jq .ops "$d/write-$run.json") entries; $made ledgers so far"
  done
  "$bin/dlogctl" ledger list --json --metadata "$uri" > "$d/ledgers-before.json"
  echo "## ledgers: $(jq length "$d/ledgers-before.json"), states $(jq -c 'group_by(.state) | map({(.[0].state): length}) | add' "$d/ledgers-before.json"), entries per ledger: $(jq -c '[.[].last_entry + 1] | {min: min, max: max, mean: (add / length | round)}' "$d/ledgers-before.json")"
  holdings "$d/ledgers-before.json" | tee "$d/holdings.json"
  victim=$(jq -r 'max_by(.ledgers).bookie' "$d/holdings.json"); k=${victim#bench-}
  expected_ledgers=$(jq 'max_by(.ledgers).ledgers' "$d/holdings.json")
  repaired0=$(metric_sum "$k" dlog_recovery_ledgers_repaired_total)
  copied0=$(metric_sum "$k" dlog_recovery_bytes_copied_total)
  entries0=$(metric_sum "$k" dlog_recovery_entries_copied_total)
  echo "## SIGKILL $victim (pid ${bookie_pid[$k]}: $expected_ledgers ledgers) and delete its directories"
  t_kill=$(now_ms)
  kill -KILL "${bookie_pid[$k]}"
  rm -rf "$d/b$k"
  heal "$d" "$k" "$t_kill" no
  repaired=$(($(metric_sum "$k" dlog_recovery_ledgers_repaired_total) - repaired0))
  copied=$(($(metric_sum "$k" dlog_recovery_bytes_copied_total) - copied0))
  entries_small=$(($(metric_sum "$k" dlog_recovery_entries_copied_total) - entries0))
  report_logs "$d"
  if [ "$healed" = yes ]; then
    copy_ms=$((t_done - t_declared)); total_ms=$((t_done - t_kill))
    summary+=(
      "small phase: $(jq length "$d/ledgers-before.json") ledgers; killed $victim, named by $expected_ledgers (marked at most $marked_max at a poll; workers' ledgers_repaired counters +$repaired; $(mb "$copied") MB copied)"
      "  re-replicated in $(jq -n "$copy_ms / 1000") s from the declaration ($(jq -n "$total_ms / 1000") s from the kill; done seen within $(jq -n "$resolution_ms / 1000") s; last byte copied $(jq -n "($t_copy_last - $t_declared) / 1000") s after the declaration; $(cpu_share "$cpu_declared" "$cpu_done"))"
      "  entries copied:             $entries_small ($(jq -n "$entries_small * 1000 / $copy_ms | round") entries/s)"
      "  ledgers re-replicated per minute: $(jq -n "$expected_ledgers * 60000 / $copy_ms | round") (from the declaration), $(jq -n "$expected_ledgers * 60000 / $total_ms | round") (from the kill)"
    )
  else
    summary+=("small phase: NOT HEALED within $max_wait s; see $d/status.log and $d/bookie*.out ($repaired ledgers repaired)")
  fi
  stop_cluster
fi

echo
echo "## disk: sequential $disk_mbs MB/s (1 MiB write+fdatasync); 4 KiB: $(jq .syncs_per_sec "$dir/disk-4k.json") syncs/s, p50 $(jq .p50_ms "$dir/disk-4k.json") ms"
echo "## settings: lost_bookie_grace_s $grace, registration_ttl_s $ttl, replication_rate_bytes $rate, replication_entries_in_flight $in_flight, entry size $entry_size B (large)"
printf '%s\n' "${summary[@]}" | tee "$dir/summary"
