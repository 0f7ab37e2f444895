package mtu

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/netsonde/netsonde/agent/hostnet"
	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/collectors"
)

// pods names the host ends of the first 110 interfaces.
type pods struct{}

func (pods) ByNetns(uint64) (cluster.Pod, bool)  { return cluster.Pod{}, false }
func (pods) ByIP(netip.Addr) (cluster.Pod, bool) { return cluster.Pod{}, false }
func (pods) ByHostInterface(i int) (cluster.Pod, bool) {
	if i <= 110 {
		return cluster.Pod{Namespace: "shop", Name: fmt.Sprintf("web-%d", i)}, true
	}
	return cluster.Pod{}, false
}
func (pods) PeerNodes(int) []cluster.Node { return nil }

func newBench(b testing.TB) collectors.Collector {
	links := make([]hostnet.Link, 1000)
	for i := range links {
		links[i] = hostnet.Link{Index: i + 1, Name: fmt.Sprintf("veth%04d", i), Kind: "veth", MTU: 1500}
	}
	c, err := New(context.Background(), collectors.Deps{Logger: slog.Default(), Net: hostnet.Fixed(1, links, nil), Pods: pods{}})
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkCollect: one scrape of 1,000 interfaces (110 of them pods'),
// including what the registry does with each metric (Write).
func BenchmarkCollect(b *testing.B) {
	c := newBench(b)
	ch := make(chan prometheus.Metric, 2000)
	var m dto.Metric
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Collect(context.Background(), ch); err != nil {
			b.Fatal(err)
		}
		for len(ch) > 0 {
			(<-ch).Write(&m)
		}
	}
}

func TestCollectCachesLabels(t *testing.T) {
	c := newBench(t)
	ch := make(chan prometheus.Metric, 2000)
	for range 2 {
		if err := c.Collect(context.Background(), ch); err != nil {
			t.Fatal(err)
		}
	}
	if len(ch) != 2000 {
		t.Fatalf("%d metrics from two scrapes of 1,000 interfaces", len(ch))
	}
	var m dto.Metric
	(<-ch).Write(&m)
	if got := len(m.Label); got != 4 {
		t.Errorf("%d labels, want 4", got)
	}
	if n := c.(*collector).series.Len(); n != 1000 {
		t.Errorf("%d series cached, want 1000", n)
	}
}

// BenchmarkCollectConstMetric is the same scrape built the way it was
// before the series cache (a ConstMetric per series), for comparison in
// one run.
func BenchmarkCollectConstMetric(b *testing.B) {
	c := newBench(b).(*collector)
	ch := make(chan prometheus.Metric, 2000)
	var m dto.Metric
	b.ReportAllocs()
	for b.Loop() {
		links := c.deps.Net.Links()
		seen := make(map[string]bool, len(links))
		for i := len(links) - 1; i >= 0; i-- {
			l := links[i]
			if seen[l.Name] {
				continue
			}
			seen[l.Name] = true
			pod, _ := c.deps.Pods.ByHostInterface(l.Index)
			ch <- prometheus.MustNewConstMetric(mtuDesc, prometheus.GaugeValue, float64(l.MTU), l.Name, l.Kind, pod.Namespace, pod.Name)
		}
		for len(ch) > 0 {
			(<-ch).Write(&m)
		}
	}
}
