package softnet_test

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/netsonde/netsonde/internal/testenv"
)

// sums reads /proc/net/softnet_stat as the kernel writes it now: dropped,
// time_squeeze and flow_limit summed over CPUs.
func sums(t *testing.T) [3]float64 {
	t.Helper()
	b, err := os.ReadFile("/proc/net/softnet_stat")
	if err != nil {
		t.Fatal(err)
	}
	var s [3]float64
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(l)
		for i, col := range []int{1, 2, 10} {
			v, _ := strconv.ParseUint(f[col], 16, 64)
			s[i] += float64(v)
		}
	}
	return s
}

// The agent's softnet events equal /proc/net/softnet_stat's sums: read
// the file, scrape, read it again; when the file did not change between
// the two reads, the scrape must hold exactly its values.
func TestSoftnetEqualsProc(t *testing.T) {
	ns := testenv.NewNetns(t)
	agent := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.softnet")
	for try := 0; try < 50; try++ {
		before := sums(t)
		m := agent.Scrape(t)
		if after := sums(t); after != before {
			continue // the kernel counted meanwhile: no single truth to compare
		}
		for i, ev := range []string{"dropped", "time_squeeze", "flow_limit"} {
			got, ok := m.Value("netsonde_softnet_events_total", map[string]string{"event": ev})
			if !ok || got != before[i] {
				t.Fatalf("netsonde_softnet_events_total{event=%q} = %v (found %v), /proc/net/softnet_stat %v", ev, got, ok, before[i])
			}
		}
		t.Logf("dropped %v, time_squeeze %v, flow_limit %v: netsonde the same (try %d)", before[0], before[1], before[2], try+1)
		return
	}
	t.Fatal("softnet_stat changed during each of 50 scrapes")
}
