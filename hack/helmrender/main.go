// Command helmrender renders a Helm chart with Helm's own Go library, as
// `helm template` would, for tests on machines without the helm binary.
//
//	go run . ../../deploy/helm/netsonde NAMESPACE
package main

import (
	"fmt"
	"os"
	"sort"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: helmrender CHART_DIR NAMESPACE")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "helmrender:", err)
		os.Exit(1)
	}
}

func run(dir, namespace string) error {
	ch, err := loader.Load(dir)
	if err != nil {
		return err
	}
	vals, err := chartutil.ToRenderValues(ch, map[string]any{}, chartutil.ReleaseOptions{Name: "netsonde", Namespace: namespace, IsInstall: true}, chartutil.DefaultCapabilities)
	if err != nil {
		return err
	}
	out, err := engine.Render(ch, vals)
	if err != nil {
		return err
	}
	names := make([]string, 0, len(out))
	for n := range out {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if len(out[n]) == 0 || n[len(n)-4:] == ".txt" {
			continue
		}
		fmt.Printf("---\n# Source: %s\n%s\n", n, out[n])
	}
	return nil
}
