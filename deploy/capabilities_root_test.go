package deploy_test

import (
	"fmt"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// bundleCapabilities is the DaemonSet's capabilities.add in the kustomize
// base (TestHelmAndKustomizeRenderTheSameObjects holds the chart to the
// same), after checking that everything else is dropped.
func bundleCapabilities(t *testing.T) []string {
	t.Helper()
	sc := container(daemonSet(t, objects(t, kustomize(t, "kubernetes"))))["securityContext"].(map[string]any)
	caps := sc["capabilities"].(map[string]any)
	if fmt.Sprint(caps["drop"]) != "[ALL]" {
		t.Fatalf("capabilities.drop %v, want [ALL]", caps["drop"])
	}
	if sc["allowPrivilegeEscalation"] != false || sc["privileged"] == true {
		t.Fatalf("securityContext %v: want allowPrivilegeEscalation false, not privileged", sc)
	}
	var add []string
	for _, c := range caps["add"].([]any) {
		add = append(add, c.(string))
	}
	return add
}

// setpriv runs the agent as a container runtime runs the DaemonSet's
// container: root, with the capability bounding set limited to caps (a
// process of uid 0 gets its bounding set as permitted and effective at
// exec), nothing inheritable, and no_new_privs (allowPrivilegeEscalation:
// false). caps nil: every capability this machine has.
func setpriv(caps []string) []string {
	set := "+all"
	if caps != nil {
		set = "-all"
		for _, c := range caps {
			set += ",+" + strings.ToLower(c)
		}
	}
	return []string{"setpriv", "--bounding-set", set, "--inh-caps", "-all", "--no-new-privs", "--"}
}

// agentState is what an agent says of itself: each collector's up and
// reason, each program's hook, and the fsync probe's rounds.
func agentState(t *testing.T, a *testenv.Agent) map[string]string {
	t.Helper()
	m := a.Scrape(t)
	out := map[string]string{}
	for _, s := range m.Series("netsonde_collector_up", nil) {
		out["collector "+s.Labels["collector"]] = fmt.Sprintf("%g %s", s.Value, s.Labels["reason"])
	}
	for _, s := range m.Series("netsonde_bpf_program_attached", nil) {
		out["program "+s.Labels["program"]] = fmt.Sprintf("%g %s", s.Value, s.Labels["hook"])
	}
	return out
}

func diffState(want, got map[string]string) []string {
	var d []string
	for k, v := range want {
		if got[k] != v {
			d = append(d, fmt.Sprintf("%s: %q, was %q", k, got[k], v))
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			d = append(d, fmt.Sprintf("%s: %q, was absent", k, v))
		}
	}
	sort.Strings(d)
	return d
}

// Least privilege, measured: the agent run with the bundle's capabilities
// (and no_new_privs) is the agent run with every capability, collector
// for collector and program for program, so each capability left out is
// one it does without (BPF, PERFMON and DAC_READ_SEARCH among them: the
// bundles listed them until this test showed they changed nothing);
// and each capability the bundle keeps, dropped alone, takes down what its
// comment in daemonset.yaml says.
//
// The fsync probe reaches the node's filesystem the DaemonSet's way,
// through /proc/PID/root of a process holding every capability (a sleep
// started here stands for the node's init, PID 1 under hostPID).
func TestCapabilitiesEachJustified(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "setpriv", "kubectl")
	bundle := bundleCapabilities(t)
	if want := []string{"SYS_ADMIN", "NET_ADMIN", "NET_RAW", "SYS_PTRACE"}; !slices.Equal(bundle, want) {
		t.Fatalf("the bundle adds %v; this test knows what breaks without each of %v: measure a new one before adding it", bundle, want)
	}
	// What each capability's absence takes down, as its comment says.
	breaks := map[string]map[string]string{
		"SYS_ADMIN": {
			// No BPF without it...
			"collector tcpretrans": "0 not_permitted",
			"collector fsynctrace": "0 not_permitted", "collector dns": "0 not_permitted",
			// ...and no pods' network namespaces (drops reads its own
			// namespace from the host view before it loads its program,
			// to exempt it from the per-namespace key quota).
			"collector drops":     "0 no_netlink",
			"collector fragments": "0 no_netlink", "collector mtu": "0 no_netlink",
			"collector mtucheck": "0 no_netlink", "collector tcpconnect": "0 no_netlink",
		},
		"NET_ADMIN":  {"collector conntrack": "0 not_permitted", "program dns_tc": "0 none"},
		"NET_RAW":    {"collector mesh": "0 no_icmp_socket"},
		"SYS_PTRACE": {"collector fsyncprobe": "0 not_permitted"},
	}

	init := exec.Command("sleep", "3600")
	if err := init.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { init.Process.Kill(); init.Wait() })
	probeDir := t.TempDir()
	args := []string{
		"--fsyncprobe.host-root=/proc/" + fmt.Sprint(init.Process.Pid) + "/root",
		"--fsyncprobe.path=" + probeDir,
		"--fsyncprobe.interval=1s",
	}
	ns := testenv.NewNetns(t)
	run := func(caps []string) map[string]string {
		t.Helper()
		a := testenv.StartAgentVia(t, ns, setpriv(caps), args...)
		defer testenv.StopAgent(t, a)
		// Until the fsync probe's first round has timed a write or
		// failed; the collectors' own checks are done before ready.
		path := map[string]string{"path": probeDir}
		testenv.Eventually(t, 20*time.Second, "the fsync probe's first round", func() bool {
			m := a.Scrape(t)
			up, ok := m.Value("netsonde_disk_fsync_probe_up", path)
			n, _ := m.Value("netsonde_disk_fsync_duration_seconds", path)
			return ok && (up == 0 || n > 0)
		})
		return agentState(t, a)
	}

	all := run(nil)
	with := run(bundle)
	if d := diffState(all, with); len(d) > 0 {
		t.Errorf("with only %v, the agent differs from one with every capability:\n%s", bundle, strings.Join(d, "\n"))
	} else {
		t.Logf("with %v: %d collectors and programs, as with every capability", bundle, len(with))
	}
	for k, v := range with {
		if strings.HasPrefix(k, "collector ") && v != "1 " {
			t.Errorf("with the bundle's capabilities, %s is %q: the test setup should give every collector what it needs", k, v)
		}
	}

	for _, c := range bundle {
		less := run(slices.DeleteFunc(slices.Clone(bundle), func(s string) bool { return s == c }))
		d := diffState(with, less)
		t.Logf("without %s:\n%s", c, strings.Join(d, "\n"))
		for k, v := range breaks[c] {
			if less[k] != v {
				t.Errorf("without %s, %s is %q, want %q; all that changed:\n%s", c, k, less[k], v, strings.Join(d, "\n"))
			}
		}
	}
}

