// Package procnet parses the kernel's per-namespace socket counters and
// socket memory files: /proc/net/netstat and /proc/net/snmp (a "Group:"
// header line, then a "Group:" values line), /proc/net/snmp6 (one "Name
// value" pair a line), /proc/net/sockstat and the tcp_mem / udp_mem
// sysctls. Counters are named as nstat(8) prints them: the group without
// its colon, then the field ("TcpExt" + "ListenOverflows" →
// TcpExtListenOverflows; snmp6's names are already whole). It is shared by
// agent/hostnet, which reads the files inside every namespace, and the
// sockets collector, which reads the agent's own.
package procnet

import (
	"bytes"
	"fmt"
	"strconv"
)

// Counters are counter values by nstat name.
type Counters map[string]uint64

// Want is a set of nstat names to keep; nil keeps every counter. The
// files hold some 300 counters and a reader wants 16: the others cost no
// key string and no map entry (the sockets collector parses the node's
// files on every scrape, the host view every pod's each refresh).
type Want map[string]bool

// ParseTable adds the counters of a netstat or snmp file to into. The
// file is pairs of lines with the same "Group:" prefix, header then
// values. Fields that are not unsigned numbers (snmp's Tcp MaxConn is
// -1) are left out; a values line whose length differs from its header's,
// or a group without its values line, is an error, and nothing of that
// group is added. A kernel that lacks a counter simply has no such key.
func ParseTable(b []byte, into Counters) error { return parseTable(b, into, nil) }

func parseTable(b []byte, into Counters, want Want) error {
	var key [64]byte
	var header [][]byte
	var group []byte
	for line := range bytes.Lines(b) {
		fields := bytes.Fields(line)
		if len(fields) == 0 {
			continue
		}
		g, ok := bytes.CutSuffix(fields[0], []byte(":"))
		if !ok || len(g) == 0 {
			return fmt.Errorf("line without a group: %.40q", line)
		}
		if header == nil {
			header, group = fields[1:], g
			continue
		}
		if !bytes.Equal(g, group) {
			return fmt.Errorf("group %s: header without values (next is %s)", group, g)
		}
		vals := fields[1:]
		if len(vals) != len(header) {
			return fmt.Errorf("group %s: %d names, %d values", group, len(header), len(vals))
		}
		for i, name := range header {
			k := append(append(key[:0], group...), name...)
			if want != nil && !want[string(k)] {
				continue
			}
			v, err := strconv.ParseUint(string(vals[i]), 10, 64)
			if err != nil {
				continue
			}
			into[string(k)] = v
		}
		header = nil
	}
	if header != nil {
		return fmt.Errorf("group %s: header without values", group)
	}
	return nil
}

// ParseSNMP6 adds the counters of an snmp6 file ("Udp6InErrors 0" a line)
// to into. Lines that are not a name and an unsigned number are skipped:
// the file has no structure to lose.
func ParseSNMP6(b []byte, into Counters) { parseSNMP6(b, into, nil) }

func parseSNMP6(b []byte, into Counters, want Want) {
	for line := range bytes.Lines(b) {
		f := bytes.Fields(line)
		if len(f) != 2 {
			continue
		}
		if want != nil && !want[string(f[0])] {
			continue
		}
		if v, err := strconv.ParseUint(string(f[1]), 10, 64); err == nil {
			into[string(f[0])] = v
		}
	}
}

// Sockstat is what /proc/net/sockstat says of socket memory: pages
// charged to TCP and UDP sockets (node-wide, whichever namespace reads it).
type Sockstat struct {
	TCPPages, UDPPages       uint64
	HasTCPPages, HasUDPPages bool
}

// ParseSockstat reads the "mem" fields of the TCP: and UDP: lines. A line
// without one (a kernel that does not say) leaves it unset; a "mem" that
// is not a number is an error.
func ParseSockstat(b []byte) (Sockstat, error) {
	var s Sockstat
	for line := range bytes.Lines(b) {
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		var pages *uint64
		var has *bool
		switch string(f[0]) {
		case "TCP:":
			pages, has = &s.TCPPages, &s.HasTCPPages
		case "UDP:":
			pages, has = &s.UDPPages, &s.HasUDPPages
		default:
			continue
		}
		for i := 1; i+1 < len(f); i += 2 {
			if string(f[i]) != "mem" {
				continue
			}
			v, err := strconv.ParseUint(string(f[i+1]), 10, 64)
			if err != nil {
				return Sockstat{}, fmt.Errorf("%s mem %.20q: %w", f[0], f[i+1], err)
			}
			*pages, *has = v, true
		}
	}
	return s, nil
}

// MemLimits are the three thresholds of tcp_mem or udp_mem, in pages:
// below Min the kernel does not regulate, above Pressure it moderates
// buffers (TCP enters memory pressure), at Max it refuses to allocate.
type MemLimits struct{ Min, Pressure, Max uint64 }

// ParseMemLimits reads a tcp_mem or udp_mem sysctl: three numbers.
func ParseMemLimits(b []byte) (MemLimits, error) {
	f := bytes.Fields(b)
	if len(f) != 3 {
		return MemLimits{}, fmt.Errorf("want 3 numbers, got %d fields", len(f))
	}
	var v [3]uint64
	for i := range f {
		n, err := strconv.ParseUint(string(f[i]), 10, 64)
		if err != nil {
			return MemLimits{}, fmt.Errorf("field %d: %w", i+1, err)
		}
		v[i] = n
	}
	return MemLimits{Min: v[0], Pressure: v[1], Max: v[2]}, nil
}

// Files are the files of a namespace's /proc/net that hold the counters
// ParseCounters reads.
var Files = []string{"netstat", "snmp", "snmp6"}

// ParseCounters parses the contents of Files (by name; a missing one,
// e.g. snmp6 without IPv6, is skipped) into one set of counters.
func ParseCounters(files map[string][]byte) (Counters, error) { return ParseWanted(files, nil) }

// ParseWanted is ParseCounters keeping only the counters in want (all
// when want is nil).
func ParseWanted(files map[string][]byte, want Want) (Counters, error) {
	out := make(Counters, len(want))
	for _, name := range []string{"netstat", "snmp"} {
		if b, ok := files[name]; ok {
			if err := parseTable(b, out, want); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	if b, ok := files["snmp6"]; ok {
		parseSNMP6(b, out, want)
	}
	return out, nil
}
