package dns

import "testing"

func TestBucketsMatchEdges(t *testing.T) {
	if NBuckets != len(Edges)+1 {
		t.Errorf("NBuckets %d, want len(Edges)+1 = %d", NBuckets, len(Edges)+1)
	}
}
