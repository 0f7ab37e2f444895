package conntrack

import (
	"net/netip"
	"testing"
	"time"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/golden"
)

// fixedStats serves fixed statistics.
type fixedStats stats

func (f fixedStats) stats() (stats, error) { return stats(f), nil }
func (f fixedStats) Close() error          { return nil }

// TestGoldenMetrics: statistics from a kernel that does not report the
// limit over ctnetlink (read from testdata/proc instead), and a breakdown
// dump.
func TestGoldenMetrics(t *testing.T) {
	src := fixedStats{entries: 4321, events: map[string]uint64{
		"found": 10, "invalid": 210, "ignore": 9876, "insert": 0, "insert_failed": 3,
		"drop": 2, "early_drop": 1, "error": 4, "search_restart": 17, "clash_resolve": 5, "chaintoolong": 0,
	}}
	c := &collector{deps: collectors.Deps{Proc: collectors.ProcDir("testdata/proc")}, src: src}
	c.last = &breakdown{
		byState: map[protoState]uint64{{"tcp", "ESTABLISHED"}: 3000, {"tcp", "TIME_WAIT"}: 800, {"udp", ""}: 500, {"icmp", ""}: 21},
		top: []sourceCount{
			{addr: golden.PodAddr, count: 2500},
			{addr: netip.MustParseAddr("192.168.1.12"), count: 900},
			{addr: netip.MustParseAddr("fd00::1"), count: 400},
		},
		others:   521,
		entries:  4321,
		took:     1500 * time.Millisecond,
		finished: golden.Now,
	}
	golden.Check(t, c)
}
