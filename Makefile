# netsonde — see README.md. Every target works on a fresh machine as root.
GO        ?= go
BIN       := bin/netsonde
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo 0.0.0-dev)
BRANCH    ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null)
VPKG      := github.com/prometheus/common/version
LDFLAGS   := -s -w -X $(VPKG).Version=$(VERSION) -X $(VPKG).Branch=$(BRANCH) -X $(VPKG).BuildUser=netsonde -X $(VPKG).BuildDate=$(shell date -u +%Y%m%dT%H%M%SZ)
ARGS      ?=
# CI's budget is 30 minutes for everything; a hung test must not eat it.
TEST_TIMEOUT ?= 25m

IMAGE     ?= netsonde:$(VERSION)

.PHONY: all build run test deps lint generate check-generated bench image clean kernels

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/netsonde

# Runs the agent on :10333 with every collector this machine supports.
# eBPF collectors need root (CAP_BPF, CAP_PERFMON); without it they report
# down with a reason and the rest keep working.
run: build
	./$(BIN) $(ARGS)

# Debian packages, and the real kube-apiserver the Kubernetes tests run
# (built once per machine into /var/cache/netsonde, about 5 minutes).
deps:
	./hack/install-deps.sh
	./hack/kube-apiserver.sh >/dev/null

# Needs a container engine (docker or podman); none runs on the project's
# development machines, so there this says so and stops.
image:
	@engine=$$(command -v docker || command -v podman); \
	if [ -z "$$engine" ] || ! $$engine info >/dev/null 2>&1; then \
		echo "make image: no container engine running here (docker or podman); build on a machine with one"; exit 1; fi; \
	$$engine build --build-arg VERSION=$(VERSION) -t $(IMAGE) .

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Regenerates the bpf2go bindings and objects (needs clang-19: make deps),
# and the PrometheusRule and dashboard copies rendered by deploy/gen.
generate:
	$(GO) generate ./...

# CI: the committed generated files must be what make generate produces.
check-generated: generate
	@if [ -n "$$(git status --porcelain -- bpf deploy)" ]; then \
		echo "generated files differ from what is committed; run make generate and commit:"; \
		git status --porcelain -- bpf deploy; git diff --stat -- bpf deploy; exit 1; fi

test: deps lint check-generated
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

# The kernel matrix alone (it is part of make test): Debian's 6.1 and 6.12
# cloud kernels under qemu, and docs/kernels.md rewritten from what they did.
kernels:
	./hack/install-deps.sh
	$(GO) test -count=1 -v -timeout $(TEST_TIMEOUT) -run TestKernelMatrix ./test/kernels -update

bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	./hack/bench/run.sh

clean:
	rm -rf bin
