#!/usr/bin/env bash
# Runs every fuzz target of the module for a short while (FUZZTIME, 5s by
# default): make test calls it, so each parser of kernel or network input
# meets fresh inputs on every CI run. A finding fails the run and is saved
# under the package's testdata/fuzz, where `go test` replays it from then on.
#
# Go 1.26's fuzz coordinator can fail a target at the -fuzztime deadline
# with a bare "context deadline exceeded" and no failing input
# (golang/go#75804, fixed in Go 1.27): a race between the deadline and its
# workers, more likely on a loaded machine. Such a run found nothing, so it
# is run again (up to three times); a run that writes a failing input, or
# fails any other way, fails at once.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
n=0
while IFS=: read -r file name; do
	pkg=./$(dirname "$file")
	corpus=$(dirname "$file")/testdata/fuzz/$name
	for try in 1 2 3; do
		echo "fuzz: $pkg $name ($fuzztime)"
		before=$(ls "$corpus" 2>/dev/null | sort || true)
		if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" >"$out" 2>&1; then
			break
		fi
		after=$(ls "$corpus" 2>/dev/null | sort || true)
		if [[ $try -lt 3 && "$before" == "$after" ]] && grep -q '^    context deadline exceeded$' "$out" &&
			! grep -q 'Failing input written' "$out"; then
			echo "fuzz: $name: the coordinator's deadline race (golang/go#75804), no failing input; again"
			continue
		fi
		cat "$out"
		exit 1
	done
	n=$((n + 1))
done < <(git grep -o -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' -- '*_test.go' | sed -E 's/^([^:]+):func (Fuzz[A-Za-z0-9_]+).*/\1:\2/')
echo "fuzz: $n targets, no finding"
