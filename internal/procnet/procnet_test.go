package procnet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestParseCountersFixtures: the kernel's own files, as nstat names them.
// The fixtures' values are known: each file was copied with the counters
// checked below read off by hand.
func TestParseCountersFixtures(t *testing.T) {
	for _, kernel := range kernels(t) {
		t.Run(kernel, func(t *testing.T) {
			files := map[string][]byte{}
			for _, f := range Files {
				files[f] = fixture(t, f+"-"+kernel)
			}
			c, err := ParseCounters(files)
			if err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"TcpExtListenOverflows", "TcpExtListenDrops", "TcpExtTCPBacklogDrop",
				"TcpExtTCPOFODrop", "TcpExtTCPAbortOnTimeout", "UdpRcvbufErrors", "UdpInErrors", "Udp6RcvbufErrors",
				"Udp6InErrors", "TcpActiveOpens", "IpExtInOctets"} {
				if _, ok := c[name]; !ok {
					t.Errorf("%s missing", name)
				}
			}
			// Tcp MaxConn is -1: not a counter, left out.
			if _, ok := c["TcpMaxConn"]; ok {
				t.Errorf("TcpMaxConn (-1) parsed as a counter")
			}
			want, ok := wantValues[kernel]
			if !ok {
				t.Fatalf("no values read off the %s fixtures", kernel)
			}
			for name, v := range want {
				if c[name] != v {
					t.Errorf("%s = %d, want %d", name, c[name], v)
				}
			}
		})
	}
}

// kernels are the fixture sets in testdata (netstat-KERNEL, ...).
func kernels(t *testing.T) []string {
	m, _ := filepath.Glob("testdata/netstat-*")
	var out []string
	for _, p := range m {
		out = append(out, strings.TrimPrefix(filepath.Base(p), "netstat-"))
	}
	if len(out) == 0 {
		t.Fatal("no fixtures")
	}
	return out
}

func TestParseTableErrors(t *testing.T) {
	for name, in := range map[string]string{
		"header only":    "TcpExt: A B\n",
		"short values":   "TcpExt: A B\nTcpExt: 1\n",
		"group mismatch": "TcpExt: A B\nIpExt: 1 2\n",
		"no group":       "A B\n1 2\n",
		"empty group":    ": A\n: 1\n",
	} {
		if err := ParseTable([]byte(in), Counters{}); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	c := Counters{}
	if err := ParseTable([]byte("TcpExt: A B\nTcpExt: 1 x\n\nUdp: C\nUdp: 18446744073709551615\n"), c); err != nil {
		t.Fatal(err)
	}
	if len(c) != 2 || c["TcpExtA"] != 1 || c["UdpC"] != 18446744073709551615 {
		t.Errorf("got %v", c)
	}
}

func TestParseSockstat(t *testing.T) {
	s, err := ParseSockstat([]byte("sockets: used 19\nTCP: inuse 3 orphan 0 tw 327 alloc 138 mem 7\nUDP: inuse 0 mem 2\nUDPLITE: inuse 0\n"))
	if err != nil {
		t.Fatal(err)
	}
	if s != (Sockstat{TCPPages: 7, UDPPages: 2, HasTCPPages: true, HasUDPPages: true}) {
		t.Errorf("got %+v", s)
	}
	if _, err := ParseSockstat([]byte("TCP: inuse 3 mem x\n")); err == nil {
		t.Error("mem x: no error")
	}
	for _, kernel := range kernels(t) {
		s, err = ParseSockstat(fixture(t, "sockstat-"+kernel))
		if err != nil || !s.HasTCPPages || !s.HasUDPPages {
			t.Errorf("%s fixture: %+v, %v", kernel, s, err)
		}
	}
}

func TestParseMemLimits(t *testing.T) {
	l, err := ParseMemLimits([]byte("287907\t383877\t575814\n"))
	if err != nil || l != (MemLimits{287907, 383877, 575814}) {
		t.Errorf("got %+v, %v", l, err)
	}
	for _, bad := range []string{"", "1 2", "1 2 3 4", "1 x 3", "-1 2 3"} {
		if _, err := ParseMemLimits([]byte(bad)); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

// FuzzParseCounters: any bytes as any of the three files: no panic, and a
// table that parses gives only counters named by its group.
func FuzzParseCounters(f *testing.F) {
	for _, name := range []string{"netstat-6.18", "snmp-6.18", "snmp6-6.18"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("TcpExt: A\nTcpExt: 1\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c := Counters{}
		if err := ParseTable(b, c); err == nil && len(c) > 0 && len(b) == 0 {
			t.Errorf("counters from nothing: %v", c)
		}
		ParseSNMP6(b, Counters{})
		_, _ = ParseCounters(map[string][]byte{"netstat": b, "snmp": b, "snmp6": b})
	})
}

// FuzzParseSockstat: sockstat and the mem sysctls from any bytes: no
// panic, and limits that parse are three numbers back.
func FuzzParseSockstat(f *testing.F) {
	b, err := os.ReadFile("testdata/sockstat-6.18")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add([]byte("287907\t383877\t575814\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ParseSockstat(b)
		if l, err := ParseMemLimits(b); err == nil && len(strings.Fields(string(b))) != 3 {
			t.Errorf("%+v from %q", l, b)
		}
	})
}

// wantValues are counters of each fixture set, read off the files by hand.
var wantValues = map[string]map[string]uint64{
	// The kernel matrix's guest after TestSocketCounters: 82 overflows of
	// a backlog of 8, 996 of 1,000 datagrams into 4 KiB refused.
	"6.1":  {"TcpExtListenOverflows": 82, "TcpExtListenDrops": 82, "UdpRcvbufErrors": 996, "UdpInErrors": 996, "TcpActiveOpens": 55},
	"6.12": {"TcpExtListenOverflows": 82, "TcpExtListenDrops": 82, "UdpRcvbufErrors": 996, "UdpInErrors": 996, "TcpActiveOpens": 46},
	"6.18": {"TcpExtTW": 1965, "TcpExtDelayedACKs": 160, "TcpExtTCPTimeouts": 2, "UdpInDatagrams": 39, "TcpActiveOpens": 2127},
}

// TestParseWanted: the wanted counters are exactly those of the full parse
// that are wanted, a name the kernel lacks is absent, and nothing else is
// kept.
func TestParseWanted(t *testing.T) {
	for _, kernel := range kernels(t) {
		t.Run(kernel, func(t *testing.T) {
			files := map[string][]byte{}
			for _, f := range Files {
				files[f] = fixture(t, f+"-"+kernel)
			}
			all, err := ParseCounters(files)
			if err != nil {
				t.Fatal(err)
			}
			want := Want{"TcpExtListenOverflows": true, "UdpRcvbufErrors": true, "Udp6InErrors": true, "TcpExtNoSuchCounter": true}
			got, err := ParseWanted(files, want)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != 3 {
				t.Errorf("%d counters kept, want 3: %v", len(got), got)
			}
			for name := range want {
				gv, gok := got[name]
				av, aok := all[name]
				if gok != aok || gv != av {
					t.Errorf("%s: wanted parse %d (present %v), full parse %d (present %v)", name, gv, gok, av, aok)
				}
			}
			if _, ok := got["TcpExtNoSuchCounter"]; ok {
				t.Error("a counter the kernel lacks is present")
			}
		})
	}
}
