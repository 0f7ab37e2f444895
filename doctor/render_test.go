package doctor

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(Schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func fixtureReports(t *testing.T) map[string]Report {
	t.Helper()
	entries, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	r := rules(t)
	out := map[string]Report{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		rep, err := Analyse(loadFixture(t, e.Name(), 8), r, "http://127.0.0.1:10333/metrics")
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = rep
	}
	return out
}

// Every fixture's report, in JSON, validates against schema.json: a field
// added to Finding without the schema (and docs/doctor.md) fails here.
func TestJSONValidatesAgainstSchema(t *testing.T) {
	s := compileSchema(t)
	for name, rep := range fixtureReports(t) {
		var buf bytes.Buffer
		if err := WriteJSON(&buf, rep); err != nil {
			t.Fatal(err)
		}
		doc, err := jsonschema.UnmarshalJSON(&buf)
		if err != nil {
			t.Fatalf("%s: output is not JSON: %v", name, err)
		}
		if err := s.Validate(doc); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	// And the schema is strict enough to catch a broken report.
	var bad map[string]any
	json.Unmarshal([]byte(`{"schema_version":1,"source":"x","duration_seconds":1,"healthy":true,"findings":[{"id":"no-such-check"}]}`), &bad)
	if err := s.Validate(bad); err == nil {
		t.Error("schema accepts a finding with an unknown id and no fields")
	}
}

func TestTextFitsAndIsPlainOffATerminal(t *testing.T) {
	for name, rep := range fixtureReports(t) {
		var buf bytes.Buffer
		if err := WriteText(&buf, rep, false); err != nil {
			t.Fatal(err)
		}
		out := buf.String()
		if strings.Contains(out, "\x1b[") {
			t.Errorf("%s: colour without a terminal", name)
		}
		for _, l := range strings.Split(out, "\n") {
			if n := utf8.RuneCountInString(l); n > Width {
				t.Errorf("%s: line of %d columns:\n%s", name, n, l)
			}
		}
		for _, f := range rep.Findings {
			if !strings.Contains(out, f.RunbookURL) {
				t.Errorf("%s: runbook %s not shown", name, f.RunbookURL)
			}
		}
	}
}

func TestColourOnlyOnSeverity(t *testing.T) {
	rep := fixtureReports(t)["mtu-mismatch"]
	var buf bytes.Buffer
	WriteText(&buf, rep, true)
	out := buf.String()
	if !strings.Contains(out, ansiYellow+"WARNING"+ansiReset+" mtu-mismatch: vx0 (vxlan)") {
		t.Errorf("warning not painted yellow:\n%q", out)
	}
}

func TestWrap(t *testing.T) {
	long := strings.Repeat("x", 250)
	for _, l := range wrap("short words then "+long+" and more", "  head ", "    ", 40) {
		if utf8.RuneCountInString(l) > 40 {
			t.Errorf("line over 40: %q", l)
		}
	}
	if got := wrap("", "  a", "", 40); len(got) != 1 || got[0] != "  a" {
		t.Errorf("empty text: %q", got)
	}
}
