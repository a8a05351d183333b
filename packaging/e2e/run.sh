#!/usr/bin/env bash
# End-to-end test of the package under a real systemd: five Debian bookworm containers (systemd-nspawn, real
# systemd as PID 1), each in a network namespace of its own on one bridge: metadata, three bookies, a proxy.
# In each: dpkg -i, systemctl start dlogd@ROLE; then records are written and read with dlogctl, Debian's
# prometheus scrapes every container under load and each query of the shipped dashboard must return data, the
# journal's fields and the admin socket are checked, one bookie's journal device is frozen until the watchdog has
# systemd restart it, a reinstall (the upgrade path) restarts a running bookie on the new files, dpkg -r stops
# every instance gracefully and keeps the data, and dpkg --purge cleans up, except under a dlogd still running.
# Before that, the package is installed, removed and purged in a chroot without systemd. bookie-1's journal and
# ledger directories are two loop-device filesystems, so the generator's mount ordering is exercised.
#
#   packaging/e2e/run.sh DEB        (root; `make e2e` builds the .deb first)
#
# Everything it creates (namespaces, mounts, loop devices, processes) is removed on exit, also on failure or
# timeout. E2E_KEEP=1 keeps the work directory (container journals, console logs) for a look afterwards.
set -euo pipefail

deb=$(realpath "${1:?usage: run.sh DEB}")
[ "$(id -u)" = 0 ] || { echo "e2e: needs root (namespaces, loop devices, containers)" >&2; exit 1; }
for tool in mmdebstrap systemd-nspawn nsenter losetup mkfs.ext4 fsfreeze ip jq curl prometheus; do
	command -v "$tool" >/dev/null || { echo "e2e: $tool is missing (make deps installs it)" >&2; exit 1; }
done

started=$(date +%s.%N)
id=$(( $$ % 10000 ))
prefix="dle2e$id"
work=$(mktemp -d /var/tmp/dlog-e2e.XXXXXX)
roles=(metadata bookie1 bookie2 bookie3 proxy)
declare -A address=([metadata]=127.77.0.1 [bookie1]=127.77.0.2 [bookie2]=127.77.0.3 [bookie3]=127.77.0.4
	[proxy]=127.77.0.5)
declare -A nspawn_pid=() init_pid=()
loops=()
mounts=()
frozen=""
writer=""
prometheus_pid=""
metadata_uri="dlog://${address[metadata]}:3180"
proxy_addr="${address[proxy]}:3190"

elapsed() { awk -v s="$started" -v n="$(date +%s.%N)" 'BEGIN { printf "%6.1f", n - s }'; }
step_start=0
step() {
	local now; now=$(date +%s.%N)
	if [ "$step_start" != 0 ]; then
		awk -v s="$step_start" -v n="$now" -v name="$step_name" 'BEGIN { printf "e2e:        %-58s %5.1f s\n", name, n - s }'
	fi
	step_name="$1"
	step_start=$now
	echo "e2e: [$(elapsed) s] $1"
}
fail() {
	echo "e2e: FAILED: $*" >&2
	exit 1
}

# Stops a container: poweroff, then (past 10 s) its PID 1 is killed, which ends everything in it.
stop_container() {
	local role=$1 pid=${nspawn_pid[$1]:-} init=${init_pid[$1]:-}
	[ -n "$pid" ] || return 0
	for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$pid" 2>/dev/null; then
		[ -n "$init" ] && [ "$(cat "/proc/$init/comm" 2>/dev/null)" = systemd ] && kill -KILL "$init"
		for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
	fi
	wait "$pid" 2>/dev/null
	rm -rf "/run/systemd/nspawn/propagate/$prefix-$role"
}

