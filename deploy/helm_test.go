package deploy_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/netsonde/netsonde/internal/testenv"
)

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helmBinary is the real Helm CLI, pinned and built once per machine by
// hack/helm.sh (make deps runs it). The chart is tested with the binary a
// user runs, not Helm's Go packages: schema validation, lint rules and
// .Capabilities from a live API server are the CLI's behaviour.
func helmBinary(t testing.TB) string {
	t.Helper()
	helmOnce.Do(func() {
		script, err := filepath.Abs("../hack/helm.sh")
		if err != nil {
			helmErr = err
			return
		}
		var stderr bytes.Buffer
		cmd := exec.Command(script)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			helmErr = fmt.Errorf("hack/helm.sh: %w\n%s", err, stderr.String())
			return
		}
		helmPath = strings.TrimSpace(string(out))
	})
	if helmErr != nil {
		// Building needs the module proxy and a writable cache; without
		// them outside CI the chart tests cannot run here.
		if !testenv.InCI() && os.Geteuid() != 0 {
			t.Skipf("no helm binary: %v", helmErr)
		}
		t.Fatal(helmErr)
	}
	return helmPath
}

func chartDir(t testing.TB) string {
	t.Helper()
	d, err := filepath.Abs("helm/netsonde")
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// helmRun runs helm and returns stdout, and stderr in the error.
func helmRun(t testing.TB, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(helmBinary(t), args...)
	cmd.Env = helmEnv(t)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %w\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// helmEnv keeps Helm's own state (repositories, caches, kube discovery
// cache) in a directory of the test's, fresh for each run, never the
// user's: a cached discovery would hide a CRD installed a moment ago.
func helmEnv(t testing.TB) []string {
	home := t.TempDir()
	return append(os.Environ(), "HOME="+home, "HELM_CACHE_HOME="+home+"/cache", "HELM_CONFIG_HOME="+home+"/config", "HELM_DATA_HOME="+home+"/data")
}

// helmTemplate renders the chart as release name in namespace ns.
func helmTemplate(t testing.TB, name, ns string, args ...string) string {
	t.Helper()
	out, err := helmRun(t, append([]string{"template", name, chartDir(t), "--namespace", ns}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The operator's API as the chart asks for it: with these, .Capabilities
// says the CRDs are installed.
var operatorAPIs = []string{
	"--api-versions", "monitoring.coreos.com/v1/ServiceMonitor",
	"--api-versions", "monitoring.coreos.com/v1/PrometheusRule",
}

func ciValues(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir(t), "ci", "*-values.yaml"))
	if err != nil || len(files) < 4 {
		t.Fatalf("ci/*-values.yaml: %v %v", files, err)
	}
	sort.Strings(files)
	return files
}

// helm lint --strict is clean for the defaults and every ci/ scenario, and
// each scenario renders.
func TestHelmLintStrict(t *testing.T) {
	if out, err := helmRun(t, "lint", "--strict", chartDir(t)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	for _, f := range ciValues(t) {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if out, err := helmRun(t, "lint", "--strict", chartDir(t), "-f", f); err != nil {
				t.Fatalf("%v\n%s", err, out)
			}
			objs := objects(t, helmTemplate(t, "netsonde", "netsonde", "-f", f))
			if _, ok := objs["DaemonSet/netsonde"]; !ok {
				t.Errorf("no DaemonSet rendered: %v", keys(objs))
			}
		})
	}
}

// Two releases, in two namespaces and with the same release name, render
// no cluster-scoped object under the same name, and nothing in a namespace
// collides either.
func TestTwoReleasesShareNoName(t *testing.T) {
	a := objects(t, helmTemplate(t, "netsonde", "team-a"))
	b := objects(t, helmTemplate(t, "netsonde", "team-b"))
	c := objects(t, helmTemplate(t, "edge", "team-a"))
	clusterScoped := map[string]bool{"ClusterRole": true, "ClusterRoleBinding": true}
	for _, pair := range [][2]map[string]map[string]any{{a, b}, {a, c}} {
		for key, o := range pair[0] {
			if !clusterScoped[o["kind"].(string)] {
				continue
			}
			if _, dup := pair[1][key]; dup {
				t.Errorf("%s is rendered by both releases", key)
			}
		}
	}
	// The binding names its own release's ServiceAccount and ClusterRole.
	for key, o := range b {
		if o["kind"] != "ClusterRoleBinding" {
			continue
		}
		subj := o["subjects"].([]any)[0].(map[string]any)
		role := o["roleRef"].(map[string]any)["name"]
		if subj["namespace"] != "team-b" || b["ClusterRole/"+role.(string)] == nil {
			t.Errorf("%s binds %v to %v", key, subj, role)
		}
	}
	for key := range c {
		if key == "DaemonSet/netsonde" {
			t.Errorf("release edge renders %s: names must come from the release", key)
		}
	}
}

func daemonSet(t *testing.T, objs map[string]map[string]any) map[string]any {
	t.Helper()
	for _, o := range objs {
		if o["kind"] == "DaemonSet" {
			return o
		}
	}
	t.Fatalf("no DaemonSet in %v", keys(objs))
	return nil
}

func podSpec(ds map[string]any) map[string]any {
	return ds["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)
}

func container(ds map[string]any) map[string]any {
	return podSpec(ds)["containers"].([]any)[0].(map[string]any)
}

// image.tag empty means the chart's appVersion; a digest wins over a tag.
func TestImageDefaultsToAppVersion(t *testing.T) {
	chart, err := os.ReadFile(filepath.Join(chartDir(t), "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	app := yamlField(t, chart, "appVersion")
	got := container(daemonSet(t, objects(t, helmTemplate(t, "netsonde", "netsonde"))))["image"]
	if want := "ghcr.io/netsonde/netsonde:" + app; got != want {
		t.Errorf("image %v, want %s", got, want)
	}
	got = container(daemonSet(t, objects(t, helmTemplate(t, "netsonde", "netsonde", "--set", "image.tag=1.2.3"))))["image"]
	if got != "ghcr.io/netsonde/netsonde:1.2.3" {
		t.Errorf("image.tag=1.2.3: image %v", got)
	}
	digest := "sha256:" + strings.Repeat("ab", 32)
	got = container(daemonSet(t, objects(t, helmTemplate(t, "netsonde", "netsonde", "--set", "image.digest="+digest))))["image"]
	if got != "ghcr.io/netsonde/netsonde@"+digest {
		t.Errorf("image.digest: image %v", got)
	}
}

// The pod-level values reach the pod: nodeSelector defaults to Linux and
// is replaced by the user's; the others appear where Kubernetes reads them.
func TestPodValuesHonoured(t *testing.T) {
	ds := daemonSet(t, objects(t, helmTemplate(t, "netsonde", "netsonde")))
	if ns := podSpec(ds)["nodeSelector"]; fmt.Sprint(ns) != "map[kubernetes.io/os:linux]" {
		t.Errorf("default nodeSelector %v", ns)
	}
	values := filepath.Join(t.TempDir(), "values.yaml")
	if err := os.WriteFile(values, []byte(`
nodeSelector: {disk: ssd}
tolerations: [{key: dedicated, operator: Equal, value: net, effect: NoSchedule}]
affinity: {nodeAffinity: {requiredDuringSchedulingIgnoredDuringExecution: {nodeSelectorTerms: [{matchExpressions: [{key: zone, operator: In, values: [a]}]}]}}}
podAnnotations: {example.com/a: "1"}
podLabels: {team: net}
resources: {requests: {cpu: 50m}}
priorityClassName: high
extraArgs: [--log.level=debug]
extraEnv: [{name: GOMEMLIMIT, value: 90MiB}]
hostNetwork: false
updateStrategy: {type: OnDelete}
serviceAccount: {create: true, name: probe, annotations: {example.com/role: x}}
service: {port: 10444, annotations: {example.com/s: "y"}}
collectors: {drops: false, conntrack: true}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	objs := objects(t, helmTemplate(t, "netsonde", "netsonde", "-f", values))
	ds = daemonSet(t, objs)
	spec, c := podSpec(ds), container(ds)
	tmeta := ds["spec"].(map[string]any)["template"].(map[string]any)["metadata"].(map[string]any)
	checks := []struct {
		what string
		got  any
		want string
	}{
		// Helm merges maps with the defaults: the user's keys are added
		// (kubernetes.io/os: null removes the default one).
		{"nodeSelector", spec["nodeSelector"], "map[disk:ssd kubernetes.io/os:linux]"},
		{"tolerations", spec["tolerations"], "[map[effect:NoSchedule key:dedicated operator:Equal value:net]]"},
		{"affinity", spec["affinity"] != nil, "true"},
		{"podAnnotations", tmeta["annotations"], "map[example.com/a:1]"},
		{"podLabels", tmeta["labels"].(map[string]any)["team"], "net"},
		{"resources", c["resources"], "map[limits:map[memory:128Mi] requests:map[cpu:50m memory:48Mi]]"},
		{"priorityClassName", spec["priorityClassName"], "high"},
		{"hostNetwork", spec["hostNetwork"], "false"},
		{"dnsPolicy", spec["dnsPolicy"], "ClusterFirst"},
		{"updateStrategy", ds["spec"].(map[string]any)["updateStrategy"], "map[type:OnDelete]"},
		{"serviceAccountName", spec["serviceAccountName"], "probe"},
		{"args", c["args"], "[--web.listen-address=:10444 --path.procfs=/host/proc --fsyncprobe.host-root=/host/proc/1/root --dns.cgroup-path=/host/sys/fs/cgroup --collector.conntrack --no-collector.drops --log.level=debug]"},
		{"memory limit from the Downward API", c["env"].([]any)[1], "map[name:NETSONDE_MEMORY_LIMIT valueFrom:map[resourceFieldRef:map[containerName:netsonde resource:limits.memory]]]"},
		{"extraEnv", c["env"].([]any)[2], "map[name:GOMEMLIMIT value:90MiB]"},
		{"ServiceAccount annotations", objs["ServiceAccount/probe"]["metadata"].(map[string]any)["annotations"], "map[example.com/role:x]"},
		{"Service annotations", objs["Service/netsonde"]["metadata"].(map[string]any)["annotations"], "map[example.com/s:y]"},
	}
	for _, c := range checks {
		if got := fmt.Sprint(c.got); got != c.want {
			t.Errorf("%s: %s, want %s", c.what, got, c.want)
		}
	}
	objs = objects(t, helmTemplate(t, "netsonde", "netsonde", "--set", "nodeSelector.kubernetes\\.io/os=null", "--set", "nodeSelector.disk=ssd"))
	if got := fmt.Sprint(podSpec(daemonSet(t, objs))["nodeSelector"]); got != "map[disk:ssd]" {
		t.Errorf("nodeSelector with the default removed: %s", got)
	}
	// rbac.create=false and serviceAccount.create=false: the user brings
	// both, and the pod runs as the named account.
	objs = objects(t, helmTemplate(t, "netsonde", "netsonde", "--set", "rbac.create=false", "--set", "serviceAccount.create=false", "--set", "serviceAccount.name=mine"))
	for key := range objs {
		if strings.HasPrefix(key, "ClusterRole") || strings.HasPrefix(key, "ServiceAccount/") {
			t.Errorf("rbac.create=false, serviceAccount.create=false: %s rendered", key)
		}
	}
	if got := podSpec(daemonSet(t, objs))["serviceAccountName"]; got != "mine" {
		t.Errorf("serviceAccountName %v, want mine", got)
	}
}

// No bundle mounts etcd's data directory: a hostPath there would create it
// (DirectoryOrCreate, or the runtime's default) on every node, and give the
// agent write access to it.
func TestNoEtcdHostPath(t *testing.T) {
	renders := map[string]string{"helm defaults": helmTemplate(t, "netsonde", "netsonde"), "kustomize": kustomize(t, "kubernetes")}
	for _, f := range ciValues(t) {
		renders[filepath.Base(f)] = helmTemplate(t, "netsonde", "netsonde", "-f", f)
	}
	for name, out := range renders {
		for _, v := range podSpec(daemonSet(t, objects(t, out)))["volumes"].([]any) {
			hp, _ := v.(map[string]any)["hostPath"].(map[string]any)
			if p, _ := hp["path"].(string); strings.HasPrefix(p, "/var/lib") {
				t.Errorf("%s: hostPath %v", name, hp)
			}
		}
	}
}

// Every object carries the app.kubernetes.io set, the selector picks this
// release only.
func TestStandardLabels(t *testing.T) {
	for key, o := range objects(t, helmTemplate(t, "edge", "netsonde", operatorAPIs...)) {
		labels := o["metadata"].(map[string]any)["labels"].(map[string]any)
		for _, l := range []string{"app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version", "app.kubernetes.io/managed-by", "app.kubernetes.io/part-of", "helm.sh/chart"} {
			if labels[l] == nil {
				t.Errorf("%s: no label %s", key, l)
			}
		}
		if labels["app.kubernetes.io/instance"] != "edge" {
			t.Errorf("%s: instance %v", key, labels["app.kubernetes.io/instance"])
		}
	}
}

// Misspelt values fail with the schema's message, and so do wrong types.
func TestSchemaRejectsTypos(t *testing.T) {
	for _, c := range []struct{ set, msg string }{
		{"imagee.tag=1", "additional properties 'imagee' not allowed"},
		{"nodeselector.disk=ssd", "additional properties 'nodeselector' not allowed"},
		{"image.tagg=1", "additional properties 'tagg' not allowed"},
		{"serviceMonitor.enable=true", "additional properties 'enable' not allowed"},
		{"serviceMonitor.enabled=yes", "serviceMonitor/enabled"},
		{"collectors.drop=false", "additional properties 'drop' not allowed"},
		{"service.port=0", "service/port"},
	} {
		_, err := helmRun(t, "template", "netsonde", chartDir(t), "--set", c.set)
		if err == nil || !strings.Contains(err.Error(), "values don't meet the specifications of the schema") || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("--set %s: want the schema's %q, got %v", c.set, c.msg, err)
		}
	}
}

// serviceMonitor.enabled and prometheusRule.enabled: auto follows the
// cluster's APIs, true insists (with a message naming the CRD when it is
// missing, unless trustCRDsExist), false never renders.
func TestMonitorsAutoTrueFalse(t *testing.T) {
	has := func(out, kind string) bool {
		for _, o := range objects(t, out) {
			if o["kind"] == kind {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		name    string
		args    []string
		sm, pr  bool
		failMsg string
	}{
		{"auto without the CRDs", nil, false, false, ""},
		{"auto with the CRDs", operatorAPIs, true, true, ""},
		{"auto with one CRD", []string{"--api-versions", "monitoring.coreos.com/v1/ServiceMonitor"}, true, false, ""},
		{"false with the CRDs", append([]string{"--set", "serviceMonitor.enabled=false", "--set", "prometheusRule.enabled=false"}, operatorAPIs...), false, false, ""},
		{"true with the CRDs", append([]string{"--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true"}, operatorAPIs...), true, true, ""},
		{"true and trusted", []string{"--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true", "--set", "trustCRDsExist=true"}, true, true, ""},
		{"ServiceMonitor true without the CRD", []string{"--set", "serviceMonitor.enabled=true"}, false, false, "serviceMonitor.enabled=true, but this cluster does not serve monitoring.coreos.com/v1 ServiceMonitor: install the Prometheus Operator's CRDs"},
		{"PrometheusRule true without the CRD", []string{"--set", "prometheusRule.enabled=true"}, false, false, "prometheusRule.enabled=true, but this cluster does not serve monitoring.coreos.com/v1 PrometheusRule: install the Prometheus Operator's CRDs"},
	} {
		t.Run(c.name, func(t *testing.T) {
			out, err := helmRun(t, append([]string{"template", "netsonde", chartDir(t)}, c.args...)...)
			if c.failMsg != "" {
				if err == nil || !strings.Contains(err.Error(), c.failMsg) {
					t.Fatalf("want failure %q, got %v", c.failMsg, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if has(out, "ServiceMonitor") != c.sm || has(out, "PrometheusRule") != c.pr {
				t.Errorf("ServiceMonitor %v PrometheusRule %v, want %v %v", has(out, "ServiceMonitor"), has(out, "PrometheusRule"), c.sm, c.pr)
			}
		})
	}
	// The node-exporter chart's monitor values reach the object.
	out := helmTemplate(t, "netsonde", "netsonde", "-f", filepath.Join(chartDir(t), "ci", "monitors-values.yaml"), "--set", "serviceMonitor.namespace=monitoring", "--set", "prometheusRule.namespace=monitoring")
	objs := objects(t, out)
	sm, pr := objs["ServiceMonitor/netsonde"], objs["PrometheusRule/netsonde"]
	if sm == nil || pr == nil {
		t.Fatalf("monitors missing: %v", keys(objs))
	}
	ep := sm["spec"].(map[string]any)["endpoints"].([]any)[0].(map[string]any)
	for _, c := range []struct {
		what string
		got  any
		want string
	}{
		{"namespace", sm["metadata"].(map[string]any)["namespace"], "monitoring"},
		{"namespaceSelector", sm["spec"].(map[string]any)["namespaceSelector"], "map[matchNames:[netsonde]]"},
		{"label", sm["metadata"].(map[string]any)["labels"].(map[string]any)["release"], "kube-prometheus-stack"},
		{"interval", ep["interval"], "15s"},
		{"scrapeTimeout", ep["scrapeTimeout"], "10s"},
		{"relabelings", len(ep["relabelings"].([]any)), "3"},
		{"metricRelabelings", ep["metricRelabelings"], "[map[action:drop regex:go_.* sourceLabels:[__name__]]]"},
		{"rule namespace", pr["metadata"].(map[string]any)["namespace"], "monitoring"},
		{"rule label", pr["metadata"].(map[string]any)["labels"].(map[string]any)["release"], "kube-prometheus-stack"},
	} {
		if got := fmt.Sprint(c.got); got != c.want {
			t.Errorf("%s: %s, want %s", c.what, got, c.want)
		}
	}
}

// The rules select the job the chart's ServiceMonitor makes (the Service's
// name, from the release), and take the settings the rules file documents.
func TestRulesFollowTheRelease(t *testing.T) {
	out := helmTemplate(t, "edge", "mon", append([]string{"--set", "prometheusRule.clusterLabel=k8s_cluster", "--set", "prometheusRule.runbookUrl=https://wiki.example/rb"}, operatorAPIs...)...)
	for _, want := range []string{`expr: up{job="edge-netsonde"} == 0`, `absent(up{job="edge-netsonde"})`, "kubectl -n mon get pods", "count by (k8s_cluster, collector, reason)", "runbook_url: https://wiki.example/rb#netsondedown"} {
		if !strings.Contains(out, want) {
			t.Errorf("rendered PrometheusRule lacks %q", want)
		}
	}
	out = helmTemplate(t, "edge", "mon", append([]string{"--set", `prometheusRule.jobSelector=job="netsonde"\,team="net"`}, operatorAPIs...)...)
	if !strings.Contains(out, `absent(up{job="netsonde",team="net"})`) {
		t.Error("prometheusRule.jobSelector not used")
	}
}

func keys(m map[string]map[string]any) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// webConfig.secretName mounts the Secret and points --web.config.file at
// it; webConfig.scheme=HTTPS makes the probes and the ServiceMonitor HTTPS.
// By default neither is there and the probes are plain HTTP.
func TestWebConfigFromSecret(t *testing.T) {
	probeSchemes := func(c map[string]any) string {
		var s []string
		for _, p := range []string{"livenessProbe", "readinessProbe"} {
			s = append(s, fmt.Sprint(c[p].(map[string]any)["httpGet"].(map[string]any)["scheme"]))
		}
		return strings.Join(s, ",")
	}
	ds := daemonSet(t, objects(t, helmTemplate(t, "netsonde", "netsonde")))
	c := container(ds)
	if got := probeSchemes(c); got != "<nil>,<nil>" { // HTTP, Kubernetes' default, as in the kustomize bundle
		t.Errorf("default probe schemes %s", got)
	}
	if args := fmt.Sprint(c["args"]); strings.Contains(args, "web.config.file") {
		t.Errorf("default args %s", args)
	}
	for _, v := range podSpec(ds)["volumes"].([]any) {
		if v.(map[string]any)["name"] == "web-config" {
			t.Errorf("default volumes have web-config")
		}
	}

	objs := objects(t, helmTemplate(t, "netsonde", "netsonde", append([]string{
		"--set", "webConfig.secretName=netsonde-web", "--set", "webConfig.scheme=HTTPS",
		"--set", "serviceMonitor.enabled=true", "--set", "serviceMonitor.tlsConfig.insecureSkipVerify=true",
		"--set", "serviceMonitor.basicAuth.username.name=creds", "--set", "serviceMonitor.basicAuth.username.key=user",
	}, operatorAPIs...)...))
	ds = daemonSet(t, objs)
	c = container(ds)
	if got := probeSchemes(c); got != "HTTPS,HTTPS" {
		t.Errorf("probe schemes %s, want HTTPS", got)
	}
	if args := fmt.Sprint(c["args"]); !strings.Contains(args, "--web.config.file=/etc/netsonde/web/web.yml") {
		t.Errorf("args %s: no --web.config.file", args)
	}
	if got := fmt.Sprint(c["volumeMounts"]); !strings.Contains(got, "map[mountPath:/etc/netsonde/web name:web-config readOnly:true]") {
		t.Errorf("volumeMounts %s", got)
	}
	if got := fmt.Sprint(podSpec(ds)["volumes"]); !strings.Contains(got, "map[name:web-config secret:map[defaultMode:256 secretName:netsonde-web]]") {
		t.Errorf("volumes %s", got)
	}
	var sm map[string]any
	for k, o := range objs {
		if strings.HasPrefix(k, "ServiceMonitor/") {
			sm = o
		}
	}
	if sm == nil {
		t.Fatal("no ServiceMonitor")
	}
	ep := fmt.Sprint(sm["spec"].(map[string]any)["endpoints"])
	for _, want := range []string{"scheme:https", "tlsConfig:map[insecureSkipVerify:true]", "basicAuth:map[username:map[key:user name:creds]]"} {
		if !strings.Contains(ep, want) {
			t.Errorf("ServiceMonitor endpoint %s lacks %s", ep, want)
		}
	}

	for _, set := range []string{"webConfig.scheme=https", "webConfig.secret=x", "webConfig.key=a/b"} {
		if _, err := helmRun(t, "template", "netsonde", chartDir(t), "--set", set); err == nil || !strings.Contains(err.Error(), "schema") {
			t.Errorf("--set %s: want a schema error, got %v", set, err)
		}
	}
}
