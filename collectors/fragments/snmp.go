package fragments

import (
	"errors"
	"fmt"
	"io/fs"

	"github.com/netsonde/netsonde/collectors"
	"github.com/netsonde/netsonde/internal/procnet"
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
// the kernel's own counters: no cost worth caching. They are decoded by
// internal/procnet, as every other reader of them does.
func readSNMP(proc collectors.ProcFS) (map[string]map[string]uint64, error) {
	b, err := proc.ReadFile("net/snmp")
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{"snmp": b}
	switch b, err := proc.ReadFile("net/snmp6"); {
	case err == nil:
		files["snmp6"] = b
	case !errors.Is(err, fs.ErrNotExist): // no IPv6 in this kernel
		return nil, err
	}
	// On every scrape: only the 14 counters read below are parsed out of
	// the ~150 in the two files, as the sockets collector does its own.
	want := make(procnet.Want, 2*len(snmpEvents))
	for _, e := range snmpEvents {
		want["Ip"+e.v4], want[e.v6] = true, true
	}
	c, err := procnet.ParseWanted(files, want)
	if err != nil {
		return nil, fmt.Errorf("net/%w", err) // "net/snmp: ..."
	}
	out := map[string]map[string]uint64{}
	v4 := false
	for _, e := range snmpEvents {
		out[e.event] = map[string]uint64{}
		if v, ok := c["Ip"+e.v4]; ok {
			out[e.event]["ipv4"], v4 = v, true
		}
		if v, ok := c[e.v6]; ok {
			out[e.event]["ipv6"] = v
		}
	}
	if !v4 {
		return nil, errors.New("net/snmp: no Ip: fragmentation counters")
	}
	return out, nil
}
