package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/config"

	"github.com/netsonde/netsonde/doctor"
)

// clusterFlags are doctor's --prometheus mode: the same checks over every
// node a Prometheus (or Thanos, Mimir, VictoriaMetrics) scrapes.
type clusterFlags struct {
	url        string
	selectors  []string
	nodeLabel  string
	job        string
	lookback   time.Duration
	timeout    time.Duration
	httpConfig string
	partialOK  bool
}

func (c *clusterFlags) add(app *kingpin.Application) {
	app.Flag("prometheus", "Judge every node of a cluster through this Prometheus-compatible query endpoint "+
		"(Prometheus, Thanos, Mimir, VictoriaMetrics) from netsonde's raw series, e.g. http://prometheus:9090. "+
		"Lists the nodes with findings, worst first.").PlaceHolder("URL").StringVar(&c.url)
	app.Flag("selector", "With --prometheus: label matchers added to every query, e.g. 'cluster=\"prod\"' (repeatable).").
		PlaceHolder("MATCHERS").StringsVar(&c.selectors)
	app.Flag("node-label", "With --prometheus: the label that names the node on netsonde's series.").Default("node").StringVar(&c.nodeLabel)
	app.Flag("job", "With --prometheus: the job label of netsonde's targets in up{} (empty: any job the selector matches).").
		Default("netsonde").StringVar(&c.job)
	app.Flag("lookback", "With --prometheus: a node scraped within this time and not now is unreachable, not gone.").
		Default("1h").DurationVar(&c.lookback)
	app.Flag("timeout", "With --prometheus: timeout of each query.").Default("30s").DurationVar(&c.timeout)
	app.Flag("http.config.file", "With --prometheus: HTTP client configuration for the endpoint (bearer token, basic auth, "+
		"TLS CA), as promtool's and amtool's --http.config.file.").PlaceHolder("FILE").StringVar(&c.httpConfig)
	app.Flag("partial-ok", "With --prometheus: a partial answer (a query failed or timed out) exits as the findings say, not with 2.").
		BoolVar(&c.partialOK)
}

// run evaluates the cluster and prints the report. Exit status as doctor's:
// 0 healthy, 1 findings (an unreachable node is one), 2 could not run, or
// the answer was partial without --partial-ok.
func (c *clusterFlags) run(output string, stdout, stderr io.Writer, logger *slog.Logger) int {
	fail := func(format string, args ...any) int {
		fmt.Fprintf(stderr, "netsonde doctor: "+format+"\n", args...)
		return exitCannot
	}
	u, err := url.Parse(c.url)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fail("--prometheus: %q is not an http(s) URL", c.url)
	}
	if c.timeout <= 0 || c.lookback <= 0 {
		return fail("--timeout and --lookback must be above 0")
	}
	rt := api.DefaultRoundTripper
	if c.httpConfig != "" {
		cfg, _, err := config.LoadHTTPConfigFile(c.httpConfig)
		if err != nil {
			return fail("--http.config.file: %v", err)
		}
		if rt, err = config.NewRoundTripperFromConfig(*cfg, "netsonde-doctor"); err != nil {
			return fail("--http.config.file: %v", err)
		}
	}
	client, err := api.NewClient(api.Config{Address: c.url, Client: &http.Client{Transport: rt}})
	if err != nil {
		return fail("--prometheus: %v", err)
	}
	rules, err := doctor.LoadRules()
	if err != nil {
		return fail("%v", err)
	}
	var matchers []string
	for _, s := range c.selectors {
		if s = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(strings.TrimSpace(s), "{"), "}")); s != "" {
			matchers = append(matchers, s)
		}
	}
	// The report names the endpoint, never credentials put in its URL.
	source := u.Redacted()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	rep, err := doctor.Cluster(ctx, v1.NewAPI(client), rules, doctor.ClusterOptions{
		Source: source, NodeLabel: c.nodeLabel, Matchers: matchers, Job: c.job,
		Lookback: c.lookback, Timeout: c.timeout, Logger: logger,
	})
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return fail("interrupted")
		}
		return fail("%v", err)
	}
	if output == "json" {
		err = doctor.WriteClusterJSON(stdout, rep)
	} else {
		err = doctor.WriteClusterText(stdout, rep, useColour(stdout))
	}
	if err != nil {
		return fail("%v", err)
	}
	switch {
	case rep.Partial && !c.partialOK:
		fmt.Fprintf(stderr, "netsonde doctor: the answer is partial (%s); --partial-ok to accept it\n", rep.Problems[0])
		return exitCannot
	case rep.Healthy:
		return exitHealthy
	}
	return exitFindings
}
