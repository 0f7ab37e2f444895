package deploy_test

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/netsonde/netsonde/internal/testenv"
)

// helmOn runs the real helm CLI against the test's API server (from inside
// its network namespace, where the server listens on loopback), with a
// fresh Helm state each run (helmEnv).
func helmOn(t *testing.T, api *testenv.KubeAPI, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + api.NS.Name, "--", helmBinary(t), "--kubeconfig", api.Kubeconfig}, args...)...)
	cmd.Env = helmEnv(t)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func mustHelmOn(t *testing.T, api *testenv.KubeAPI, args ...string) string {
	t.Helper()
	out, err := helmOn(t, api, args...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// What a new user does, on a real kube-apiserver + etcd with the real helm
// and kubectl: first a cluster without the Prometheus Operator, where both
// bundles must install (the chart twice, side by side) and forcing a
// monitor on must fail with a message that says what to install; then the
// Operator's CRDs from hack/crds/, after which the monitors are created.
// RBAC is asked what the agents' ServiceAccounts may do.
func TestInstallOnRealAPIServer(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t)
	api := testenv.StartKubeAPI(t, ns)
	chart := chartDir(t)
	kinds := func(namespace string) string {
		out, _ := api.KubectlErr("", "get", "servicemonitors,prometheusrules", "-n", namespace, "-o", "name")
		return strings.TrimSpace(out)
	}

	// No CRDs: two releases of the same name in two namespaces.
	for _, n := range []string{"team-a", "team-b"} {
		out := mustHelmOn(t, api, "install", "netsonde", chart, "--namespace", n, "--create-namespace", "--wait=false")
		if !strings.Contains(out, "STATUS: deployed") || !strings.Contains(out, "No ServiceMonitor was created") || !strings.Contains(out, "port-forward ds/netsonde 10333") {
			t.Errorf("helm install in %s:\n%s", n, out)
		}
		api.Kubectl(t, "", "get", "-n", n, "daemonset/netsonde", "serviceaccount/netsonde", "service/netsonde", "configmap/netsonde-dashboard")
		api.Kubectl(t, "", "get", "clusterrole/"+n+"-netsonde", "clusterrolebinding/"+n+"-netsonde")
	}
	// Forced on without the CRD: refused before anything is applied, with
	// the chart's message rather than the API's "no matches for kind".
	out, err := helmOn(t, api, "install", "forced", chart, "--namespace", "team-c", "--create-namespace", "--set", "serviceMonitor.enabled=true")
	if err == nil || !strings.Contains(out, "install the Prometheus Operator's CRDs first") {
		t.Errorf("serviceMonitor.enabled=true without the CRD: err %v\n%s", err, out)
	}
	// A typo is the schema's to refuse.
	out, err = helmOn(t, api, "install", "typo", chart, "--namespace", "team-c", "--create-namespace", "--set", "imagee.tag=1")
	if err == nil || !strings.Contains(out, "additional properties 'imagee' not allowed") {
		t.Errorf("--set imagee.tag=1: err %v\n%s", err, out)
	}

	base, _ := filepath.Abs("kubernetes")
	withMonitoring := withComponent(t)
	api.Kubectl(t, "", "apply", "-k", base)
	api.Kubectl(t, "", "get", "-n", "netsonde", "daemonset/netsonde")
	if out, err := api.KubectlErr("", "apply", "-k", withMonitoring); err == nil {
		t.Errorf("the monitoring component applied without the Operator's CRDs:\n%s", out)
	}

	// The Operator's CRDs (vendored in hack/crds/, pinned).
	crds, _ := filepath.Abs("../hack/crds")
	api.Kubectl(t, "", "apply", "--server-side", "-f", crds)
	api.Kubectl(t, "", "wait", "--for=condition=Established", "--timeout=60s", "crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com")

	// The CRDs' schemas are not open: a misplaced field is refused, so the
	// monitors accepted below are well-formed, not merely stored.
	bad := "apiVersion: monitoring.coreos.com/v1\nkind: ServiceMonitor\nmetadata: {name: bad, namespace: team-a}\nspec:\n  selector: {}\n  endpoints: [{port: metrics, interval: 30}]\n"
	if out, err := api.KubectlErr(bad, "apply", "-f", "-"); err == nil {
		t.Errorf("a ServiceMonitor with interval: 30 (a number) was accepted:\n%s", out)
	}

	// auto now finds the API: an upgrade creates the monitors, and so does
	// a new install; true is accepted.
	mustHelmOn(t, api, "upgrade", "netsonde", chart, "--namespace", "team-a")
	mustHelmOn(t, api, "install", "forced", chart, "--namespace", "team-c", "--create-namespace", "--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true", "--set", "service.port=10555")
	for _, n := range []string{"team-a", "team-c"} {
		want := "prometheusrule.monitoring.coreos.com/" + map[string]string{"team-a": "netsonde", "team-c": "forced-netsonde"}[n]
		if got := kinds(n); !strings.Contains(got, want) || !strings.Contains(got, "servicemonitor.monitoring.coreos.com/") {
			t.Errorf("%s after the CRDs: %q, want a ServiceMonitor and %s", n, got, want)
		}
	}
	if got := kinds("team-b"); got != "" {
		t.Errorf("team-b was not upgraded, yet has %q", got)
	}
	// And the kustomize component applies.
	api.Kubectl(t, "", "apply", "-k", withMonitoring)
	if got := kinds("netsonde"); !strings.Contains(got, "servicemonitor.monitoring.coreos.com/netsonde") || !strings.Contains(got, "prometheusrule.monitoring.coreos.com/netsonde") {
		t.Errorf("kustomize with the component: %q", got)
	}

	// RBAC of every install: the agent may read pods and nodes (list and
	// watch for its informers, get for one node by name), nothing else:
	// no write, no subresource (a node's proxy or a pod's exec would reach
	// the kubelet's API), no other resource.
	for _, sa := range []string{"netsonde:netsonde", "team-a:netsonde", "team-b:netsonde", "team-c:forced-netsonde"} {
		for _, c := range []struct {
			verb, resource string
			allowed        bool
		}{
			{"list", "pods", true}, {"watch", "pods", true}, {"get", "pods", true},
			{"list", "nodes", true}, {"watch", "nodes", true}, {"get", "nodes", true},
			{"get", "secrets", false}, {"list", "secrets", false},
			{"create", "pods", false}, {"delete", "pods", false}, {"update", "pods", false}, {"patch", "pods", false},
			{"patch", "nodes", false}, {"update", "nodes", false}, {"delete", "nodes", false},
			{"deletecollection", "pods", false},
			// kubectl reads nodes/proxy as the node named proxy:
			// subresources go in --subresource.
			{"get", "nodes --subresource=proxy", false}, {"create", "pods --subresource=exec", false}, {"get", "pods --subresource=log", false},
			{"patch", "nodes --subresource=status", false}, {"create", "pods --subresource=eviction", false},
			{"list", "configmaps", false}, {"list", "services", false}, {"list", "endpointslices.discovery.k8s.io", false},
			{"create", "events", false}, {"list", "namespaces", false},
		} {
			args := append(append([]string{"auth", "can-i", c.verb}, strings.Fields(c.resource)...), "--all-namespaces", "--as=system:serviceaccount:"+sa)
			out, _ := api.KubectlErr("", args...)
			if got := strings.TrimSpace(out) == "yes"; got != c.allowed {
				t.Errorf("%s can %s %s: %q, want allowed=%v", sa, c.verb, c.resource, strings.TrimSpace(out), c.allowed)
			}
		}
	}

	// Uninstall leaves nothing of the release behind, cluster-scoped
	// objects included, and the other release untouched.
	mustHelmOn(t, api, "uninstall", "netsonde", "--namespace", "team-a")
	if out, err := api.KubectlErr("", "get", "clusterrole/team-a-netsonde"); err == nil {
		t.Errorf("ClusterRole of the uninstalled release remains:\n%s", out)
	}
	api.Kubectl(t, "", "get", "clusterrole/team-b-netsonde", "-n", "team-b", "daemonset/netsonde")
}

// podOf is a Pod with the DaemonSet's pod template, as the DaemonSet
// controller would create it (no controller runs beside this API server).
func podOf(t *testing.T, ds map[string]any) string {
	t.Helper()
	tmpl := ds["spec"].(map[string]any)["template"].(map[string]any)
	b, err := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Pod",
		"metadata": map[string]any{"name": "netsonde-probe", "labels": tmpl["metadata"].(map[string]any)["labels"]},
		"spec":     tmpl["spec"],
	})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Pod Security Admission on a real API server: the agent's pod, from
