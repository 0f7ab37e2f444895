package testenv

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// rootEntries are the testenv functions that need root themselves: every
// other helper that does takes a *Netns, which only NewNetns makes.
var rootEntries = map[string]bool{"RequireRoot": true, "NewNetns": true}

// rootTests returns the Test, Benchmark and Fuzz functions of one
// directory's test files that need root: those that call a root entry of
// testenv, or a function of the directory's test files that does,
// however deep. Calls are followed by name (plain calls, not methods).
func rootTests(files map[string]*ast.File) map[string]string {
	funcs := map[string]*ast.FuncDecl{}
	where := map[string]string{}
	for name, f := range files {
		for _, d := range f.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil && fn.Body != nil {
				funcs[fn.Name.Name] = fn
				where[fn.Name.Name] = name
			}
		}
	}
	memo := map[string]int{} // 0 unknown, 1 in progress, 2 no, 3 yes
	var needs func(name string) bool
	needs = func(name string) bool {
		switch memo[name] {
		case 1, 2:
			return false
		case 3:
			return true
		}
		memo[name] = 1
		found := false
		var visit func(n ast.Node) bool
		visit = func(n ast.Node) bool {
			if found {
				return false
			}
			switch x := n.(type) {
			case *ast.SelectorExpr:
				if id, ok := x.X.(*ast.Ident); ok && id.Name == "testenv" && rootEntries[x.Sel.Name] {
					found = true
				}
				// Not into Sel: a method or another package's
				// function is not this directory's helper.
				ast.Inspect(x.X, visit)
				return false
			case *ast.Ident:
				// A call, or a function passed as a value (t.Run's).
				if _, ok := funcs[x.Name]; ok && x.Name != name && needs(x.Name) {
					found = true
				}
			}
			return !found
		}
		ast.Inspect(funcs[name].Body, visit)
		memo[name] = 2
		if found {
			memo[name] = 3
		}
		return found
	}
	out := map[string]string{}
	for name := range funcs {
		if (strings.HasPrefix(name, "Test") || strings.HasPrefix(name, "Benchmark") || strings.HasPrefix(name, "Fuzz")) && name != "TestMain" && needs(name) {
			out[name] = where[name]
		}
	}
	return out
}

// The tests that need root are in *_root_test.go files, and only there
// need anyone look for them (docs/architecture.md): a privileged test in
// another file is one a reader takes for a unit test. test/kernels is
// the exception: its guest tests run as root inside the kernel matrix's
// VMs and skip elsewhere, and the matrix itself is matrix_root_test.go.
func TestRootTestsNamedSo(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dirs := map[string]map[string]*ast.File{}
	fset := token.NewFileSet()
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel, _ := filepath.Rel(root, path); rel == filepath.Join("test", "kernels") || strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		if dirs[filepath.Dir(path)] == nil {
			dirs[filepath.Dir(path)] = map[string]*ast.File{}
		}
		dirs[filepath.Dir(path)][path] = f
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var wrong []string
	total := 0
	for _, files := range dirs {
		for name, file := range rootTests(files) {
			total++
			if !strings.HasSuffix(file, "_root_test.go") {
				rel, _ := filepath.Rel(root, file)
				wrong = append(wrong, rel+": "+name)
			}
		}
	}
	sort.Strings(wrong)
	if len(wrong) > 0 {
		t.Errorf("%d tests need root (testenv.RequireRoot or NewNetns, directly or through a helper) outside a *_root_test.go file:\n%s",
			len(wrong), strings.Join(wrong, "\n"))
	}
	if total < 100 {
		t.Errorf("found %d root tests in the module; the walk or the call graph is broken", total)
	}
	t.Logf("%d root tests found", total)
}

// The call graph follows helpers and functions passed as values, and
// leaves out tests that need nothing.
func TestRootTestsFollowsHelpers(t *testing.T) {
	src := map[string]string{
		"a_test.go": `package x_test
import ("testing"; "example/testenv")
func helper(t *testing.T) { deeper(t) }
func deeper(t *testing.T) { testenv.NewNetns(t) }
func TestViaHelper(t *testing.T) { helper(t) }
func TestViaValue(t *testing.T) { t.Run("x", sub) }
func sub(t *testing.T) { testenv.RequireRoot(t) }
func TestPure(t *testing.T) { _ = 1 + 1 }
func TestRecursive(t *testing.T) { TestRecursive(t) }
`,
	}
	fset := token.NewFileSet()
	files := map[string]*ast.File{}
	for name, s := range src {
		f, err := parser.ParseFile(fset, name, s, 0)
		if err != nil {
			t.Fatal(err)
		}
		files[name] = f
	}
	got := rootTests(files)
	want := []string{"TestViaHelper", "TestViaValue"}
	var names []string
	for n := range got {
		names = append(names, n)
	}
	sort.Strings(names)
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("root tests %v, want %v", names, want)
	}
}
