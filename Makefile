# netsonde — see README.md. Every target works on a fresh machine as root.
GO        ?= go
BIN       := bin/netsonde
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
BRANCH    ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null)
REVISION  ?= $(shell git rev-parse HEAD 2>/dev/null)
VPKG      := github.com/prometheus/common/version
# netsonde_build_info{version,revision,branch,goversion,goos,goarch} and
# --version come from these (goversion and goarch from the toolchain).
LDFLAGS   = -s -w -X $(VPKG).Version=$(1) -X $(VPKG).Revision=$(REVISION) -X $(VPKG).Branch=$(BRANCH) -X $(VPKG).BuildUser=netsonde -X $(VPKG).BuildDate=$(2)
ARGS      ?=
# CI's budget is 30 minutes for everything; a hung test must not eat it.
TEST_TIMEOUT ?= 25m

IMAGE     ?= netsonde:$(VERSION)

# The released version: the newest "## X.Y.Z" heading of CHANGELOG.md, which
# is also the chart's version and appVersion (deploy/deploy_test.go checks).
RELEASE_VERSION := $(shell sed -n 's/^\#\# \([0-9][0-9.]*[0-9a-z.-]*\).*/\1/p' CHANGELOG.md | head -1)
# The commit's time, not the clock's: the same commit builds the same bytes.
RELEASE_DATE     = $(shell TZ=UTC git log -1 --format=%cd --date=format-local:%Y%m%d-%H:%M:%S 2>/dev/null)
RELEASE_ARCHES  := amd64 arm64
DIST            ?= dist

.PHONY: all build run test check deps lint generate check-generated bench soak image clean release print-release-version kernels fuzz

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(call LDFLAGS,$(VERSION),$(shell date -u +%Y%m%d-%H:%M:%S))' -o $(BIN) ./cmd/netsonde

# Runs the agent on :10333 with every collector this machine supports.
# eBPF collectors need root (CAP_BPF, CAP_PERFMON); without it they report
# down with a reason and the rest keep working.
run: build
	./$(BIN) $(ARGS)

# Debian packages, and the real kube-apiserver and helm CLI the Kubernetes
# tests run (built once per machine into /var/cache/netsonde, about 5
# minutes and 1 minute).
deps:
	./hack/install-deps.sh
	./hack/kube-apiserver.sh >/dev/null
	./hack/helm.sh >/dev/null

# Needs a container engine (docker or podman); none runs on the project's
# development machines, so there this says so and stops.
image:
	@engine=$$(command -v docker || command -v podman); \
	if [ -z "$$engine" ] || ! $$engine info >/dev/null 2>&1; then \
		echo "make image: no container engine running here (docker or podman); build on a machine with one"; exit 1; fi; \
	$$engine build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) -t $(IMAGE) .

# gofmt, go vet, golangci-lint (.golangci.yml: staticcheck, errcheck,
# misspell, gocritic, and DESIGN's layering as depguard rules) and
# clang-format (.clang-format) on our BPF C. The tools come from make deps;
# lint installs nothing.
GOLANGCI_LINT ?= $(or $(shell command -v golangci-lint 2>/dev/null),$(shell $(GO) env GOPATH)/bin/golangci-lint)
CLANG_FORMAT  ?= clang-format-19
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	@command -v $(GOLANGCI_LINT) >/dev/null || { echo "make lint: no $(GOLANGCI_LINT); run make deps"; exit 1; }
	$(GOLANGCI_LINT) run ./...
	@command -v $(CLANG_FORMAT) >/dev/null || { echo "make lint: no $(CLANG_FORMAT); run make deps"; exit 1; }
	$(CLANG_FORMAT) --dry-run --Werror $$(git ls-files 'bpf/*.c' 'bpf/*.h')

# What a contributor runs before a commit, as any user and installing
# nothing: lint and the unprivileged tests (those that need root skip,
# for root too: NETSONDE_UNPRIVILEGED). Under 2 minutes.
check: lint
	NETSONDE_UNPRIVILEGED=1 $(GO) test -count=1 -timeout 5m ./...

