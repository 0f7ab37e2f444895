package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/netsonde/netsonde/agent"
)

// docRows reads the committed docs/metrics.md: collector by family.
func docRows(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, metricsDocPath))
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_]+)` \\| ([^|]+) \\|").FindAllStringSubmatch(string(b), -1) {
		rows[m[1]] = strings.TrimSpace(m[2])
	}
	if len(rows) == 0 {
		t.Fatalf("%s has no rows", metricsDocPath)
	}
	return rows
}

// Every family the agent serves at start (cmd/netsonde's golden page,
// the agent with the mtu collector alone) and the kube resolver's are
// rows of the document, as the agent's own.
func TestMetricsDocHasAgentPages(t *testing.T) {
	rows := docRows(t)
	for _, page := range []string{"cmd/netsonde/testdata/metrics.golden", "agent/kube/testdata/golden.prom"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, page))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, l := range strings.Split(string(b), "\n") {
			if name, ok := strings.CutPrefix(l, "# TYPE "); ok {
				name = strings.Fields(name)[0]
				n++
				if _, ok := rows[name]; !ok {
					t.Errorf("%s: %s is not in %s (run `make generate`)", page, name, metricsDocPath)
				}
			}
		}
		if n == 0 {
			t.Errorf("%s has no families", page)
		}
	}
	for name, want := range map[string]string{
		"netsonde_build_info": "agent", "netsonde_collector_up": "agent", "netsonde_kube_up": "agent",
		"netsonde_interface_mtu_bytes": "mtu", "netsonde_bpf_program_attached": "dns, drops, fragments, fsynctrace, tcpconnect, tcpretrans",
	} {
		if rows[name] != want {
			t.Errorf("%s: collector %q, want %q", name, rows[name], want)
		}
	}
}

// Every collector of the agent's table has rows: one without is missing
// its golden page (or its Spec.Metrics names none of its families).
func TestMetricsDocHasEveryCollector(t *testing.T) {
	have := map[string]int{}
	for _, c := range docRows(t) {
		have[c]++
	}
	for _, s := range agent.Collectors() {
		if have[s.Name] == 0 {
			t.Errorf("collector %s has no family in %s: give it a golden page (internal/golden) and Spec.Metrics covering its families", s.Name, metricsDocPath)
		}
	}
}

// Every metric name the code declares (each prometheus.NewDesc outside
// tests in agent/, collectors/ and cmd/) is a row: a family that no
// golden page shows would otherwise be missing from the document.
func TestMetricsDocHasEveryDeclaredFamily(t *testing.T) {
	rows := docRows(t)
	declared := 0
	for _, dir := range []string{"agent", "collectors", "cmd"} {
		err := filepath.WalkDir(filepath.Join(repoRoot, dir), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
				return err
			}
			fset := token.NewFileSet()
			f, err := parser.ParseFile(fset, p, nil, 0)
			if err != nil {
				return err
			}
			ast.Inspect(f, func(n ast.Node) bool {
				call, ok := n.(*ast.CallExpr)
				if !ok || len(call.Args) == 0 {
					return true
				}
				if sel, ok := call.Fun.(*ast.SelectorExpr); !ok || sel.Sel.Name != "NewDesc" {
					return true
				}
				name, ok := constName(call.Args[0])
				if !ok {
					t.Errorf("%s: a NewDesc whose name is not a literal (or Namespace + a literal): the document cannot be checked against it", fset.Position(call.Pos()))
					return true
				}
				declared++
				if _, ok := rows[name]; !ok {
					t.Errorf("%s: %s is declared but in no golden page, so not in %s", fset.Position(call.Pos()), name, metricsDocPath)
				}
				return true
			})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// 84 today; far fewer means the walk no longer finds them.
	if declared < 80 {
		t.Errorf("found %d NewDesc calls, want at least 80", declared)
	}
}

// constName is a NewDesc's name: "netsonde_x", or Namespace + "_x".
func constName(e ast.Expr) (string, bool) {
	switch e := e.(type) {
	case *ast.BasicLit:
		s, err := strconv.Unquote(e.Value)
		return s, err == nil
	case *ast.BinaryExpr:
		lit, ok := e.Y.(*ast.BasicLit)
		if !ok || e.Op != token.ADD {
			return "", false
		}
		var ns string
		switch x := e.X.(type) {
		case *ast.Ident:
			ns = x.Name
		case *ast.SelectorExpr:
			ns = x.Sel.Name
		}
		s, err := strconv.Unquote(lit.Value)
		return "netsonde" + s, ns == "Namespace" && err == nil
	}
	return "", false
}

// A label on a flag's page only is in parentheses, a histogram's le is
// not listed, and the default page's help wins over the flag page's.
func TestMetricsDocFlagLabels(t *testing.T) {
	fams := map[string]*family{}
	pages := map[string]string{
		"collectors/x/testdata/golden-per-peer.prom": "# HELP x_seconds Per peer.\n# TYPE x_seconds histogram\nx_seconds_bucket{path=\"a\",peer=\"b\",le=\"+Inf\"} 1\nx_seconds_sum{path=\"a\",peer=\"b\"} 1\nx_seconds_count{path=\"a\",peer=\"b\"} 1\n",
		"collectors/x/testdata/golden.prom":          "# HELP x_seconds By path.\n# TYPE x_seconds histogram\nx_seconds_bucket{path=\"a\",le=\"+Inf\"} 1\nx_seconds_sum{path=\"a\"} 1\nx_seconds_count{path=\"a\"} 1\n",
	}
	for _, page := range []string{"collectors/x/testdata/golden-per-peer.prom", "collectors/x/testdata/golden.prom"} {
		p := expfmt.NewTextParser(model.UTF8Validation)
		mfs, err := p.TextToMetricFamilies(strings.NewReader(pages[page]))
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if err := merge(fams, mf, page); err != nil {
				t.Fatal(err)
			}
		}
	}
	f := fams["x_seconds"]
	if got := f.labelCell(); got != "`path`, (`peer`)" {
		t.Errorf("labels %q", got)
	}
	if f.help != "By path." || f.typ != "histogram" {
		t.Errorf("help %q, type %q", f.help, f.typ)
	}
}
