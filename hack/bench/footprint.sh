#!/usr/bin/env bash
# netsonde's footprint next to node_exporter's, in one run on the same
# namespace holding N veth interfaces: median scrape time of each over
# alternating scrapes (so machine noise hits both alike), steady RSS of each,
# netsonde's start-up peak (VmHWM) and the stripped binaries' sizes. Prints a
# markdown table for BENCHMARKS.md; fails on nothing (the figures are ratios
# to read, not thresholds).
#
# Every netsonde collector that is on by default runs; node_exporter runs with
# its defaults (Debian's prometheus-node-exporter, as on real nodes).
#
# Two kinds of node. "worker" (the default): no etcd, so the fsync probe is
# down (no_path) and the trace has nothing to trace. "control-plane": a real
# etcd writing its data directory (/var/lib/etcd of a node root given with
# --fsyncprobe.host-root, a loop-mounted ext4 image as a dedicated etcd disk
# is) with ten puts a second, so the fsync probe measures that disk and the
# trace times etcd's own fdatasyncs: every default collector is up.
#
# PODS (default 110) network namespaces stand for a full node's pods: the
# host network view reads each one's socket counters and interfaces in the
# background, as it does a pod's (issue 25's bar: 1,000 interfaces and 110
# pods). node_exporter does not look into them.
#
# Usage: [PODS=110] hack/bench/footprint.sh [interfaces=1000] [scrapes=25] [worker|control-plane]
# Needs root, iproute2, curl and prometheus-node-exporter (make deps); the
# control-plane variant also etcd, mkfs.ext4 and a free loop device.
set -euo pipefail
N=${1:-1000}
SCRAPES=${2:-25}
KIND=${3:-worker}
PODS=${PODS:-110}
case $KIND in worker | control-plane) ;; *) echo "kind: worker or control-plane, not $KIND" >&2; exit 2 ;; esac
root=$(cd "$(dirname "$0")/../.." && pwd)
ns=nsfoot-$$
tmp=$(mktemp -d)
bin=$tmp/netsonde

cleanup() {
	[ -n "${ns_pid:-}" ] && kill "$ns_pid" 2>/dev/null || true
	[ -n "${ne_pid:-}" ] && kill "$ne_pid" 2>/dev/null || true
	[ -n "${put_pid:-}" ] && kill "$put_pid" 2>/dev/null || true
	[ -n "${etcd_pid:-}" ] && kill "$etcd_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	[ -n "${noderoot:-}" ] && { umount "$noderoot/var/lib/etcd" 2>/dev/null || true; rm -rf "$noderoot"; }
	ip netns del "$ns" 2>/dev/null || true
	for ((p = 0; p < PODS; p++)); do ip netns del "$ns-pod$p" 2>/dev/null || true; done
	rm -rf "$tmp"
}
trap cleanup EXIT

