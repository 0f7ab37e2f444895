package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/netsonde/netsonde/agent"
)

// docs/metrics.md lists every metric family the agent serves. Its source
// is not a hand-kept list but the golden pages the tests render from the
// real code (collectors/*/golden_test.go and the like through
// internal/golden, cmd/netsonde's TestMetricsGolden from the running
// agent, agent/kube's from the resolver): a family's HELP, TYPE and the
// label names of its samples there are what the agent says on /metrics,
// and a change to any of them fails its golden test until the page is
// rewritten, which makes this document stale until `make generate`.
const metricsDocPath = "docs/metrics.md"

// metricsPages are the golden pages, as globs from the repository root.
// doctor/testdata's pages are not among them: they are written by hand.
var metricsPages = []string{
	"cmd/netsonde/testdata/metrics.golden",
	"agent/testdata/*.prom",
	"agent/*/testdata/*.prom",
	"collectors/*/testdata/*.prom",
}

// family is one row of the document.
type family struct {
	name, typ, help string
	// helpPage is the page the help was taken from.
	helpPage string
	// labelSets are the label names of the family on each page (one set
	// a page: the registry refuses samples of a family with others).
	labelSets []map[string]bool
	// pages are the golden pages that show the family, and sources the
	// collectors they belong to ("agent" for the agent's own).
	pages   []string
	sources map[string]bool
}

// readFamilies parses every golden page and merges the families by name.
// A family shown with two TYPEs, or two HELP texts on default pages, is
// an error: the agent's registry would refuse it as well.
func readFamilies(root string) (map[string]*family, error) {
	fams := map[string]*family{}
	for _, glob := range metricsPages {
		paths, err := filepath.Glob(filepath.Join(root, glob))
		if err != nil {
			return nil, err
		}
		for _, p := range paths {
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return nil, err
			}
			rel = filepath.ToSlash(rel)
			b, err := os.ReadFile(p)
			if err != nil {
				return nil, fmt.Errorf("read golden page: %w", err)
			}
			parser := expfmt.NewTextParser(model.UTF8Validation)
			mfs, err := parser.TextToMetricFamilies(bytes.NewReader(b))
			if err != nil {
				return nil, fmt.Errorf("%s: %w", rel, err)
			}
			for _, mf := range mfs {
				if err := merge(fams, mf, rel); err != nil {
					return nil, err
				}
			}
		}
	}
	if len(fams) == 0 {
		return nil, fmt.Errorf("no golden pages under %s (%s)", root, strings.Join(metricsPages, ", "))
	}
	return fams, nil
}

// defaultPage says whether a page shows the default flags (a collector's
// golden.prom, the agent's metrics.golden); a page of another name shows
// a flag's labels (mesh's golden-per-peer.prom), whose help may differ.
func defaultPage(page string) bool {
	base := filepath.Base(page)
	return base == "golden.prom" || base == "metrics.golden"
}

func merge(fams map[string]*family, mf *dto.MetricFamily, page string) error {
	name := mf.GetName()
	typ := strings.ToLower(mf.GetType().String())
	help := strings.Join(strings.Fields(mf.GetHelp()), " ")
	f := fams[name]
	if f == nil {
		f = &family{name: name, typ: typ, sources: map[string]bool{}}
		fams[name] = f
	}
	if f.typ != typ {
		return fmt.Errorf("%s is a %s in %s but a %s in %s", name, f.typ, f.pages[0], typ, page)
	}
	switch {
	case f.help == "" || defaultPage(page) && !defaultPage(f.helpPage):
		f.help, f.helpPage = help, page
	case defaultPage(page) && f.help != help:
		return fmt.Errorf("%s has help %q in %s but %q in %s", name, f.help, f.helpPage, help, page)
	}
	f.pages = append(f.pages, page)
	f.sources[pageSource(page)] = true
	labels := map[string]bool{}
	for _, m := range mf.GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetName() != "le" && l.GetName() != "quantile" {
				labels[l.GetName()] = true
			}
		}
	}
	f.labelSets = append(f.labelSets, labels)
	return nil
}

