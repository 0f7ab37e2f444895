package main

import (
	"encoding/json"
	"fmt"
	"strings"
)

// The dashboard is described here, not drawn in Grafana and exported: the
// queries are code, reviewed with the metric contract beside them, and the
// end-to-end test runs each one against a real Prometheus.

// sel is the selector every query carries: the dashboard's cluster and node
// variables plus the query's own matchers.
func sel(extra ...string) string {
	return "{" + strings.Join(append([]string{`cluster=~"$cluster"`, `node=~"$node"`}, extra...), ",") + "}"
}

func rate(metric string, extra ...string) string {
	return fmt.Sprintf("rate(%s%s[$__rate_interval])", metric, sel(extra...))
}

// sumRate is the per-second rate of a counter summed by labels, with a
// legend naming them; top > 0 keeps only the top series.
func sumRate(top int, metric string, by ...string) query {
	expr := fmt.Sprintf("sum by (%s) (%s)", strings.Join(by, ", "), rate(metric))
	if top > 0 {
		expr = fmt.Sprintf("topk(%d, %s)", top, expr)
	}
	var legend []string
	for _, l := range by {
		legend = append(legend, "{{"+l+"}}")
	}
	return query{expr: expr, legend: strings.Join(legend, " ")}
}

// orZero shows 0 for each node whose collector is up but has no series
// of q's counter (they exist only once non-zero): a quiet node is a flat
// line, not a gap.
func orZero(q query, collector string) query {
	q.expr = fmt.Sprintf("%s or 0 * sum by (node) (netsonde_collector_up%s)", q.expr, sel(`collector="`+collector+`"`))
	return q
}

// recordedSum sums a node aggregate of rules.yml (group
// netsonde-node-aggregates: one series per node and reason, state, ...,
// a rate over 5m) by labels. A panel over every node reads these instead
// of every pod's and interface's series: at 5,000 nodes that is what lets
// it load. Its window is the rule's 5m, not $__rate_interval.
func recordedSum(record string, by ...string) query {
	var legend []string
	for _, l := range by {
		legend = append(legend, "{{"+l+"}}")
	}
	return query{expr: fmt.Sprintf("sum by (%s) (%s%s)", strings.Join(by, ", "), record, sel()), legend: strings.Join(legend, " ")}
}

type query struct {
	expr, legend string
	heatmap      bool // format as buckets for a heatmap
	instant      bool // a table of current values
}

type panel struct {
	title, kind, unit, description string
	queries                        []query
	width                          int       // of 24 columns; 12 when 0
	thresholds                     []float64 // drawn as lines (timeseries) or colours
}

type section struct {
	title  string
	panels []panel
}

func ts(title, unit, desc string, qs ...query) panel {
	return panel{title: title, kind: "timeseries", unit: unit, description: desc, queries: qs}
}

func table(title, desc string, qs ...query) panel {
	for i := range qs {
		qs[i].instant = true
	}
	return panel{title: title, kind: "table", description: desc, queries: qs, width: 24}
}

func heatmap(title, desc, expr string) panel {
	return panel{title: title, kind: "heatmap", unit: "s", description: desc,
		queries: []query{{expr: expr, legend: "{{le}}", heatmap: true}}}
}