cleanup() {
	local code=$?
	set +e
	trap - EXIT
	trap '' INT TERM
	if [ $code != 0 ] && [ -n "${E2E_HOLD:-}" ]; then
		# For a look inside before everything goes: nsenter -t PID -a bash
		for role in "${roles[@]}"; do echo "e2e: $role: nsenter -t ${init_pid[$role]:-?} -a bash"; done
		sleep "$E2E_HOLD"
	fi
	[ -n "$frozen" ] && fsfreeze -u "$frozen"
	[ -n "$writer" ] && kill "$writer" 2>/dev/null
	[ -n "$prometheus_pid" ] && kill "$prometheus_pid" 2>/dev/null && wait "$prometheus_pid" 2>/dev/null
	for role in "${roles[@]}"; do
		local pid=${init_pid[$role]:-}
		[ -n "$pid" ] && timeout 10 nsenter -t "$pid" -a systemctl poweroff --no-block >/dev/null 2>&1
	done
	for role in "${roles[@]}"; do stop_container "$role"; done
	local m
	for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
		m=${mounts[$i]}
		umount "$m" 2>/dev/null || umount -l "$m"
	done
	for loop in "${loops[@]}"; do losetup -d "$loop"; done
	for role in "${roles[@]}" br; do ip netns del "$prefix-$role" 2>/dev/null; done
	if [ "${E2E_KEEP:-0}" = 1 ] || [ $code != 0 ]; then
		# Kept for a look: the container journals (journalctl -D DIR/ROLE/upper/var/log/journal) and logs.
		rm -f "$work/owner" "$work"/*.img
		[ "${E2E_KEEP:-0}" = 1 ] || rm -rf "$work/root"
		echo "e2e: work directory kept: $work"
	else
		rm -rf "$work"
	fi
	echo "e2e: cleaned up after $(elapsed) s (exit $code)"
	exit $code
}

# What an earlier run left when it was killed outright (SIGKILL, a crash): its containers, mounts, loop
# devices and namespaces, found through the work directory it recorded them in.
sweep_stale() {
	local dir pid
	for dir in /var/tmp/dlog-e2e.*; do
		[ -d "$dir" ] && [ -f "$dir/owner" ] || continue
		pid=$(cat "$dir/owner")
		if kill -0 "$pid" 2>/dev/null && grep -q 'run.sh' "/proc/$pid/cmdline" 2>/dev/null; then continue; fi
		echo "e2e: removing what the run of process $pid left in $dir"
		for pid in $(cat "$dir/pids" 2>/dev/null); do
			case $(cat "/proc/$pid/comm" 2>/dev/null) in systemd | systemd-nspawn) kill -KILL "$pid" ;; esac
		done
		sleep 0.5
		awk -v d="$dir/" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r | xargs -r -n1 umount -l
		for img in "$dir"/*.img; do
			[ -f "$img" ] && losetup -j "$img" | cut -d: -f1 | xargs -r -n1 losetup -d
		done
		if [ -s "$dir/prefix" ]; then
			local p; p=$(cat "$dir/prefix")
			for ns in /run/netns/"$p"-*; do [ -e "$ns" ] && ip netns del "$(basename "$ns")"; done
			rm -rf /run/systemd/nspawn/propagate/"$p"-*
		fi
		rm -f "$dir/owner"
	done
}

sweep_stale
echo $$ >"$work/owner"
echo "$prefix" >"$work/prefix"
trap cleanup EXIT
trap 'exit 130' INT TERM

# Runs a command inside a container (all its namespaces: mount, pid, net, uts, ipc).
on() {
	local role=$1
	shift
	nsenter -t "${init_pid[$role]}" -a "$@"
}
# `journalctl -u UNIT` inside a container, as text.
unit_log() { on "$1" journalctl -u "$2" --no-pager -o cat; }

# A condition, polled every 0.2 s until a bound: wait_for SECONDS DESCRIPTION COMMAND...
wait_for() {
	local limit=$1 what=$2
	shift 2
	local deadline=$(( $(date +%s) + limit ))
	until "$@" >/dev/null 2>&1; do
		[ "$(date +%s)" -lt "$deadline" ] || fail "$what: not within ${limit} s"
		sleep 0.2
	done
}

step "root filesystem (mmdebstrap, bookworm minbase + systemd + the package's Depends)"
mirror=$(sed -n 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $0 !~ /security/ { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
[ -n "$mirror" ] || fail "no Debian mirror in /etc/apt/sources.list.d/debian.sources or /etc/apt/sources.list"
# The package's own Depends (first of each alternative, versions dropped) are what dpkg -i will need offline.
depends=$(dpkg-deb -f "$deb" Depends | tr ',' '\n' | sed 's/|.*//; s/(.*)//; s/[[:space:]]//g' | grep -v '^$' | paste -sd,)
mmdebstrap --quiet --variant=minbase --include="systemd,systemd-sysv,dbus,$depends" bookworm "$work/root" "$mirror" \
	>"$work/mmdebstrap.log" 2>&1 || { tail -20 "$work/mmdebstrap.log" >&2; fail "mmdebstrap"; }
: >"$work/root/etc/machine-id"
for unit in console-getty.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer; do
	ln -sf /dev/null "$work/root/etc/systemd/system/$unit"
done
mkdir -p "$work/debs"
cp "$deb" "$work/debs/"

step "chroot without systemd: dpkg -i, -r and --purge (the maintainer scripts must not need systemd)"
# An overlay of its own, so the containers' root stays as mmdebstrap left it.
mkdir -p "$work/chroot/upper" "$work/chroot/work" "$work/chroot/merged"
mount -t overlay overlay -o "lowerdir=$work/root,upperdir=$work/chroot/upper,workdir=$work/chroot/work" "$work/chroot/merged"
mounts+=("$work/chroot/merged")
mount -t proc proc "$work/chroot/merged/proc"
mounts+=("$work/chroot/merged/proc")
cp "$deb" "$work/chroot/merged/tmp/"
in_chroot() { chroot "$work/chroot/merged" "$@" >>"$work/chroot.dpkg" 2>&1 || { cat "$work/chroot.dpkg" >&2; fail "chroot: $*"; }; }
in_chroot sh -c 'dpkg -i /tmp/dlogd_*.deb'
chroot "$work/chroot/merged" test -d /var/lib/dlog/bookie || fail "chroot: no /var/lib/dlog/bookie after dpkg -i"
in_chroot dpkg -r dlogd
chroot "$work/chroot/merged" test -d /var/lib/dlog || fail "chroot: dpkg -r deleted /var/lib/dlog"
in_chroot dpkg --purge dlogd
if chroot "$work/chroot/merged" test -e /var/lib/dlog; then fail "chroot: /var/lib/dlog is still there after purge"; fi
umount "$work/chroot/merged/proc" "$work/chroot/merged"
mounts=("${mounts[@]:0:${#mounts[@]}-2}")

step "network: a bridge namespace and one namespace per host (127.77.0.0/24)"
ip netns add "$prefix-br"
ip -n "$prefix-br" link add br0 type bridge
ip -n "$prefix-br" link set br0 up
n=0
for role in "${roles[@]}"; do
	n=$((n + 1))
	ns="$prefix-$role"
	ip netns add "$ns"
	ip link add "v${id}h$n" type veth peer name eth0 netns "$ns"
	ip link set "v${id}h$n" netns "$prefix-br"
	ip -n "$prefix-br" link set "v${id}h$n" master br0 up
	# Loopback-range addresses route between namespaces only with route_localnet, and only once each
	# namespace stops claiming all of 127/8 for itself.
	ip netns exec "$ns" sysctl -qw net.ipv4.conf.all.route_localnet=1
	ip -n "$ns" link set lo up
	ip -n "$ns" addr del 127.0.0.1/8 dev lo
	ip -n "$ns" addr add 127.0.0.1/32 dev lo
	ip -n "$ns" addr add "${address[$role]}/24" dev eth0
	ip -n "$ns" link set eth0 up
done

step "loop devices: bookie1's journal and ledgers on two ext4 filesystems"
for part in journal ledgers; do
	truncate -s 192M "$work/$part.img"
	loop=$(losetup -f --show "$work/$part.img")
	loops+=("$loop")
	mkfs.ext4 -q -F "$loop"
	mkdir -p "$work/mnt/$part"
	mount "$loop" "$work/mnt/$part"
	mounts+=("$work/mnt/$part")
done

step "boot five containers (overlayfs over the root, systemd as PID 1)"
for role in "${roles[@]}"; do
	dir="$work/$role"
	mkdir -p "$dir/upper" "$dir/work" "$dir/merged"
	mount -t overlay overlay -o "lowerdir=$work/root,upperdir=$dir/upper,workdir=$dir/work" "$dir/merged"
	mounts+=("$dir/merged")
	systemd-id128 new >"$dir/merged/etc/machine-id"
	echo "$role" >"$dir/merged/etc/hostname"
	extra=()
	if [ "$role" = bookie1 ]; then
		extra=(--bind="$work/mnt/journal:/srv/dlog/journal" --bind="$work/mnt/ledgers:/srv/dlog/ledgers")
	fi
	setsid systemd-nspawn -D "$dir/merged" --boot --machine="$prefix-$role" --register=no --keep-unit -q \
		--console=read-only --network-namespace-path="/run/netns/$prefix-$role" --bind-ro="$work/debs:/debs" \
		"${extra[@]}" </dev/null >"$work/$role.console" 2>&1 &
	nspawn_pid[$role]=$!
	echo "${nspawn_pid[$role]}" >>"$work/pids"
done
for role in "${roles[@]}"; do
	# nspawn's first child may be a short-lived helper: the container's PID 1 is the child running systemd.
	wait_for 30 "$role: container init" pgrep -P "${nspawn_pid[$role]}" -x systemd
	init_pid[$role]=$(pgrep -P "${nspawn_pid[$role]}" -x systemd | head -1)
	echo "${init_pid[$role]}" >>"$work/pids"
done
for role in "${roles[@]}"; do
	# systemctl answers nothing while the container's systemd has not made its private socket yet (early in
	# boot, on a loaded machine): ask again until it answers, within 60 s.
	state=""
	deadline=$((SECONDS + 60))
	while [ "$SECONDS" -lt "$deadline" ]; do
		# The PID found first may have been a helper that exited since: find the container's init again.
		if ! kill -0 "${init_pid[$role]}" 2>/dev/null; then
			init_pid[$role]=$(pgrep -P "${nspawn_pid[$role]}" -x systemd | head -1 || true)
			echo "${init_pid[$role]}" >>"$work/pids"
		fi
		state=$(timeout 60 nsenter -t "${init_pid[$role]}" -a systemctl is-system-running --wait 2>/dev/null || true)
		case $state in running | degraded | stopping | offline | maintenance) break ;; esac
		sleep 0.2
	done
	case $state in
	running | degraded) ;;
	*) fail "$role: systemd is '$state' after boot" ;;
	esac
