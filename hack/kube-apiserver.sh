#!/usr/bin/env bash
# Builds the real kube-apiserver (hack/kube-apiserver, k8s.io/kubernetes
# v1.34.4) once per machine into a cache outside the repository, keyed by
# its go.sum, and prints its path. Skips the build when the binary is there.
# Takes about 5 minutes on an idle 2-core machine.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
src=$root/hack/kube-apiserver
key=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-16)
cache=${NETSONDE_CACHE:-/var/cache/netsonde}
bin=$cache/kube-apiserver-$key
if [ ! -x "$bin" ]; then
	mkdir -p "$cache"
	echo "kube-apiserver: building into $bin (once per machine)" >&2
	(cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags '-s -w' -o "$bin.tmp" .)
	mv "$bin.tmp" "$bin"
fi
echo "$bin"
