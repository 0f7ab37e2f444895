package collectors_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/bpf/loader"
	"github.com/netsonde/netsonde/collectors"
)

// A load failure becomes a reason a user can act on, whatever wraps it.
func TestBPFLoadDownReasons(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("create maps: %w", fmt.Errorf("%w: stat: no such file", loader.ErrNoBTF)), "no_btf"},
		{fmt.Errorf("load: %w", unix.EPERM), "not_permitted"},
		{fmt.Errorf("load: %w", unix.EACCES), "not_permitted"},
		{fmt.Errorf("tcx: %w", ebpf.ErrNotSupported), "not_supported"},
		{errors.New("anything else"), "attach_failed"},
	} {
		if got := collectors.ReasonOf(collectors.BPFLoadDown(tc.err, "attach_failed"), ""); got != tc.want {
			t.Errorf("%v: reason %q, want %q", tc.err, got, tc.want)
		}
	}
}