// The DaemonSet mounts the node's /sys/kernel/tracing read-only. The agent
// only reads tracefs (a classic tracepoint's id and format), so a
// read-only tracefs is enough; where the node never mounted tracefs the
// directory is empty, and the agent mounts one of its own in a mount
// namespace of one thread. Both, with the bundle's capabilities, attach
// drops and tcpretrans by their classic tracepoints; the test's own
// mounts are the same afterwards.
func TestTracefsReadOnly(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "setpriv", "unshare", "mount", "kubectl")
	bundle := bundleCapabilities(t)
	empty := t.TempDir()
	// Other tests pin and unpin namespaces meanwhile: only /sys/kernel
	// is compared.
	sysKernel := func() string {
		var own []string
		for _, l := range strings.Split(testenv.Run(t, "cat", "/proc/self/mountinfo"), "\n") {
			if strings.Contains(l, " /sys/kernel") {
				own = append(own, l)
			}
		}
		return strings.Join(own, "\n")
	}
	before := sysKernel()
	for _, c := range []struct{ name, mount string }{
		{"tracefs read-only", "mount -t tracefs -o ro,nosuid,nodev,noexec tracefs /sys/kernel/tracing"},
		{"empty read-only directory", "mount --bind -o ro " + empty + " /sys/kernel/tracing"},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A mount namespace of the agent's own, as its container's:
			// private, so nothing here reaches the test's.
			wrapper := append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c", c.mount + ` && exec "$@"`, "sh"}, setpriv(bundle)...)
			a := testenv.StartAgentVia(t, testenv.NewNetns(t), wrapper,
				"--drops.attach=tracepoint", "--tcpretrans.attach=tracepoint", "--collector.disable-defaults", "--collector.drops", "--collector.tcpretrans")
			st := agentState(t, a)
			testenv.StopAgent(t, a)
			for _, k := range []string{"program kfree_skb", "program tcp_retransmit_skb"} {
				if st[k] != "1 tracepoint" {
					t.Errorf("%s: %q, want attached by its classic tracepoint; agent log:\n%s", k, st[k], a.Log)
				}
			}
			for _, k := range []string{"collector drops", "collector tcpretrans"} {
				if st[k] != "1 " {
					t.Errorf("%s: %q, want up", k, st[k])
				}
			}
		})
	}
	if after := sysKernel(); after != before {
		t.Errorf("the test's mounts under /sys/kernel changed:\n--- before\n%s\n--- after\n%s", before, after)
	}
}
