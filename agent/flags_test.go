package agent

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/netsonde/netsonde/internal/testenv"
)

// pmtu was part of mtucheck: for one release --no-collector.mtucheck turns
// it off too, with a deprecation, unless pmtu is named itself.
func TestPMTUFollowsNoMtucheck(t *testing.T) {
	for _, tc := range []struct {
		args           []string
		mtucheck, pmtu bool
		deprecated     bool
	}{
		{nil, true, true, false},
		{[]string{"--no-collector.mtucheck"}, false, false, true},
		{[]string{"--no-collector.mtucheck", "--collector.pmtu"}, false, true, false},
		{[]string{"--collector.pmtu", "--no-collector.mtucheck"}, false, true, false},
		{[]string{"--no-collector.mtucheck", "--no-collector.pmtu"}, false, false, false},
		{[]string{"--no-collector.pmtu"}, true, false, false},
		{[]string{"--collector.mtucheck"}, true, true, false},
		// With the defaults off, pmtu is off unless named: nothing changes.
		{[]string{"--collector.disable-defaults", "--collector.mtucheck"}, true, false, false},
		{[]string{"--collector.disable-defaults", "--no-collector.mtucheck"}, false, false, false},
		{[]string{"--collector.disable-defaults", "--collector.pmtu"}, false, true, false},
	} {
		app := kingpin.New("test", "")
		f := AddFlags(app)
		if _, err := app.Parse(tc.args); err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		cfg, names, err := f.Config()
		if err != nil {
			t.Fatalf("%q: %v", tc.args, err)
		}
		if got := slices.Contains(names, "mtucheck"); got != tc.mtucheck {
			t.Errorf("%q: mtucheck on %v, want %v", tc.args, got, tc.mtucheck)
		}
		if got := slices.Contains(names, "pmtu"); got != tc.pmtu {
			t.Errorf("%q: pmtu on %v, want %v", tc.args, got, tc.pmtu)
		}
		want := 0
		if tc.deprecated {
			want = 1
		}
		if len(cfg.Deprecations) != want {
			t.Errorf("%q: deprecations %q, want %d", tc.args, cfg.Deprecations, want)
		}
		for _, d := range cfg.Deprecations {
			if !strings.Contains(d, "--no-collector.pmtu") || !strings.Contains(d, "--collector.pmtu") {
				t.Errorf("%q: deprecation %q does not say what to use instead", tc.args, d)
			}
		}
	}
}

// The old spellings of --hostnet.refresh-interval still set it for one
// release, each with a deprecation line; the shortest interval asked wins;
// a non-positive one stops the agent with a message naming the flag.
func TestHostnetIntervalAndDeprecatedSpellings(t *testing.T) {
	for _, tc := range []struct {
		args      []string
		want      time.Duration
		warnings  int
		errNaming string
	}{
		{nil, 10 * time.Second, 0, ""},
		{[]string{"--hostnet.refresh-interval=3s"}, 3 * time.Second, 0, ""},
		{[]string{"--drops.names-ttl=500ms"}, 500 * time.Millisecond, 1, ""},
		{[]string{"--mtucheck.peer-interval=200ms", "--drops.names-ttl=30s"}, 200 * time.Millisecond, 2, ""},
		{[]string{"--hostnet.refresh-interval=0s"}, 0, 0, "--hostnet.refresh-interval"},
		{[]string{"--drops.names-ttl=-1s"}, 0, 0, "--drops.names-ttl"},
	} {
		app := kingpin.New("t", "")
		f := AddFlags(app)
		if _, err := app.Parse(tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		cfg, _, err := f.Config()
		if tc.errNaming != "" {
			if err == nil || !strings.Contains(err.Error(), tc.errNaming) {
				t.Errorf("%v: error %v, want one naming %s", tc.args, err, tc.errNaming)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if cfg.HostNetInterval != tc.want || len(cfg.Deprecations) != tc.warnings {
			t.Errorf("%v: interval %v with %d deprecations %q, want %v with %d", tc.args, cfg.HostNetInterval, len(cfg.Deprecations), cfg.Deprecations, tc.want, tc.warnings)
		}
		for _, d := range cfg.Deprecations {
			if !strings.Contains(d, "deprecated") || !strings.Contains(d, "--hostnet.refresh-interval") {
				t.Errorf("deprecation line %q does not name the replacement", d)
			}
		}
	}
}

// The agent logs each deprecation once, as a warning, when it starts.
func TestRunLogsDeprecation(t *testing.T) {
	app := kingpin.New("test", "")
	f := AddFlags(app)
	if _, err := app.Parse([]string{"--no-collector.mtucheck"}); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := f.Config()
	if err != nil {
		t.Fatal(err)
	}
	cfg.Collectors = nil // the flags' effect is TestPMTUFollowsNoMtucheck's; here only the log
	systemd, webConfig := false, ""
	cfg.Web = &web.FlagConfig{WebListenAddresses: &[]string{"127.0.0.1:0"}, WebSystemdSocket: &systemd, WebConfigFile: &webConfig}
	cfg.TelemetryPath = "/metrics"
	var buf testenv.SyncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := Run(ctx, cfg, logger); err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, l := range strings.Split(buf.String(), "\n") {
		if strings.Contains(l, "deprecated") {
			lines = append(lines, l)
		}
	}
	if len(lines) != 1 || !strings.Contains(lines[0], "level=WARN") || !strings.Contains(lines[0], "--no-collector.mtucheck") {
		t.Errorf("want one warning about --no-collector.mtucheck, got %q", lines)
	}
}
