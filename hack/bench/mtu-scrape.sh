#!/usr/bin/env bash
# Scrape latency and RSS of netsonde's MTU collector vs node_exporter's
# netclass collector, on the same namespace holding N veth interfaces, in one
# run. Prints a markdown table of medians and ratios for BENCHMARKS.md.
#
# Usage: hack/bench/mtu-scrape.sh [interfaces=1000] [scrapes=40]
# Needs root, iproute2, curl and prometheus-node-exporter (make deps).
set -euo pipefail
N=${1:-1000}
SCRAPES=${2:-40}
root=$(cd "$(dirname "$0")/../.." && pwd)
ns=nsbench-$$
bin=$(mktemp -d)/netsonde

cleanup() {
	[ -n "${ns_pid:-}" ] && kill "$ns_pid" 2>/dev/null || true
	[ -n "${ne_pid:-}" ] && kill "$ne_pid" 2>/dev/null || true
	wait 2>/dev/null || true
	ip netns del "$ns" 2>/dev/null || true
	rm -rf "$(dirname "$bin")"
}
trap cleanup EXIT

(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$bin" ./cmd/netsonde)
ip netns add "$ns"
ip -n "$ns" link set lo up
batch=$(mktemp)
for ((i = 0; i < N / 2; i++)); do
	echo "link add b${i}a mtu $((1280 + i % 200)) type veth peer name b${i}b mtu $((1280 + i % 200))"
done >"$batch"
ip -n "$ns" -batch "$batch"
rm -f "$batch"
count=$(ip -n "$ns" -o link | wc -l)

ip netns exec "$ns" "$bin" --web.listen-address=127.0.0.1:10333 --collector.disable-defaults --collector.mtu --log.level=warn &
ns_pid=$!
ip netns exec "$ns" prometheus-node-exporter --web.listen-address=127.0.0.1:9100 --collector.disable-defaults --collector.netclass \
	--log.level=warn 2>/dev/null &
ne_pid=$!

wait_up() { for _ in $(seq 100); do ip netns exec "$ns" curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; echo "$1 not up" >&2; exit 1; }
wait_up http://127.0.0.1:10333/readyz
wait_up http://127.0.0.1:9100/metrics

scrape() { ip netns exec "$ns" curl -fs -o /dev/null -w '%{time_total}\n' "$1"; }
series() { ip netns exec "$ns" curl -fs "$1" | grep -c "^$2" || true; }
# Alternate the two so machine noise hits both alike.
ns_t=() ne_t=()
for ((i = 0; i < SCRAPES; i++)); do
	ns_t+=("$(scrape http://127.0.0.1:10333/metrics)")
	ne_t+=("$(scrape http://127.0.0.1:9100/metrics)")
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
rss_kib() { awk '/^VmRSS/ {print $2}' "/proc/$1/status"; }
# ip netns exec forks the binary as its child; find the real process.
real_pid() { pgrep -P "$1" | head -1 || echo "$1"; }
ns_real=$(real_pid "$ns_pid"); ne_real=$(real_pid "$ne_pid")
[ -e "/proc/$ns_real/status" ] || ns_real=$ns_pid
[ -e "/proc/$ne_real/status" ] || ne_real=$ne_pid

ns_med=$(median "${ns_t[@]}"); ne_med=$(median "${ne_t[@]}")
ns_rss=$(rss_kib "$ns_real"); ne_rss=$(rss_kib "$ne_real")
ns_series=$(series http://127.0.0.1:10333/metrics netsonde_interface_mtu_bytes{)
ne_series=$(series http://127.0.0.1:9100/metrics node_network_mtu_bytes{)

echo "interfaces in namespace: $count; scrapes each: $SCRAPES (alternating); $(date -u +%F)"
echo
echo "| | netsonde (mtu) | node_exporter 1.5 (netclass) | ratio node_exporter / netsonde |"
echo "| --- | --- | --- | --- |"
awk -v a="$ns_med" -v b="$ne_med" 'BEGIN {printf "| median scrape latency | %.2f ms | %.2f ms | %.0fx |\n", a*1000, b*1000, b/a}'
awk -v a="$ns_rss" -v b="$ne_rss" 'BEGIN {printf "| RSS after scrapes | %.1f MiB | %.1f MiB | %.2fx |\n", a/1024, b/1024, b/a}'
echo "| MTU series served | $ns_series | $ne_series | |"
