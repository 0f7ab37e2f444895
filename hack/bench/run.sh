#!/usr/bin/env bash
# Runs every benchmark in hack/bench: the shell scripts and the Go programs
# (each prints a markdown table for BENCHMARKS.md). Needs root.
# Usage: hack/bench/run.sh [name-filter]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
for s in "$here"/*.sh "$here"/*/main.go; do
	case $s in
	*/run.sh) continue ;;
	*/main.go) name=$(basename "$(dirname "$s")") ;;
	*) name=$(basename "$s" .sh) ;;
	esac
	[ -n "${1:-}" ] && [[ "$name" != *"$1"* ]] && continue
	echo "## $name"
	if [[ $s == */main.go ]]; then
		(cd "$root" && go run "./hack/bench/$name")
	else
		"$s"
	fi
	echo
done
