package agent_test

import (
	"strings"
	"testing"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/netsonde/netsonde/agent"
)

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
		f := agent.AddFlags(app)
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
