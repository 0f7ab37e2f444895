package kube_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"k8s.io/klog/v2"

	"github.com/netsonde/netsonde/agent/kube"
)

// client-go's lines (klog, structured or printf-style) come out of the
// agent's JSON logger, one JSON object per line; a reflector error
// repeated on every retry is written once, and the next one after the
// window says how many were suppressed.
func TestKlogThroughSlogRateLimited(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, nil))
	const every = 200 * time.Millisecond
	kube.RouteKlog(logger, every)
	defer klog.ClearLogger()

	err := errors.New(`Get "https://127.0.0.1:6443/api/v1/pods": dial tcp 127.0.0.1:6443: connect: connection refused`)
	for range 100 {
		klog.ErrorS(err, "Failed to watch", "reflector", "kube.go:120", "type", "*v1.Pod")
	}
	klog.Infof("printf-style %d", 42)
	klog.Background().WithValues("reflector", "x").Error(err, "Failed to watch")
	time.Sleep(every + 50*time.Millisecond)
	klog.ErrorS(err, "Failed to watch", "reflector", "kube.go:120", "type", "*v1.Pod")
	klog.Flush()

	var lines []map[string]any
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			t.Fatalf("not a JSON line: %q", l)
		}
		if m["component"] != "client-go" {
			t.Errorf("line without component=client-go: %q", l)
		}
		lines = append(lines, m)
	}
	if len(lines) != 4 {
		t.Fatalf("%d lines, want 4 (first error, printf, another reflector's, the one after the window):\n%s", len(lines), buf.String())
	}
	if lines[0]["msg"] != "Failed to watch" || lines[0]["level"] != "ERROR" || lines[0]["suppressed"] != nil {
		t.Errorf("first line %v", lines[0])
	}
	if lines[1]["msg"] != "printf-style 42" {
		t.Errorf("printf line %v", lines[1])
	}
	if lines[3]["suppressed"] != float64(99) {
		t.Errorf("line after the window: %v, want suppressed=99", lines[3])
	}
}
