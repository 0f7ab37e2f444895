package fragments

import (
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/netsonde/netsonde/collectors"
)

// The kernel's fragmentation counters from a fixture procfs (this
// machine's /proc/net/snmp{,6} with distinct values written in).
func TestReadSNMPFixture(t *testing.T) {
	got, err := readSNMP(collectors.ProcDir("testdata/proc"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]map[string]uint64{
		"reasm_reqds":   {"ipv4": 11, "ipv6": 21},
		"reasm_oks":     {"ipv4": 12, "ipv6": 22},
		"reasm_fails":   {"ipv4": 13, "ipv6": 23},
		"frag_oks":      {"ipv4": 14, "ipv6": 24},
		"frag_fails":    {"ipv4": 15, "ipv6": 25},
		"frag_creates":  {"ipv4": 16, "ipv6": 26},
		"reasm_timeout": {"ipv4": 17, "ipv6": 27},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d events, want %d: %v", len(got), len(want), got)
	}
	for ev, fams := range want {
		if !maps.Equal(got[ev], fams) {
			t.Errorf("%s: got %v, want %v", ev, got[ev], fams)
		}
	}
}

// A kernel without IPv6 has no snmp6: IPv4 is still read.
func TestReadSNMPWithoutIPv6(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/net/snmp", "Ip: FragCreates ReasmOKs\nIp: 5 6\n")
	got, err := readSNMP(collectors.ProcDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	if got["frag_creates"]["ipv4"] != 5 || got["reasm_oks"]["ipv4"] != 6 || len(got["frag_creates"]) != 1 {
		t.Fatalf("got %v", got)
	}
}

// What readSNMP refuses: no IPv4 counters, or a net/snmp procnet cannot
// decode. A field that is not a number is left out, not fatal.
func TestReadSNMPBadInput(t *testing.T) {
	for _, in := range []string{
		"",
		"Tcp: A B\nTcp: 1 2\n",
		"Ip: FragOKs FragFails\nIp: 1\n",
		"Ip: FragOKs\n",
	} {
		dir := t.TempDir()
		writeFile(t, dir+"/net/snmp", in)
		if got, err := readSNMP(collectors.ProcDir(dir)); err == nil {
			t.Errorf("%q: %v, want an error", in, got)
		}
	}
	dir := t.TempDir()
	writeFile(t, dir+"/net/snmp", "Ip: FragOKs FragFails\nIp: x 7\n")
	got, err := readSNMP(collectors.ProcDir(dir))
	if err != nil || got["frag_fails"]["ipv4"] != 7 || len(got["frag_oks"]) != 0 {
		t.Fatalf("got %v, %v", got, err)
	}
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}
