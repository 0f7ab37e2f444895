#!/usr/bin/env bash
# Scrape latency of netsonde's conntrack collector with an empty table and
# with 250,000 entries, in one run, beside node_exporter's conntrack
# collector on the same namespace; and the cost of one breakdown dump at
# that size. Prints a markdown table for BENCHMARKS.md.
#
# Usage: hack/bench/conntrack-scrape.sh [entries=250000] [scrapes=30]
# Needs root, nftables, conntrack, python3, prometheus-node-exporter.
set -euo pipefail
N=${1:-250000}
SCRAPES=${2:-30}
root=$(cd "$(dirname "$0")/../.." && pwd)
src=nsctb-src-$$ dst=nsctb-dst-$$
bin=$(mktemp -d)/netsonde
old_max=$(cat /proc/sys/net/netfilter/nf_conntrack_max)
cleanup() {
	for p in ${ns_pid:-} ${ne_pid:-}; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	ip netns del "$src" 2>/dev/null || true
	ip netns del "$dst" 2>/dev/null || true
	echo "$old_max" >/proc/sys/net/netfilter/nf_conntrack_max
	rm -rf "$(dirname "$bin")"
}
trap cleanup EXIT
(cd "$root" && CGO_ENABLED=0 go build -trimpath -o "$bin" ./cmd/netsonde)
[ "$old_max" -ge $((N + 10000)) ] || echo $((N + 10000)) >/proc/sys/net/netfilter/nf_conntrack_max

ip netns add "$src"; ip netns add "$dst"
ip -n "$src" link set lo up; ip -n "$dst" link set lo up
ip link add ctb0 netns "$src" type veth peer name ctb1 netns "$dst"
ip -n "$src" addr add 198.18.50.1/24 dev ctb0
for i in 2 3 4 5 6; do ip -n "$dst" addr add 198.18.50.$i/24 dev ctb1; done
ip -n "$src" link set ctb0 up; ip -n "$dst" link set ctb1 up
# Track only the test flows (scrapes over lo are not tracked), and keep the
# unreplied UDP entries for the whole run.
ip netns exec "$src" nft "add table inet b; add chain inet b rawout { type filter hook output priority -300; }; add rule inet b rawout oif lo notrack; add chain inet b rawpre { type filter hook prerouting priority -300; }; add rule inet b rawpre iif lo notrack; add chain inet b out { type filter hook output priority 0; }; add rule inet b out ct state new accept"
ip netns exec "$src" sysctl -qw net.netfilter.nf_conntrack_udp_timeout=600

ip netns exec "$src" "$bin" --web.listen-address=127.0.0.1:10333 --collector.disable-defaults --collector.conntrack --log.level=warn &
ns_pid=$!
ip netns exec "$src" prometheus-node-exporter --web.listen-address=127.0.0.1:9100 --collector.disable-defaults --collector.conntrack --log.level=warn 2>/dev/null &
ne_pid=$!
up() { for _ in $(seq 100); do ip netns exec "$src" curl -fs -o /dev/null "$1" && return 0; sleep 0.1; done; exit 1; }
up http://127.0.0.1:10333/readyz; up http://127.0.0.1:9100/metrics

scrape() { ip netns exec "$src" curl -fs -o /dev/null -w '%{time_total}\n' "$1"; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
measure() {
	local a=() b=()
	for ((i = 0; i < SCRAPES; i++)); do
		a+=("$(scrape http://127.0.0.1:10333/metrics)")
		b+=("$(scrape http://127.0.0.1:9100/metrics)")
	done
	echo "$(median "${a[@]}") $(median "${b[@]}")"
}
read -r ns_empty ne_empty < <(measure)

# N flows: one socket, distinct destination (address, port) pairs.
ip netns exec "$src" python3 - "$N" <<'PY'
import socket, sys
n = int(sys.argv[1]); s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); sent = 0
for host in range(2, 7):
    for port in range(1, 65536):
        if sent == n: break
        try: s.sendto(b"x", ("198.18.50.%d" % host, port))
        except OSError: pass
        sent += 1
PY
count=$(ip netns exec "$src" conntrack -C)
read -r ns_full ne_full < <(measure)

# One breakdown dump at this size, timed by the agent itself.
kill "$ns_pid"; wait "$ns_pid" 2>/dev/null || true
ip netns exec "$src" "$bin" --web.listen-address=127.0.0.1:10333 --collector.disable-defaults --collector.conntrack --conntrack.breakdown-interval=10m --log.level=warn &
ns_pid=$!
up http://127.0.0.1:10333/readyz
for _ in $(seq 300); do
	dump=$(ip netns exec "$src" curl -fs http://127.0.0.1:10333/metrics | awk '/^netsonde_conntrack_breakdown_duration_seconds/ {print $2}')
	[ -n "$dump" ] && break; sleep 0.2
done
ns_real=$(pgrep -P "$ns_pid" | head -1 || true); [ -n "$ns_real" ] || ns_real=$ns_pid
rss=$(awk '/^VmHWM/ {print $2}' "/proc/$ns_real/status")
read -r ns_during _ < <(SCRAPES=9 measure)

echo "table: $count entries (conntrack -C) after the fill; $SCRAPES scrapes of each, alternating; medians; $(date -u +%F)"
echo
echo "| | netsonde conntrack | node_exporter 1.5 conntrack |"
echo "| --- | --- | --- |"
awk -v a="$ns_empty" -v b="$ne_empty" 'BEGIN {printf "| scrape, empty table | %.2f ms | %.2f ms |\n", a*1000, b*1000}'
awk -v a="$ns_full" -v b="$ne_full" -v n="$count" 'BEGIN {printf "| scrape, %d entries | %.2f ms | %.2f ms |\n", n, a*1000, b*1000}'
awk -v a="$ns_empty" -v b="$ns_full" -v c="$ne_empty" -v d="$ne_full" 'BEGIN {printf "| ratio full / empty | %.2f | %.2f |\n", b/a, d/c}'
echo
awk -v d="$dump" -v n="$count" -v r="$rss" -v s="$ns_during" 'BEGIN {printf "Breakdown dump (opt-in) of %d entries: %.0f ms; agent peak RSS (VmHWM) with it: %.1f MiB; scrape after it: %.2f ms.\n", n, d*1000, r/1024, s*1000}'