func sections() []section {
	return []section{
		{"Packet drops", []panel{
			ts("Drops by reason", "pps", "Packets the kernel freed as dropped (skb:kfree_skb), by the kernel's own drop reason.",
				recordedSum("node_reason:netsonde_packet_drops:rate5m", "node", "reason")),
			ts("Drops by interface", "pps", "The 20 busiest interface and reason pairs.",
				sumRate(20, "netsonde_packet_drops_total", "node", "interface", "reason")),
			ts("Drops by pod", "pps", "The 20 pods (empty: the host) losing most packets.",
				sumRate(20, "netsonde_packet_drops_total", "namespace", "pod", "reason")),
		}},
		{"TCP retransmits", []panel{
			ts("Retransmits by TCP state", "pps", "SYN_SENT: connection attempts nobody answered. ESTABLISHED: lost data.",
				recordedSum("node_state:netsonde_tcp_retransmits:rate5m", "node", "state")),
			ts("Retransmits by pod", "pps", "The 20 pods (empty: the host) retransmitting most.",
				sumRate(20, "netsonde_tcp_retransmits_total", "namespace", "pod", "state")),
		}},
		{"TCP connections", []panel{
			ts("Connects by result", "ops", "Active opens: established, refused (RST to the SYN), timeout (no answer at all), error (e.g. ICMP unreachable).",
				recordedSum("node_namespace_result:netsonde_tcp_connects:rate5m", "node", "result")),
			{title: "Connect failure ratio by namespace", kind: "timeseries", unit: "percentunit", thresholds: []float64{0.1},
				description: "Refused and unanswered connects over all connects, per Kubernetes namespace (empty: the host). NetsondeTCPConnectFailures fires above 10% for 10 minutes.",
				queries: []query{{expr: "sum by (node, namespace) (node_namespace_result:netsonde_tcp_connects:rate5m" + sel(`result=~"refused|timeout"`) +
					") / sum by (node, namespace) (node_namespace_result:netsonde_tcp_connects:rate5m" + sel() + ")",
					legend: "{{node}} {{namespace}}"}}},
			ts("Failing connects by pod", "ops", "The 20 pods (empty: the host) with most refused or unanswered connects.",
				query{expr: "topk(20, sum by (namespace, pod, result) (" + rate("netsonde_tcp_connects_total", `result=~"refused|timeout|error"`) + "))", legend: "{{namespace}}/{{pod}} {{result}}"}),
			ts("Resets", "pps", "RSTs sent (aborts, answers to closed ports) and received.",
				sumRate(0, "netsonde_tcp_resets_total", "node", "direction")),
			{title: "Connect time p99", kind: "timeseries", unit: "s", thresholds: []float64{1},
				description: "SYN to ESTABLISHED. Above 1 s a SYN was retransmitted: the first one was lost.",
				queries:     []query{{expr: "histogram_quantile(0.99, sum by (node, le) (node_le:netsonde_tcp_connect_duration_seconds_bucket:rate5m" + sel() + "))", legend: "{{node}}"}}},
			{title: "Smoothed RTT at close, median", kind: "timeseries", unit: "s",
				description: "The kernel's smoothed RTT of each connection as it closes, per node.",
				queries:     []query{{expr: "histogram_quantile(0.5, sum by (node, le) (" + rate("netsonde_tcp_srtt_seconds_bucket") + "))", legend: "{{node}}"}}},
		}},
		{"Sockets", []panel{
			ts("Accept queue overflows by pod", "ops", "Connections the kernel dropped because a listener's accept queue was full (TcpExtListenOverflows of the pod's own network namespace; empty: the host). NetsondeListenOverflows fires when it does not stop for 10 minutes.",
				query{expr: "topk(20, sum by (namespace, pod) (" + rate("netsonde_socket_errors_total", `counter="TcpExtListenOverflows"`) + "))", legend: "{{namespace}}/{{pod}}"}),
			{title: "UDP receive errors by pod", kind: "timeseries", unit: "pps", thresholds: []float64{1},
				description: "Datagrams a pod's UDP sockets could not take (InErrors; RcvbufErrors: the receive buffer was full). NetsondeUDPReceiveErrors fires above 1/s of InErrors for 10 minutes.",
				queries: []query{{expr: "topk(20, sum by (namespace, pod, counter) (" + rate("netsonde_socket_errors_total", `counter=~"Udp6?(InErrors|RcvbufErrors)"`) + "))",
					legend: "{{namespace}}/{{pod}} {{counter}}"}}},
			ts("TCP socket memory against tcp_mem", "short", "Pages charged to TCP sockets (sockstat) and net.ipv4.tcp_mem's levels: above pressure the kernel shrinks buffers (NetsondeTCPMemoryPressure), at max it aborts connections.",
				// One query: the limits are absent where the agent is
				// not in the node's namespace, the usage never is.
				query{expr: `label_replace(netsonde_socket_memory_pages` + sel(`protocol="tcp"`) + `, "level", "in use", "", "") or netsonde_socket_memory_limit_pages` + sel(`protocol="tcp"`),
					legend: "{{node}} {{level}}"}),
			ts("Connects with no local port by pod", "ops", "Connects that failed with EADDRNOTAVAIL because every local port was taken (result=\"no_port\", counted in the kernel). NetsondeEphemeralPortsExhausted pages when it lasts 5 minutes.",
				query{expr: "topk(20, sum by (namespace, pod) (" + rate("netsonde_tcp_connects_total", `result="no_port"`) + "))", legend: "{{namespace}}/{{pod}}"}),
			{title: "Other socket errors by pod", kind: "timeseries", unit: "ops", width: 24,
				description: "The rest of the namespaces' socket counters: ListenDrops, ReqQFullDrop, BacklogDrop, RcvQDrop, ZeroWindowDrop, OFODrop, MemoryPressures, AbortOnMemory, AbortOnTimeout, SndbufErrors.",
				queries: []query{{expr: "topk(20, sum by (namespace, pod, counter) (" + rate("netsonde_socket_errors_total", `counter!~"TcpExtListenOverflows|Udp6?(InErrors|RcvbufErrors)"`) + "))",
					legend: "{{namespace}}/{{pod}} {{counter}}"}}},
		}},
		{"Node latency mesh", []panel{
			{title: "Median RTT to peer nodes by path", kind: "timeseries", unit: "s",
				description: "ICMP echo to the peers this node probes: underlay (InternalIP) and overlay (the peer's pod-network address). The gap is what the overlay costs.",
				queries:     []query{{expr: "histogram_quantile(0.5, sum by (node, path, le) (" + rate("netsonde_node_rtt_seconds_bucket") + "))", legend: "{{node}} {{path}}"}}},
			{title: "Overlay over underlay, median", kind: "timeseries", unit: "short", thresholds: []float64{1.5},
				description: "NetsondeOverlayLatencyHigh fires above 1.5 (and 1 ms apart) for 15 minutes.",
				queries:     []query{{expr: "histogram_quantile(0.5, sum by (node, le) (" + rate("netsonde_node_rtt_seconds_bucket", `path="overlay"`) + ")) / histogram_quantile(0.5, sum by (node, le) (" + rate("netsonde_node_rtt_seconds_bucket", `path="underlay"`) + "))", legend: "{{node}}"}}},
			ts("Unanswered probes by path", "ops", "One path failing while the other answers: the VXLAN/MTU/firewall signature (NetsondeMeshPathFailing).",
				recordedSum("node_path:netsonde_node_unreachable:rate5m", "node", "path")),
		}},
		{"Fragmentation and ICMP", []panel{
			ts("IP fragments on interfaces", "pps", "IPv4 fragments and IPv6 packets with a fragment header, seen by tc programs.",
				sumRate(0, "netsonde_ip_fragments_total", "node", "interface", "direction", "family")),
			ts("Kernel fragmentation and reassembly", "ops", "The kernel's own counters (/proc/net/snmp): FragFails and ReasmFails mean lost packets.",
				sumRate(0, "netsonde_ip_fragmentation_events_total", "node", "event", "family")),
			ts("ICMP fragmentation needed", "pps", "Sent: this node told a sender its packet was too big. Received: a path told this node. Large packets sent and none received is a black hole.",
				sumRate(0, "netsonde_icmp_frag_needed_total", "node", "direction", "interface", "family")),
		}},
		{"DNS", []panel{
			ts("DNS queries by pod", "reqps", "Queries the 20 busiest pods (empty: the node's own processes) send, seen at their own sockets.",
				sumRate(20, "netsonde_dns_queries_total", "namespace", "pod")),
			ts("DNS answers by rcode", "percentunit", "Share of answered queries per rcode; NXDOMAIN is often search-path expansion, SERVFAIL a resolver in trouble.",
				query{expr: "sum by (rcode) (node_rcode:netsonde_dns_responses:rate5m" + sel() + ") / scalar(sum(node_rcode:netsonde_dns_responses:rate5m" + sel() + "))", legend: "{{rcode}}"}),
			{title: "DNS latency quantiles", kind: "timeseries", unit: "s", thresholds: []float64{0.2, 1},
				description: "Query to answer at the client's socket, all pods of the selection.",
				queries: []query{
					{expr: "histogram_quantile(0.5, sum by (le) (" + rate("netsonde_dns_response_duration_seconds_bucket") + "))", legend: "p50"},
					{expr: "histogram_quantile(0.9, sum by (le) (" + rate("netsonde_dns_response_duration_seconds_bucket") + "))", legend: "p90"},
					{expr: "histogram_quantile(0.99, sum by (le) (" + rate("netsonde_dns_response_duration_seconds_bucket") + "))", legend: "p99"},
				}},
			{title: "DNS timeout ratio by pod", kind: "timeseries", unit: "percentunit", thresholds: []float64{0.05},
				description: "Queries with no answer within --dns.timeout, over queries sent; NetsondeDNSTimeouts fires above 5% for 10 minutes.",
				queries: []query{{expr: "topk(20, sum by (namespace, pod) (" + rate("netsonde_dns_timeouts_total") + ") / sum by (namespace, pod) (" + rate("netsonde_dns_queries_total") + "))",
					legend: "{{namespace}}/{{pod}}"}}},
			ts("DNS timeouts by namespace and pod", "reqps", "Queries that never got an answer: lost on the way to the resolver or back.",
				sumRate(20, "netsonde_dns_timeouts_total", "namespace", "pod")),
			ts("Dropped DNS packets", "pps", "DNS packets the kernel dropped, by drop reason and the pod where they were dropped.",
				sumRate(20, "netsonde_dns_dropped_total", "namespace", "pod", "reason")),
			ts("DNS queries not tracked", "reqps", "Queries pushed out of netsonde's in-flight table before their answer or timeout, by node (NetsondeDNSInflightEvictions), and refused to a pod at its quota, --dns.max-inflight-per-pod (NetsondeDNSInflightQuota): their timeouts are not counted.",
				sumRate(0, "netsonde_dns_inflight_evictions_total", "node"),
				sumRate(20, "netsonde_dns_inflight_refused_total", "namespace", "pod")),
		}},
		{"Conntrack", []panel{
			{title: "Conntrack table fill", kind: "timeseries", unit: "percentunit", thresholds: []float64{0.75, 0.95},
				description: "Entries over nf_conntrack_max. Warning above 75%, critical above 95%.",
				queries:     []query{{expr: "node:netsonde_conntrack_fill:ratio" + sel(), legend: "{{node}}"}}},
			ts("Conntrack entries and limit", "short", "",
				query{expr: "netsonde_conntrack_entries" + sel(), legend: "{{node}} entries"},
				query{expr: "netsonde_conntrack_entries_limit" + sel(), legend: "{{node}} limit"}),
			ts("Conntrack events", "ops", "drop: packets refused (table full). early_drop: entries evicted to make room. insert_failed: the DNS race.",
				query{expr: "sum by (node, event) (" + rate("netsonde_conntrack_events_total", `event!~"found|insert"`) + ")", legend: "{{node}} {{event}}"}),
			ts("Entries by protocol and state", "short", "From the opt-in breakdown (--conntrack.breakdown-interval).",
				query{expr: "sum by (node, protocol, state) (netsonde_conntrack_state_entries" + sel() + ")", legend: "{{node}} {{protocol}} {{state}}"}),
			table("Who fills the table", "The sources holding most entries (opt-in breakdown of the conntrack collector).",
				query{expr: "topk(20, netsonde_conntrack_top_entries" + sel() + ")"}),
		}},
		{"MTU", []panel{
			table("MTU mismatches", "1: the interface's MTU does not fit what is under it (reason says how).",
				query{expr: "netsonde_mtu_mismatch" + sel()}),
			table("Interface MTU against what fits", "",
				query{expr: "netsonde_interface_mtu_bytes" + sel()},
				query{expr: "netsonde_interface_expected_mtu_bytes" + sel()}),
			ts("Path MTU to peers", "bytes", "The largest packet that crosses to each peer with DF set (tracepath's method).",
				query{expr: "netsonde_path_mtu_bytes" + sel(), legend: "{{node}} → {{target}}"}),
			ts("Path-MTU black holes", "short", "1: large packets vanish and no ICMP fragmentation-needed comes back.",
				query{expr: "netsonde_path_mtu_blackhole" + sel(), legend: "{{node}} → {{target}}"}),
		}},
		{"Below IP: NICs, queues, softnet, neighbours", []panel{
			ts("NIC driver drops", "pps", "Driver statistics that are drops (ethtool -S: ring overflows, cloud allowances, per-queue drops summed); a node without any shows 0.",
				orZero(sumRate(10, "netsonde_nic_drops_total", "node", "interface", "counter"), "ethtool")),
			ts("Root qdisc drops", "pps", "Packets the interfaces' root qdiscs dropped (tc -s qdisc); a node without any shows 0.",
				orZero(sumRate(10, "netsonde_qdisc_drops_total", "node", "interface", "kind"), "netdev")),
			ts("Interface drops", "pps", "rx_dropped and tx_dropped of the interfaces (ip -s link), pod veths by pod; a node without any shows 0.",
				orZero(sumRate(10, "netsonde_interface_drops_total", "node", "interface", "direction", "pod"), "netdev")),
			ts("Softnet drops and squeezes", "short", "Per second, summed over CPUs (/proc/net/softnet_stat): dropped is a full backlog, time_squeeze a softirq out of budget.",
				sumRate(0, "netsonde_softnet_events_total", "node", "event")),
			ts("Neighbour table fill", "percentunit", "Entries over gc_thresh3; at 1 the kernel refuses new neighbours.",
				query{expr: "netsonde_neighbour_entries" + sel() + " / netsonde_neighbour_entries_limit" + sel(), legend: "{{node}} {{family}}"}),
			ts("Carrier changes", "short", "Carrier changes in the last 15 minutes (two per flap).",
				query{expr: "topk(10, increase(netsonde_interface_carrier_changes_total" + sel() + "[15m]))", legend: "{{node}} {{interface}}"}),
		}},
		{"Disk fsync (etcd)", []panel{
			heatmap("Probe fdatasync latency", "2300-byte write + fdatasync, as etcd's WAL does.",
				"sum by (le) ("+rate("netsonde_disk_fsync_duration_seconds_bucket")+")"),
			heatmap("etcd fsync latency (traced)", "The fsyncs of the traced processes (etcd by default).",
				"sum by (le) ("+rate("netsonde_process_fsync_duration_seconds_bucket")+")"),
			{title: "Probe fdatasync p99", kind: "timeseries", unit: "s", thresholds: []float64{0.01},
				description: "etcd wants the WAL fsync p99 under 10 ms.",
				queries: []query{{expr: "histogram_quantile(0.99, sum by (node, path, le) (" + rate("netsonde_disk_fsync_duration_seconds_bucket") + "))",
					legend: "{{node}} {{path}}"}}},
			{title: "etcd fsync p99 (traced)", kind: "timeseries", unit: "s", thresholds: []float64{0.01},
				description: "Compare with etcd's own etcd_disk_wal_fsync_duration_seconds.",
				queries: []query{{expr: "histogram_quantile(0.99, sum by (node, comm, device, le) (" + rate("netsonde_process_fsync_duration_seconds_bucket") + "))",
					legend: "{{node}} {{comm}} {{device}}"}}},
		}},
		{"netsonde", []panel{
			table("Firing alerts", "",
				query{expr: `ALERTS{alertstate="firing",alertname=~"Netsonde.*",cluster=~"$cluster",node=~"$node"}`}),
			ts("Agents scraped", "short", "1: Prometheus reaches the agent.",
				query{expr: `up{job="netsonde",cluster=~"$cluster",node=~"$node"}`, legend: "{{node}}"}),
			ts("Collector scrape time", "s", "",
				query{expr: "netsonde_collector_duration_seconds" + sel(), legend: "{{node}} {{collector}}"}),
			table("Collectors", "0: the collector cannot work on this node; reason says why.",
				query{expr: "netsonde_collector_up" + sel()}),
			table("fsync probe", "0: the probe cannot write on the path; reason says why (missing, read_only, disk_full, ...).",
				query{expr: "netsonde_disk_fsync_probe_up" + sel()}),
			table("eBPF programs", "0: not attached (the form a collector did not choose stays 0).",
				query{expr: "netsonde_bpf_program_attached" + sel()}),
			ts("Agent memory", "bytes", "Resident set size of the agent.",
				query{expr: `process_resident_memory_bytes{job="netsonde",cluster=~"$cluster",node=~"$node"}`, legend: "{{node}}"}),
			ts("Agent CPU", "percentunit", "",
				query{expr: `rate(process_cpu_seconds_total{job="netsonde",cluster=~"$cluster",node=~"$node"}[$__rate_interval])`, legend: "{{node}}"}),
			table("Versions", "",
				query{expr: "count by (version, revision, goversion) (netsonde_build_info" + sel() + ")"}),
		}},
	}
}

