// Package golden is the golden-file test of a collector's metrics: one
// Collect into a pedantic registry, rendered in the text exposition format
// and compared with testdata/golden.prom. `go test ./collectors/X -run
// Golden -update` rewrites the file.
package golden

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/netsonde/netsonde/collectors"
)

var update = flag.Bool("update", false, "rewrite testdata/golden.prom from this run")

// File is where a collector package keeps its golden page.
var File = filepath.Join("testdata", "golden.prom")

// adapter makes a Collector a prometheus.Collector: unchecked (it
// describes nothing), as the agent's Set registers collectors.
type adapter struct {
	t testing.TB
	c collectors.Collector
}

func (a adapter) Describe(chan<- *prometheus.Desc) {}

func (a adapter) Collect(ch chan<- prometheus.Metric) {
	if err := a.c.Collect(context.Background(), ch); err != nil {
		a.t.Errorf("Collect: %v", err)
	}
}

// Render runs one Collect through a pedantic registry and returns the
// page in the text exposition format.
func Render(t testing.TB, c collectors.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(adapter{t: t, c: c}); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var b bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&b, mf); err != nil {
			t.Fatal(err)
		}
	}
	return b.String()
}

// Check renders c (Render) and compares the page with File, or rewrites
// File under -update.
func Check(t testing.TB, c collectors.Collector) {
	t.Helper()
	CompareFile(t, File, Render(t, c))
}

// Compare compares a rendered page with File, or rewrites File under
// -update.
func Compare(t testing.TB, got string) {
	t.Helper()
	CompareFile(t, File, got)
}

// CompareFile is Compare with another file, for a second page of the
// same collector (a flag that adds a label: docs/metrics.md lists the
// label names of every testdata/*.prom page).
func CompareFile(t testing.TB, file, got string) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("%v (go test -run Golden -update writes it)", err)
	}
	if got != string(want) {
		t.Errorf("metrics differ from %s (go test -run Golden -update to accept):\n%s", file, Diff(string(want), got))
	}
}

// Diff lists the lines of a page only in want (-) and only in got (+),
// in order.
func Diff(want, got string) string {
	in := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	w, g := in(want), in(got)
	var b strings.Builder
	for _, l := range strings.Split(want, "\n") {
		if g[l] == 0 {
			b.WriteString("- " + l + "\n")
		}
	}
	for _, l := range strings.Split(got, "\n") {
		if w[l] == 0 {
			b.WriteString("+ " + l + "\n")
		}
	}
	if b.Len() == 0 {
		return "(same lines, in another order or count)\n--- got\n" + got
	}
	return b.String()
}
