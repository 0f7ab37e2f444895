package softnet

import (
	"context"
	"log/slog"
	"os"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/golden"
)

// TestGoldenMetrics: a 6.18 kernel's softnet_stat (backlog and CPU
// columns) of CPUs 0 and 2, CPU 1 offline.
func TestGoldenMetrics(t *testing.T) {
	golden.Check(t, &collector{deps: collectors.Deps{Proc: collectors.ProcDir("testdata/proc")}})
}

func TestParse(t *testing.T) {
	b, err := os.ReadFile("testdata/proc/net/softnet_stat")
	if err != nil {
		t.Fatal(err)
	}
	s, err := parse(b)
	if err != nil {
		t.Fatal(err)
	}
	// CPU 1 offline: the second line is CPU 2, by its own column.
	want := []cpuStat{
		{cpu: 0, dropped: 16, timeSqueeze: 257, flowLimit: 2, hasFlowLimit: true, backlog: 3, hasBacklog: true},
		{cpu: 2, dropped: 5, timeSqueeze: 1, flowLimit: 0, hasFlowLimit: true, backlog: 1, hasBacklog: true},
	}
	if len(s) != 2 || s[0] != want[0] || s[1] != want[1] {
		t.Fatalf("parsed %+v, want %+v", s, want)
	}
	// A 5.4 kernel: 11 columns, no backlog, CPUs by position.
	b, _ = os.ReadFile("testdata/proc-5.4/net/softnet_stat")
	if s, err = parse(b); err != nil || len(s) != 2 || s[1].cpu != 1 || s[0].hasBacklog || s[0].flowLimit != 4 {
		t.Fatalf("parsed %+v, %v", s, err)
	}
	for _, bad := range []string{"", "00000001 00000002\n", "0000000g 00000001 00000002\n", "1 2 zz\n"} {
		if _, err := parse([]byte(bad)); err == nil {
			t.Errorf("parsed %q", bad)
		}
	}
}

// Without the backlog column no backlog series; per CPU, a cpu label.
func TestOldKernelPerCPU(t *testing.T) {
	c := &collector{deps: collectors.Deps{Logger: slog.New(slog.DiscardHandler), Proc: collectors.ProcDir("testdata/proc-5.4")}, perCPU: true}
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(adapter{c})
	if n, err := testutil.GatherAndCount(reg, "netsonde_softnet_backlog_packets"); err != nil || n != 0 {
		t.Fatalf("%d backlog series (%v) from a kernel without the column", n, err)
	}
	if n, _ := testutil.GatherAndCount(reg, "netsonde_softnet_events_total"); n != 6 {
		t.Fatalf("%d event series, want 3 events × 2 CPUs", n)
	}
}

type adapter struct{ c *collector }

func (a adapter) Describe(chan<- *prometheus.Desc) {}
func (a adapter) Collect(ch chan<- prometheus.Metric) {
	_ = a.c.Collect(context.Background(), ch)
}

func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/proc/net/softnet_stat", "testdata/proc-5.4/net/softnet_stat"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := parse(b)
		if err == nil && len(s) == 0 {
			t.Fatal("no CPUs and no error")
		}
	})
}

// TestGoldenMetricsPerCPU: the same CPUs with --softnet.per-cpu, each
// CPU's events and backlog under its cpu label.
func TestGoldenMetricsPerCPU(t *testing.T) {
	c := &collector{deps: collectors.Deps{Proc: collectors.ProcDir("testdata/proc")}, perCPU: true}
	golden.CompareFile(t, "testdata/golden-per-cpu.prom", golden.Render(t, c))
}
