package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
)

// rulesConfig is what a site changes in the rules, as the kubernetes- and
// node-mixins' config blocks do, without jsonnet: rules.yml is written with
// defaultRulesConfig, and configure rewrites exactly those spellings.
type rulesConfig struct {
	// JobSelector selects netsonde's scrape targets in up{} and absent().
	JobSelector string
	// ClusterLabel tells clusters apart where one Prometheus watches
	// several; the rules join and aggregate on it.
	ClusterLabel string
	// Namespace is where the agents run, named in the kubectl commands the
	// descriptions give.
	Namespace string
	// RunbookURL is docs/runbooks.md as the on-call reads it; each alert
	// links #<alert name in lower case>.
	RunbookURL string
	// OverlayLatencyRatio is how many times the underlay's median RTT the
	// overlay's may be before NetsondeOverlayLatencyHigh fires.
	OverlayLatencyRatio string
}

var defaultRulesConfig = rulesConfig{
	JobSelector:  `job="netsonde"`,
	ClusterLabel: "cluster",
	Namespace:    "netsonde",
	RunbookURL:   "https://github.com/netsonde/netsonde/blob/main/docs/runbooks.md",

	OverlayLatencyRatio: "1.5",
}

// overlayRatio is the ratio's spelling in NetsondeOverlayLatencyHigh: the
// comparison closing the quotient of the overlay's and underlay's medians.
var overlayRatio = regexp.MustCompile(`(path="underlay"\}\[10m\]\)\)\)\n\s*\) > )1\.5\n`)

// clusterInGrouping is the cluster label where the rules group or join on
// it: the first label of a `by (...)` or `on (...)` clause.
var clusterInGrouping = regexp.MustCompile(`\b(by|on) \(cluster\b`)

// configure rewrites rules text written with defaultRulesConfig to c.
func configure(rules string, c rulesConfig) string {
	d := defaultRulesConfig
	rules = strings.ReplaceAll(rules, "{"+d.JobSelector+"}", "{"+c.JobSelector+"}")
	rules = clusterInGrouping.ReplaceAllString(rules, "$1 ("+c.ClusterLabel)
	rules = strings.ReplaceAll(rules, "kubectl -n "+d.Namespace+" ", "kubectl -n "+c.Namespace+" ")
	rules = strings.ReplaceAll(rules, d.RunbookURL+"#", c.RunbookURL+"#")
	if c.OverlayLatencyRatio != "" {
		rules = overlayRatio.ReplaceAllString(rules, "${1}"+c.OverlayLatencyRatio+"\n")
	}
	return rules
}

// rulesCommand is `go run ./deploy/gen rules`: rules.yml with this site's
// settings, on out, ready for a Prometheus rule_files entry (or `promtool
// check rules`).
func rulesCommand(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("gen rules", flag.ContinueOnError)
	c := defaultRulesConfig
	root := fs.String("root", ".", "the repository's root")
	fs.StringVar(&c.JobSelector, "job-selector", c.JobSelector, "label matchers selecting netsonde's targets (inside {})")
	fs.StringVar(&c.ClusterLabel, "cluster-label", c.ClusterLabel, "the label that tells clusters apart")
	fs.StringVar(&c.Namespace, "namespace", c.Namespace, "the agents' namespace, in the descriptions' kubectl commands")
	fs.StringVar(&c.RunbookURL, "runbook-url", c.RunbookURL, "docs/runbooks.md as the on-call opens it (without #anchor)")
	fs.StringVar(&c.OverlayLatencyRatio, "overlay-latency-ratio", c.OverlayLatencyRatio, "NetsondeOverlayLatencyHigh fires when the overlay's median RTT is above this many times the underlay's")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return errors.New("no arguments besides flags")
	}
	if c.JobSelector == "" || c.ClusterLabel == "" || c.Namespace == "" || c.RunbookURL == "" {
		return errors.New("-job-selector, -cluster-label, -namespace and -runbook-url must not be empty")
	}
	rules, err := os.ReadFile(filepath.Join(*root, rulesPath))
	if err != nil {
		return fmt.Errorf("read rules: %w", err)
	}
	groups, err := rulesGroups(rules)
	if err != nil {
		return err
	}
	if _, err := strconv.ParseFloat(c.OverlayLatencyRatio, 64); err != nil {
		return fmt.Errorf("-overlay-latency-ratio %q: not a number", c.OverlayLatencyRatio)
	}
	head := fmt.Sprintf("# netsonde's rules, rendered by `go run ./deploy/gen rules` from %s with\n# -job-selector %s -cluster-label %s -namespace %s -runbook-url %s -overlay-latency-ratio %s\n",
		rulesPath, c.JobSelector, c.ClusterLabel, c.Namespace, c.RunbookURL, c.OverlayLatencyRatio)
	if _, err := io.WriteString(out, head+configure(groups, c)); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	return nil
}
