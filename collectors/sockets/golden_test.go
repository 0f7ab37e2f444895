package sockets

import (
	"testing"

	"github.com/netsonde/netsonde/agent/hostnet"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/golden"
	"github.com/netsonde/netsonde/internal/procnet"
)

// TestGoldenMetrics: the host's counters from procfs, zeros included
// (TcpExtTCPBacklogDrop 0), but only those its kernel has (the fixture's
// netstat has no TcpExtTCPRcvQDrop: absent, as on an older kernel) and
// only those exported (no SyncookiesSent); the pod's from the view's read
// of its namespace, non-zero ones only (no UdpRcvbufErrors 0); none of
// the namespace no pod owns; socket memory against both limits.
func TestGoldenMetrics(t *testing.T) {
	ns := golden.Namespaces()
	ns[0].Counters = procnet.Counters{"TcpExtListenOverflows": 50, "TcpExtListenDrops": 50, "UdpRcvbufErrors": 0, "Udp6InErrors": 1}
	ns[1].Counters = procnet.Counters{"TcpExtListenOverflows": 8}
	view := hostnet.Fixed(golden.OwnNetns, golden.Links(), golden.PodIndex(), ns...)
	c, err := start(t.Context(), collectors.Deps{Net: view, Pods: view, Counters: view, Proc: collectors.ProcDir("testdata/proc")})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, c)
}
