package main

import (
	"bytes"
	"fmt"
	"os"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"
)

func TestMissingCapabilities(t *testing.T) {
	const (
		root    = "000001ffffffffff"
		none    = "0000000000000000"
		daemon  = "000000c000201000" // BPF, PERFMON, SYS_ADMIN, NET_ADMIN
		oldKern = "0000000000201000" // SYS_ADMIN and NET_ADMIN: a kernel before CAP_BPF
		noNet   = "000000c000000000" // BPF and PERFMON only
	)
	for _, tc := range []struct {
		eff  string
		want []string
	}{
		{root, nil},
		{daemon, nil},
		{oldKern, nil},
		{none, []string{"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"}},
		{noNet, []string{"CAP_NET_ADMIN"}},
	} {
		eff, ok := capEff("Name:\tnetsonde\nCapInh:\t0000000000000000\nCapEff:\t" + tc.eff + "\nCapBnd:\t000001ffffffffff\n")
		if !ok {
			t.Fatalf("CapEff %s not parsed", tc.eff)
		}
		if got := missingFrom(eff); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("CapEff %s: missing %v, want %v", tc.eff, got, tc.want)
		}
	}
	if _, ok := capEff("Name:\tx\n"); ok {
		t.Error("no CapEff line parsed as a value")
	}
}

// Colour only on a terminal, never with NO_COLOR set: a pipe, a file and
// a buffer get plain text.
func TestColourOnlyOnATerminal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if useColour(f) || useColour(&bytes.Buffer{}) {
		t.Error("colour on a file or a buffer")
	}
	tty := openPTY(t)
	t.Setenv("NO_COLOR", "")
	if !useColour(tty) {
		t.Error("no colour on a terminal")
	}
	t.Setenv("NO_COLOR", "1")
	if useColour(tty) {
		t.Error("colour despite NO_COLOR")
	}
}

// openPTY opens the terminal side of a new pseudo-terminal, a terminal
// that needs no controlling tty (tests run without one).
func openPTY(t *testing.T) *os.File {
	t.Helper()
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ptmx.Close() })
	if err := unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	pts, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pts.Close() })
	return pts
}