var datasource = map[string]any{"type": "prometheus", "uid": "${datasource}"}

func (p panel) json(id, x, y, w, h int) map[string]any {
	var targets []any
	for i, q := range p.queries {
		t := map[string]any{
			"datasource": datasource,
			"expr":       q.expr,
			"refId":      string(rune('A' + i)),
		}
		switch {
		case q.heatmap:
			t["format"], t["legendFormat"] = "heatmap", q.legend
		case q.instant:
			t["format"], t["instant"], t["range"] = "table", true, false
		default:
			t["legendFormat"] = q.legend
		}
		targets = append(targets, t)
	}
	steps := []any{map[string]any{"color": "green", "value": nil}}
	for i, v := range p.thresholds {
		steps = append(steps, map[string]any{"color": []string{"orange", "red"}[min(i, 1)], "value": v})
	}
	defaults := map[string]any{"thresholds": map[string]any{"mode": "absolute", "steps": steps}}
	if p.unit != "" {
		defaults["unit"] = p.unit
	}
	if p.kind == "timeseries" && len(p.thresholds) > 0 {
		defaults["custom"] = map[string]any{"thresholdsStyle": map[string]any{"mode": "line"}}
	}
	out := map[string]any{
		"id":          id,
		"type":        p.kind,
		"title":       p.title,
		"description": p.description,
		"datasource":  datasource,
		"gridPos":     map[string]any{"x": x, "y": y, "w": w, "h": h},
		"targets":     targets,
		"fieldConfig": map[string]any{"defaults": defaults, "overrides": []any{}},
	}
	switch p.kind {
	case "heatmap":
		out["options"] = map[string]any{
			"calculate": false,
			"yAxis":     map[string]any{"unit": "s"},
			"color":     map[string]any{"mode": "scheme", "scheme": "Oranges", "exponent": 0.5},
			"cellGap":   1,
			"rowsFrame": map[string]any{"layout": "le"},
		}
	case "table":
		out["transformations"] = []any{map[string]any{"id": "merge", "options": map[string]any{}}}
		out["options"] = map[string]any{"showHeader": true}
	default:
		out["options"] = map[string]any{
			"legend":  map[string]any{"displayMode": "list", "placement": "bottom", "showLegend": true},
			"tooltip": map[string]any{"mode": "multi", "sort": "desc"},
		}
	}
	return out
}

