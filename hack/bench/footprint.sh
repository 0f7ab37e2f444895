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
# Usage: hack/bench/footprint.sh [interfaces=1000] [scrapes=25]
# Needs root, iproute2, curl and prometheus-node-exporter (make deps).
set -euo pipefail
N=${1:-1000}
SCRAPES=${2:-25}
root=$(cd "$(dirname "$0")/../.." && pwd)
ns=nsfoot-$$
tmp=$(mktemp -d)
bin=$tmp/netsonde

cleanup() {
	[ -n "${ns_pid:-}" ] && kill "$ns_pid" 2>/dev/null || true
	[ -n "${ne_pid:-}" ] && kill "$ne_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
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

ip netns exec "$ns" "$bin" --web.listen-address=127.0.0.1:10333 --log.level=warn ${NETSONDE_ARGS:-} &
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
ne_series=$(series http://127.0.0.1:9100/metrics)
ns_size=$(stat -c %s "$bin"); ne_size=$(stat -c %s "$(command -v prometheus-node-exporter)")

echo "interfaces in namespace: $count; scrapes each: $SCRAPES (alternating); $(date -u '+%F %H:%M') UTC"
echo
echo "| | netsonde (defaults) | node_exporter (defaults) | ratio node_exporter / netsonde |"
echo "| --- | --- | --- | --- |"
awk -v a="$ns_med" -v b="$ne_med" 'BEGIN {printf "| median scrape time | %.2f ms | %.2f ms | %.0fx |\n", a*1000, b*1000, b/a}'
awk -v a="$ns_rss" -v b="$ne_rss" 'BEGIN {printf "| steady RSS (VmRSS after scrapes) | %.1f MiB | %.1f MiB | %.2fx |\n", a/1024, b/1024, b/a}'
awk -v a="$ns_hwm" -v s="$ns_rss" 'BEGIN {printf "| start-up peak (VmHWM) | %.1f MiB (%.2fx steady) | | |\n", a/1024, a/s}'
awk -v a="$ns_size" -v b="$ne_size" 'BEGIN {printf "| stripped binary | %.1f MB | %.1f MB | %.2fx |\n", a/1e6, b/1e6, b/a}'
echo "| series served | $ns_series | $ne_series | |"
