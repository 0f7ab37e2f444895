package kube

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/netsonde/netsonde/cluster"
	"github.com/netsonde/netsonde/internal/golden"
)

// TestGoldenMetrics: the resolver's own page with 12 pods on the node
// (2 beyond --kube.max-pods=10), 9 of them found in their namespaces,
// two peer nodes, the informers synced. testdata/golden.prom is also
// where docs/metrics.md takes the kube families from (deploy/gen).
func TestGoldenMetrics(t *testing.T) {
	r := &Resolver{
		cfg:      Config{MaxPods: 10, Attributed: func() int { return 9 }},
		podCount: 12,
		nodes:    2,
		peers: []cluster.Node{
			{Name: "node-b", InternalIP: netip.MustParseAddr("198.18.0.2")},
			{Name: "node-c", InternalIP: netip.MustParseAddr("198.18.0.3")},
		},
	}
	r.up.Store(true)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	golden.Compare(t, b.String())
}
