package main_test

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/netsonde/netsonde/internal/testenv"
)

// The binary's answer to bad input, and --version: no root needed (the
// privileged tests of the agent and doctor are main_root_test.go and
// doctor_root_test.go).

// runAgent runs the binary to completion (it is expected to exit at once).
func runAgent(t *testing.T, args ...string) (code int, stderr string) {
	t.Helper()
	cmd := exec.Command(testenv.AgentBinary(t), args...)
	var errb bytes.Buffer
	cmd.Stderr = &errb
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("netsonde %v did not exit", args)
	}
	return cmd.ProcessState.ExitCode(), errb.String()
}

// Bad input stops the agent with a non-zero status and one line that
// names the problem: no stack trace, no usage dump, no fallback.
func TestBadInputStopsWithOneLine(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	dir := t.TempDir()
	badYAML := filepath.Join(dir, "web.yml")
	os.WriteFile(badYAML, []byte("tls_server_config:\n  cert_file: [not, a, string\n"), 0o600)
	noKey := filepath.Join(dir, "nokey.yml")
	os.WriteFile(noKey, []byte("tls_server_config:\n  cert_file: /nonexistent.crt\n"), 0o600)

	for _, tc := range []struct {
		name  string
		args  []string
		code  int
		names string // the line must contain this
	}{
		{"unknown flag", []string{"--web.listen-adress=:1"}, 2, "--web.listen-adress"}, //nolint:misspell // a user's typo is the test
		{"bad value", []string{"--web.max-requests=lots"}, 2, "lots"},
		{"unknown log level", []string{"--log.level=loud"}, 2, "loud"},
		{"malformed web config", []string{"--web.listen-address=127.0.0.1:0", "--web.config.file=" + badYAML}, 1, badYAML},
		{"web config missing key", []string{"--web.listen-address=127.0.0.1:0", "--web.config.file=" + noKey}, 1, noKey},
		{"missing web config", []string{"--web.listen-address=127.0.0.1:0", "--web.config.file=/nonexistent/web.yml"}, 1, "/nonexistent/web.yml"},
		{"address in use", []string{"--web.listen-address=" + busy.Addr().String()}, 1, busy.Addr().String() + ": bind: address already in use"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stderr := runAgent(t, append(tc.args, "--log.level=error")...)
			if code != tc.code {
				t.Errorf("exit status %d, want %d; stderr:\n%s", code, tc.code, stderr)
			}
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if len(lines) != 1 || !strings.HasPrefix(lines[0], "netsonde: ") || !strings.Contains(lines[0], tc.names) {
				t.Errorf("stderr should be one line naming %q, got:\n%s", tc.names, stderr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(testenv.AgentBinary(t), "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "netsonde, version") {
		t.Fatalf("--version: %v\n%s", err, out)
	}
}

// Bad input: exit 2 with a one-line reason. Runs without root.
func TestDoctorBadInput(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/html", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		io.WriteString(w, "<!DOCTYPE html><html><body>Grafana</body></html>")
	})
	mux.HandleFunc("/node", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "# TYPE node_load1 gauge\nnode_load1 0.5\n")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String() + "/metrics"
	l.Close()

	for _, tc := range []struct {
		name string
		args []string
		says string
	}{
		{"duration zero", []string{"--duration=0s"}, "--duration must be above 0"},
		{"duration negative", []string{"--duration=-5s"}, "--duration must be above 0"},
		{"unknown output", []string{"--output=yaml"}, "yaml"},
		{"unreachable", []string{"--from=" + dead, "--duration=100ms"}, "does not answer"},
		{"html", []string{"--from=" + srv.URL + "/html", "--duration=100ms"}, "answers HTML"},
		{"another exporter", []string{"--from=" + srv.URL + "/node", "--duration=100ms"}, "not netsonde metrics"},
		{"not a URL", []string{"--from=localhost:10333"}, "not an http(s) URL"},
		// Without root and without --from: which capability, and --from.
		{"no capabilities", []string{"--duration=1s"}, "missing capability CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := startDoctor(t, nil, true, tc.args...)
			code, stdout := d.wait(t)
			if code != 2 {
				t.Errorf("exit status %d, want 2; stdout:\n%s", code, stdout)
			}
			oneLine(t, d.log(), tc.says)
			if tc.name == "no capabilities" && !strings.Contains(d.log(), "--from http://") {
				t.Errorf("no suggestion of --from: %s", d.log())
			}
		})
	}
}
