// Package deploy_test checks the deployment files: the Helm chart (with the
// real helm CLI) and the kustomize bundles render the same objects, and both
// install on a real API server, with and without the Prometheus Operator's
// CRDs, with RBAC that allows what the agent needs and nothing more.
package deploy_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/netsonde/netsonde/internal/testenv"
)

// kustomize renders dir (relative to deploy/) with kubectl's kustomize.
func kustomize(t *testing.T, dir string) string {
	t.Helper()
	testenv.RequireCommand(t, "kubectl")
	out, err := exec.Command("kubectl", "kustomize", dir).CombinedOutput()
	if err != nil {
		t.Fatalf("kubectl kustomize %s: %v\n%s", dir, err, out)
	}
	return string(out)
}

// withComponent writes an overlay of the base that adds the monitoring
// component, as a user's own overlay would (the one line being
// `components:`), and returns its directory.
func withComponent(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	base, err := filepath.Abs("kubernetes")
	if err != nil {
		t.Fatal(err)
	}
	// kustomize refuses absolute paths in resources: relative ones, then.
	rel, err := filepath.Rel(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	k := "resources: [" + rel + "]\ncomponents: [" + rel + "/components/monitoring]\n"
	if err := os.WriteFile(filepath.Join(dir, "kustomization.yaml"), []byte(k), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// objects splits a multi-document YAML stream into objects by kind/name.
func objects(t testing.TB, stream string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	for _, doc := range strings.Split("\n"+stream, "\n---") {
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

func yamlField(t *testing.T, doc []byte, field string) string {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal(doc, &m); err != nil {
		t.Fatal(err)
	}
	s, _ := m[field].(string)
	return s
}

// withoutHelmLabels removes the labels only Helm sets (which chart made an
// object, and that Helm manages it): the kustomize bundle has no chart.
func withoutHelmLabels(objs map[string]map[string]any) {
	strip := func(md any) {
		m, _ := md.(map[string]any)
		if l, ok := m["labels"].(map[string]any); ok {
			delete(l, "helm.sh/chart")
			delete(l, "app.kubernetes.io/managed-by")
		}
	}
	for _, o := range objs {
		strip(o["metadata"])
		if spec, ok := o["spec"].(map[string]any); ok {
			if tmpl, ok := spec["template"].(map[string]any); ok {
				strip(tmpl["metadata"])
			}
		}
	}
}

func compareObjects(t *testing.T, helm, kust map[string]map[string]any) {
	t.Helper()
	withoutHelmLabels(helm)
	for key, want := range kust {
		if key == "Namespace/netsonde" {
			// Helm keeps its release in the namespace before it creates
			// anything, so a chart cannot own its own namespace (helm
			// install --create-namespace makes it, unlabelled):
			// TestPodSecurityAdmission covers its label.
			continue
		}
		got, ok := helm[key]
		if !ok {
			t.Errorf("%s: in the kustomize bundle, not in the Helm chart", key)
			continue
		}
		if !reflect.DeepEqual(got, want) {
			gj, _ := json.MarshalIndent(got, "", " ")
			wj, _ := json.MarshalIndent(want, "", " ")
			t.Errorf("%s differs:\n--- helm\n%s\n--- kustomize\n%s", key, gj, wj)
		}
	}
	for key := range helm {
		if _, ok := kust[key]; !ok {
			t.Errorf("%s: in the Helm chart, not in the kustomize bundle", key)
		}
	}
}

// The chart's defaults on a cluster without the Operator are the kustomize
// base plus the dashboard ConfigMap (which needs no CRD); on a cluster with
// it, the base plus the monitoring component. Same objects, field for field.
func TestHelmAndKustomizeRenderTheSameObjects(t *testing.T) {
	t.Run("without the Operator", func(t *testing.T) {
		k := objects(t, kustomize(t, "kubernetes"))
		comp := objects(t, kustomize(t, withComponent(t)))
		k["ConfigMap/netsonde-dashboard"] = comp["ConfigMap/netsonde-dashboard"]
		compareObjects(t, objects(t, helmTemplate(t, "netsonde", "netsonde")), k)
	})
	t.Run("with the Operator", func(t *testing.T) {
		compareObjects(t, objects(t, helmTemplate(t, "netsonde", "netsonde", operatorAPIs...)), objects(t, kustomize(t, withComponent(t))))
	})
	// Pinned by digest, each bundle's way (kustomization.yaml and
	// values.yaml say how): the same image reference.
	t.Run("pinned by digest", func(t *testing.T) {
		digest := "sha256:" + strings.Repeat("5e", 32)
		overlay := withComponent(t)
		f, err := os.OpenFile(filepath.Join(overlay, "kustomization.yaml"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteString("images: [{name: ghcr.io/netsonde/netsonde, digest: " + digest + "}]\n"); err != nil {
			t.Fatal(err)
		}
		f.Close()
		k := objects(t, kustomize(t, overlay))
		if img := container(daemonSet(t, k))["image"]; img != "ghcr.io/netsonde/netsonde@"+digest {
			t.Errorf("kustomize images: digest: image %v", img)
		}
		compareObjects(t, objects(t, helmTemplate(t, "netsonde", "netsonde", append([]string{"--set", "image.digest=" + digest}, operatorAPIs...)...)), k)
	})
}

// The base needs no CRD; the component carries every monitoring object,
// the dashboard labelled for Grafana's sidecar.
func TestKustomizeBaseAndComponent(t *testing.T) {
	for key, o := range objects(t, kustomize(t, "kubernetes")) {
		if strings.Contains(o["apiVersion"].(string), "monitoring.coreos.com") {
			t.Errorf("the base has %s: it would fail without the Operator's CRDs", key)
		}
	}
	comp := objects(t, kustomize(t, withComponent(t)))
	for _, key := range []string{"ServiceMonitor/netsonde", "PrometheusRule/netsonde", "ConfigMap/netsonde-dashboard"} {
		o, ok := comp[key]
		if !ok {
			t.Errorf("the component lacks %s", key)
			continue
		}
		if ns := o["metadata"].(map[string]any)["namespace"]; ns != "netsonde" {
			t.Errorf("%s in namespace %v", key, ns)
		}
	}
	if l := comp["ConfigMap/netsonde-dashboard"]["metadata"].(map[string]any)["labels"].(map[string]any); l["grafana_dashboard"] != "1" {
		t.Errorf("dashboard labels %v: Grafana's sidecar looks for grafana_dashboard=1", l)
	}
	// The one line in the base itself, as its kustomization.yaml suggests,
	// makes the same objects as the overlay.
	dir := filepath.Join(t.TempDir(), "kubernetes")
	if out, err := exec.Command("cp", "-r", "kubernetes", dir).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	f, err := os.OpenFile(filepath.Join(dir, "kustomization.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("components: [components/monitoring]\n"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if inPlace := objects(t, kustomize(t, dir)); !reflect.DeepEqual(inPlace, comp) {
		t.Errorf("the component added in the base renders %v, the overlay %v", keys(inPlace), keys(comp))
	}
}

// The kustomize base deploys the chart's appVersion, and the chart's
// appVersion is the release at the top of CHANGELOG.md, which `make
// release` stamps into the binary.
func TestVersionsAgree(t *testing.T) {
	chart, err := os.ReadFile("helm/netsonde/Chart.yaml")
	if err != nil {
		t.Fatal(err)
	}
	app, version := yamlField(t, chart, "appVersion"), yamlField(t, chart, "version")
	if app == "" || app != version {
		t.Errorf("Chart.yaml: version %q, appVersion %q: released together, they are equal", version, app)
	}
	out, err := exec.Command("make", "-s", "-C", "..", "print-release-version").Output()
	if err != nil {
		t.Fatalf("make print-release-version: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != app {
		t.Errorf("make release builds version %q, the chart's appVersion is %q", got, app)
	}
	ds := daemonSet(t, objects(t, kustomize(t, "kubernetes")))
	if img := container(ds)["image"]; img != "ghcr.io/netsonde/netsonde:"+app {
		t.Errorf("kustomize base image %v, want the appVersion %s", img, app)
	}
}

// The image says where it comes from (OCI labels, filled from the build's
// VERSION and REVISION) and is built per TARGETARCH by a Go stage on the
// build machine's platform. No container engine runs here to build it, so
// the Dockerfile is read.
func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, want := range []string{
		"FROM --platform=$BUILDPLATFORM golang:",
		"GOARCH=${TARGETARCH}",
		`org.opencontainers.image.source="https://github.com/netsonde/netsonde"`,
		`org.opencontainers.image.revision="${REVISION}"`,
		`org.opencontainers.image.version="${VERSION}"`,
		`org.opencontainers.image.licenses="Apache-2.0"`,
		"version.Revision=${REVISION}",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// ARGs used by LABEL must be declared in the final stage too: an ARG
	// before or in another stage is empty there.
	final := df[strings.LastIndex(df, "\nFROM "):]
	for _, arg := range []string{"ARG VERSION", "ARG REVISION"} {
		if !strings.Contains(final, arg) {
			t.Errorf("the final stage does not declare %s", arg)
		}
	}
}
