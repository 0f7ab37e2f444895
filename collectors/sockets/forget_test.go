package sockets

import (
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/netsonde/netsonde/agent/hostnet"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/golden"
	"github.com/netsonde/netsonde/internal/hostview"
	"github.com/netsonde/netsonde/internal/procnet"
)

// swapNet is the host view with a snapshot the test replaces.
type swapNet struct {
	collectors.HostNet
	view *hostnet.View
}

func (s *swapNet) Snapshot() *hostview.Snapshot { return s.view.Snapshot() }

// A deleted pod's series go with its namespace: the scrape after the view
// no longer has the namespace sends none of them, and a pod that comes
// back with zeros has none either.
func TestDeletedPodsSeriesGo(t *testing.T) {
	withPod := func(c procnet.Counters) *hostnet.View {
		ns := golden.Namespaces()
		ns[0].Counters = c
		return hostnet.Fixed(golden.OwnNetns, golden.Links(), golden.PodIndex(), ns...)
	}
	net := &swapNet{view: withPod(procnet.Counters{"TcpExtListenOverflows": 3, "UdpRcvbufErrors": 2})}
	net.HostNet = net.view
	c, err := start(t.Context(), collectors.Deps{Net: net, Counters: net.view, Proc: collectors.ProcDir("testdata/proc")})
	if err != nil {
		t.Fatal(err)
	}
	podSeries := func() int {
		ch := make(chan prometheus.Metric, 1024)
		if err := c.Collect(t.Context(), ch); err != nil {
			t.Fatal(err)
		}
		close(ch)
		n := 0
		for m := range ch {
			var d dto.Metric
			if err := m.Write(&d); err != nil {
				t.Fatal(err)
			}
			for _, l := range d.GetLabel() {
				if strings.Contains(m.Desc().String(), "socket_errors_total") && l.GetName() == "pod" && l.GetValue() == "web-0" {
					n++
				}
			}
		}
		return n
	}
	if n := podSeries(); n != 2 {
		t.Fatalf("%d series of shop/web-0, want 2", n)
	}
	net.view = hostnet.Fixed(golden.OwnNetns, golden.Links(), golden.PodIndex(), golden.Namespaces()[1:]...)
	if n := podSeries(); n != 0 {
		t.Errorf("%d series of shop/web-0 after its namespace went, want 0", n)
	}
	net.view = withPod(procnet.Counters{"TcpExtListenOverflows": 0})
	if n := podSeries(); n != 0 {
		t.Errorf("%d series of shop/web-0 back with zeros, want 0", n)
	}
	// The cache keeps the host's 9 (testdata/proc has 9 of the
	// counters), none of the pod's.
	if l := c.(*collector).series.Len(); l != 9 {
		t.Errorf("%d cached series, want the host's 9", l)
	}
}
