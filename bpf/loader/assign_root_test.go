package loader

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/netsonde/netsonde/internal/testenv"
)

// Assign gives the object's own maps, which Close still frees.
func TestAssignKeepsOwnership(t *testing.T) {
	testenv.RequireRoot(t)
	spec := &ebpf.CollectionSpec{Maps: map[string]*ebpf.MapSpec{
		"counts": {Name: "counts", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16},
	}}
	var typed struct {
		Counts *ebpf.Map `ebpf:"counts"`
	}
	o, err := New(spec, Options{}, &typed)
	if err != nil {
		t.Fatal(err)
	}
	if err := typed.Counts.Put(uint32(7), uint64(9)); err != nil {
		o.Close()
		t.Fatal(err)
	}
	var v uint64
	if err := o.maps.Maps["counts"].Lookup(uint32(7), &v); err != nil || v != 9 {
		t.Errorf("the object's counts holds %d (%v), want the 9 put through the field", v, err)
	}
	if err := o.Assign(&typed); err != nil {
		t.Errorf("a second Assign: %v", err)
	}
	var wrong struct {
		Counts *ebpf.Map `ebpf:"cuonts"`
	}
	if err := o.Assign(&wrong); err == nil || !strings.Contains(err.Error(), `"cuonts"`) {
		t.Errorf("a field with no map: error %v, want one naming cuonts", err)
	}
	o.Close()
	if err := typed.Counts.Put(uint32(7), uint64(1)); err == nil {
		t.Error("the map outlived the object's Close")
	}
}