# Regenerates the bpf2go bindings and objects (needs clang-19: make deps),
# and the PrometheusRule and dashboard copies and docs/metrics.md rendered by
# deploy/gen (the metric table from the tests' golden pages: after a golden
# test's -update, run this too).
generate:
	$(GO) generate ./...

# CI: the committed generated files must be what make generate produces.
check-generated: generate
	@if [ -n "$$(git status --porcelain -- bpf deploy docs/metrics.md)" ]; then \
		echo "generated files differ from what is committed; run make generate and commit:"; \
		git status --porcelain -- bpf deploy docs/metrics.md; git diff --stat -- bpf deploy docs/metrics.md; exit 1; fi

test: deps lint check-generated
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	./hack/fuzz.sh

# Every fuzz target for a while (FUZZTIME=1m make fuzz for longer).
fuzz:
	./hack/fuzz.sh

# The kernel matrix alone (it is part of make test): Debian's 6.1 and 6.12
# cloud kernels under qemu, and docs/kernels.md rewritten from what they did.
kernels:
	./hack/install-deps.sh
	$(GO) test -count=1 -v -timeout $(TEST_TIMEOUT) -run TestKernelMatrix ./test/kernels -update

# The soak (not part of make test): the agent under pod, interface and
# traffic churn for SOAK_DURATION, its RSS, goroutines, fds and scrape time
# every 5 s in $(SOAK_OUT)/soak.csv and soak.png. BENCHMARKS.md has a run.
SOAK_DURATION ?= 1h
SOAK_OUT      ?= $(CURDIR)/soak-out
soak: deps
	SOAK_DURATION=$(SOAK_DURATION) SOAK_OUT=$(SOAK_OUT) $(GO) test -count=1 -v -tags soak -timeout 0 -run TestSoak ./test/soak

bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	./hack/bench/run.sh

clean:
	rm -rf bin

print-release-version:
	@echo $(RELEASE_VERSION)

# A release a user can pin, in $(DIST)/: for each of $(RELEASE_ARCHES) a
# static binary (CGO_ENABLED=0; the BPF objects for both are embedded) and
# a tarball with it, LICENSE and README.md, as the Prometheus exporters ship;
# the chart packaged by the real helm (hack/helm.sh) at the same version;
# sha256sums.txt over all of them (`sha256sum -c sha256sums.txt`). The
# version is CHANGELOG.md's newest; a tree with uncommitted changes is
# refused, since the revision stamped in the binaries would not describe it.
release:
	@test -n "$(RELEASE_VERSION)" || { echo "make release: no '## X.Y.Z' heading in CHANGELOG.md"; exit 1; }
	@if [ -n "$$(git status --porcelain 2>/dev/null)" ] && [ -z "$(ALLOW_DIRTY)" ]; then \
		echo "make release: uncommitted changes (ALLOW_DIRTY=1 to build anyway)"; exit 1; fi
	@# bpf2go's objects are per byte order (bpfel: amd64, arm64, ...; bpfeb:
	@# s390x), so every architecture Go builds for has them.
	rm -rf $(DIST) && mkdir -p $(DIST)
	set -e; for arch in $(RELEASE_ARCHES); do \
		name=netsonde-$(RELEASE_VERSION).linux-$$arch; \
		mkdir -p $(DIST)/$$name; \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath \
			-ldflags '$(call LDFLAGS,$(RELEASE_VERSION),$(RELEASE_DATE))' -o $(DIST)/$$name/netsonde ./cmd/netsonde; \
		cp LICENSE README.md $(DIST)/$$name/; \
		cp $(DIST)/$$name/netsonde $(DIST)/netsonde-$(RELEASE_VERSION)-linux-$$arch; \
		tar -C $(DIST) --sort=name --owner=0 --group=0 --numeric-owner \
			--mtime="$$(git log -1 --format=%cI)" -czf $(DIST)/$$name.tar.gz $$name; \
		rm -rf $(DIST)/$$name; \
	done
	"$$(./hack/helm.sh)" package deploy/helm/netsonde --version $(RELEASE_VERSION) --app-version $(RELEASE_VERSION) -d $(DIST)
	cd $(DIST) && sha256sum netsonde-* > sha256sums.txt && cat sha256sums.txt
