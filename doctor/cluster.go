package doctor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"time"

	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	promrules "github.com/netsonde/netsonde/deploy/prometheus"
)

// alertNetsondeDown pages for a node whose agent Prometheus cannot scrape;
// doctor --prometheus lists such nodes as unreachable with its severity.
const alertNetsondeDown = "NetsondeDown"

// ClusterOptions say which Prometheus series doctor --prometheus judges.
type ClusterOptions struct {
	// Source names the endpoint in the report (its URL without secrets).
	Source string
	// NodeLabel is the label that names the node on netsonde's series.
	NodeLabel string
	// Matchers are added to every selector (`cluster="prod"`).
	Matchers []string
	// Job is netsonde's scrape job, whose up{} says which agents answer.
	Job string
	// Lookback is how far back a node counts as part of the cluster: one
	// scraped within it and not now is unreachable, not gone.
	Lookback time.Duration
	// Timeout bounds each query (sent to Prometheus too).
	Timeout time.Duration
	// Time is the evaluation time (now when zero).
	Time time.Time
	// Logger logs each query at debug level (nil: none).
	Logger *slog.Logger
}

// ClusterReport is the result of one doctor --prometheus run. Its JSON
// form is the stable schema doctor/cluster_schema.json.
type ClusterReport struct {
	Source    string    `json:"source"`
	Time      time.Time `json:"time"`
	NodeLabel string    `json:"node_label"`
	// NodesTotal counts the nodes seen: scraped now, scraped within the
	// lookback, or listed by kube_node_info.
	NodesTotal        int  `json:"nodes_total"`
	NodesWithFindings int  `json:"nodes_with_findings"`
	NodesUnreachable  int  `json:"nodes_unreachable"`
	Healthy           bool `json:"healthy"`
	// Partial is true when a query failed or Prometheus answered it only in
	// part: a node may have findings that are not listed.
	Partial bool `json:"partial"`
	// Problems say what was partial, and what could not be attributed to
	// a node.
	Problems []string     `json:"problems"`
	Nodes    []NodeReport `json:"nodes"`
}

// NodeReport is one node with findings, its findings most severe first.
type NodeReport struct {
	Node     string   `json:"node"`
	Instance string   `json:"instance,omitempty"`
	Worst    Severity `json:"worst"`
	// Doctor is the command that diagnoses the node from its own agent.
	Doctor   string    `json:"doctor"`
	Findings []Finding `json:"findings"`
}

// Summary is the report's headline: "300 nodes, 3 with findings".
func (r ClusterReport) Summary() string {
	s := fmt.Sprintf("%s, %d with findings", plural(r.NodesTotal, "node", "nodes"), r.NodesWithFindings)
	if r.NodesUnreachable > 0 {
		s += fmt.Sprintf(" (%d unreachable)", r.NodesUnreachable)
	}
	if r.Partial {
		s += "; PARTIAL: " + plural(len(r.Problems), "problem", "problems") + " below"
	}
	return s
}

// Querier is the part of the Prometheus HTTP API doctor uses.
type Querier interface {
	Query(ctx context.Context, query string, ts time.Time, opts ...v1.Option) (model.Value, v1.Warnings, v1.Infos, error)
}

// ErrNoNetsonde is returned when the endpoint answers but holds no
// netsonde series (matching the selector) within the lookback.
var ErrNoNetsonde = errors.New("holds no netsonde series")

// clusterFinding says how an alert's results become findings: the check's
// id (as doctor names it on one node), the labels that name the subject,
// and queries whose series, on the finding's node, are its evidence.
type clusterFinding struct {
	id      string
	subject []string
	// evidence are PromQL expressions (matchers are added to their
	// selectors); a series is kept when its subject label, if any, equals
	// the finding's subject.
	evidence []evidenceQuery
}

type evidenceQuery struct {
	expr string
	// format prints a series of the result (its metric name and labels)
	// as the expression it came from, "rate(%s[5m])"; "%s" when empty.
	format  string
	subject string // label that must equal the finding's subject ("" for none)
	top     int
}

