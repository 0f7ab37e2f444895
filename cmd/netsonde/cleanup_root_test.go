package main_test

import (
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// tcAgentArgs: fragments and DNS, both on legacy tc filters.
var tcAgentArgs = []string{"--collector.disable-defaults", "--collector.fragments", "--fragments.attach=tc",
	"--collector.dns", "--dns.hook=tc", "--dns.attach=tc"}

var filterName = regexp.MustCompile(`netsonde:[a-z]+:[^ ]+`)

// tcState is what tc shows of an interface: netsonde's filters' names
// (ingress and egress), how many other filter lines, and its qdiscs.
type tcState struct {
	netsonde []string
	others   int
	clsact   bool
}

func tcShow(t *testing.T, ns *testenv.Netns, dev string) tcState {
	t.Helper()
	var s tcState
	for _, dir := range []string{"ingress", "egress"} {
		for _, line := range strings.Split(ns.Exec(t, "tc", "filter", "show", "dev", dev, dir), "\n") {
			switch name := filterName.FindString(line); {
			case name != "":
				s.netsonde = append(s.netsonde, dir+" "+name)
			case strings.HasPrefix(line, "filter "):
				s.others++
			}
		}
	}
	s.clsact = strings.Contains(ns.Exec(t, "tc", "qdisc", "show", "dev", dev), "qdisc clsact")
	return s
}

// owners returns the owner ids in the names of netsonde's filters on devs.
func owners(t *testing.T, ns *testenv.Netns, devs []string) []string {
	var ids []string
	for _, dev := range devs {
		for _, f := range tcShow(t, ns, dev).netsonde {
			id := f[strings.LastIndexByte(f, ':')+1:]
			if !slices.Contains(ids, id) {
				ids = append(ids, id)
			}
		}
	}
	slices.Sort(ids)
	return ids
}

// squat binds, in ns, the abstract unix socket that netsonde 0.1.0 took as
// the liveness of the owner of a filter named ...:id, for each id, until
// the test ends: any process in the namespace could.
func squat(t *testing.T, ns *testenv.Netns, ids []string) {
	t.Helper()
	err := ns.Do(func() error {
		for _, id := range ids {
			l, err := net.Listen("unix", "@netsonde-owner-"+id)
			if err != nil {
				return err
			}
			t.Cleanup(func() { l.Close() })
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// cleanupIn runs netsonde cleanup in ns, as root or (asNobody) as a user
// without capabilities.
func cleanupIn(t *testing.T, ns *testenv.Netns, asNobody ...bool) (code int, stdout, stderr string) {
	t.Helper()
	enter := []string{"--net=/run/netns/" + ns.Name}
	bin := testenv.AgentBinary(t)
	if len(asNobody) > 0 && asNobody[0] {
		enter = append(enter, "--setuid=65534", "--setgid=65534")
		bin = binaryForNobody(t)
	}
	cmd := exec.Command("nsenter", append(enter, "--", bin, "cleanup")...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errb.String()
}

// An agent with fragments and DNS on legacy tc filters is killed (-9) on a
// namespace of 3 veths, lo and a fourth veth whose clsact qdisc and filter
// are another tool's. A process binding the old liveness name of each of
// its filters does not keep them: the next agent removes them all. That
// one killed too (and squatted), `netsonde cleanup` removes every filter
// of netsonde's and the clsact qdiscs it made, leaves the other tool's,
// and a second run finds nothing. A running agent's filters it keeps.
func TestCleanupAfterKillWithSquatter(t *testing.T) {
	a, b := testenv.NewNetns(t), testenv.NewNetns(t)
	devs := []string{"lo", "c0", "c1", "c2", "c3"}
	for _, dev := range devs[1:] {
		testenv.Run(t, "ip", "link", "add", dev, "netns", a.Name, "type", "veth", "peer", "name", dev+"p", "netns", b.Name)
		a.Exec(t, "ip", "link", "set", dev, "up")
	}
	// Another tool's: its clsact and filter must survive everything.
	a.Exec(t, "tc", "qdisc", "add", "dev", "c3", "clsact")
	a.Exec(t, "tc", "filter", "add", "dev", "c3", "ingress", "prio", "1", "u32", "match", "u32", "0", "0")
	otherFilters := tcShow(t, a, "c3").others

	// Per interface: DNS's two filters everywhere, fragments' two but on
	// lo; 18 in all, of one owner.
	start := func() *testenv.Agent {
		t.Helper()
		ag := testenv.StartAgent(t, a, tcAgentArgs...)
		testenv.Eventually(t, 10*time.Second, "fragments on 4 interfaces, DNS on 5", func() bool {
			m := ag.Scrape(t)
			frag, _ := m.Value("netsonde_fragments_attached_interfaces", nil)
			return frag == 4 && m.Sum("netsonde_dns_interfaces", nil) == 5
		})
		return ag
	}
	check := func(when string, id string) {
		t.Helper()
		for _, dev := range devs {
			s := tcShow(t, a, dev)
			want := 4
			if dev == "lo" {
				want = 2
			}
			ofOwner := 0
			for _, f := range s.netsonde {
				if strings.HasSuffix(f, ":"+id) {
					ofOwner++
				}
			}
			if len(s.netsonde) != want || ofOwner != want || !s.clsact {
				t.Errorf("%s: %s has netsonde filters %v (clsact %v), want %d of %s", when, dev, s.netsonde, s.clsact, want, id)
			}
		}
	}

	first := start()
	dead := owners(t, a, devs)
	first.Kill(t)
	squat(t, a, dead)
	second := start()
	live := owners(t, a, devs)
	for _, id := range dead {
		if slices.Contains(live, id) {
			t.Fatalf("a squatter kept the dead agent's filters (owner %s) through the next agent's start: filters of %v", id, live)
		}
	}
	// Both collectors' filters carry the process's one identity.
	if len(live) != 1 {
		t.Fatalf("filters of %d owners %v, want 1", len(live), live)
	}
	check("second agent", live[0])

	// A running agent's filters are kept.
	code, out, _ := cleanupIn(t, a)
	keptRunning := strings.Count(out, "kept filter ")
	if want := "removed 0 filters and 0 clsact qdiscs on 0 interfaces; kept 18 filters of running agents"; code != 0 || !strings.Contains(out, want) || strings.Count(out, "kept filter ") != 18 {
		t.Errorf("cleanup beside a running agent: exit %d, output:\n%s\nwant 18 kept lines and %q", code, out, want)
	}
	check("after cleanup beside the agent", live[0])

	second.Kill(t)
	squat(t, a, live)
	// Without CAP_NET_ADMIN nothing can be removed: exit status 1 and the
	// reason, nothing claimed.
	code, out, stderr := cleanupIn(t, a, true)
	if want := "removed 0 filters and 0 clsact qdiscs on 0 interfaces; kept 0 filters of running agents\n"; code != 1 || out != want || !strings.Contains(stderr, "operation not permitted") {
		t.Errorf("cleanup without privileges: exit %d, stdout %q, stderr %q; want 1, %q and the reason", code, out, stderr, want)
	}
	begin := time.Now()
	code, out, _ = cleanupIn(t, a)
	took := time.Since(begin)
	removedFilters, removedQdiscs := strings.Count(out, "removed filter "), strings.Count(out, "removed clsact qdisc ")
	t.Logf("netsonde cleanup after kill -9 (%v):\n%s", took.Round(time.Millisecond), out)
	if want := "removed 18 filters and 4 clsact qdiscs on 5 interfaces; kept 0 filters of running agents\n"; code != 0 || !strings.HasSuffix(out, want) {
		t.Errorf("cleanup: exit %d, want 0 and the summary %q", code, want)
	}
	if n := strings.Count(out, "removed filter netsonde:"); n != 18 {
		t.Errorf("%d lines of removed filters, want 18", n)
	}
	for _, dev := range devs {
		s := tcShow(t, a, dev)
		other := dev == "c3"
		if len(s.netsonde) != 0 || s.clsact != other || other && s.others != otherFilters {
			t.Errorf("after cleanup: %s has netsonde filters %v, clsact %v, %d other filter lines; want none, clsact %v, %d", dev, s.netsonde, s.clsact, s.others, other, map[bool]int{true: otherFilters}[other])
		}
		if c := strings.Count(out, "removed clsact qdisc from "+dev+" "); c != map[bool]int{false: 1}[other] {
			t.Errorf("cleanup reported the clsact of %s removed %d times", dev, c)
		}
	}
	code, out, _ = cleanupIn(t, a)
	if want := "removed 0 filters and 0 clsact qdiscs on 0 interfaces; kept 0 filters of running agents\n"; code != 0 || out != want {
		t.Errorf("second cleanup: exit %d, output %q; want 0, %q", code, out, want)
	}
	testenv.RecordReliability(t, testenv.Reliability{
		Scenario: "squat-and-cleanup",
		Injected: "an agent with fragments' and DNS's tc filters on 4 veths and lo killed -9, another process bound to each filter's 0.1.0 liveness name; the next agent killed -9 likewise, then `netsonde cleanup` with no agent left, twice",
		Lost: fmt.Sprintf("nothing left behind: the next agent removed every filter of the dead one despite the squatter; cleanup kept the %d filters of a running agent, and after its kill removed its %d filters and the %d clsact qdiscs they were alone on, leaving another tool's clsact and filter; the second run removed nothing",
			keptRunning, removedFilters, removedQdiscs),
		Recovery: fmt.Sprintf("the next agent ready in %v; cleanup took %v", second.Ready.Round(time.Millisecond), took.Round(time.Millisecond)),
		Figures: map[string]any{"filters_removed": removedFilters, "clsact_removed": removedQdiscs, "filters_kept_running": keptRunning,
			"next_agent_ready_ms": second.Ready.Milliseconds(), "cleanup_ms": took.Milliseconds()},
	})
}
