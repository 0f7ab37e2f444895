package deploy_test

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/internal/testenv"
)

// seccompEnv names a file of allowed syscall numbers: with it set, the
// test binary is not a test but the wrapper that installs that filter and
// executes its arguments (the agent), as a container runtime does with
// the profile before it starts the container's process.
const seccompEnv = "NETSONDE_TEST_SECCOMP_ALLOW"

func TestMain(m *testing.M) {
	if f := os.Getenv(seccompEnv); f != "" {
		if err := execFiltered(f, os.Args[1:]); err != nil {
			fmt.Fprintln(os.Stderr, "seccomp wrapper:", err)
			os.Exit(127)
		}
	}
	os.Exit(m.Run())
}

// execFiltered installs a seccomp filter from file, lines of "allow N"
// (syscall number N allowed), "clone N" (allowed when its flags create no
// namespace: RuntimeDefault's clone without CAP_SYS_ADMIN) and "enosys N"
// (fails with ENOSYS: its clone3 without CAP_SYS_ADMIN), every other
// syscall failing with EPERM as RuntimeDefault's do; then executes argv.
func execFiltered(file string, argv []string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	arch := map[string]uint32{"amd64": unix.AUDIT_ARCH_X86_64, "arm64": unix.AUDIT_ARCH_AARCH64}[runtime.GOARCH]
	if arch == 0 {
		return fmt.Errorf("no audit arch for %s", runtime.GOARCH)
	}
	stmt := func(code uint16, k uint32) unix.SockFilter { return unix.SockFilter{Code: code, K: k} }
	jeq := func(k uint32, jf uint8) unix.SockFilter {
		return unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: k, Jf: jf}
	}
	ret := func(k uint32) unix.SockFilter { return stmt(unix.BPF_RET|unix.BPF_K, k) }
	deny := unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
	const newNamespaces = unix.CLONE_NEWNS | unix.CLONE_NEWUTS | unix.CLONE_NEWIPC | unix.CLONE_NEWUSER | unix.CLONE_NEWPID | unix.CLONE_NEWNET | unix.CLONE_NEWCGROUP
	// seccomp_data: nr at offset 0, arch at 4, the first argument's low
	// 32 bits at 16 (both architectures are little-endian).
	prog := []unix.SockFilter{
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 4),
		{Code: unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K, K: arch, Jt: 1},
		ret(deny),
		stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 0),
	}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		kind, num, _ := strings.Cut(l, " ")
		nr, err := strconv.ParseUint(num, 10, 32)
		if err != nil {
			return fmt.Errorf("%q: %w", l, err)
		}
		// Equal: fall to the instructions after the test; else skip them.
		switch kind {
		case "allow":
			prog = append(prog, jeq(uint32(nr), 1), ret(unix.SECCOMP_RET_ALLOW))
		case "enosys":
			prog = append(prog, jeq(uint32(nr), 1), ret(unix.SECCOMP_RET_ERRNO|uint32(unix.ENOSYS)))
		case "clone":
			prog = append(prog, jeq(uint32(nr), 4),
				stmt(unix.BPF_LD|unix.BPF_W|unix.BPF_ABS, 16),
				unix.SockFilter{Code: unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K, K: newNamespaces, Jt: 1},
				ret(unix.SECCOMP_RET_ALLOW), ret(deny))
		default:
			return fmt.Errorf("%q: unknown rule", l)
		}
	}
	prog = append(prog, stmt(unix.BPF_RET|unix.BPF_K, deny))
	// The filter is the thread's; exec from the same thread.
	runtime.LockOSThread()
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("no_new_privs: %w", err)
	}
	fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}
	if _, _, errno := unix.Syscall(unix.SYS_SECCOMP, unix.SECCOMP_SET_MODE_FILTER, unix.SECCOMP_FILTER_FLAG_TSYNC, uintptr(unsafe.Pointer(&fprog))); errno != 0 {
		return fmt.Errorf("seccomp: %w", errno)
	}
	return syscall.Exec(argv[0], argv, os.Environ())
}

// syscallNumbers maps this architecture's syscall names to numbers, read
// from golang.org/x/sys/unix's table (SYS_NAME = N).
func syscallNumbers(t *testing.T) map[string]uint64 {
	t.Helper()
	dir, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "golang.org/x/sys").Output()
	if err != nil {
		t.Fatalf("go list golang.org/x/sys: %v", err)
	}
	f, err := os.Open(filepath.Join(strings.TrimSpace(string(dir)), "unix", "zsysnum_linux_"+runtime.GOARCH+".go"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]uint64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, num, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		name, ok2 := strings.CutPrefix(strings.TrimSpace(name), "SYS_")
		if !ok || !ok2 {
			continue
		}
		n, err := strconv.ParseUint(strings.TrimSpace(num), 10, 32)
		if err != nil {
			continue
		}
		out[strings.ToLower(name)] = n
	}
	if out["bpf"] == 0 || out["perf_event_open"] == 0 {
		t.Fatalf("no bpf or perf_event_open in the syscall table (%d names)", len(out))
	}
	return out
}