// either bundle, is refused where a namespace enforces baseline, for the
// reasons deploy/kubernetes/namespace.yaml gives, and admitted in that
// file's namespace. The chart, which cannot own the namespace it is
// installed in, says in its notes to label one that lacks the label, and
// says nothing where it is there.
func TestPodSecurityAdmission(t *testing.T) {
	testenv.RequireRoot(t)
	ns := testenv.NewNetns(t)
	api := testenv.StartKubeAPI(t, ns)
	chart := chartDir(t)
	file, _ := filepath.Abs("kubernetes/namespace.yaml")
	api.Kubectl(t, "", "apply", "-f", file)
	if got := api.Kubectl(t, "", "get", "namespace", "netsonde", "-o", "jsonpath={.metadata.labels.pod-security\\.kubernetes\\.io/enforce}"); got != "privileged" {
		t.Fatalf("namespace.yaml's namespace enforces %q, want privileged", got)
	}
	if out := mustHelmOn(t, api, "install", "netsonde", chart, "--namespace", "netsonde", "--wait=false"); strings.Contains(out, "Pod Security") {
		t.Errorf("helm install into the labelled namespace warns:\n%s", out)
	}
	out := mustHelmOn(t, api, "install", "netsonde", chart, "--namespace", "plain", "--create-namespace", "--wait=false")
	if !strings.Contains(out, "kubectl label namespace plain pod-security.kubernetes.io/enforce=privileged") {
		t.Errorf("helm install --create-namespace: the notes do not say to label the namespace:\n%s", out)
	}
	api.Kubectl(t, "", "create", "namespace", "strict")
	api.Kubectl(t, "", "label", "namespace", "strict", "pod-security.kubernetes.io/enforce=baseline")

	for name, ds := range map[string]map[string]any{
		"kustomize": daemonSet(t, objects(t, kustomize(t, "kubernetes"))),
		"helm":      daemonSet(t, objects(t, helmTemplate(t, "netsonde", "netsonde"))),
	} {
		pod := podOf(t, ds)
		if out, err := api.KubectlErr(pod, "create", "--dry-run=server", "-n", "netsonde", "-f", "-"); err != nil {
			t.Errorf("%s: the pod is refused in the privileged namespace: %v\n%s", name, err, out)
		}
		out, err := api.KubectlErr(pod, "create", "--dry-run=server", "-n", "strict", "-f", "-")
		if err == nil {
			t.Errorf("%s: the pod is admitted where baseline is enforced:\n%s", name, out)
			continue
		}
		for _, want := range []string{
			`violates PodSecurity "baseline:latest"`,
			"host namespaces (hostNetwork=true, hostPID=true)",
			`hostPath volumes (volumes "proc", "netns", "tracefs", "btf", "cni", "cgroup")`,
			`non-default capabilities (container "netsonde" must not include "NET_ADMIN", "NET_RAW", "SYS_ADMIN", "SYS_PTRACE" in securityContext.capabilities.add)`,
		} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: refused, but not for %s:\n%s", name, want, out)
			}
		}
	}
}
