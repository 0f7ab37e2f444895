#!/usr/bin/env bash
# Runs every benchmark script in hack/bench (each prints a markdown table
# for BENCHMARKS.md). Needs root. Usage: hack/bench/run.sh [name-filter]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
for s in "$here"/*.sh; do
	name=$(basename "$s" .sh)
	[ "$name" = run ] && continue
	[ -n "${1:-}" ] && [[ "$name" != *"$1"* ]] && continue
	echo "## $name"
	"$s"
	echo
done
