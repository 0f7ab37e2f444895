#!/usr/bin/env bash
# Runs every fuzz target of the module for a short while (FUZZTIME, 5s by
# default): make test calls it, so each parser of kernel or network input
# meets fresh inputs on every CI run. A finding fails the run and is saved
# under the package's testdata/fuzz, where `go test` replays it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}
n=0
while IFS=: read -r file name; do
	pkg=./$(dirname "$file")
	echo "fuzz: $pkg $name ($fuzztime)"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "$pkg" >/tmp/netsonde-fuzz.$$ 2>&1 || {
		cat /tmp/netsonde-fuzz.$$; rm -f /tmp/netsonde-fuzz.$$; exit 1; }
	n=$((n + 1))
done < <(git grep -o -E '^func Fuzz[A-Za-z0-9_]+\(f \*testing\.F\)' -- '*_test.go' | sed -E 's/^([^:]+):func (Fuzz[A-Za-z0-9_]+).*/\1:\2/')
rm -f /tmp/netsonde-fuzz.$$
echo "fuzz: $n targets, no finding"
