package fragments

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
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

func TestParseSNMP4BadInput(t *testing.T) {
	for _, in := range []string{
		"",
		"Tcp: A B\nTcp: 1 2\n",
		"Ip: A B\nIp: 1\n",
		"Ip: A B\n",
	} {
		if _, err := parseSNMP4(strings.NewReader(in)); err == nil {
			t.Errorf("%q: want an error", in)
		}
	}
	// A field that is not a number is left out, not fatal.
	got, err := parseSNMP4(strings.NewReader("Ip: A B\nIp: x 7\n"))
	if err != nil || len(got) != 1 || got["B"] != 7 {
		t.Fatalf("got %v, %v", got, err)
	}
}

func FuzzParseSNMP4(f *testing.F) {
	f.Add("Ip: Forwarding FragCreates\nIp: 1 42\n")
	f.Add("Ip: A\nIp: -1\nIp: 2\n")
	f.Fuzz(func(t *testing.T, in string) {
		out, err := parseSNMP4(strings.NewReader(in))
		if err == nil && out == nil {
			t.Fatal("nil map without an error")
		}
	})
}

func FuzzParseSNMP6(f *testing.F) {
	f.Add("Ip6FragCreates 3\nIp6ReasmOKs\t4\n")
	f.Add("Ip6X 18446744073709551615\nIp6Y 18446744073709551616\n")
	f.Fuzz(func(t *testing.T, in string) {
		out, err := parseSNMP6(strings.NewReader(in))
		if err != nil {
			return
		}
		for k := range out {
			if strings.ContainsAny(k, " \t\n") {
				t.Fatalf("name with white space: %q", k)
			}
		}
	})
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
