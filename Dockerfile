# netsonde: a static binary (the BPF objects are embedded in it) on a
# distroless base. It runs as root inside the container because loading
# eBPF, attaching TCX programs and entering other network namespaces need
# root's capabilities (CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_SYS_ADMIN);
# the DaemonSet drops every other capability and makes the root filesystem
# read-only.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath \
      -ldflags "-s -w -X github.com/prometheus/common/version.Version=${VERSION}" \
      -o /netsonde ./cmd/netsonde

FROM gcr.io/distroless/static-debian12
COPY --from=build /netsonde /netsonde
EXPOSE 10333
ENTRYPOINT ["/netsonde"]