// clusterFindings maps each alert of Checks() to its finding. A test
// checks that every alert a check names is here and every id is in the
// schema.
var clusterFindings = map[string]clusterFinding{
	alertConntrackFull:     {id: "conntrack-fill", evidence: conntrackEvidence},
	alertConntrackFilling:  {id: "conntrack-fill", evidence: conntrackEvidence},
	alertConntrackDropping: {id: "conntrack-drop", subject: []string{"event"}},
	alertConntrackInsert:   {id: "conntrack-insert-failed", subject: []string{"event"}},
	alertConntrackEarly:    {id: "conntrack-early-drop", subject: []string{"event"}},
	alertMTUMismatch: {id: "mtu-mismatch", subject: []string{"interface"}, evidence: []evidenceQuery{
		{expr: "netsonde_interface_mtu_bytes", subject: "interface"},
		{expr: "netsonde_interface_expected_mtu_bytes", subject: "interface"},
	}},
	alertPMTUBlackHole: {id: "pmtu-blackhole", subject: []string{"target"}},
	alertPathMTUBelow:  {id: "path-mtu-below-interface", subject: []string{"target"}},
	alertDrops: {id: "packet-drops", subject: []string{"reason"}, evidence: []evidenceQuery{
		{expr: "sum without (protocol) (rate(netsonde_packet_drops_total[5m]))", format: "rate(netsonde_packet_drops_total%s[5m])", subject: "reason", top: 5},
	}},
	alertRetransmits: {id: "tcp-retransmits", subject: []string{"state"}, evidence: []evidenceQuery{
		{expr: "sum without (family) (rate(netsonde_tcp_retransmits_total[5m]))", format: "rate(netsonde_tcp_retransmits_total%s[5m])", subject: "state", top: 5},
	}},
	alertConnectRetries: {id: "tcp-connect-retries", subject: []string{"state"}, evidence: []evidenceQuery{
		{expr: "sum without (family) (rate(netsonde_tcp_retransmits_total[5m]))", format: "rate(netsonde_tcp_retransmits_total%s[5m])", subject: "state", top: 5},
	}},
	alertConnectFailures: {id: "tcp-connect-failures", subject: []string{"namespace"}},
	alertMeshPathFailing: {id: "mesh-path-failing", subject: []string{"path"}},
	alertDNSTimeouts:     {id: "dns-timeouts", subject: []string{"namespace", "pod"}},
	alertDiskFsync:       {id: "disk-fsync-slow", subject: []string{"path"}},
	alertProcessFsync:    {id: "process-fsync-slow", subject: []string{"comm", "device"}},
	alertCollectorDown:   {id: "collector-down", subject: []string{"collector"}},
	alertListenOverflows: {id: "listen-overflows", subject: []string{"namespace", "pod"}},
	alertUDPErrors:       {id: "udp-receive-errors", subject: []string{"namespace", "pod"}},
	alertTCPMemory:       {id: "tcp-memory-pressure", subject: []string{"protocol"}},
	alertPortsExhausted:  {id: "ephemeral-ports-exhausted", subject: []string{"namespace", "pod"}},
	alertNeighbourFull: {id: "neighbour-table-full", subject: []string{"family"}, evidence: []evidenceQuery{
		{expr: "netsonde_neighbour_entries", subject: "family"},
		{expr: "netsonde_neighbour_entries_limit", subject: "family"},
		{expr: "increase(netsonde_neighbour_table_full_total[5m])", format: "increase(netsonde_neighbour_table_full_total%s[5m])", subject: "family"},
	}},
	alertQdiscDrops: {id: "qdisc-drops", subject: []string{"interface"}, evidence: []evidenceQuery{
		{expr: "rate(netsonde_qdisc_drops_total[5m])", format: "rate(netsonde_qdisc_drops_total%s[5m])", subject: "interface"},
	}},
}

var conntrackEvidence = []evidenceQuery{
	{expr: "netsonde_conntrack_entries"},
	{expr: "netsonde_conntrack_entries_limit"},
}

// identityLabels are the target's own labels: they say where a series
// comes from, not what it is about.
var identityLabels = map[string]bool{"instance": true, "job": true, "cluster": true, "__name__": true}

// clusterRun is one evaluation: its options, the Prometheus, and what it
// found out along the way.
type clusterRun struct {
	q       Querier
	opts    ClusterOptions
	rules   Rules
	at      time.Time
	partial []string
}

