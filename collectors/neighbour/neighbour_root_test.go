package neighbour_test

import (
	"fmt"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

var (
	ntableEntries = regexp.MustCompile(`entries (\d+)`)
	ntableFulls   = regexp.MustCompile(`table_fulls (\d+)`)
)

// arpCache reads `ip -s ntable`'s entries and table_fulls of the IPv4 table.
func arpCache(t *testing.T) (entries, fulls float64) {
	t.Helper()
	out := testenv.Run(t, "ip", "-s", "ntable", "show", "name", "arp_cache")
	e, f := ntableEntries.FindStringSubmatch(out), ntableFulls.FindStringSubmatch(out)
	if e == nil || f == nil {
		t.Fatalf("no entries or table_fulls in ip -s ntable:\n%s", out)
	}
	entries, _ = strconv.ParseFloat(e[1], 64)
	fulls, _ = strconv.ParseFloat(f[1], 64)
	return entries, fulls
}

// 64 unresolved neighbours with room for 16 in the table: the kernel
// refuses the rest, and netsonde_neighbour_table_full_total equals
// `ip -s ntable`'s table_fulls. The thresholds are the kernel's, shared by
// every namespace on the machine: they are lowered for the second the
// datagrams take and restored at once (and if the test fails).
func TestTableFullEqualsNtable(t *testing.T) {
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	testenv.Veth(t, a, b, "na0", "nb0", "198.18.20.1/24", "198.18.20.254/24", 0)
	agent := testenv.StartAgent(t, a, "--collector.disable-defaults", "--collector.neighbour", "--neighbour.interval=100ms")
	v4 := map[string]string{"family": "ipv4"}
	_, before := arpCache(t)
	testenv.Eventually(t, 5*time.Second, "table_fulls equal to the kernel's before", func() bool {
		v, ok := agent.Scrape(t).Value("netsonde_neighbour_table_full_total", v4)
		return ok && v == before
	})

	var limit float64
	t.Run("full", func(t *testing.T) {
		entries, _ := arpCache(t)
		limit = entries + 16
		l := strconv.Itoa(int(limit))
		for _, k := range []string{"gc_thresh1", "gc_thresh2", "gc_thresh3"} {
			testenv.SetSysctl(t, "net.ipv4.neigh.default."+k, l)
		}
		testenv.Eventually(t, 5*time.Second, "the limit seen", func() bool {
			v, ok := agent.Scrape(t).Value("netsonde_neighbour_entries_limit", v4)
			return ok && v == limit
		})
		// One datagram to each of 64 addresses nobody has: each needs
		// a neighbour entry, resolved by an ARP nobody answers. The
		// entry count is the machine's, and the kernel's forced GC
		// frees other namespaces' failed entries first: fresh-node saw
		// table_fulls +0 after 64, and after 240. So more addresses
		// follow, 16 at a time, on up to four on-link /24s, until the
		// kernel has refused one.
		a.Exec(t, "ip", "route", "add", "198.18.24.0/22", "dev", "na0")
	send:
		for r := range 4 {
			for i := range 240 {
				testenv.SendUDP(t, a, fmt.Sprintf("198.18.%d.%d:9", 24+r, 10+i), 64, 1, 0)
				if i%16 == 15 {
					if _, f := arpCache(t); f > before {
						break send
					}
				}
			}
		}
	})
	_, after := arpCache(t)
	if after-before < 1 {
		t.Fatalf("table_fulls +%v for up to 960 new neighbours with room for 16; the test's table was not full", after-before)
	}
	testenv.Eventually(t, 5*time.Second, "table_fulls equal to the kernel's after", func() bool {
		v, ok := agent.Scrape(t).Value("netsonde_neighbour_table_full_total", v4)
		return ok && v == after
	})
	t.Logf("table_fulls %v → %v (+%v) with the limit at %v; netsonde %v", before, after, after-before, limit, after)
}
