package loader

import (
	"os/exec"
	"strings"
	"testing"
	"time"
)

func TestOwnerOf(t *testing.T) {
	for name, want := range map[string]string{
		"netsonde:fragments:4242-98765": "4242-98765",
		"netsonde:dns:0a1b2c3d":         "0a1b2c3d",
		"netsonde:fragments":            "",
		"cilium-from-container":         "",
		"netsonde":                      "",
		"":                              "",
	} {
		if got := ownerOf(name); got != want {
			t.Errorf("ownerOf(%q) = %q, want %q", name, got, want)
		}
	}
}

// An owner id is a pid and a start time, nothing else: 0.1.0's random hex
// ids (an abstract socket any process could bind) name nobody.
func TestParseOwnerID(t *testing.T) {
	for id, want := range map[string]bool{
		"4242-98765": true,
		"1-0":        true,
		"0a1b2c3d":   false,
		"0-5":        false,
		"-1-5":       false,
		"4242-":      false,
		"4242-x":     false,
		"":           false,
	} {
		if _, _, ok := parseOwnerID(id); ok != want {
			t.Errorf("parseOwnerID(%q) ok = %v, want %v", id, ok, want)
		}
	}
	if pid, start, _ := parseOwnerID(ownerID(4242, 98765)); pid != 4242 || start != 98765 {
		t.Errorf("round trip: %d, %d", pid, start)
	}
}

// The command name may hold spaces and parentheses: fields are counted
// after its last ')'.
func TestParseStat(t *testing.T) {
	line := "4242 (a) b (c) S 1 4242 4242 0 -1 4194560 100 0 0 0 5 3 0 0 20 0 8 0 98765 1000000 200 18446744073709551615\n"
	start, zombie, err := parseStat([]byte(line))
	if err != nil || start != 98765 || zombie {
		t.Errorf("got %d, %v, %v; want 98765, false, nil", start, zombie, err)
	}
	start, zombie, err = parseStat([]byte(strings.Replace(line, ") S ", ") Z ", 1)))
	if err != nil || start != 98765 || !zombie {
		t.Errorf("zombie: got %d, %v, %v; want 98765, true, nil", start, zombie, err)
	}
	for _, bad := range []string{"", "4242 (a", "4242 (a) S 1 2 3"} {
		if _, _, err := parseStat([]byte(bad)); err == nil {
			t.Errorf("parseStat(%q) accepted", bad)
		}
	}
}

// This process is alive under its own id; under another start time it is
// not (the pid of a dead owner, reused by a later process). A child is
// alive until it exits, and dead as a zombie, before anyone reaps it.
func TestAlive(t *testing.T) {
	o, err := newOwner()
	if err != nil {
		t.Fatal(err)
	}
	if !alive(o.id) {
		t.Errorf("own id %s not alive", o.id)
	}
	pid, start, _ := parseOwnerID(o.id)
	if alive(ownerID(pid, start-1)) {
		t.Errorf("%s alive under another start time", ownerID(pid, start-1))
	}
	cmd := exec.Command("sleep", "0.3")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	childStart, _, err := procStart(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	child := ownerID(cmd.Process.Pid, childStart)
	if !alive(child) {
		t.Errorf("running child %s not alive", child)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, zombie, err := procStart(cmd.Process.Pid); err != nil || zombie {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("child not a zombie after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if alive(child) {
		t.Errorf("zombie child %s alive", child)
	}
	cmd.Wait()
	if alive(child) {
		t.Errorf("reaped child %s alive", child)
	}
}