// query runs one instant query. A failure of the endpoint itself (no
// answer, an HTTP error) is returned; warnings (Thanos' and Prometheus'
// partial responses) are kept as problems.
func (c *clusterRun) query(ctx context.Context, expr string) (model.Vector, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.Timeout)
	defer cancel()
	start := time.Now()
	v, warnings, _, err := c.q.Query(ctx, expr, c.at, v1.WithTimeout(c.opts.Timeout))
	if c.opts.Logger != nil {
		c.opts.Logger.Debug("query", "expr", expr, "duration", time.Since(start), "err", err)
	}
	if err != nil {
		return nil, queryError(c.opts.Source, err)
	}
	for _, w := range warnings {
		c.partial = append(c.partial, fmt.Sprintf("%s answered %q only in part: %s", c.opts.Source, shorten(expr), w))
	}
	vec, ok := v.(model.Vector)
	if !ok {
		return nil, fmt.Errorf("%s answered %q with a %s, not an instant vector", c.opts.Source, shorten(expr), v.Type())
	}
	return vec, nil
}

// queryError turns a client error into one line saying which: no answer,
// an HTTP status, or Prometheus' own error.
func queryError(source string, err error) error {
	var apiErr *v1.Error
	var netErr net.Error
	var urlErr *url.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s did not answer in time: %w", source, err)
	case errors.As(err, &apiErr):
		msg := apiErr.Msg
		if apiErr.Detail != "" && len(apiErr.Detail) < 200 {
			msg += " (" + strings.TrimSpace(apiErr.Detail) + ")"
		}
		return fmt.Errorf("%s answers an error: %s: %s", source, apiErr.Type, msg)
	case errors.As(err, &urlErr), errors.As(err, &netErr):
		return fmt.Errorf("%s does not answer: %w", source, rootCause(err))
	}
	return fmt.Errorf("%s: %w", source, err)
}

func shorten(expr string) string {
	expr = strings.Join(strings.Fields(expr), " ")
	if len(expr) > 80 {
		return expr[:77] + "..."
	}
	return expr
}

// sel is a selector for a metric with the run's matchers.
func (c *clusterRun) sel(metric string, extra ...string) string {
	return metric + "{" + strings.Join(append(extra, c.opts.Matchers...), ",") + "}"
}

// node names the node of a series: its node label, or, when a series has
// none, its instance (counted as a problem by the caller).
func (c *clusterRun) node(m model.Metric) (string, bool) {
	if n := string(m[model.LabelName(c.opts.NodeLabel)]); n != "" {
		return n, true
	}
	return "instance=" + string(m["instance"]), false
}

// target is what doctor knows of one node's agent.
type target struct {
	instance string
	up       float64
	now      bool // scraped at the evaluation time (an up sample within 5m)
}

