package loader

import (
	"fmt"
	"maps"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
)

// Assign sets the fields of to, a pointer to a struct of bpf2go's (its
// bpfMaps and bpfVariables, or a struct embedding both), to the object's
// maps and variables. A package then reads its maps by field, not by name:
// a map renamed in C is a compile error once the bindings are generated
// again, not a nil map at the first scrape. A field whose map or variable
// the object lacks is an error. The object keeps them: Close frees them.
func (o *Object) Assign(to any) error {
	c := ebpf.Collection{Maps: maps.Clone(o.maps.Maps), Variables: maps.Clone(o.maps.Variables)}
	// Collection.Assign hands what it assigns over to to, by deleting it
	// from the collection: the clone's, not o.maps', so Close still frees
	// them and Load still loads programs against them.
	if err := c.Assign(to); err != nil {
		return fmt.Errorf("assign the object's maps: %w", err)
	}
	return nil
}

// CheckAssign says what Assign would of to on an object loaded from spec,
// without loading it (no root: the packages' unit tests), and more: it
// fails, too, on a map or variable of spec that no field of to names, so
// that a map added in C but never generated into the bindings is caught.
// The data sections (.rodata, .data, .bss) are no field's: bpf2go names
// their variables instead.
func CheckAssign(spec *ebpf.CollectionSpec, to any) error {
	c := ebpf.Collection{Maps: map[string]*ebpf.Map{}, Variables: map[string]*ebpf.Variable{}}
	for name := range spec.Maps {
		if !strings.HasPrefix(name, ".") {
			// Placeholders: Assign only needs a map by each name.
			c.Maps[name] = new(ebpf.Map)
		}
	}
	for name := range spec.Variables {
		c.Variables[name] = new(ebpf.Variable)
	}
	if err := c.Assign(to); err != nil {
		return fmt.Errorf("assign: %w", err)
	}
	var left []string
	for name := range c.Maps {
		left = append(left, "map "+name)
	}
	for name := range c.Variables {
		left = append(left, "variable "+name)
	}
	if len(left) > 0 {
		sort.Strings(left)
		return fmt.Errorf("no field of %T for %s", to, strings.Join(left, ", "))
	}
	return nil
}
