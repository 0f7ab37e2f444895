package cluster

import (
	"net/netip"
	"slices"
	"testing"
)

func TestChoiceChoosesAgainOnlyOnChange(t *testing.T) {
	a := []Node{{Name: "a", InternalIP: netip.MustParseAddr("198.18.0.1")}}
	calls := 0
	count := func(nodes []Node) int { calls++; return len(nodes) }
	var c Choice[int]
	steps := []struct {
		nodes     []Node
		want, nth int
	}{
		{nil, 0, 1},             // the first call chooses, even from nothing
		{nil, 0, 1},             // nothing again: remembered
		{a, 1, 2},               // a node came
		{slices.Clone(a), 1, 2}, // the same nodes in another slice: remembered
		{append(slices.Clone(a), Node{Name: "b"}), 2, 3},
		{[]Node{{Name: "a", InternalIP: netip.MustParseAddr("198.18.0.2")}}, 1, 4}, // an address moved
	}
	for i, s := range steps {
		if got := c.Of(s.nodes, count); got != s.want || calls != s.nth {
			t.Errorf("step %d: got %d after %d choices, want %d after %d", i, got, calls, s.want, s.nth)
		}
	}
}
