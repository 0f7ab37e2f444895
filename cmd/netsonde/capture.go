package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/common/promslog"

	"github.com/netsonde/netsonde/agent"
	"github.com/netsonde/netsonde/internal/capture"
)

// runCapture is `netsonde capture`: the dropped packets themselves, from a
// running agent's capture endpoint (--from) or from the drops collector
// run here. Exit status 0: the capture ran; 2: it could not (bad flags or
// filter, no drops collector, no permission); 1: it broke off.
func runCapture(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("netsonde capture", "The packets the kernel drops, filtered by drop reason, pod and interface: "+
		"one line each, JSON lines, or a pcap file. Reads a running agent with --from, else runs the drop counter here (root).")
	app.HelpFlag.Short('h')
	app.UsageWriter(stdout)
	from := app.Flag("from", "A running agent's URL (its /metrics or its root; through kubectl port-forward), "+
		"e.g. http://localhost:10333. Same TLS and authentication as /metrics (user:password@ in the URL).").PlaceHolder("URL").String()
	var req capture.Request
	app.Flag("reason", "Drop reason (NETFILTER_DROP, NO_SOCKET, ...); repeat for several.").StringsVar(&req.Reasons)
	app.Flag("pod", "Only the pod NAMESPACE/NAME.").StringVar(&req.Pod)
	app.Flag("namespace", "Only pods of this Kubernetes namespace.").StringVar(&req.Namespace)
	app.Flag("interface", "Only this interface (by name).").StringVar(&req.Interface)
	app.Flag("protocol", "Only this protocol: tcp, udp, icmp, icmpv6, sctp, ipv4, ipv6, arp.").StringVar(&req.Protocol)
	host := app.Flag("host", "Only packets from or to this address.").String()
	port := app.Flag("port", "Only packets from or to this TCP/UDP/SCTP port.").Uint16()
	app.Flag("count", "Stop after this many packets (0: no limit).").IntVar(&req.Count)
	app.Flag("duration", "Stop after this long (0: no limit; Ctrl-C stops too).").DurationVar(&req.Duration)
	app.Flag("snaplen", fmt.Sprintf("Bytes of each packet kept, from its IP header (default %d, the headers; more needs the agent's --capture.allow-payload).", capture.DefaultSnaplen)).IntVar(&req.Snaplen)
	output := app.Flag("output", "Output: text (one line per packet) or json (JSON lines).").Default("text").Enum("text", "json")
	write := app.Flag("write", "Also write the packets to this pcap file (LINKTYPE_RAW; - for stdout, then the lines go to stderr).").PlaceHolder("FILE").String()
	maxRate := app.Flag("capture.max-rate", "Without --from: packets a second copied out of the kernel at most.").Default("1000").Int()
	allowPayload := app.Flag("capture.allow-payload", "Without --from: allow --snaplen above the headers.").Default("true").Bool()
	shared := agent.AddFlags(app)
	logConfig := &promslog.Config{Level: promslog.NewLevel(), Format: promslog.NewFormat()}
	app.Flag("log.level", "Log level to stderr: debug, info, warn, error.").Default("error").SetValue(logConfig.Level)

	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "netsonde capture: "+format+"\n", a...)
		return exitCannot
	}
	if _, err := app.Parse(args); err != nil {
		return fail("%v (see --help)", err)
	}
	if *host != "" {
		a, err := netip.ParseAddr(*host)
		if err != nil {
			return fail("--host=%q: not an IP address", *host)
		}
		req.Host = a
	}
	req.Port = *port
	if err := req.Check(); err != nil {
		return fail("%v", err)
	}
	if req.Count < 0 || req.Duration < 0 || req.Snaplen < 0 {
		return fail("--count, --duration and --snaplen must not be negative")
	}
	logConfig.Writer = stderr
	logger := promslog.New(logConfig)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	base := *from
	if base == "" {
		if missing := missingCapabilities(); len(missing) > 0 {
			return fail("missing capability %s to run the drop counter here; run as root, or read a running agent with --from http://localhost:10333",
				strings.Join(missing, ", "))
		}
		cfg, _, err := shared.Config()
		if err != nil {
			return fail("%v", err)
		}
		// Only the drop counter: capture needs nothing else.
		kept := cfg.Collectors[:0]
		for _, e := range cfg.Collectors {
			if e.Name == "drops" {
				kept = append(kept, e)
			}
		}
		cfg.Collectors = kept
		if len(cfg.Collectors) == 0 {
			return fail("the drops collector is disabled (--no-collector.drops): nothing to capture from")
		}
		cfg.CaptureMaxRate, cfg.CaptureAllowPayload = *maxRate, *allowPayload
		u, done, err := startAgent(ctx, cfg, &http.Client{}, logger)
		if err != nil {
			return fail("%v", err)
		}
		defer done()
		base = u
	}
	endpoint, err := captureURL(base, req)
	if err != nil {
		return fail("--from: %v", err)
	}

	lines, pcapOut := stdout, io.Writer(nil)
	switch *write {
	case "":
	case "-":
		lines, pcapOut = stderr, stdout
	default:
		f, err := os.Create(*write)
		if err != nil {
			return fail("--write: %v", err)
		}
		defer f.Close()
		pcapOut = f
	}
	var pw *capture.PcapWriter
	if pcapOut != nil {
		snap := req.Snaplen
		if snap == 0 {
			snap = capture.DefaultSnaplen
		}
		if pw, err = capture.NewPcapWriter(pcapOut, snap); err != nil {
			return fail("--write: %v", err)
		}
	}

	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return fail("--from: %v", err)
	}
	resp, err := http.DefaultClient.Do(hreq)
	if err != nil {
		return fail("%v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fail("the agent refused the capture (%s): %s", resp.Status, strings.TrimSpace(string(msg)))
	}
	out := bufio.NewWriter(lines)
	defer out.Flush()
	enc := json.NewEncoder(out)
	dec := json.NewDecoder(resp.Body)
	for {
		var l capture.Line
		if err := dec.Decode(&l); err != nil {
			if ctx.Err() != nil {
				return 0 // Ctrl-C: the agent ends the capture when we go
			}
			if errors.Is(err, io.EOF) {
				fmt.Fprintln(stderr, "netsonde capture: the agent ended the stream without a summary")
			} else {
				fmt.Fprintf(stderr, "netsonde capture: reading the stream: %v\n", err)
			}
			return 1
		}
		switch {
		case l.Packet != nil:
			if *output == "json" {
				err = enc.Encode(l.Packet)
			} else {
				_, err = fmt.Fprintln(out, l.Packet.Text())
			}
			if err == nil {
				err = out.Flush()
			}
			if err == nil && pw != nil {
				err = pw.Write(l.Packet)
			}
			if err != nil {
				fmt.Fprintf(stderr, "netsonde capture: %v\n", err)
				return 1
			}
		case l.Error != "":
			fmt.Fprintf(stderr, "netsonde capture: the agent: %s\n", l.Error)
			return 1
		case l.Summary != nil:
			s := l.Summary
			fmt.Fprintf(stderr, "%d packets captured (ended by %s); %d refused by the rate limit (--capture.max-rate), %d lost for want of buffer, %d not matching --pod/--namespace/--host/--port/--protocol\n",
				s.Packets, s.Ended, s.RateLimited, s.NoSpace, s.Unmatched)
			return 0
		}
	}
}

// captureURL is the agent's capture endpoint with the request's query:
// --from may name the agent's root or its /metrics.
func captureURL(base string, req capture.Request) (string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%q: want an http:// or https:// URL", base)
	}
	p := strings.TrimSuffix(u.Path, "/")
	p = strings.TrimSuffix(p, "/metrics")
	u.Path = p + agent.CapturePath
	u.RawQuery = req.Query().Encode()
	return u.String(), nil
}
