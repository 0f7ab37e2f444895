package dns

import (
	"testing"

	"github.com/netsonde/netsonde/bpf/loader"
)

// Load reads its maps and variables through bpf2go's structs (and names
// its programs by bpf2go's constants): every map and variable of the
// embedded object must have a field in them and every field one of the
// object's, or a map renamed or added in dns.c without the bindings
// generated again would be a nil map at the first scrape. No root needed.
func TestTypedObjects(t *testing.T) {
	var p Probe
	if err := loader.CheckAssign(loadBpf, &p.maps, &p.vars); err != nil {
		t.Error(err)
	}
}
