# syntax=docker/dockerfile:1
# netsonde: a static binary (the BPF objects are embedded in it) on a
# distroless base. It runs as root inside the container because loading
# eBPF, attaching TCX programs and entering other network namespaces need
# root's capabilities (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN);
# the DaemonSet drops every other capability and makes the root filesystem
# read-only.
#
# One image per TARGETARCH (amd64, arm64), built by
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) .
# The Go stage runs on the build machine's own platform and cross-compiles
# (CGO_ENABLED=0; bpf2go objects for both architectures are committed), so
# no emulator runs the compiler.
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG TARGETOS=linux
ARG TARGETARCH
ARG VERSION=dev
ARG REVISION=
RUN CGO_ENABLED=0 GOOS=${TARGETOS} GOARCH=${TARGETARCH} go build -trimpath \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${VERSION} -X github.com/prometheus/common/version.Revision=${REVISION} -X github.com/prometheus/common/version.BuildUser=netsonde" \
      -o /netsonde ./cmd/netsonde

FROM gcr.io/distroless/static-debian12
ARG VERSION=dev
ARG REVISION=
LABEL org.opencontainers.image.title="netsonde" \
      org.opencontainers.image.description="Kubernetes network health agent: drops, retransmits, fragmentation, conntrack, MTU, etcd fsync latency, for Prometheus" \
      org.opencontainers.image.source="https://github.com/netsonde/netsonde" \
      org.opencontainers.image.url="https://github.com/netsonde/netsonde" \
      org.opencontainers.image.documentation="https://github.com/netsonde/netsonde/blob/main/README.md" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"
COPY --from=build /netsonde /netsonde
COPY LICENSE /LICENSE
EXPOSE 10333
ENTRYPOINT ["/netsonde"]
