package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"
	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/agent"
	"github.com/netsonde/netsonde/doctor"
)

// Exit statuses of doctor: scripts and humans branch on them.
const (
	exitHealthy  = 0 // nothing at warning or above
	exitFindings = 1 // at least one finding at warning or above
	exitCannot   = 2 // doctor could not run: bad flags, no permission, no metrics
)

func runDoctor(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("netsonde doctor", "What is wrong with this node's network: runs the collectors for --duration "+
		"(or reads a running agent with --from) and prints findings, most severe first, with evidence and the runbook. "+
		"Exit status 0: healthy; 1: findings at warning or above; 2: doctor could not run.")
	app.HelpFlag.Short('h')
	app.UsageWriter(stdout)
	from := app.Flag("from", "Read a running agent's metrics URL instead of starting the collectors here (no root needed), "+
		"e.g. http://localhost:10333/metrics.").PlaceHolder("URL").String()
	duration := app.Flag("duration", "Time between the two scrapes that rates and counts are taken over.").Default("10s").Duration()
	output := app.Flag("output", "Output format: text or json (schema: docs/doctor.md).").Default("text").Enum("text", "json")
	scrapeTimeout := app.Flag("scrape-timeout", "Timeout of each scrape.").Default("10s").Duration()
	var cl clusterFlags
	cl.add(app)
	shared := agent.AddFlags(app)
	// Quiet by default: what doctor has to say is its findings (a down
	// collector is one), not the agent's log. --log.level=info shows when
	// the observed window opens.
	logConfig := &promslog.Config{Level: promslog.NewLevel(), Format: promslog.NewFormat()}
	app.Flag("log.level", "Log level to stderr: debug, info, warn, error.").Default("error").SetValue(logConfig.Level)
	app.Flag("log.format", "Log format: logfmt or json.").Default("logfmt").SetValue(logConfig.Format)

	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(stderr, "netsonde doctor: %v (see --help)\n", err)
		return exitCannot
	}
	if *duration <= 0 {
		fmt.Fprintf(stderr, "netsonde doctor: --duration must be above 0, got %v (see --help)\n", *duration)
		return exitCannot
	}
	logConfig.Writer = stderr
	logger := promslog.New(logConfig)
	if cl.url != "" {
		if *from != "" {
			fmt.Fprintln(stderr, "netsonde doctor: --from and --prometheus exclude each other: one node's agent, or a cluster's Prometheus (see --help)")
			return exitCannot
		}
		return cl.run(*output, stdout, stderr, logger)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	client := &http.Client{Timeout: *scrapeTimeout}

	source := *from
	var scrape doctor.Scraper
	if *from != "" {
		s, err := doctor.HTTPScraper(client, *from)
		if err != nil {
			fmt.Fprintf(stderr, "netsonde doctor: --from: %v\n", err)
			return exitCannot
		}
		scrape = s
	} else {
		if missing := missingCapabilities(); len(missing) > 0 {
			fmt.Fprintf(stderr, "netsonde doctor: missing capability %s to run the collectors here; run as root, "+
				"or read a running agent with --from http://localhost:10333/metrics\n", strings.Join(missing, ", "))
			return exitCannot
		}
		cfg, names, err := shared.Config()
		if err != nil {
			fmt.Fprintf(stderr, "netsonde doctor: %v\n", err)
			return exitCannot
		}
		url, done, err := startAgent(ctx, cfg, client, logger)
		if err != nil {
			fmt.Fprintf(stderr, "netsonde doctor: %v\n", err)
			return exitCannot
		}
		// The agent closes its collectors on the way out: no program,
		// filter or link of this run is left behind.
		defer done()
		logger.Info("collectors running in-process", "collectors", names)
		source = "in-process"
		scrape, _ = doctor.HTTPScraper(client, url)
	}

	obs, err := doctor.Observe(ctx, scrape, *duration, logger)
	if err != nil {
		fmt.Fprintf(stderr, "netsonde doctor: %v\n", err)
		return exitCannot
	}
	rules, err := doctor.LoadRules()
	if err != nil {
		fmt.Fprintf(stderr, "netsonde doctor: %v\n", err)
		return exitCannot
	}
	rep, err := doctor.Analyse(obs, rules, source)
	if err != nil {
		fmt.Fprintf(stderr, "netsonde doctor: %v\n", err)
		return exitCannot
	}
	if *output == "json" {
		err = doctor.WriteJSON(stdout, rep)
	} else {
		err = doctor.WriteText(stdout, rep, useColour(stdout))
	}
	if err != nil {
		fmt.Fprintf(stderr, "netsonde doctor: %v\n", err)
		return exitCannot
	}
	if rep.Healthy {
		return exitHealthy
	}
	return exitFindings
}

