package loader

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/netsonde/netsonde/internal/testenv"
)

// A map size or a namespace filter the object cannot take is an error
// naming it, not an object that silently ignores it.
func TestOptionsTheObjectCannotTake(t *testing.T) {
	testenv.RequireRoot(t)
	spec := &ebpf.CollectionSpec{Maps: map[string]*ebpf.MapSpec{
		"counts": {Name: "counts", Type: ebpf.Hash, KeySize: 4, ValueSize: 8, MaxEntries: 16},
	}}
	for _, tc := range []struct {
		opts Options
		want string
	}{
		{Options{MapSizes: map[string]uint32{"cuonts": 1}}, `map "cuonts"`},
		{Options{OnlyNetns: []uint64{1}}, "NETSONDE_ONLY_NETNS"},
	} {
		o, err := New(spec, tc.opts)
		if err == nil {
			o.Close()
			t.Errorf("%+v: loaded", tc.opts)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %q does not name %s", tc.opts, err, tc.want)
		}
	}
	o, err := New(spec, Options{MapSizes: map[string]uint32{"counts": 2}})
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close()
	if n := o.maps.Maps["counts"].MaxEntries(); n != 2 {
		t.Errorf("counts has room for %d, want 2", n)
	}
	if spec.Maps["counts"].MaxEntries != 16 {
		t.Error("the caller's spec was changed")
	}
}
