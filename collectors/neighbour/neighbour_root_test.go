package neighbour_test

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// The agent's tables against the kernel's on this machine, for both
// families: the limit is gc_thresh3, and table_fulls and res_failed are
// `ip -s ntable`'s, read before and after the scrape. The tables are the
// kernel's, shared by every namespace and changed by tests running beside
// this one, so a reading counts only when the kernel's did not move
// across it (the entries, which move all the time with them, are checked
// in the kernel matrix's VMs). Filling a table takes lowering the
// machine's thresholds, which made the kernel refuse other tests'
// neighbours here: that test runs in the kernel matrix's VMs, alone on
// their kernel (test/kernels TestNeighbourTableFull).
func TestTablesEqualNtable(t *testing.T) {
	ns := testenv.NewNetns(t)
	agent := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.neighbour", "--neighbour.interval=100ms")
	for _, f := range []struct{ family, table, sysctl string }{
		{"ipv4", "arp_cache", "ipv4"},
		{"ipv6", "ndisc_cache", "ipv6"},
	} {
		labels := map[string]string{"family": f.family}
		b, err := os.ReadFile("/proc/sys/net/" + f.sysctl + "/neigh/default/gc_thresh3")
		if err != nil {
			t.Fatal(err)
		}
		limit, _ := strconv.ParseFloat(strings.TrimSpace(string(b)), 64)
		for _, c := range []struct{ metric, stat string }{
			{"netsonde_neighbour_entries_limit", ""},
			{"netsonde_neighbour_table_full_total", "table_fulls"},
			{"netsonde_neighbour_resolution_failures_total", "res_failed"},
		} {
			var last string
			testenv.Eventually(t, 30*time.Second, f.family+" "+c.metric+" equal to the kernel's", func() bool {
				want := limit
				if c.stat != "" {
					want = testenv.Ntable(t, f.table)[c.stat]
					// A poll (every 100 ms) after the first reading.
					time.Sleep(300 * time.Millisecond)
				}
				v, ok := agent.Scrape(t).Value(c.metric, labels)
				if c.stat != "" && testenv.Ntable(t, f.table)[c.stat] != want {
					return false
				}
				last = strconv.FormatFloat(v, 'f', -1, 64) + " against " + strconv.FormatFloat(want, 'f', -1, 64)
				return ok && v == want
			})
			t.Logf("%s %s: %s", f.family, c.metric, last)
		}
	}
}
