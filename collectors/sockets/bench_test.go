package sockets

import (
	"context"
	"fmt"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/netsonde/netsonde/agent/hostnet"
	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/procnet"
)

// benchPods owns 10.0.0.1 ... 10.0.0.110, one per namespace.
type benchPods struct{}

func (benchPods) ByIP(a netip.Addr) (cluster.Pod, bool) {
	b := a.As4()
	return cluster.Pod{Namespace: "shop", Name: fmt.Sprintf("web-%d", b[3])}, b[0] == 10
}
func (benchPods) PeerNodes(int) []cluster.Node { return nil }

// BenchmarkCollect is one scrape with 110 pods whose namespaces each have
// every counter non-zero (the worst case: 16 series a pod), reading the
// machine's own procfs for the host's counters and socket memory.
func BenchmarkCollect(b *testing.B) {
	var ns []hostnet.Namespace
	for i := 1; i <= 110; i++ {
		c := procnet.Counters{}
		for _, name := range Counters {
			c[name] = uint64(i)
		}
		ns = append(ns, hostnet.Namespace{Inode: uint64(4026532000 + i), Counters: c,
			Inspection: hostnet.Inspection{NsID: i, Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})}}})
	}
	view := hostnet.Fixed(4026531840, nil, benchPods{}, ns...)
	c, err := start(context.Background(), collectors.Deps{Net: view, Pods: view, Counters: view, Proc: collectors.ProcDir("/proc")})
	if err != nil {
		b.Fatal(err)
	}
	ch := make(chan prometheus.Metric, 4096)
	n := 0
	for b.Loop() {
		if err := c.Collect(context.Background(), ch); err != nil {
			b.Fatal(err)
		}
		n = len(ch)
		for len(ch) > 0 {
			<-ch
		}
	}
	b.ReportMetric(float64(n), "series")
}
