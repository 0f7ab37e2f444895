package drops

import (
	"testing"

	"github.com/netsonde/netsonde/bpf/loader"
)

// Load reads the object's maps and variables through objects, bpf2go's
// structs: every map and variable of the embedded object must have a
// field there and every field a map or variable, or a map renamed or
// added in drops.c without regenerating would be a nil map at the first
// scrape. The program names come from bpf2go's constants (bpfProg*): a
// renamed program does not compile. No root needed.
func TestTypedObjects(t *testing.T) {
	spec, err := loadBpf()
	if err != nil {
		t.Fatal(err)
	}
	if err := loader.CheckAssign(spec, &objects{}); err != nil {
		t.Error(err)
	}
	var specs bpfSpecs
	if err := spec.Assign(&specs); err != nil {
		t.Errorf("spec: %v", err)
	}
}
