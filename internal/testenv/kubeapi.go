package testenv

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// KubeAPI is a real kube-apiserver backed by a real etcd, both running in a
// network namespace of the test's, so an agent in the same namespace
// reaches it on loopback.
type KubeAPI struct {
	NS         *Netns
	Kubeconfig string
	Server     string

	startAPI func() (stop func())
	stopAPI  func()
	ready    func()
	// Token is the admin's bearer token.
	Token string
	// AgentKubeconfig is a kubeconfig for AgentUser, a user with no
	// rights until the test grants some with RBAC.
	AgentKubeconfig string
}

// AgentUser is the user of KubeAPI.AgentKubeconfig.
const AgentUser = "netsonde-agent"

// StopAPIServer stops kube-apiserver (SIGTERM, as a control-plane upgrade
// or crash would take it away), leaving etcd and its data as they are.
func (k *KubeAPI) StopAPIServer(t testing.TB) {
	t.Helper()
	if k.stopAPI == nil {
		t.Fatal("kube-apiserver is not running")
	}
	k.stopAPI()
	k.stopAPI = nil
}

// StartAPIServer starts kube-apiserver again with the same flags and
// waits until it is ready; it returns how long that took.
func (k *KubeAPI) StartAPIServer(t testing.TB) time.Duration {
	t.Helper()
	if k.stopAPI != nil {
		t.Fatal("kube-apiserver is already running")
	}
	begin := time.Now()
	k.stopAPI = k.startAPI()
	k.ready()
	return time.Since(begin)
}

var (
	apiserverOnce sync.Once
	apiserverPath string
	apiserverErr  error
)

// kubeAPIServer returns the cached kube-apiserver binary, building it the
// first time on this machine (hack/kube-apiserver.sh, about 5 minutes).
func kubeAPIServer(t testing.TB) string {
	apiserverOnce.Do(func() {
		root, err := moduleRoot()
		if err != nil {
			apiserverErr = err
			return
		}
		out, err := exec.Command(filepath.Join(root, "hack", "kube-apiserver.sh")).Output()
		if err != nil {
			apiserverErr = fmt.Errorf("hack/kube-apiserver.sh: %v", err)
			return
		}
		apiserverPath = strings.TrimSpace(string(out))
	})
	if apiserverErr != nil {
		t.Fatal(apiserverErr)
	}
	return apiserverPath
}

// StartKubeAPI starts etcd and kube-apiserver inside ns (RBAC on, a static
// admin token, self-signed serving certificates, a service-account key made
// with openssl) and returns a kubeconfig for the admin. Both stop when the
// test ends. kubectl runs against it with KubeAPI.Kubectl.
func StartKubeAPI(t testing.TB, ns *Netns) *KubeAPI {
	t.Helper()
	RequireCommand(t, "etcd", "openssl", "kubectl")
	bin := kubeAPIServer(t)
	dir := t.TempDir()
	Run(t, "openssl", "genrsa", "-out", filepath.Join(dir, "sa.key"), "2048")
	token := RandomName("admin")
	agentToken := RandomName("agent")
	tokens := token + ",admin,admin,system:masters\n" + agentToken + "," + AgentUser + "," + AgentUser + "\n"
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(tokens), 0o600); err != nil {
		t.Fatal(err)
	}
	// Ports inside the test's own namespace: nothing else listens there.
	const etcdClient, etcdPeer, apiPort = 2379, 2380, 6443
	start := func(name string, args ...string) (stop func()) {
		cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + ns.Name, "--", name}, args...)...)
		var log bytes.Buffer
		cmd.Stdout, cmd.Stderr = &log, &log
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		var once sync.Once
		stop = func() {
			once.Do(func() {
				cmd.Process.Signal(syscall.SIGTERM)
				done := make(chan struct{})
				go func() { cmd.Wait(); close(done) }()
				select {
				case <-done:
				case <-time.After(5 * time.Second):
					cmd.Process.Kill()
					<-done
				}
				if t.Failed() {
					t.Logf("%s log (tail):\n%s", filepath.Base(name), tail(log.String(), 3000))
				}
			})
		}
		t.Cleanup(stop)
		return stop
	}
	start("etcd", "--name=nsd", "--data-dir="+filepath.Join(dir, "etcd"),
		fmt.Sprintf("--listen-client-urls=http://127.0.0.1:%d", etcdClient),
		fmt.Sprintf("--advertise-client-urls=http://127.0.0.1:%d", etcdClient),
		fmt.Sprintf("--listen-peer-urls=http://127.0.0.1:%d", etcdPeer),
		fmt.Sprintf("--initial-advertise-peer-urls=http://127.0.0.1:%d", etcdPeer),
		fmt.Sprintf("--initial-cluster=nsd=http://127.0.0.1:%d", etcdPeer), "--log-level=error")
	apiArgs := []string{
		fmt.Sprintf("--etcd-servers=http://127.0.0.1:%d", etcdClient),
		"--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
		fmt.Sprintf("--secure-port=%d", apiPort),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=Node,RBAC",
		"--service-account-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.key"),
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-cluster-ip-range=10.96.0.0/16",
		"--enable-priority-and-fairness=false",
		// No controller-manager runs, so no namespace gets its "default"
		// ServiceAccount; pods are admitted without one.
		"--disable-admission-plugins=ServiceAccount",
		"--v=0"}
	startAPI := func() func() { return start(bin, apiArgs...) }
	stopAPI := startAPI()

	server := fmt.Sprintf("https://127.0.0.1:%d", apiPort)
	kc := filepath.Join(dir, "kubeconfig")
	kubeconfig := func(token string) string {
		return fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: test
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: %q}
contexts:
- name: test
  context: {cluster: test, user: admin}