// Cluster evaluates every check of Checks() over a cluster through a
// Prometheus-compatible query API, from netsonde's raw series, with the
// alert rules' own expressions and thresholds. The error is the reason the
// run could not be made at all (the endpoint did not answer, answered an
// error, or holds no netsonde series); a failure after that makes the
// report partial.
func Cluster(ctx context.Context, q Querier, rules Rules, opts ClusterOptions) (ClusterReport, error) {
	if opts.NodeLabel == "" {
		opts.NodeLabel = "node"
	}
	c := &clusterRun{q: q, opts: opts, rules: rules, at: opts.Time}
	if c.at.IsZero() {
		c.at = time.Now()
	}
	rep := ClusterReport{Source: opts.Source, Time: c.at.UTC(), NodeLabel: opts.NodeLabel, Problems: []string{}, Nodes: []NodeReport{}}
	lookback := model.Duration(opts.Lookback).String()

	// One small query first: is this a Prometheus, and does it hold
	// netsonde? Either answer ends the run with one line.
	probe, err := c.query(ctx, fmt.Sprintf("group(last_over_time(%s[%s])) or group(last_over_time(%s[%s]))",
		c.sel("netsonde_build_info"), lookback, c.sel("netsonde_collector_up"), lookback))
	if err != nil {
		return rep, err
	}
	if len(probe) == 0 {
		where := ""
		if len(opts.Matchers) > 0 {
			where = " matching " + strings.Join(opts.Matchers, ",")
		}
		return rep, fmt.Errorf("%s %w%s in the last %s (no netsonde_build_info or netsonde_collector_up)", opts.Source, ErrNoNetsonde, where, lookback)
	}

	records, err := promrules.Records()
	if err != nil {
		return rep, err
	}
	recorded, err := c.recorded(ctx, records)
	if err != nil {
		return rep, err
	}

	targets, known, err := c.targets(ctx, lookback)
	if err != nil {
		return rep, err
	}

	byNode := map[string][]Finding{}
	instances := map[string]string{} // from the findings' series, for nodes up{} does not name
	unlabelled := 0
	seen := map[string]bool{}
	for _, chk := range Checks() {
		for _, alert := range append(append([]string{}, chk.Alerts...), chk.VectorAlerts...) {
			cf, ok := clusterFindings[alert]
			if !ok {
				return rep, fmt.Errorf("check %s: alert %s has no cluster form", chk.Name, alert)
			}
			a, ok := rules[alert]
			if !ok {
				return rep, fmt.Errorf("check %s: alert %s is not in the rules", chk.Name, alert)
			}
			expr, err := exprForCluster(a.Expr, records, recorded, opts.NodeLabel, opts.Matchers)
			if err != nil {
				return rep, fmt.Errorf("alert %s: %w", alert, err)
			}
			vec, err := c.query(ctx, expr)
			if err != nil {
				c.partial = append(c.partial, fmt.Sprintf("check %s (%s) not evaluated: %v", chk.Name, alert, err))
				continue
			}
			for _, s := range vec {
				node, labelled := c.node(s.Metric)
				f := c.finding(cf, a, node, s)
				// One finding per node and subject: the check lists its
				// worst alert first (conntrack: full before filling).
				key := node + "\x00" + f.ID + "\x00" + f.Subject
				if seen[key] {
					continue
				}
				seen[key] = true
				if !labelled {
					unlabelled++
				}
				if inst := string(s.Metric["instance"]); inst != "" && instances[node] == "" {
					instances[node] = inst
				}
				byNode[node] = append(byNode[node], f)
			}
		}
	}
	if unlabelled > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%s without a %s label: named by their instance (is --node-label right?)",
			plural(unlabelled, "finding", "findings"), opts.NodeLabel))
	}
	c.addEvidence(ctx, byNode)

	// Nodes whose agent Prometheus cannot scrape are not healthy: every
	// check is blind there.
	for _, node := range sortedKeys(known) {
		t, ok := targets[node]
		var f Finding
		switch {
		case ok && t.now && t.up == 1:
			continue
		case ok && t.now:
			f = c.unreachable(node, fmt.Sprintf("Prometheus cannot scrape netsonde on %s (up = 0)", node),
				fmt.Sprintf(`%s = 0`, c.sel("up", c.jobMatcher()...)))
		case ok:
			f = c.unreachable(node, fmt.Sprintf("netsonde on %s was scraped within the last %s but not now: its target is gone", node, lookback),
				fmt.Sprintf(`last_over_time(%s[%s]) = %s, no sample now`, c.sel("up", c.jobMatcher()...), lookback, num(t.up)))
		default:
			f = c.unreachable(node, fmt.Sprintf("%s has no netsonde target (kube_node_info lists it, up{} does not)", node),
				fmt.Sprintf(`kube_node_info{node=%q} present, no %s`, node, c.sel("up", c.jobMatcher()...)))
		}
		rep.NodesUnreachable++
		byNode[node] = append([]Finding{f}, byNode[node]...)
	}

	for node, fs := range byNode {
		sort.SliceStable(fs, func(i, j int) bool { return fs[i].Severity > fs[j].Severity })
		nr := NodeReport{Node: node, Instance: targets[node].instance, Findings: fs}
		if nr.Instance == "" {
			nr.Instance = instances[node]
		}
		for _, f := range fs {
			nr.Worst = max(nr.Worst, f.Severity)
		}
		nr.Doctor = doctorCommand(nr.Instance)
		for i := range fs {
			// An agent that does not answer cannot be asked.
			if fs[i].ID != "node-unreachable" {
				fs[i].Next += "; per node: " + nr.Doctor
			}
		}
		rep.Nodes = append(rep.Nodes, nr)
		if !strings.HasPrefix(node, "instance=") {
			known[node] = true
		}
	}
	sort.Slice(rep.Nodes, func(i, j int) bool {
		a, b := rep.Nodes[i], rep.Nodes[j]
		if a.Worst != b.Worst {
			return a.Worst > b.Worst
		}
		if len(a.Findings) != len(b.Findings) {
			return len(a.Findings) > len(b.Findings)
		}
		return a.Node < b.Node
	})
	rep.NodesTotal = len(known)
	rep.NodesWithFindings = len(rep.Nodes)
	rep.Partial = len(c.partial) > 0
	rep.Problems = append(append([]string{}, c.partial...), rep.Problems...)
	rep.Healthy = true
	for _, n := range rep.Nodes {
		if n.Worst >= Warning {
			rep.Healthy = false
		}
	}
	return rep, nil
}

