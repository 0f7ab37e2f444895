#!/usr/bin/env bash
# Start-up at scale: how long the agent takes to answer /readyz with N veth
# interfaces in its namespace, per fragments attach mode, in one run
# (auto: gated tc filters at start-up, handed to TCX in the background;
# tcx: TCX one interface after another; tc: the legacy path).
# Usage: hack/bench/ready.sh [N] [ROUNDS]. Needs root; cleans up after itself.
set -euo pipefail
n=${1:-1000} rounds=${2:-3}
root=$(cd "$(dirname "$0")/../.." && pwd)
bin=$(mktemp -d)/netsonde
(cd "$root" && CGO_ENABLED=0 go build -o "$bin" ./cmd/netsonde)
a=nsbenchA$$ b=nsbenchB$$
cleanup() { ip netns del $a 2>/dev/null || true; ip netns del $b 2>/dev/null || true; rm -rf "$(dirname "$bin")"; }
trap cleanup EXIT
ip netns add $a; ip netns add $b
ip -n $a link set lo up
for i in $(seq 0 $((n - 1))); do echo "link add m$i type veth peer name m${i}p netns $b"; echo "link set m$i up"; done | ip -n $a -batch -
echo "| mode | interfaces | ready (s), $rounds rounds |"
echo "|---|---|---|"
for mode in auto tc tcx; do
	times=()
	for _ in $(seq "$rounds"); do
		start=$(date +%s.%N)
		ip netns exec $a "$bin" --web.listen-address=127.0.0.1:19444 --collector.disable-defaults --collector.fragments \
			--fragments.attach=$mode >/dev/null 2>&1 &
		pid=$!
		until ip netns exec $a curl -sf -o /dev/null 127.0.0.1:19444/readyz; do sleep 0.05; done
		end=$(date +%s.%N)
		times+=("$(echo "$end - $start" | bc)")
		kill $pid; wait $pid || true
	done
	echo "| $mode | $n | ${times[*]} |"
done