func variable(name, label, query string, multi bool) map[string]any {
	return map[string]any{
		"name": name, "label": label, "type": "query",
		"datasource": datasource,
		"query":      map[string]any{"query": query, "refId": name},
		"definition": query,
		// An empty value matches series without the label: one cluster
		// per Prometheus, no cluster label, still works.
		"includeAll": true, "allValue": ".*", "multi": multi,
		"current": map[string]any{"selected": true, "text": "All", "value": "$__all"},
		"refresh": 2, "sort": 1, "hide": 0, "options": []any{},
	}
}

// dashboardJSON renders the dashboard, laid out two panels to a line under
// one row per area.
func dashboardJSON() ([]byte, error) {
	var panels []any
	id, y := 1, 0
	for _, s := range sections() {
		panels = append(panels, map[string]any{
			"id": id, "type": "row", "title": s.title, "collapsed": false, "panels": []any{},
			"gridPos": map[string]any{"x": 0, "y": y, "w": 24, "h": 1},
		})
		id++
		y++
		x := 0
		for _, p := range s.panels {
			w := p.width
			if w == 0 {
				w = 12
			}
			if x+w > 24 {
				x, y = 0, y+8
			}
			panels = append(panels, p.json(id, x, y, w, 8))
			id++
			x += w
		}
		y += 8
	}
	dash := map[string]any{
		"uid":           "netsonde",
		"title":         "netsonde: node network health",
		"description":   "Drops, retransmits, fragmentation, conntrack, MTU and etcd fsync latency from netsonde on every node.",
		"tags":          []string{"netsonde", "network", "kubernetes"},
		"editable":      true,
		"graphTooltip":  1,
		"schemaVersion": 39,
		"version":       1,
		"refresh":       "30s",
		"time":          map[string]any{"from": "now-3h", "to": "now"},
		"timezone":      "utc",
		"panels":        panels,
		"annotations": map[string]any{"list": []any{map[string]any{
			"name": "Alerts", "datasource": datasource, "enable": true, "iconColor": "red",
			"expr":        `ALERTS{alertstate="firing",alertname=~"Netsonde.*",cluster=~"$cluster",node=~"$node"}`,
			"step":        "30s",
			"titleFormat": "{{alertname}}",
			"textFormat":  "{{node}}",
		}}},
		"templating": map[string]any{"list": []any{
			map[string]any{"name": "datasource", "label": "Data source", "type": "datasource",
				"query": "prometheus", "current": map[string]any{}, "hide": 0, "options": []any{}},
			variable("cluster", "Cluster", "label_values(netsonde_build_info, cluster)", false),
			variable("node", "Node", `label_values(netsonde_build_info{cluster=~"$cluster"}, node)`, true),
		}},
	}
	b, err := json.MarshalIndent(dash, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("dashboard: %w", err)
	}
	return append(b, '\n'), nil
}
