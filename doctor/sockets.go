package doctor

import (
	"fmt"
	"strings"
)

// Alerts of the sockets collector's counters and tcpconnect's no_port
// (deploy/prometheus/rules.yml, group netsonde.sockets).
const (
	alertListenOverflows = "NetsondeListenOverflows"
	alertUDPErrors       = "NetsondeUDPReceiveErrors"
	alertTCPMemory       = "NetsondeTCPMemoryPressure"
	alertPortsExhausted  = "NetsondeEphemeralPortsExhausted"
)

// perPod sums the increases of a metric's series by pod ("the host" for
// the node's own sockets).
func perPod(o Observation, name string, match func(map[string]string) bool) map[string]float64 {
	out := map[string]float64{}
	for _, d := range o.Deltas(name, nil) {
		if match(d.Labels) {
			out[podOf(d.Labels)] += d.Increase
		}
	}
	return out
}

func counterIn(names ...string) func(map[string]string) bool {
	return func(l map[string]string) bool {
		for _, n := range names {
			if l["counter"] == n {
				return true
			}
		}
		return false
	}
}

// checkSockets reports pods whose accept queue overflows, whose UDP
// sockets drop datagrams, or that ran out of local ports, at the rates
// their alerts page on, and TCP under socket memory pressure.
func checkSockets(o Observation, r Rules) []Finding {
	var out []Finding
	rcvbuf := perPod(o, "netsonde_socket_errors_total", counterIn("UdpRcvbufErrors", "Udp6RcvbufErrors"))
	for _, c := range []struct {
		id, alert, summary, noun string
		counters                 []string
		evidence                 func(who string) []string
	}{
		{"listen-overflows", alertListenOverflows, "the accept queue of %s overflowed %s in %.1fs", "time",
			[]string{"TcpExtListenOverflows"}, nil},
		{"udp-receive-errors", alertUDPErrors, "UDP sockets of %s failed to receive %s in %.1fs", "datagram",
			[]string{"UdpInErrors", "Udp6InErrors"},
			func(who string) []string {
				return []string{fmt.Sprintf("%s of them for a full receive buffer (RcvbufErrors)", num(rcvbuf[who]))}
			}},
	} {
		a := r[c.alert]
		counts := perPod(o, "netsonde_socket_errors_total", counterIn(c.counters...))
		for _, who := range sortedKeys(counts) {
			n := counts[who]
			if n == 0 || !a.Exceeds(o.Rate(n)) {
				continue
			}
			f := r.finding(c.id, c.alert, who)
			f.Summary = fmt.Sprintf(c.summary, who, counted(n, c.noun), o.Elapsed)
			if c.evidence != nil {
				f.Evidence = append(f.Evidence, c.evidence(who)...)
			}
			f.Evidence = append(f.Evidence, fmt.Sprintf("%s %.2f/s %s %s/s (%s)", strings.Join(c.counters, " + "), o.Rate(n), a.Op, num(a.Threshold), c.alert))
			f.Why, f.Next = advice[c.id].Why, advice[c.id].Next
			out = append(out, f)
		}
	}
	out = append(out, checkTCPMemory(o, r)...)
	noPort := perPod(o, "netsonde_tcp_connects_total", func(l map[string]string) bool { return l["result"] == "no_port" })
	a := r[alertPortsExhausted]
	for _, who := range sortedKeys(noPort) {
		n := noPort[who]
		if n == 0 || !a.Exceeds(perRange(o, n, a.Range)) {
			continue
		}
		f := r.finding("ephemeral-ports-exhausted", alertPortsExhausted, who)
		f.Summary = fmt.Sprintf("%s of %s failed in %.1fs: no local port was free", counted(n, "TCP connect"), who, o.Elapsed)
		f.Evidence = append(f.Evidence, fmt.Sprintf("netsonde_tcp_connects_total{result=\"no_port\"} +%s (%s per %s %s %s)",
			num(n), num(perRange(o, n, a.Range)), fmtRange(a.Range), a.Op, num(a.Threshold)))
		f.Why, f.Next = advice["ephemeral-ports-exhausted"].Why, advice["ephemeral-ports-exhausted"].Next
		out = append(out, f)
	}
	return out
}

// checkTCPMemory compares TCP's socket memory with tcp_mem's pressure
// level, as NetsondeTCPMemoryPressure does.
func checkTCPMemory(o Observation, r Rules) []Finding {
	pages := o.After.Samples("netsonde_socket_memory_pages", map[string]string{"protocol": "tcp"})
	levels := o.After.Samples("netsonde_socket_memory_limit_pages", map[string]string{"protocol": "tcp", "level": "pressure"})
	if len(pages) != 1 || len(levels) != 1 || levels[0].Value <= 0 {
		return nil
	}
	a := r[alertTCPMemory]
	ratio := pages[0].Value / levels[0].Value
	if !a.Exceeds(ratio) {
		return nil
	}
	f := r.finding("tcp-memory-pressure", alertTCPMemory, "tcp")
	f.Summary = fmt.Sprintf("TCP sockets hold %s pages, %.0f%% of tcp_mem's pressure level (%s)", num(pages[0].Value), 100*ratio, num(levels[0].Value))
	f.Evidence = append(f.Evidence, fmt.Sprintf("ratio %.3f %s %s (%s)", ratio, a.Op, num(a.Threshold), alertTCPMemory))
	f.Why, f.Next = advice["tcp-memory-pressure"].Why, advice["tcp-memory-pressure"].Next
	return []Finding{f}
}