// labelCell lists the family's label names; those on some pages only
// (a flag's) in parentheses.
func (f *family) labelCell() string {
	all := map[string]bool{}
	for _, set := range f.labelSets {
		for l := range set {
			all[l] = true
		}
	}
	var cells []string
	for _, l := range sortedSet(all) {
		cell := "`" + l + "`"
		for _, set := range f.labelSets {
			if !set[l] {
				cell = "(" + cell + ")"
				break
			}
		}
		cells = append(cells, cell)
	}
	return strings.Join(cells, ", ")
}

// pageSource is the collector whose package holds the page, or "agent".
func pageSource(page string) string {
	if rest, ok := strings.CutPrefix(page, "collectors/"); ok {
		name, _, _ := strings.Cut(rest, "/")
		return name
	}
	return "agent"
}

// familyCollector names the collector that exports a family: the one
// with the longest prefix of its name in Spec.Metrics (as the agent's
// series budget attributes series); a family no prefix covers is the
// framework's or the agent's, named by the pages that show it (the eBPF
// collectors' shared netsonde_bpf_* families list those collectors).
func familyCollector(f *family, specs map[string][]string) string {
	best, bestLen := "", 0
	for name, prefixes := range specs {
		for _, p := range prefixes {
			if strings.HasPrefix(f.name, p) && len(p) > bestLen {
				best, bestLen = name, len(p)
			}
		}
	}
	if best != "" {
		return best
	}
	return strings.Join(sortedSet(f.sources), ", ")
}

func sortedSet(m map[string]bool) []string {
	s := make([]string, 0, len(m))
	for k := range m {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

func specPrefixes() map[string][]string {
	m := map[string][]string{}
	for _, s := range agent.Collectors() {
		m[s.Name] = s.Metrics
	}
	return m
}

// metricsDoc renders docs/metrics.md: one row per family, the agent's
// own first, then by collector and name.
func metricsDoc(root string) ([]byte, error) {
	fams, err := readFamilies(root)
	if err != nil {
		return nil, err
	}
	specs := specPrefixes()
	type row struct {
		f         *family
		collector string
	}
	rows := make([]row, 0, len(fams))
	for _, f := range fams {
		rows = append(rows, row{f, familyCollector(f, specs)})
	}
	sort.Slice(rows, func(i, j int) bool {
		ai, aj := rows[i].collector == "agent", rows[j].collector == "agent"
		if ai != aj {
			return ai
		}
		if rows[i].collector != rows[j].collector {
			return rows[i].collector < rows[j].collector
		}
		return rows[i].f.name < rows[j].f.name
	})
	cell := strings.NewReplacer("|", `\|`)
	var b strings.Builder
	fmt.Fprintf(&b, "<!-- Generated by deploy/gen from the golden pages (%s). Do not edit: run `make generate`. -->\n", strings.Join(metricsPages, ", "))
	b.WriteString(`# Metrics

Every metric family netsonde serves, as its tests see the real agent and
collectors serve it: the name, type, help and label names come from the
golden pages the tests render (a collector's ` + "`testdata/golden.prom`" + `,
the agent's ` + "`cmd/netsonde/testdata/metrics.golden`" + `), so this table
changes with the code. The collector is the one whose ` + "`Spec.Metrics`" + `
names the family; ` + "`agent`" + ` families are served whatever collectors run.
A histogram's ` + "`le`" + ` label is not listed; a label in parentheses is
there only with a flag (` + "`peer`" + ` with ` + "`--mesh.per-peer`" + `, ` + "`cpu`" + ` with
` + "`--softnet.per-cpu`" + `: a golden page with the flag shows it, the default
one does not). The README's section on each collector says more.
Plus the standard ` + "`go_*`" + ` and ` + "`process_*`" + ` metrics of the agent itself.

| metric | collector | type | labels | help |
| --- | --- | --- | --- | --- |
`)
	for _, r := range rows {
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", r.f.name, r.collector, r.f.typ, r.f.labelCell(), cell.Replace(r.f.help))
	}
	return []byte(b.String()), nil
}