done

step "dpkg -i in every container"
for role in "${roles[@]}"; do
	on "$role" sh -c 'dpkg -i /debs/*.deb' >"$work/$role.dpkg" 2>&1 || { cat "$work/$role.dpkg" >&2; fail "$role: dpkg -i"; }
	on "$role" id dlog >/dev/null || fail "$role: the package made no user dlog"
	on "$role" test -d /var/lib/dlog || fail "$role: the package made no /var/lib/dlog"
	on "$role" test -s /usr/share/dlogd/dlogd-dashboard.json || fail "$role: the package has no /usr/share/dlogd/dlogd-dashboard.json"
done

step "TLS: /etc/dlog/tls from the package; a cluster CA and each host's certificate made with dlogctl tls"
for role in "${roles[@]}"; do
	mode=$(on "$role" stat -c '%a %U %G' /etc/dlog/tls)
	[ "$mode" = "750 root dlog" ] || fail "$role: /etc/dlog/tls is '$mode', not '750 root dlog'"
done
on metadata dlogctl tls init-ca --dir /root/ca >/dev/null
for role in "${roles[@]}"; do
	on metadata dlogctl tls issue --dir /root/ca --role "${role%[0-9]}" --name "$role" --host "${address[$role]}" >/dev/null
done
on metadata dlogctl tls issue --dir /root/ca --role admin --name e2e-admin >/dev/null
on metadata dlogctl tls issue --dir /root/ca --role monitor --name prometheus >/dev/null
on metadata cat /root/ca/ca.crt >"$work/ca.crt"
on metadata cat /root/ca/prometheus.crt >"$work/prometheus.crt"
on metadata cat /root/ca/prometheus.key >"$work/prometheus.key"
# Each host gets the CA, its own certificate and key as the shipped configs name them (node.crt, node.key), and
# the admin's certificate for dlogctl, which reads DLOG_TLS_* (exported here; nsenter keeps the environment).
for role in "${roles[@]}"; do
	on "$role" sh -c 'cat > /etc/dlog/tls/ca.crt' <"$work/ca.crt"
	on metadata cat "/root/ca/$role.crt" | on "$role" sh -c 'cat > /etc/dlog/tls/node.crt'
	on metadata cat "/root/ca/$role.key" | on "$role" sh -c 'umask 027; cat > /etc/dlog/tls/node.key; chgrp dlog /etc/dlog/tls/node.key'
	on metadata cat /root/ca/e2e-admin.crt | on "$role" sh -c 'cat > /etc/dlog/tls/admin.crt'
	on metadata cat /root/ca/e2e-admin.key | on "$role" sh -c 'umask 077; cat > /etc/dlog/tls/admin.key'
