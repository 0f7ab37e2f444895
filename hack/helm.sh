#!/usr/bin/env bash
# Builds the real Helm CLI (helm.sh/helm/v3/cmd/helm, pinned below) once per
# machine into a cache outside the repository, and prints its path. The chart
# tests run this binary rather than an in-process renderer, so that lint,
# template and install behave exactly as they do for a user (schema
# validation, .Capabilities from a live API server, install hooks).
# Skips the build when the binary is there; about a minute on 2 cores.
set -euo pipefail
version=v3.22.0
cache=${NETSONDE_CACHE:-/var/cache/netsonde}
bin=$cache/helm-$version
if [ ! -x "$bin" ]; then
	mkdir -p "$cache"
	echo "helm: building $version into $bin (once per machine)" >&2
	tmp=$(mktemp -d "$cache/helm-build.XXXXXX")
	trap 'rm -rf "$tmp"' EXIT
	# GOFLAGS cleared: a -mod=vendor or similar from the caller's environment
	# would not apply to a module installed by version.
	GOFLAGS= GOBIN=$tmp CGO_ENABLED=0 go install -trimpath -ldflags '-s -w' "helm.sh/helm/v3/cmd/helm@$version"
	mv "$tmp/helm" "$bin"
fi
echo "$bin"
