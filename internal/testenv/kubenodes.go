package testenv

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// KubeletNode is a Node object the size and shape of what a kubelet
// writes (about 20 KB of JSON): the usual labels and annotations, a
// podCIDR, three addresses (InternalIP, ExternalIP, Hostname), capacity
// and allocatable, five conditions, the node info and 50 images, each
// named by digest and by tag. The images list is most of the size, as on
// real nodes.
func KubeletNode(name string, internalIP netip.Addr, podCIDR string) []byte {
	now := time.Now().UTC().Format(time.RFC3339)
	var images []map[string]any
	for i := range 50 {
		repo := fmt.Sprintf("123456789012.dkr.ecr.eu-west-1.amazonaws.com/platform-team-%02d/payments-service-%02d", i%7, i)
		sum := sha256.Sum256([]byte(name + repo))
		images = append(images, map[string]any{
			"names":     []string{fmt.Sprintf("%s@sha256:%x", repo, sum), fmt.Sprintf("%s:v1.%d.%d-build.%x", repo, i, i*3, sum[:6])},
			"sizeBytes": 10_000_000 + i*1_234_567,
		})
	}
	cond := func(typ, status, reason, msg string) map[string]any {
		return map[string]any{"type": typ, "status": status, "lastHeartbeatTime": now, "lastTransitionTime": now, "reason": reason, "message": msg}
	}
	res := map[string]string{"cpu": "16", "ephemeral-storage": "203056560Ki", "hugepages-1Gi": "0", "hugepages-2Mi": "0", "memory": "65843952Ki", "pods": "110"}
	ext := internalIP.As4()
	node := map[string]any{
		"apiVersion": "v1", "kind": "Node",
		"metadata": map[string]any{
			"name": name,
			"labels": map[string]string{
				"beta.kubernetes.io/arch": "amd64", "beta.kubernetes.io/instance-type": "m5.4xlarge", "beta.kubernetes.io/os": "linux",
				"failure-domain.beta.kubernetes.io/region": "eu-west-1", "failure-domain.beta.kubernetes.io/zone": "eu-west-1a",
				"kubernetes.io/arch": "amd64", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
				"node.kubernetes.io/instance-type": "m5.4xlarge", "topology.kubernetes.io/region": "eu-west-1",
				"topology.kubernetes.io/zone": "eu-west-1a", "node-role.kubernetes.io/worker": "",
			},
			"annotations": map[string]string{
				"node.alpha.kubernetes.io/ttl":                           "0",
				"volumes.kubernetes.io/controller-managed-attach-detach": "true",
				"kubeadm.alpha.kubernetes.io/cri-socket":                 "unix:///run/containerd/containerd.sock",
				"csi.volume.kubernetes.io/nodeid":                        fmt.Sprintf(`{"ebs.csi.aws.com":"i-%x"}`, sha256.Sum224([]byte(name)))[:60] + `"}`,
			},
		},
		"spec": map[string]any{
			"podCIDR": podCIDR, "podCIDRs": []string{podCIDR},
			"providerID": "aws:///eu-west-1a/i-0123456789abcdef0",
		},
		"status": map[string]any{
			"addresses": []map[string]string{
				{"type": "InternalIP", "address": internalIP.String()},
				{"type": "ExternalIP", "address": fmt.Sprintf("203.0.113.%d", ext[3])},
				{"type": "Hostname", "address": name},
			},
			"capacity": res, "allocatable": res,
			"conditions": []map[string]any{
				cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
				cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
				cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
				cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
				cond("NetworkUnavailable", "False", "RouteCreated", "RouteController created a route"),
			},
			"daemonEndpoints": map[string]any{"kubeletEndpoint": map[string]int{"Port": 10250}},
			"nodeInfo": map[string]string{
				"architecture": "amd64", "bootID": fmt.Sprintf("%x", sha256.Sum256([]byte("boot"+name)))[:36],
				"containerRuntimeVersion": "containerd://1.7.27", "kernelVersion": "6.1.0-37-cloud-amd64",
				"kubeProxyVersion": "", "kubeletVersion": "v1.34.4",
				"machineID": fmt.Sprintf("%x", sha256.Sum256([]byte("machine"+name)))[:32], "operatingSystem": "linux",
				"osImage": "Debian GNU/Linux 12 (bookworm)", "systemUUID": fmt.Sprintf("%x", sha256.Sum256([]byte("uuid"+name)))[:36],
			},
			"images": images,
		},
	}
	b, err := json.Marshal(node)
	if err != nil {
		panic(err) // maps of strings and numbers always marshal
	}
	return b
}

// CreateNodes creates the nodes (JSON objects) through the API server's
// HTTP API as the admin, 16 requests in flight: thousands of kubectl
// runs would take minutes. The status is written with the object, as a
// kubelet registering its node does.
func (k *KubeAPI) CreateNodes(t testing.TB, nodes [][]byte) {
	t.Helper()
	client := k.NS.HTTPClient()
	client.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	client.Transport.(*http.Transport).MaxIdleConnsPerHost = 16
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= len(nodes) {
					return
				}
				if err := k.post(client, "/api/v1/nodes", nodes[i]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("create nodes: %v", err)
	}
}

func (k *KubeAPI) post(client *http.Client, path string, body []byte) error {
	req, err := http.NewRequest("POST", k.Server+path, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+k.Token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("POST %s: HTTP %d: %s", path, resp.StatusCode, b)
	}
	io.Copy(io.Discard, resp.Body)
	return nil
}