done
export DLOG_TLS_CA=/etc/dlog/tls/ca.crt DLOG_TLS_CERT=/etc/dlog/tls/admin.crt DLOG_TLS_KEY=/etc/dlog/tls/admin.key
# The shipped configs' TLS lines: every config below keeps them.
tls_lines=$(on metadata grep -E '^tls_(mode|cert_file|key_file|ca_file) =' /etc/dlog/metadata.conf)
[[ "$tls_lines" == *"tls_mode = required"* ]] || fail "the shipped metadata.conf does not require TLS: $tls_lines"

# Writes /etc/dlog/NAME.conf in a container from standard input, after the shipped TLS lines.
config() { { echo "$tls_lines"; cat; } | on "$1" sh -c "cat > /etc/dlog/$2.conf"; }

step "configure and start dlogd@metadata; dlogctl cluster init"
config metadata metadata <<EOF
role = metadata
data_dir = /var/lib/dlog/metadata
host = ${address[metadata]}
port = 3180
metrics_port = 9100
EOF
on metadata systemctl start dlogd@metadata
[ "$(on metadata systemctl is-active dlogd@metadata)" = active ] || fail "metadata: dlogd@metadata is not active"
on metadata dlogctl cluster init --metadata "$metadata_uri" >/dev/null

step "configure and start dlogd@bookie on three hosts (bookie1 on its own devices)"
for n in 1 2 3; do
	role=bookie$n
	if [ $n = 1 ]; then
		dirs="journal_dirs = /srv/dlog/journal
ledger_dirs = /srv/dlog/ledgers
allow_shared_device = false"
		on "$role" chown dlog:dlog /srv/dlog/journal /srv/dlog/ledgers
		# A short watchdog interval so the freeze below is noticed in seconds.
		on "$role" mkdir -p /etc/systemd/system/dlogd@bookie.service.d
		printf '[Service]\nWatchdogSec=6\n' | on "$role" sh -c 'cat > /etc/systemd/system/dlogd@bookie.service.d/e2e.conf'
	else
		dirs="journal_dirs = /var/lib/dlog/bookie/journal
ledger_dirs = /var/lib/dlog/bookie/ledgers
allow_shared_device = true"
		# A seccomp filter as container runtimes and hardened hosts set one: bookie2 is refused io_uring (its
		# journal must pick libaio), bookie3 io_uring and native AIO (it must pick the blocking engine).
		denied="io_uring_setup io_uring_enter io_uring_register"
		[ $n = 3 ] && denied="$denied io_setup io_submit io_getevents io_destroy"
		on "$role" mkdir -p /etc/systemd/system/dlogd@bookie.service.d
		printf '[Service]\nSystemCallFilter=~%s\n' "$denied" |
			on "$role" sh -c 'cat > /etc/systemd/system/dlogd@bookie.service.d/e2e-seccomp.conf'
	fi
	config "$role" bookie <<EOF
role = bookie
$dirs
host = ${address[$role]}
port = 3181
metadata = $metadata_uri
bookie_id = bookie-$n
journal_file_bytes = 16M
journal_files_max = 4
write_cache_bytes = 16M
metrics_port = 9100
EOF
	# The generator reads the new directories at daemon-reload.
	on "$role" systemctl daemon-reload
	on "$role" systemctl start dlogd@bookie
	[ "$(on "$role" systemctl is-active dlogd@bookie)" = active ] || fail "$role: dlogd@bookie is not active"
done

