package tcpretrans

import (
	"testing"

	"golang.org/x/sys/unix"

	bpftcp "github.com/netsonde/netsonde/bpf/tcpretrans"
	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/golden"
)

// fixedCounter serves fixed counts.
type fixedCounter map[bpftcp.Key]uint64

func (f fixedCounter) Hooks() map[string]string {
	return map[string]string{bpftcp.ProgramSkb: "tp_btf", bpftcp.ProgramSynack: "raw_tp"}
}
func (f fixedCounter) Read() (map[bpftcp.Key]uint64, error) { return f, nil }
func (f fixedCounter) Close() error                         { return nil }

// Full: events that found the map full, as the kernel would count them.
func (f fixedCounter) Full() (uint64, error) { return 7, nil }

// TestGoldenMetrics: retransmits in the agent's namespace, the pod's
// (named after it), one no pod owns and one the view has not met (both
// the host's labels, summed), an unknown state and an unknown family.
func TestGoldenMetrics(t *testing.T) {
	const established, synSent, synRecv = 1, 2, 3
	key := func(netns uint64, family uint16, state uint8) bpftcp.Key {
		return bpftcp.Key{Netns: netns, Family: family, State: state}
	}
	counts := fixedCounter{
		key(golden.OwnNetns, unix.AF_INET, established):     31,
		key(golden.OwnNetns, unix.AF_INET6, synSent):        4,
		key(golden.OwnNetns, unix.AF_INET, synRecv):         2,
		key(golden.PodNetns, unix.AF_INET, established):     12,
		key(golden.PodNetns, unix.AF_INET, synSent):         7,
		key(golden.OtherNetns, unix.AF_INET, established):   5,
		key(golden.UnknownNetns, unix.AF_INET, established): 6,
		key(golden.OwnNetns, unix.AF_INET, 99):              1,
		key(golden.OwnNetns, 17, established):               3,
	}
	view := golden.Node()
	golden.Check(t, &collector{deps: collectors.Deps{Net: view, Pods: view}, c: counts, own: golden.OwnNetns})
}
