package loader

import (
	"fmt"
	"maps"
	"sort"
	"strings"

	"github.com/cilium/ebpf"
)

// Assign sets the fields of each of to, pointers to bpf2go's structs (its
// bpfMaps, bpfVariables), to the object's maps and variables. A package
// then reads its maps by field, not by name: a map renamed in C is a
// compile error once the bindings are generated again, not a nil map at
// the first scrape. A field whose map or variable the object lacks is an
// error. The object keeps them: Close frees them.
func (o *Object) Assign(to ...any) error {
	// Collection.Assign hands what it assigns over by deleting it from the
	// collection: from this copy's maps, not o.maps', so that Close still
	// frees them and Load still loads programs against them.
	c := ebpf.Collection{Maps: maps.Clone(o.maps.Maps), Variables: maps.Clone(o.maps.Variables)}
	for _, s := range to {
		if err := c.Assign(s); err != nil {
			return fmt.Errorf("assign the object's maps to %T: %w", s, err)
		}
	}
	return nil
}

// CheckAssign says what New would of to on the object load parses,
// without loading it (no root: the packages' unit tests), and more: a map
// or variable of the object that no field of to names is an error too, so
// that one added in C whose bindings were not generated again is caught.
// The data sections (.rodata, .data, .bss) are no field's: bpf2go names
// their variables instead.
func CheckAssign(load func() (*ebpf.CollectionSpec, error), to ...any) error {
	spec, err := load()
	if err != nil {
		return err
	}
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
	for _, s := range to {
		// Each assigned name leaves c: a second field of the same name
		// finds it missing.
		if err := c.Assign(s); err != nil {
			return fmt.Errorf("assign to %T: %w", s, err)
		}
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
		return fmt.Errorf("no field for %s", strings.Join(left, ", "))
	}
	return nil
}