step "journal engines: io_uring where allowed, else libaio, else blocking, each refusal logged once"
declare -A expected_engine=([bookie1]=io_uring [bookie2]=libaio [bookie3]=blocking)
[ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" = 0 ] || expected_engine[bookie1]=libaio
for role in bookie1 bookie2 bookie3; do
	engine=$(on "$role" dlogctl admin --instance bookie journal --json | jq -r '.journals[0].engine')
	[ "$engine" = "${expected_engine[$role]}" ] || fail "$role: journal engine is '$engine', not ${expected_engine[$role]}"
	echo "e2e: $role journal engine: $engine"
done
for role in bookie2 bookie3; do
	line=$(unit_log "$role" dlogd@bookie | grep 'journal engine chosen' || true)
	[[ "$line" == *"after refusals: io_uring refused"* ]] || fail "$role: no log line saying why io_uring was refused: $line"
	on "$role" journalctl -u dlogd@bookie -o json --no-pager | jq -r 'select(.DLOG_REASON != null) | .DLOG_REASON' |
		grep -q 'io_uring refused (io_uring_queue_init.*seccomp' || fail "$role: the refusal's reason does not name seccomp"
done
on bookie3 journalctl -u dlogd@bookie -o json --no-pager | jq -r 'select(.DLOG_REASON != null) | .DLOG_REASON' |
	grep -q 'libaio refused (io_setup' || fail "bookie3: the reason does not say libaio was refused"
on bookie3 journalctl -u dlogd@bookie -o json --no-pager | jq -r 'select(.DLOG_REASON != null) | .DLOG_REASON' | head -1

step "configure and start dlogd@proxy"
config proxy proxy <<EOF
role = proxy
metadata = $metadata_uri
host = ${address[proxy]}
port = 3190
ensemble = 3
write_quorum = 3
ack_quorum = 2
metrics_port = 9100
EOF
on proxy systemctl start dlogd@proxy
[ "$(on proxy systemctl is-active dlogd@proxy)" = active ] || fail "proxy: dlogd@proxy is not active"

step "systemctl reload dlogd@proxy: a new log_level applies without a restart"
pid_before=$(on proxy systemctl show -p MainPID --value dlogd@proxy)
on proxy sh -c 'echo "log_level = debug" >> /etc/dlog/proxy.conf'
on proxy systemctl reload dlogd@proxy
on proxy dlogctl admin --instance proxy log-level --json | grep -q '"debug"' || fail "proxy: log_level is not debug after reload"
[ "$(on proxy systemctl show -p MainPID --value dlogd@proxy)" = "$pid_before" ] || fail "proxy: reload restarted the daemon"

step "systemd-analyze verify: no output for any instance"
for role in "${roles[@]}"; do
	instance=${role%[0-9]}
	out=$(on "$role" systemd-analyze verify --man=no "dlogd@$instance.service" 2>&1 || true)
	[ -z "$out" ] || fail "$role: systemd-analyze verify dlogd@$instance.service said: $out"
done

step "separate devices: the generator's RequiresMountsFor and data on the loop filesystems"
mounts_for=$(on bookie1 systemctl show -p RequiresMountsFor --value dlogd@bookie)
[[ " $mounts_for " == *" /srv/dlog/journal "* && " $mounts_for " == *" /srv/dlog/ledgers "* ]] ||
	fail "bookie1: RequiresMountsFor is '$mounts_for'"
on bookie1 systemctl show -p After --value dlogd@bookie | tr ' ' '\n' | grep -qx 'srv-dlog-journal.mount' ||
	fail "bookie1: dlogd@bookie is not ordered after srv-dlog-journal.mount"
[ -n "$(ls -A "$work/mnt/journal")" ] || fail "bookie1: nothing written to the journal filesystem"
if unit_log bookie1 dlogd@bookie | grep -qi 'same device'; then fail "bookie1: journal and ledgers reported on one device"; fi

step "write 200 records through the proxy and read them back"
seq 1 200 | sed 's/^/record-/' >"$work/records.txt"
on proxy dlogctl write e2e --proxy "$proxy_addr" <"$work/records.txt" >/dev/null
on proxy dlogctl read e2e --metadata "$metadata_uri" --limit 200 --json |
	jq -r '.payload' >"$work/read.txt" || fail "dlogctl read"
cmp -s "$work/records.txt" "$work/read.txt" || fail "records read back differ from those written"

step "Prometheus scrapes every container over TLS; every query of the shipped dashboard returns data under load"
targets=$(for role in "${roles[@]}"; do printf '"%s:9100",' "${address[$role]}"; done)
cat >"$work/prometheus.yml" <<EOF
global: {scrape_interval: 1s, evaluation_interval: 1s}
scrape_configs:
  - job_name: dlogd
    scheme: https
    tls_config: {ca_file: $work/ca.crt, cert_file: $work/prometheus.crt, key_file: $work/prometheus.key}
    static_configs: [{targets: [${targets%,}]}]
EOF
ip netns exec "$prefix-proxy" prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/prometheus" \
	--web.listen-address=127.0.0.1:9090 >"$work/prometheus.log" 2>&1 &
prometheus_pid=$!
promql() { ip netns exec "$prefix-proxy" curl -sS --max-time 5 http://127.0.0.1:9090/api/v1/query --data-urlencode "query=$1"; }
for _ in $(seq 1 300); do
	[ "$(promql 'sum(up)' 2>/dev/null | jq -r '.data.result[0].value[1] // empty' 2>/dev/null)" = "${#roles[@]}" ] && break
	sleep 0.1
done
[ "$(promql 'sum(up)' | jq -r '.data.result[0].value[1] // empty')" = "${#roles[@]}" ] ||
	fail "Prometheus: not every target is up: $(promql 'up' | jq -c '[.data.result[] | {i: .metric.instance, v: .value[1]}]') $(tail -5 "$work/prometheus.log")"
# Load, with tailing readers (long polls), for the rate windows below; meanwhile `dlogctl top` views the cluster.
on proxy dlog-bench log --proxy "$proxy_addr" --metadata "$metadata_uri" --streams 4 --clients 8 --size 200 --duration 12 >/dev/null &
bench_pid=$!
sleep 4
on proxy dlogctl top --once --json --interval 3 --metadata "$metadata_uri" >"$work/top.json" || fail "dlogctl top: $(cat "$work/top.json")"
bookies_seen=$(jq '[.bookies[] | select(.metrics == "ok" and .state == "writable" and .sync_p99_ms > 0)] | length' "$work/top.json")
proxies_seen=$(jq '[.proxies[] | select(.metrics == "ok" and .writes_per_second > 0 and .write_p99_ms > 0)] | length' "$work/top.json")
metadata_seen=$(jq '[.metadata.servers[] | select(.metrics == "ok" and .requests_per_second > 0)] | length' "$work/top.json")
[ "$bookies_seen" -ge 3 ] && [ "$proxies_seen" -ge 1 ] && [ "$metadata_seen" -ge 1 ] ||
	fail "dlogctl top does not show every role live: $(cat "$work/top.json")"
echo "e2e: dlogctl top shows $bookies_seen bookies, $proxies_seen proxy and $metadata_seen metadata role live, each scraped over TLS"
wait "$bench_pid" || fail "dlog-bench log through the proxy"
sleep 2
on metadata cat /usr/share/dlogd/dlogd-dashboard.json >"$work/dashboard.json"
queries=0
while IFS=$'\t' read -r title expr; do
	result=$(promql "${expr//\$__rate_interval/30s}")
	[ "$(jq -r '.status' <<<"$result")" = success ] || fail "dashboard panel '$title': Prometheus refused $expr: $result"
	[ "$(jq '.data.result | length' <<<"$result")" -gt 0 ] || fail "dashboard panel '$title' shows nothing: $expr"
	queries=$((queries + 1))
done < <(jq -r '.panels[] | select(.type != "row") | .title as $t | .targets[] | [$t, .expr] | @tsv' "$work/dashboard.json")
[ "$queries" -gt 20 ] || fail "only $queries dashboard queries were read"
echo "e2e: all $queries dashboard queries return data from ${#roles[@]} daemons scraped over TLS"
kill "$prometheus_pid"; wait "$prometheus_pid" 2>/dev/null || true; prometheus_pid=""

step "TLS required on every port: a client without a certificate is refused, and the daemon logs who"
declare -A port=([metadata]=3180 [bookie1]=3181 [proxy]=3190)
for role in metadata bookie1 proxy; do
	out=$(ip netns exec "$prefix-proxy" curl -sS --max-time 5 --cacert "$work/ca.crt" \
		"https://${address[$role]}:${port[$role]}/" 2>&1 || true)
	[[ "$out" == *"certificate required"* ]] || fail "$role: a client without a certificate was not refused: $out"
	instance=${role%[0-9]}
	wait_for 10 "$role: the refusal in its log" sh -c "nsenter -t ${init_pid[$role]} -a journalctl -u dlogd@$instance --no-pager -o cat |
		grep -q 'TLS connection from ${address[proxy]}:[0-9]* refused: the client showed no certificate'"
	echo "e2e: $role (port ${port[$role]}) refused a client without a certificate: ${out##*: }"
done
out=$(on proxy env -u DLOG_TLS_CERT -u DLOG_TLS_KEY dlogctl bookie list --metadata "$metadata_uri" 2>&1 || true)
[[ "$out" == *"requires a client certificate"* ]] || fail "dlogctl without a certificate: $out"
echo "e2e: dlogctl without a certificate: $out"

step "admin socket: dlogctl admin status, and a user outside group dlog refused"
on bookie1 dlogctl admin --instance bookie status | tee "$work/admin-status.txt"
grep -q 'state  *writable' "$work/admin-status.txt" || fail "bookie1: admin status does not say writable"
on bookie1 dlogctl admin --instance bookie checkpoint >/dev/null
on bookie1 dlogctl admin --instance bookie disks | tee "$work/admin-disks.txt"
devices=$(on bookie1 dlogctl admin --instance bookie disks --json | jq -r '.disks[].device' | sort -u | wc -l)
[ "$devices" = 2 ] || fail "bookie1: journal and ledger directories are not on two devices (admin disks)"
on bookie1 dlogctl admin --instance bookie journal >"$work/admin-journal.txt"
grep -q 'j0_sync_latency:' "$work/admin-journal.txt" || fail "bookie1: admin journal has no sync latency histogram"
# The unit's SystemCallFilter lets io_uring through: where the host allows it, the journal uses it.
if [ "$(cat /proc/sys/kernel/io_uring_disabled 2>/dev/null || echo 0)" = 0 ]; then
	engine=$(on bookie1 dlogctl admin --instance bookie journal --json | jq -r '.journals[0].engine')
	[ "$engine" = io_uring ] || fail "bookie1: the journal engine under the unit's filter is '$engine', not io_uring"
fi
# The first health line replaces "serving on ..." after half the watchdog interval.
wait_for 15 "bookie1: systemd's Status showing the health line" sh -c \
	"nsenter -t ${init_pid[bookie1]} -a systemctl show -p StatusText --value dlogd@bookie | grep -q '^writable, '"
status_text=$(on bookie1 systemctl show -p StatusText --value dlogd@bookie)
echo "e2e: bookie1 Status: $status_text"
on bookie1 dlogctl admin --instance bookie ledger list >"$work/admin-ledgers.txt"
grep -q '^  L' "$work/admin-ledgers.txt" || fail "bookie1: admin ledger list shows no ledger after 200 records"
on bookie1 dlogctl admin --instance bookie gc --json | jq -e '.deleted == []' >/dev/null || fail "bookie1: admin gc"
on metadata dlogctl admin --instance metadata stats --json | jq -e '.revision > 0' >/dev/null || fail "metadata: admin stats"
on proxy dlogctl admin --instance proxy streams --json | jq -e '.streams | index("e2e")' >/dev/null ||
	fail "proxy: admin streams does not list e2e"
if on bookie1 setpriv --reuid=nobody --regid=nogroup --clear-groups dlogctl admin --instance bookie status >/dev/null 2>&1; then
	fail "bookie1: user nobody was let in to the admin socket"
fi

step "journald: structured fields in journalctl -u dlogd@bookie -o json"
on bookie1 journalctl -u dlogd@bookie -o json --no-pager >"$work/bookie1-journal.json"
record=$(jq -c 'select(.SYSLOG_IDENTIFIER == "dlogd" and .DLOG_ROLE == "bookie" and .BOOKIE_ID != null)' \
	"$work/bookie1-journal.json" | head -1)
[ -n "$record" ] || fail "bookie1: no journal record with SYSLOG_IDENTIFIER=dlogd, DLOG_ROLE=bookie and BOOKIE_ID"
for field in MESSAGE PRIORITY DLOG_INSTANCE CODE_FILE CODE_LINE; do
	jq -e --arg f "$field" 'has($f)' <<<"$record" >/dev/null || fail "bookie1: the journal record has no $field"
done
echo "$record" | jq . >"$work/journal-record.json"
echo "$record"
on bookie1 journalctl --no-pager -o cat DLOG_ROLE=bookie BOOKIE_ID=bookie-1 | grep -q . ||
	fail "bookie1: journalctl BOOKIE_ID=bookie-1 finds nothing"

step "thread priority: LimitNICE=-4 lets libdispatch's nice -4 through wherever systemd may set it"
# libdispatch's event-manager thread asks for nice -4 (see the unit's comment). LimitNICE=-4 is RLIMIT_NICE 24;
# a systemd without CAP_SYS_RESOURCE (in a container) cannot raise the limit, and then the refusal is logged.
limit=$(on bookie1 systemctl show -p LimitNICE --value dlogd@bookie)
[ "$limit" = 24 ] || fail "bookie1: the unit's LimitNICE is '$limit', not 24 (nice -4)"
pid=$(on bookie1 systemctl show -p MainPID --value dlogd@bookie)
effective=$(on bookie1 cat "/proc/$pid/limits" | awk '/^Max nice priority/ { print $4 }')
refusals=$(unit_log bookie1 dlogd@bookie | grep -c 'Failed to set thread priority' || true)
if [ "$effective" = 24 ]; then
	[ "$refusals" = 0 ] || fail "bookie1: RLIMIT_NICE is 24, yet the journal has $refusals 'Failed to set thread priority' lines"
	echo "e2e: RLIMIT_NICE 24 applied; no 'Failed to set thread priority' line"
else
	echo "e2e: systemd here could not raise RLIMIT_NICE (it is '$effective': no CAP_SYS_RESOURCE on this host);" \
		"'Failed to set thread priority' logged $refusals time(s), as the unit's comment says"
fi

step "watchdog: freeze bookie1's journal filesystem under load; systemd restarts the bookie"
# A writer adds records for about 30 s; with bookie1 stuck the ledgers go on with the other two (Qa = 2),
# whose journals run on libaio and the blocking engine.
seq 1 600 | sed 's/^/load-/' >"$work/load.txt"
on proxy sh -c "i=1; while [ \$i -le 600 ]; do echo load-\$i; i=\$((i + 1)); sleep 0.05; done |
	dlogctl write e2e-load --proxy $proxy_addr" >"$work/load.out" 2>&1 &
writer=$!
sleep 2
restarts_before=$(on bookie1 systemctl show -p NRestarts --value dlogd@bookie)
fsfreeze -f "$work/mnt/journal"
frozen="$work/mnt/journal"
echo "e2e: [$(elapsed) s] journal filesystem frozen"
wait_for 45 "bookie1: systemd's watchdog timeout" sh -c "nsenter -t ${init_pid[bookie1]} -a journalctl -u dlogd@bookie --no-pager -o cat | grep -q 'Watchdog timeout'"
echo "e2e: [$(elapsed) s] systemd's watchdog timed out; thawing"
fsfreeze -u "$work/mnt/journal"
frozen=""
wait_for 60 "bookie1: dlogd@bookie restarted by systemd" sh -c \
	"[ \"\$(nsenter -t ${init_pid[bookie1]} -a systemctl show -p NRestarts --value dlogd@bookie)\" -gt $restarts_before ] &&
	 [ \"\$(nsenter -t ${init_pid[bookie1]} -a systemctl is-active dlogd@bookie)\" = active ]"
echo "e2e: [$(elapsed) s] dlogd@bookie active again (NRestarts $(on bookie1 systemctl show -p NRestarts --value dlogd@bookie))"
on bookie1 journalctl -u dlogd@bookie --no-pager -o cat | grep -m1 'Watchdog timeout'
wait "$writer" || { cat "$work/load.out" >&2; fail "the writer failed while bookie1 was frozen"; }
on proxy dlogctl read e2e-load --metadata "$metadata_uri" --limit 600 --json | jq -r '.payload' >"$work/load-read.txt"
cmp -s "$work/load.txt" "$work/load-read.txt" || fail "records written across the freeze do not read back exact"

step "upgrade: dpkg -i over the installed version restarts the running bookie on the new files"
pid_before=$(on bookie2 systemctl show -p MainPID --value dlogd@bookie)
on bookie2 sh -c 'dpkg -i /debs/*.deb' >"$work/bookie2.upgrade" 2>&1 || { cat "$work/bookie2.upgrade" >&2; fail "bookie2: dpkg -i over itself"; }
grep -q 'restarting dlogd@bookie.service' "$work/bookie2.upgrade" || fail "bookie2: postinst did not say it restarts dlogd@bookie"
[ "$(on bookie2 systemctl is-active dlogd@bookie)" = active ] || fail "bookie2: dlogd@bookie is not active after the upgrade"
pid_after=$(on bookie2 systemctl show -p MainPID --value dlogd@bookie)
[ "$pid_after" != "$pid_before" ] || fail "bookie2: dlogd@bookie still runs the process started before the upgrade ($pid_before)"
[ "$(on bookie2 readlink "/proc/$pid_after/exe")" = /usr/bin/dlogd ] || fail "bookie2: the restarted bookie does not run /usr/bin/dlogd"
echo "e2e: bookie2 restarted by postinst: pid $pid_before -> $pid_after"

# The dlogd processes in a container, by name (minbase has no pgrep).
dlogd_count() { on "$1" sh -c 'cat /proc/[0-9]*/comm 2>/dev/null' | grep -cx dlogd || true; }

step "dpkg -r with every instance running: each stopped gracefully, no dlogd left, data kept"
# bookie3 keeps a copy of the binary to run a dlogd outside systemd after the removal (the purge step).
on bookie3 sh -c 'mkdir -p /root/keep && cp /usr/bin/dlogd /root/keep/dlogd'
for role in proxy bookie1 bookie2 bookie3 metadata; do
	instance=${role%[0-9]}
	# Only the frozen bookie was restarted by systemd: the others pinged their watchdogs all along.
	restarts=$(on "$role" systemctl show -p NRestarts --value "dlogd@$instance")
	[ "$role" = bookie1 ] || [ "$restarts" = 0 ] || fail "$role: dlogd@$instance was restarted $restarts time(s)"
	[ "$(on "$role" systemctl is-active "dlogd@$instance")" = active ] || fail "$role: dlogd@$instance is not running before dpkg -r"
	clean_before=$(unit_log "$role" "dlogd@$instance" | grep -c 'Deactivated successfully' || true)
	on "$role" dpkg -r dlogd >"$work/$role.remove" 2>&1 || { cat "$work/$role.remove" >&2; fail "$role: dpkg -r"; }
	state=$(on "$role" systemctl is-active "dlogd@$instance" || true)
	[ "$state" = inactive ] || fail "$role: dlogd@$instance is '$state' after dpkg -r"
	left=$(dlogd_count "$role")
	[ "$left" = 0 ] || fail "$role: $left dlogd process(es) still running after dpkg -r"
	# A graceful stop (SIGTERM, exit 0) is logged by systemd as a clean deactivation.
	clean_after=$(unit_log "$role" "dlogd@$instance" | grep -c 'Deactivated successfully' || true)
	[ "$clean_after" -gt "$clean_before" ] || fail "$role: dlogd@$instance did not stop cleanly: $(unit_log "$role" "dlogd@$instance" | tail -3)"
	if on "$role" test -e /usr/bin/dlogd; then fail "$role: /usr/bin/dlogd is still there after dpkg -r"; fi
	on "$role" test -d /var/lib/dlog || fail "$role: dpkg -r deleted /var/lib/dlog"
done
on bookie2 test -d /var/lib/dlog/bookie/journal || fail "bookie2: dpkg -r deleted the bookie's journal"
unit_log proxy dlogd@proxy | grep -q 'STOPPING\|stopp\|drain' || fail "proxy: no shutdown in its log"

step "dpkg --purge: config and data gone, except under a dlogd still running"
on bookie3 sh -c '/root/keep/dlogd bookie --journal-dir /root/keep/j --ledger-dir /root/keep/l --port 0 \
	>/root/keep/out 2>&1 & echo $! >/root/keep/pid'
wait_for 30 "bookie3: a dlogd outside systemd listening" on bookie3 grep -q listening /root/keep/out
for role in "${roles[@]}"; do
	on "$role" dpkg --purge dlogd >"$work/$role.purge" 2>&1 || { cat "$work/$role.purge" >&2; fail "$role: dpkg --purge"; }
	if [ "$role" = bookie3 ]; then
		grep -q 'purge keeps /var/lib/dlog' "$work/$role.purge" || fail "bookie3: purge did not say it keeps /var/lib/dlog: $(cat "$work/$role.purge")"
		on bookie3 test -d /var/lib/dlog/bookie/journal || fail "bookie3: purge deleted /var/lib/dlog under a running dlogd"
		grep 'purge keeps' "$work/$role.purge"
		on bookie3 sh -c 'kill "$(cat /root/keep/pid)"'
		continue
	fi
	for path in /usr/bin/dlogd /etc/dlog /var/lib/dlog /lib/systemd/system/dlogd@.service; do
		if on "$role" test -e "$path"; then fail "$role: $path is still there after purge"; fi
	done
done

step "done"
echo "e2e: passed in $(elapsed) s"
