package fragments

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strconv"
	"strings"

	"github.com/netsonde/netsonde/collectors"
)

// The kernel's own fragmentation and reassembly counters, by the names
// netsonde exports (event label) and the names in /proc/net/snmp (Ip:) and
// /proc/net/snmp6 (Ip6...).
var snmpEvents = []struct{ event, v4, v6 string }{
	{"frag_creates", "FragCreates", "Ip6FragCreates"},
	{"frag_oks", "FragOKs", "Ip6FragOKs"},
	{"frag_fails", "FragFails", "Ip6FragFails"},
	{"reasm_reqds", "ReasmReqds", "Ip6ReasmReqds"},
	{"reasm_oks", "ReasmOKs", "Ip6ReasmOKs"},
	{"reasm_fails", "ReasmFails", "Ip6ReasmFails"},
	{"reasm_timeout", "ReasmTimeout", "Ip6ReasmTimeout"},
}

// readSNMP returns event -> family -> value for the agent's namespace
// (procfs's net/ is the reading process's namespace). Two small files of
// the kernel's own counters: no cost worth caching.
func readSNMP(proc collectors.ProcFS) (map[string]map[string]uint64, error) {
	out := map[string]map[string]uint64{}
	b, err := proc.ReadFile("net/snmp")
	if err != nil {
		return nil, err
	}
	v4, err := parseSNMP4(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("net/snmp: %w", err)
	}
	var v6 map[string]uint64
	switch b, err := proc.ReadFile("net/snmp6"); {
	case err == nil:
		if v6, err = parseSNMP6(bytes.NewReader(b)); err != nil {
			return nil, fmt.Errorf("net/snmp6: %w", err)
		}
	case !errors.Is(err, fs.ErrNotExist): // no IPv6 in this kernel
		return nil, err
	}
	for _, e := range snmpEvents {
		out[e.event] = map[string]uint64{}
		if v, ok := v4[e.v4]; ok {
			out[e.event]["ipv4"] = v
		}
		if v, ok := v6[e.v6]; ok {
			out[e.event]["ipv6"] = v
		}
	}
	return out, nil
}

// parseSNMP4 reads the first "Ip:" header line and the "Ip:" values line
// after it. Values that are negative or not numbers (Forwarding is 1 or 2,
// DefaultTTL small: all fine; a malformed field) are left out, not fatal.
func parseSNMP4(r io.Reader) (map[string]uint64, error) {
	var header []string
	s := bufio.NewScanner(r)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) == 0 || fields[0] != "Ip:" {
			continue
		}
		if header == nil {
			header = fields[1:]
			continue
		}
		vals := fields[1:]
		if len(vals) != len(header) {
			return nil, fmt.Errorf("/proc/net/snmp Ip: header and values differ in length (%d, %d)", len(header), len(vals))
		}
		out := map[string]uint64{}
		for i, h := range header {
			v, err := strconv.ParseInt(vals[i], 10, 64)
			if err == nil && v >= 0 {
				out[h] = uint64(v)
			}
		}
		return out, nil
	}
	if err := s.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("no Ip: lines")
}

// parseSNMP6 reads "Name value" lines; others are skipped.
func parseSNMP6(r io.Reader) (map[string]uint64, error) {
	out := map[string]uint64{}
	s := bufio.NewScanner(r)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) == 2 {
			if v, err := strconv.ParseUint(fields[1], 10, 64); err == nil {
				out[fields[0]] = v
			}
		}
	}
	return out, s.Err()
}