// doctorCommand is the per-node command: the agent's own metrics, read by
// doctor on any machine that reaches the instance.
func doctorCommand(instance string) string {
	if instance == "" {
		instance = "<node address>:10333"
	}
	return "netsonde doctor --from http://" + instance + "/metrics"
}

func (c *clusterRun) jobMatcher() []string {
	if c.opts.Job == "" {
		return nil
	}
	return []string{fmt.Sprintf("job=%q", c.opts.Job)}
}

// recorded asks which of the recording rules' series Prometheus holds
// (rules.yml loaded there): those are read instead of computed.
func (c *clusterRun) recorded(ctx context.Context, records []promrules.Record) (map[string]bool, error) {
	names := make([]string, 0, len(records))
	for _, r := range records {
		names = append(names, regexp.QuoteMeta(r.Name))
	}
	vec, err := c.query(ctx, fmt.Sprintf("group by (__name__) ({%s})",
		strings.Join(append([]string{fmt.Sprintf("__name__=~%q", strings.Join(names, "|"))}, c.opts.Matchers...), ",")))
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, s := range vec {
		out[string(s.Metric["__name__"])] = true
	}
	return out, nil
}

// targets reads up{} of netsonde's job now and within the lookback, and
// the nodes kube-state-metrics lists (if it is there): known is every
// node that should have an agent.
func (c *clusterRun) targets(ctx context.Context, lookback string) (map[string]target, map[string]bool, error) {
	up := c.sel("up", c.jobMatcher()...)
	targets, known := map[string]target{}, map[string]bool{}
	seen, err := c.query(ctx, fmt.Sprintf("last_over_time(%s[%s])", up, lookback))
	if err != nil {
		return nil, nil, err
	}
	for _, s := range seen {
		n, _ := c.node(s.Metric)
		targets[n] = target{instance: string(s.Metric["instance"]), up: float64(s.Value)}
		known[n] = true
	}
	now, err := c.query(ctx, up)
	if err != nil {
		return nil, nil, err
	}
	for _, s := range now {
		n, _ := c.node(s.Metric)
		targets[n] = target{instance: string(s.Metric["instance"]), up: float64(s.Value), now: true}
	}
	if len(seen) == 0 {
		c.partial = append(c.partial, fmt.Sprintf("no %s series: which agents answer is not known (is --job right?)", up))
	}
	// kube-state-metrics names every node of the cluster: a node without
	// any netsonde target is unreachable too, not absent from the count.
	ksm, err := c.query(ctx, fmt.Sprintf("group by (node) (%s)", c.sel("kube_node_info")))
	if err != nil {
		return nil, nil, err
	}
	for _, s := range ksm {
		if n := string(s.Metric["node"]); n != "" {
			known[n] = true
		}
	}
	return targets, known, nil
}

func (c *clusterRun) unreachable(node, summary, evidence string) Finding {
	f := c.rules.finding("node-unreachable", alertNetsondeDown, node)
	f.Node = node
	f.Summary = summary
	f.Evidence = append(f.Evidence, evidence)
	f.Why = "every check of this node is blind: its problems cannot be seen or page"
	f.Next = fmt.Sprintf("kubectl get pods -A -o wide --field-selector spec.nodeName=%s | grep netsonde; on the node: curl -s localhost:10333/readyz", node)
	return f
}

