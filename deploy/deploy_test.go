// Package deploy_test checks the deployment files: the Helm chart and the
// kustomize base render the same DaemonSet, and both are accepted by a real
// API server, with RBAC that allows what the agent needs and nothing more.
package deploy_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/netsonde/netsonde/internal/testenv"
)

func kustomize(t *testing.T) string {
	t.Helper()
	testenv.RequireCommand(t, "kubectl")
	out, err := exec.Command("kubectl", "kustomize", "kubernetes").Output()
	if err != nil {
		t.Fatalf("kubectl kustomize: %v", err)
	}
	return string(out)
}

// helmTemplate renders the chart with Helm's Go library (hack/helmrender,
// its own module, so Helm stays out of the agent's dependencies).
func helmTemplate(t *testing.T) string {
	t.Helper()
	chart, _ := filepath.Abs("helm/netsonde")
	cmd := exec.Command("go", "run", ".", chart, "netsonde")
	cmd.Dir = "../hack/helmrender"
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm render: %v\n%s", err, stderr.String())
	}
	return string(out)
}

// objects splits a multi-document YAML stream into objects by kind/name.
func objects(t *testing.T, stream string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, doc := range strings.Split(stream, "\n---") {
		var o map[string]any
		if err := yaml.Unmarshal([]byte(doc), &o); err != nil {
			t.Fatalf("yaml: %v\n%s", err, doc)
		}
		if o == nil {
			continue
		}
		md, _ := o["metadata"].(map[string]any)
		out[o["kind"].(string)+"/"+md["name"].(string)] = o
	}
	return out
}

func TestHelmAndKustomizeRenderTheSameObjects(t *testing.T) {
	k, h := objects(t, kustomize(t)), objects(t, helmTemplate(t))
	for key, want := range k {
		if key == "Namespace/netsonde" {
			continue // helm install --create-namespace makes it
		}
		got, ok := h[key]
		if !ok {
			t.Errorf("%s: in the kustomize base, not in the Helm chart", key)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			gj, _ := json.MarshalIndent(got, "", " ")
			wj, _ := json.MarshalIndent(want, "", " ")
			t.Errorf("%s differs:\n--- helm\n%s\n--- kustomize\n%s", key, gj, wj)
		}
	}
	for key := range h {
		if _, ok := k[key]; !ok {
			t.Errorf("%s: in the Helm chart, not in the kustomize base", key)
		}
	}
}

// The manifests against a real API server: a server-side dry run of the
// kustomize base and of the chart, then the RBAC applied for real and asked
// what the agent's ServiceAccount may do.
func TestManifestsOnRealAPIServer(t *testing.T) {
	ns := testenv.NewNetns(t)
	api := testenv.StartKubeAPI(t, ns)
	crds, _ := filepath.Abs("../hack/crds/monitoring-coreos-com.yaml")
	api.Kubectl(t, "", "apply", "-f", crds)
	api.Kubectl(t, "", "wait", "--for=condition=Established", "crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")
	base, _ := filepath.Abs("kubernetes")
	// A server-side dry run does not create the namespace, so the objects in
	// it would be refused: make it first, as `kubectl apply -k` would in
	// its first pass.
	api.Kubectl(t, "", "create", "namespace", "netsonde")
	out := api.Kubectl(t, "", "apply", "--dry-run=server", "-k", base)
	if !strings.Contains(out, "daemonset.apps/netsonde created (server dry run)") {
		t.Fatalf("dry run did not create the DaemonSet:\n%s", out)
	}
	api.Kubectl(t, "", "apply", "-k", base)
	api.Kubectl(t, helmTemplate(t), "apply", "--dry-run=server", "-n", "netsonde", "-f", "-")

	sa := "--as=system:serviceaccount:netsonde:netsonde"
	for _, c := range []struct {
		verb, resource string
		allowed        bool
	}{
		{"list", "pods", true}, {"watch", "pods", true}, {"get", "pods", true},
		{"list", "nodes", true}, {"watch", "nodes", true},
		{"get", "secrets", false}, {"list", "secrets", false},
		{"create", "pods", false}, {"delete", "pods", false}, {"patch", "nodes", false},
		{"list", "configmaps", false},
	} {
		out, _ := api.KubectlErr("", "auth", "can-i", c.verb, c.resource, "--all-namespaces", sa)
		got := strings.TrimSpace(out) == "yes"
		if got != c.allowed {
			t.Errorf("can %s %s: %q, want allowed=%v", c.verb, c.resource, strings.TrimSpace(out), c.allowed)
		}
	}
}