// startAgent runs the agent in this process on a loopback port and waits
// until its collectors have started, so that doctor's scrapes are the
// agent's own /metrics, byte for byte what --from reads. It returns the
// metrics URL and a function that stops the agent and waits for it.
func startAgent(ctx context.Context, cfg agent.Config, client *http.Client, logger *slog.Logger) (string, func(), error) {
	// agent.Run listens itself; a port free a moment ago is taken again
	// at once, and a race with another process is retried.
	for attempt := 0; ; attempt++ {
		addr, err := freeLoopbackPort()
		if err != nil {
			return "", nil, err
		}
		systemd, webConfig := false, ""
		cfg.Web = &web.FlagConfig{WebListenAddresses: &[]string{addr}, WebSystemdSocket: &systemd, WebConfigFile: &webConfig}
		cfg.TelemetryPath = "/metrics"
		actx, cancel := context.WithCancel(ctx)
		exited := make(chan error, 1)
		go func() { exited <- agent.Run(actx, cfg, logger) }()
		done := func() {
			cancel()
			// The agent ends because we cancelled it; an error past
			// that is only worth a debug line.
			if err := <-exited; err != nil {
				logger.Debug("in-process agent stopped", "err", err)
			}
		}
		err = waitReady(ctx, client, "http://"+addr, exited)
		if err == nil {
			return "http://" + addr + "/metrics", done, nil
		}
		cancel()
		if errors.Is(err, syscall.EADDRINUSE) && attempt < 3 {
			continue
		}
		return "", nil, err
	}
}

func freeLoopbackPort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a loopback port for the in-process agent: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitReady polls /readyz, which answers 200 once every collector has
// started or failed (failing is a finding, not a reason to wait).
func waitReady(ctx context.Context, client *http.Client, base string, exited <-chan error) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case err := <-exited:
			if err == nil {
				err = errors.New("stopped")
			}
			return fmt.Errorf("in-process agent: %w", err)
		case <-ctx.Done():
			return fmt.Errorf("interrupted: %w", ctx.Err())
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return errors.New("in-process agent: collectors not started after 60s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Capabilities the collectors need to load and attach eBPF programs and
// read conntrack and netlink (deploy/kubernetes/daemonset.yaml says why
// each). Before Linux 5.8 BPF and PERFMON did not exist and CAP_SYS_ADMIN
// covered both, so SYS_ADMIN stands in for them.
const (
	capNetAdmin = 12
	capSysAdmin = 21
	capPerfmon  = 38
	capBPF      = 39
)

// missingCapabilities lists what this process lacks to run the collectors
// (nil when it has it all, or when its capabilities cannot be read: then
// the collectors themselves report what failed).
func missingCapabilities() []string {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil
	}
	eff, ok := capEff(string(data))
	if !ok {
		return nil
	}
	return missingFrom(eff)
}

func capEff(status string) (uint64, bool) {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return n, err == nil
		}
	}
	return 0, false
}

func missingFrom(eff uint64) []string {
	has := func(c uint) bool { return eff&(1<<c) != 0 }
	var missing []string
	if !has(capBPF) && !has(capSysAdmin) {
		missing = append(missing, "CAP_BPF")
	}
	if !has(capPerfmon) && !has(capSysAdmin) {
		missing = append(missing, "CAP_PERFMON")
	}
	if !has(capNetAdmin) {
		missing = append(missing, "CAP_NET_ADMIN")
	}
	return missing
}

// useColour: only on a terminal, and never when NO_COLOR is set to
// anything (no-color.org).
func useColour(w io.Writer) bool {
	if os.Getenv("NO_COLOR") != "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
