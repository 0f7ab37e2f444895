package mtu

import (
	"context"
	"log/slog"
	"testing"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/golden"
)

// TestGoldenMetrics: the fixture node's interfaces, the pod's veth named
// after its pod.
func TestGoldenMetrics(t *testing.T) {
	view := golden.Node()
	c, err := New(context.Background(), collectors.Deps{Logger: slog.New(slog.DiscardHandler), Net: view, Pods: view})
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, c)
}
