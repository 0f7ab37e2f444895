package loader

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// A typed struct must name exactly the object's maps and variables: a
// field with no map is what a map renamed in C without its Go side looks
// like, and a map with no field is one added to C and never generated.
func TestCheckAssign(t *testing.T) {
	spec := &ebpf.CollectionSpec{
		Maps: map[string]*ebpf.MapSpec{
			"counts":  {Name: "counts", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16},
			"full":    {Name: "full", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1},
			".rodata": {Name: ".rodata", Type: ebpf.Array, KeySize: 4, ValueSize: 8, MaxEntries: 1},
		},
		Variables: map[string]*ebpf.VariableSpec{"limit": {}},
	}
	load := func() (*ebpf.CollectionSpec, error) { return spec, nil }
	type exact struct {
		Counts *ebpf.Map      `ebpf:"counts"`
		Full   *ebpf.Map      `ebpf:"full"`
		Limit  *ebpf.Variable `ebpf:"limit"`
	}
	if err := CheckAssign(load, &exact{}); err != nil {
		t.Errorf("exact struct: %v", err)
	}
	type maps struct {
		Counts *ebpf.Map `ebpf:"counts"`
		Full   *ebpf.Map `ebpf:"full"`
	}
	type vars struct {
		Limit *ebpf.Variable `ebpf:"limit"`
	}
	if err := CheckAssign(load, &maps{}, &vars{}); err != nil {
		t.Errorf("maps and variables apart: %v", err)
	}
	if err := CheckAssign(load, &maps{}, &vars{}, &maps{}); err == nil {
		t.Error("a map assigned twice: no error")
	}
	type renamed struct {
		Counts *ebpf.Map      `ebpf:"count"`
		Full   *ebpf.Map      `ebpf:"full"`
		Limit  *ebpf.Variable `ebpf:"limit"`
	}
	if err := CheckAssign(load, &renamed{}); err == nil || !strings.Contains(err.Error(), `"count"`) {
		t.Errorf("a field with no map: error %v, want one naming count", err)
	}
	type short struct {
		Counts *ebpf.Map `ebpf:"counts"`
	}
	err := CheckAssign(load, &short{})
	if err == nil || !strings.Contains(err.Error(), "map full, variable limit") {
		t.Errorf("a map and a variable with no field: error %v, want one naming both", err)
	}
}
