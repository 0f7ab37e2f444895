package mtu_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

const mtuMetric = "netsonde_interface_mtu_bytes"

// A veth pair is made with MTU 1400, changed to 1300, then deleted: the
// agent must report exactly what the kernel has, within a second of each
// change, and drop the series when the interface goes.
func TestVethMTUFollowsKernel(t *testing.T) {
	ns := testenv.NewNetns(t)
	agent := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.mtu")

	ns.Exec(t, "ip", "link", "add", "nsa0", "mtu", "1400", "type", "veth", "peer", "name", "nsb0", "mtu", "1400")

	mtuOf := func(name string) (float64, bool) {
		return agent.Scrape(t).Value(mtuMetric, map[string]string{"interface": name, "kind": "veth", "namespace": "", "pod": ""})
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		testenv.Eventually(t, time.Second, what, cond)
	}

	waitFor("both ends at 1400", func() bool {
		a, okA := mtuOf("nsa0")
		b, okB := mtuOf("nsb0")
		return okA && okB && a == 1400 && b == 1400
	})

	ns.Exec(t, "ip", "link", "set", "nsa0", "mtu", "1300")
	ns.Exec(t, "ip", "link", "set", "nsb0", "mtu", "1300")
	waitFor("both ends at 1300", func() bool {
		a, _ := mtuOf("nsa0")
		b, _ := mtuOf("nsb0")
		return a == 1300 && b == 1300
	})

	ns.Exec(t, "ip", "link", "set", "nsa0", "name", "nsr0")
	waitFor("renamed end reported under its new name only", func() bool {
		_, old := mtuOf("nsa0")
		v, renamed := mtuOf("nsr0")
		return !old && renamed && v == 1300
	})

	ns.Exec(t, "ip", "link", "del", "nsr0")
	waitFor("both ends gone", func() bool {
		m := agent.Scrape(t)
		return len(m.Series(mtuMetric, map[string]string{"kind": "veth"})) == 0
	})
	if v, ok := agent.Scrape(t).Value(mtuMetric, map[string]string{"interface": "lo"}); !ok || v != 65536 {
		t.Fatalf("lo MTU = %v (found %v), want 65536", v, ok)
	}
}

// Interfaces created and deleted by the hundred while scraping: every page
// parses, has no duplicate series, and the final state is exact.
func TestScrapeDuringChurn(t *testing.T) {
	ns := testenv.NewNetns(t)
	agent := testenv.StartAgent(t, ns, "--collector.disable-defaults", "--collector.mtu")

	const pairs = 200
	var batch string
	for i := range pairs {
		batch += fmt.Sprintf("link add c%da mtu %d type veth peer name c%db mtu %d\n", i, 1280+i, i, 1280+i)
	}
	var del string
	for i := range pairs {
		del += fmt.Sprintf("link del c%da\n", i)
	}

	done := make(chan struct{})
	go func() {
		defer close(done)
		for round := 0; round < 3; round++ {
			runBatch(t, ns, batch)
			runBatch(t, ns, del)
		}
		runBatch(t, ns, batch)
	}()
	scrapes := 0
	for running := true; running; scrapes++ {
		select {
		case <-done:
			running = false
		default:
		}
		agent.Scrape(t) // fails the test on HTTP error, parse error or duplicate series
	}
	testenv.Eventually(t, 2*time.Second, "all 400 veths at their MTUs", func() bool {
		m := agent.Scrape(t)
		if len(m.Series(mtuMetric, map[string]string{"kind": "veth"})) != 2*pairs {
			return false
		}
		for i := range pairs {
			for _, end := range []string{"a", "b"} {
				v, ok := m.Value(mtuMetric, map[string]string{"interface": fmt.Sprintf("c%d%s", i, end)})
				if !ok || v != float64(1280+i) {
					return false
				}
			}
		}
		return true
	})
	t.Logf("%d consistent scrapes during churn", scrapes)
}

func runBatch(t *testing.T, ns *testenv.Netns, batch string) {
	cmd := ns.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("ip -batch: %v\n%s", err, out)
	}
}