// finding turns one series of an alert's expression into a finding: the
// summary the alert would page with, the value against the threshold.
func (c *clusterRun) finding(cf clusterFinding, a promrules.Alert, node string, s *model.Sample) Finding {
	labels := map[string]string{}
	for k, v := range s.Metric {
		labels[string(k)] = string(v)
	}
	var subj []string
	for _, l := range cf.subject {
		subj = append(subj, labels[l])
	}
	subject := strings.Join(subj, " ")
	if cf.id == "conntrack-fill" {
		subject = "nf_conntrack"
	}
	f := c.rules.finding(cf.id, a.Name, subject)
	f.Node = node
	value := float64(s.Value)
	// The summary names the node as the page would, whatever label
	// carries it here.
	tl := map[string]string{}
	for k, v := range labels {
		tl[k] = v
	}
	if _, ok := tl["node"]; !ok {
		tl["node"] = node
	}
	if sum, err := renderSummary(a.Summary, tl, value); err == nil && sum != "" {
		f.Summary = sum
	} else {
		f.Summary = fmt.Sprintf("%s on %s: %s", a.Name, node, num(value))
	}
	series := map[string]string{}
	for k, v := range labels {
		if !identityLabels[k] && k != c.opts.NodeLabel {
			series[k] = v
		}
	}
	cmp := fmt.Sprintf("%s %s", a.Op, num(a.Threshold))
	if !a.HasThreshold {
		cmp = "below the other side of the comparison"
	}
	f.Evidence = append(f.Evidence, fmt.Sprintf("%s: %s %s (fires after %s)",
		SeriesString(a.Name, series), num(value), cmp, fmtRange(a.For)))
	adv := advice[cf.id]
	f.Why, f.Next = adv.Why, adv.Next
	switch cf.id {
	case "mtu-mismatch":
		f.Next = fmt.Sprintf("ip -d link show %s; compare with its underlay and grep -r mtu /etc/cni/net.d/", labels["interface"])
	case "pmtu-blackhole", "path-mtu-below-interface":
		f.Next = fmt.Sprintf("tracepath -n %s; %s", labels["target"], adv.Next)
	case "packet-drops":
		then := dropNext[labels["reason"]]
		if then == "" {
			then = fmt.Sprintf(`sum by (interface, namespace, pod) (rate(netsonde_packet_drops_total{%s=%q,reason=%q}[5m]))`,
				c.opts.NodeLabel, node, labels["reason"])
		}
		// The packets themselves, from that node's agent (kubectl
		// port-forward to it, as for doctor --from).
		f.Next = fmt.Sprintf("netsonde capture --from <agent on %s> --reason %s --count 20; then %s", node, labels["reason"], then)
	case "collector-down":
		if w := downWhy[labels["reason"]]; w != "" {
			f.Why = w + "; " + adv.Why
		}
		f.Next = fmt.Sprintf("the agent's log and landing page say why; --no-collector.%s where it does not apply", labels["collector"])
	}
	return f
}

// addEvidence runs each evidence query once for all nodes with that
// finding (node=~"a|b|c"), not once per node: the cost stays with the
// number of findings' kinds, not of nodes.
func (c *clusterRun) addEvidence(ctx context.Context, byNode map[string][]Finding) {
	byID := evidenceByID()
	for _, id := range sortedKeys(byID) {
		eqs := byID[id]
		nodes := map[string]bool{}
		for n, fs := range byNode {
			for _, f := range fs {
				if f.ID == id && !strings.HasPrefix(n, "instance=") {
					nodes[n] = true
				}
			}
		}
		if len(nodes) == 0 {
			continue
		}
		var alts []string
		for _, n := range sortedKeys(nodes) {
			alts = append(alts, regexp.QuoteMeta(n))
		}
		nodeMatcher := fmt.Sprintf("%s=~%q", c.opts.NodeLabel, strings.Join(alts, "|"))
		for _, eq := range eqs {
			vec, err := c.query(ctx, addMatchers(eq.expr, append([]string{nodeMatcher}, c.opts.Matchers...)))
			if err != nil {
				c.partial = append(c.partial, fmt.Sprintf("evidence for %s not read: %v", id, err))
				continue
			}
			sort.SliceStable(vec, func(i, j int) bool { return vec[i].Value > vec[j].Value })
			for n, fs := range byNode {
				for i := range fs {
					if fs[i].ID != id {
						continue
					}
					var lines []string
					for _, s := range vec {
						if string(s.Metric[model.LabelName(c.opts.NodeLabel)]) != n ||
							(eq.subject != "" && string(s.Metric[model.LabelName(eq.subject)]) != fs[i].Subject) {
							continue
						}
						labels := map[string]string{}
						for k, v := range s.Metric {
							if !identityLabels[string(k)] && string(k) != c.opts.NodeLabel && string(k) != eq.subject {
								labels[string(k)] = string(v)
							}
						}
						if eq.top > 0 && len(lines) == eq.top {
							break
						}
						series := SeriesString(string(s.Metric["__name__"]), labels)
						if eq.format != "" {
							series = fmt.Sprintf(eq.format, series)
						}
						lines = append(lines, fmt.Sprintf("%s = %s", series, num(float64(s.Value))))
					}
					fs[i].Evidence = append(fs[i].Evidence, lines...)
				}
			}
		}
	}
}

func evidenceByID() map[string][]evidenceQuery {
	out := map[string][]evidenceQuery{}
	for _, cf := range clusterFindings {
		if len(cf.evidence) > 0 {
			out[cf.id] = cf.evidence
		}
	}
	return out
}