current-context: test
`, server, token)
	}
	agentKC := filepath.Join(dir, "agent.kubeconfig")
	if err := os.WriteFile(kc, []byte(kubeconfig(token)), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(agentKC, []byte(kubeconfig(agentToken)), 0o600); err != nil {
		t.Fatal(err)
	}
	client := ns.HTTPClient()
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	ready := func() {
		Eventually(t, 120*time.Second, "kube-apiserver ready", func() bool {
			req, _ := http.NewRequest("GET", server+"/readyz", nil)
			req.Header.Set("Authorization", "Bearer "+token)
			resp, err := client.Do(req)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 200
		})
	}
	ready()
	return &KubeAPI{NS: ns, Kubeconfig: kc, Server: server, startAPI: startAPI, stopAPI: stopAPI, ready: ready, Token: token, AgentKubeconfig: agentKC}
}

// Kubectl runs kubectl against the API server (from inside its namespace)
// and fails the test if it fails. stdin may be empty.
func (k *KubeAPI) Kubectl(t testing.TB, stdin string, args ...string) string {
	t.Helper()
	out, err := k.KubectlErr(stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// KubectlErr is Kubectl returning the error instead of failing.
func (k *KubeAPI) KubectlErr(stdin string, args ...string) (string, error) {
	cmd := exec.Command("nsenter", append([]string{"--net=/run/netns/" + k.NS.Name, "--", "kubectl", "--kubeconfig=" + k.Kubeconfig}, args...)...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// CreatePod creates a pod (and its Namespace and Node, if new) scheduled
// on node, with ip as its status' pod IP, as a kubelet would report it.
func (k *KubeAPI) CreatePod(t testing.TB, namespace, name, node, ip string) {
	t.Helper()
	for _, obj := range []string{
		fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", namespace),
		fmt.Sprintf("apiVersion: v1\nkind: Node\nmetadata: {name: %s}\n", node),
	} {
		// Already there is fine: several pods share them.
		k.KubectlErr(obj, "apply", "-f", "-")
	}
	k.Kubectl(t, fmt.Sprintf("apiVersion: v1\nkind: Pod\nmetadata: {name: %s, namespace: %s}\nspec:\n  nodeName: %s\n  containers: [{name: %s, image: registry.invalid/%s}]\n",
		name, namespace, node, name, name), "create", "-f", "-")
	k.Kubectl(t, "", "patch", "pod", name, "-n", namespace, "--subresource=status", "--type=merge",
		"-p", fmt.Sprintf(`{"status":{"podIP":%q,"podIPs":[{"ip":%q}]}}`, ip, ip))
}