# The release build: what the image ships and every node pulls.
(cd "$root" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$bin" ./cmd/netsonde)
ip netns add "$ns"
ip -n "$ns" link set lo up
batch=$tmp/links
for ((i = 0; i < N / 2; i++)); do
	echo "link add f${i}a type veth peer name f${i}b"
	echo "link set f${i}a up"
	echo "link set f${i}b up"
done >"$batch"
ip -n "$ns" -batch "$batch"
count=$(ip -n "$ns" -o link | wc -l)
for ((p = 0; p < PODS; p++)); do
	ip netns add "$ns-pod$p"
	ip -n "$ns-pod$p" link set lo up
done

args=()
if [ "$KIND" = control-plane ]; then
	# The node's root on the root disk (ext4, as /tmp may not be), its
	# /var/lib/etcd a filesystem of its own.
	noderoot=$(mktemp -d /var/tmp/nsfoot-root.XXXXXX)
	mkdir -p "$noderoot/var/lib/etcd"
	truncate -s 256M "$noderoot/etcd.img"
	mkfs.ext4 -q -F "$noderoot/etcd.img"
	mount -o loop "$noderoot/etcd.img" "$noderoot/var/lib/etcd"
	ip netns exec "$ns" etcd --name=foot --data-dir="$noderoot/var/lib/etcd/member-data" \
		--listen-client-urls=http://127.0.0.1:2379 --advertise-client-urls=http://127.0.0.1:2379 \
		--listen-peer-urls=http://127.0.0.1:2380 --initial-advertise-peer-urls=http://127.0.0.1:2380 \
		--initial-cluster=foot=http://127.0.0.1:2380 --log-level=error 2>/dev/null &
	etcd_pid=$!
	for _ in $(seq 100); do ip netns exec "$ns" curl -fs -o /dev/null http://127.0.0.1:2379/health && break; sleep 0.1; done
	# Ten puts a second: etcd fdatasyncs its WAL for each.
	(while :; do
		ip netns exec "$ns" curl -fs -o /dev/null -X POST http://127.0.0.1:2379/v3/kv/put -d '{"key":"Zm9v","value":"YmFy"}' || true
		sleep 0.1
	done) &
	put_pid=$!
	args+=(--fsyncprobe.host-root="$noderoot")
fi
ip netns exec "$ns" "$bin" --web.listen-address=127.0.0.1:10333 --log.level=warn "${args[@]}" ${NETSONDE_ARGS:-} &
ns_pid=$!
ip netns exec "$ns" prometheus-node-exporter --web.listen-address=127.0.0.1:9100 --log.level=warn 2>/dev/null &
ne_pid=$!

wait_up() { for _ in $(seq 300); do ip netns exec "$ns" curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "$1 not up" >&2; exit 1; }
wait_up http://127.0.0.1:10333/readyz
wait_up http://127.0.0.1:9100/metrics

scrape() { ip netns exec "$ns" curl -fs -o /dev/null -w '%{time_total}\n' "$1"; }
series() { ip netns exec "$ns" curl -fs "$1" | grep -vc '^#' || true; }
ns_t=() ne_t=()
for ((i = 0; i < SCRAPES; i++)); do
	# Which goes first alternates too.
	if ((i % 2)); then
		ne_t+=("$(scrape http://127.0.0.1:9100/metrics)")
		ns_t+=("$(scrape http://127.0.0.1:10333/metrics)")
	else
		ns_t+=("$(scrape http://127.0.0.1:10333/metrics)")
		ne_t+=("$(scrape http://127.0.0.1:9100/metrics)")
	fi
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
status_kib() { awk -v k="$2:" '$1 == k {print $2}' "/proc/$1/status"; }
# ip netns exec may fork the binary as its child; find the real process.
real_pid() { local c; c=$(pgrep -P "$1" | head -1 || true); echo "${c:-$1}"; }
ns_real=$(real_pid "$ns_pid"); ne_real=$(real_pid "$ne_pid")

ns_med=$(median "${ns_t[@]}"); ne_med=$(median "${ne_t[@]}")
ns_rss=$(status_kib "$ns_real" VmRSS); ne_rss=$(status_kib "$ne_real" VmRSS)
ns_hwm=$(status_kib "$ns_real" VmHWM)
ns_series=$(series http://127.0.0.1:10333/metrics)
# What the RSS is made of, on the Go side: heap in use, and heap idle but
# not yet handed back (the scavenger's lag on a busy machine).
memstats=$(ip netns exec "$ns" curl -fs http://127.0.0.1:10333/metrics | awk '
	$1 == "go_memstats_heap_inuse_bytes" {u = $2} $1 == "go_memstats_heap_idle_bytes" {i = $2}
	$1 == "go_memstats_heap_released_bytes" {r = $2} $1 == "go_memstats_stack_inuse_bytes" {s = $2}
	END {printf "Go heap in use %.1f MiB, idle not released %.1f MiB, stacks %.1f MiB", u/1048576, (i-r)/1048576, s/1048576}')
ne_series=$(series http://127.0.0.1:9100/metrics)
ns_size=$(stat -c %s "$bin"); ne_size=$(stat -c %s "$(command -v prometheus-node-exporter)")

echo "$KIND node; interfaces in namespace: $count; pod namespaces: $PODS; scrapes each: $SCRAPES (alternating); $(date -u '+%F %H:%M') UTC; load average $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$KIND" = control-plane ]; then
	page=$(ip netns exec "$ns" curl -fs http://127.0.0.1:10333/metrics)
	echo "fsync probe: $(grep '^netsonde_disk_fsync_probe_up' <<<"$page" | tr '\n' ' ')"
	echo "fsync probe samples: $(grep '^netsonde_disk_fsync_duration_seconds_count' <<<"$page" | tr '\n' ' ')"
	echo "etcd fsyncs traced: $(grep '^netsonde_process_fsync_duration_seconds_count' <<<"$page" | tr '\n' ' ')"
fi
echo
echo "| | netsonde (defaults) | node_exporter (defaults) | ratio node_exporter / netsonde |"
echo "| --- | --- | --- | --- |"
awk -v a="$ns_med" -v b="$ne_med" 'BEGIN {printf "| median scrape time | %.2f ms | %.2f ms | %.0fx |\n", a*1000, b*1000, b/a}'
awk -v a="$ns_rss" -v b="$ne_rss" 'BEGIN {printf "| steady RSS (VmRSS after scrapes) | %.1f MiB | %.1f MiB | %.2fx |\n", a/1024, b/1024, b/a}'
awk -v a="$ns_hwm" -v s="$ns_rss" 'BEGIN {printf "| start-up peak (VmHWM) | %.1f MiB (%.2fx steady) | | |\n", a/1024, a/s}'
awk -v a="$ns_size" -v b="$ne_size" 'BEGIN {printf "| stripped binary | %.1f MB | %.1f MB | %.2fx |\n", a/1e6, b/1e6, b/a}'
echo "| series served | $ns_series | $ne_series | |"
echo
echo "netsonde: $memstats"