// runtimeDefault writes the numbers of the syscalls RuntimeDefault allows
// a container whose bounding set is caps (testdata/runtime-default-seccomp.txt)
// to a file, and returns its path.
func runtimeDefault(t *testing.T, caps []string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/runtime-default-seccomp.txt")
	if err != nil {
		t.Fatal(err)
	}
	nums := syscallNumbers(t)
	var rules []string
	rule := func(kind, name string) {
		if nr, ok := nums[name]; ok { // absent: another architecture's (_llseek, stat64, ...)
			rules = append(rules, fmt.Sprintf("%s %d", kind, nr))
		}
	}
	for _, l := range strings.Split(string(b), "\n") {
		key, names, ok := strings.Cut(l, ":")
		if !ok || strings.HasPrefix(l, "#") {
			continue
		}
		if key != "always" && key != runtime.GOARCH && !slices.Contains(caps, strings.TrimPrefix(key, "CAP_")) {
			continue
		}
		for _, n := range strings.Fields(names) {
			rule("allow", n)
		}
	}
	if !slices.Contains(caps, "SYS_ADMIN") {
		rule("clone", "clone")
		rule("enosys", "clone3")
	}
	p := filepath.Join(t.TempDir(), "allow")
	if err := os.WriteFile(p, []byte(strings.Join(rules, "\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// seccompProfile is the DaemonSet's securityContext.seccompProfile.type.
func seccompProfile(t *testing.T) string {
	t.Helper()
	sc := container(daemonSet(t, objects(t, kustomize(t, "kubernetes"))))["securityContext"].(map[string]any)
	p, _ := sc["seccompProfile"].(map[string]any)
	s, _ := p["type"].(string)
	return s
}

// seccompProfile: RuntimeDefault, measured. Under containerd's default
// profile for the bundle's capabilities (installed here the runtime's
// way, a filter returning EPERM for any syscall not listed), the agent is
// the agent without a filter, collector for collector: bpf() and
// perf_event_open() (drops on its classic tracepoint, here) are allowed
// because SYS_ADMIN is in the bounding set
// (the profile opens them to CAP_BPF and CAP_PERFMON as well, but the
// bundle has no need of those). Under the profile a container without
// SYS_ADMIN would get, every collector with BPF programs is down: the
// filter bites, and SYS_ADMIN's entry is what lets the programs in.
func TestSeccompRuntimeDefault(t *testing.T) {
	testenv.RequireRoot(t)
	testenv.RequireCommand(t, "setpriv", "kubectl", "go")
	if p := seccompProfile(t); p != "RuntimeDefault" {
		t.Fatalf("seccompProfile %q, want RuntimeDefault", p)
	}
	bundle := bundleCapabilities(t)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ns := testenv.NewNetns(t)
	run := func(profile string) map[string]string {
		t.Helper()
		wrapper := setpriv(bundle)
		if profile != "" {
			wrapper = append(wrapper, "env", seccompEnv+"="+profile, self)
		}
		// The classic tracepoint, so that perf_event_open (and, where the
		// node has no tracefs, the private mount: unshare, mount,
		// umount2) run under the filter too.
		a := testenv.StartAgentVia(t, ns, wrapper, "--drops.attach=tracepoint")
		defer testenv.StopAgent(t, a)
		time.Sleep(2 * time.Second)
		return agentState(t, a)
	}
	plain := run("")
	if plain["program kfree_skb"] != "1 tracepoint" {
		t.Fatalf("kfree_skb is %q without a filter, want attached by its classic tracepoint", plain["program kfree_skb"])
	}
	filtered := run(runtimeDefault(t, bundle))
	if d := diffState(plain, filtered); len(d) > 0 {
		t.Errorf("under RuntimeDefault for %v, the agent differs from one without a filter:\n%s", bundle, strings.Join(d, "\n"))
	} else {
		t.Logf("under RuntimeDefault for %v: %d collectors and programs, as without a filter", bundle, len(filtered))
	}
	noAdmin := slices.DeleteFunc(slices.Clone(bundle), func(c string) bool { return c == "SYS_ADMIN" })
	bitten := run(runtimeDefault(t, noAdmin))
	t.Logf("under the profile without SYS_ADMIN's syscalls:\n%s", strings.Join(diffState(plain, bitten), "\n"))
	for _, c := range []string{"drops", "tcpretrans", "tcpconnect", "fsynctrace"} {
		if got := bitten["collector "+c]; !strings.HasPrefix(got, "0 ") {
			t.Errorf("without bpf() allowed, collector %s is %q, want down", c, got)
		}
	}
}
