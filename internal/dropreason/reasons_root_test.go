package dropreason

import (
	"bytes"
	"os"
	"strconv"
	"testing"

	"github.com/netsonde/netsonde/bpf/loader"
	"github.com/netsonde/netsonde/internal/testenv"
)

// Names come from this kernel's BTF: check well-known reasons by name
// against the numbering the kernel itself prints in the tracepoint format.
func TestReasonNamesFromKernelBTF(t *testing.T) {
	if _, err := os.Stat("/sys/kernel/btf/vmlinux"); err != nil {
		t.Skip("no kernel BTF on this machine")
	}
	names, err := Load("/sys/kernel/btf")
	if err != nil {
		t.Fatal(err)
	}
	// The format comes from the host's tracefs, or from one the loader
	// mounts privately (which needs root), as the agent itself reads it.
	testenv.RequireRoot(t)
	ev, err := loader.ReadEvent("", "skb", "kfree_skb")
	if err != nil {
		t.Fatal(err)
	}
	format := []byte(ev.Format)
	for _, n := range []string{"NO_SOCKET", "NETFILTER_DROP", "NOT_SPECIFIED", "TCP_CSUM", "QDISC_DROP"} {
		var v uint32
		found := false
		for k, name := range names {
			if name == n {
				v, found = k, true
			}
		}
		if !found {
			t.Errorf("reason %s not in BTF names", n)
			continue
		}
		// The tracepoint prints { value, "NAME" } pairs.
		want := []byte(`{ ` + strconv.FormatUint(uint64(v), 10) + `, "` + n + `" }`)
		if !bytes.Contains(format, want) {
			t.Errorf("BTF says %s = %d, the tracepoint format disagrees", n, v)
		}
	}
	if names.Name(999999) != "999999" {
		t.Errorf("unknown reason should be named by its number")
	}
	if len(names) < 50 {
		t.Errorf("only %d reasons: BTF parse incomplete?", len(names))
	}
}
