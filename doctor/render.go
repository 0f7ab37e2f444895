package doctor

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"
	"unicode/utf8"
)

// SchemaVersion is the version of the JSON output; it changes only if a
// field is removed or changes meaning, which the schema promises never to
// do within a version.
const SchemaVersion = 1

// Schema is the JSON Schema of `netsonde doctor --output=json`.
//
//go:embed schema.json
var Schema []byte

// Width is the widest line of the text output: a terminal split in two,
// a ticket, a chat message.
const Width = 100

type jsonReport struct {
	SchemaVersion int `json:"schema_version"`
	Report
}

// WriteJSON writes the report in its stable JSON form.
func WriteJSON(w io.Writer, rep Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(jsonReport{SchemaVersion, rep}); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

const (
	ansiReset  = "\x1b[0m"
	ansiBold   = "\x1b[1m"
	ansiRed    = "\x1b[1;31m"
	ansiYellow = "\x1b[1;33m"
	ansiCyan   = "\x1b[36m"
)

// WriteText writes the report for a person: a headline, then each finding
// with its evidence, why it matters, what to run next and the runbook,
// wrapped to Width columns. colour adds ANSI colours to the severities
// (the caller decides: a terminal, and NO_COLOR unset).
func WriteText(w io.Writer, rep Report, colour bool) error {
	var b strings.Builder
	counts := map[Severity]int{}
	for _, f := range rep.Findings {
		counts[f.Severity]++
	}
	head := fmt.Sprintf("netsonde doctor: %s, %s, %s (%.1fs of %s)", plural(counts[Critical], "critical", "critical"),
		plural(counts[Warning], "warning", "warnings"), plural(counts[Info], "note", "notes"), rep.DurationSeconds, rep.Source)
	if rep.Healthy {
		head = fmt.Sprintf("netsonde doctor: healthy, %s (%.1fs of %s)", plural(counts[Info], "note", "notes"), rep.DurationSeconds, rep.Source)
	}
	for _, l := range wrap(head, "", "  ", Width) {
		b.WriteString(l + "\n")
	}
	for _, f := range rep.Findings {
		b.WriteString("\n")
		writeFinding(&b, f, "", colour)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeFinding writes one finding: its headline, then its fields labelled
// in a column, every line after indent.
func writeFinding(b *strings.Builder, f Finding, indent string, colour bool) {
	label := strings.ToUpper(f.Severity.String())
	first := wrap(label+" "+f.ID+": "+f.Summary, indent, indent+"  ", Width)
	if colour {
		first[0] = indent + paint(f.Severity, label) + strings.TrimPrefix(first[0], indent+label)
	}
	for _, l := range first {
		b.WriteString(l + "\n")
	}
	// Fields are labelled in a column of 11, their text wrapped under
	// itself, indented two more when one line of it is cut.
	field := func(name string, lines ...string) {
		for i, text := range lines {
			lead := strings.Repeat(" ", 11)
			if i == 0 {
				lead = fmt.Sprintf("  %-9s", name)
			}
			for _, l := range wrap(text, indent+lead, indent+strings.Repeat(" ", 13), Width) {
				b.WriteString(l + "\n")
			}
		}
	}
	if len(f.Evidence) > 0 {
		field("evidence", f.Evidence...)
	}
	if f.Why != "" {
		field("why", f.Why)
	}
	if f.Next != "" {
		field("next", f.Next)
	}
	// A link is never cut, or a terminal cannot open it: when it does
	// not fit beside its label, it goes on a line of its own.
	if lead := fmt.Sprintf("  %-9s", "runbook"); len(indent)+len(lead)+len(f.RunbookURL) <= Width {
		b.WriteString(indent + lead + f.RunbookURL + "\n")
	} else {
		b.WriteString(indent + "  runbook\n" + indent + "  " + f.RunbookURL + "\n")
	}
}

// ClusterSchema is the JSON Schema of `netsonde doctor --prometheus
// --output=json`; its findings are schema.json's.
//
//go:embed cluster_schema.json
var ClusterSchema []byte

type jsonClusterReport struct {
	SchemaVersion int `json:"schema_version"`
	ClusterReport
}

// WriteClusterJSON writes a cluster report in its stable JSON form.
func WriteClusterJSON(w io.Writer, rep ClusterReport) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(jsonClusterReport{SchemaVersion, rep}); err != nil {
		return fmt.Errorf("write JSON: %w", err)
	}
	return nil
}

// WriteClusterText writes a cluster report for a person: the summary line,
// what made it partial, then each node with findings, worst first, with
// the command that diagnoses it.
func WriteClusterText(w io.Writer, rep ClusterReport, colour bool) error {
	var b strings.Builder
	for _, l := range wrap(fmt.Sprintf("netsonde doctor: %s (%s at %s)", rep.Summary(), rep.Source, rep.Time.Format(time.RFC3339)), "", "  ", Width) {
		b.WriteString(l + "\n")
	}
	for _, p := range rep.Problems {
		for _, l := range wrap(p, "  ! ", "    ", Width) {
			b.WriteString(l + "\n")
		}
	}
	for _, n := range rep.Nodes {
		b.WriteString("\n")
		head := n.Node
		if n.Instance != "" {
			head += " (" + n.Instance + ")"
		}
		for _, l := range wrap(fmt.Sprintf("%s: %s; %s", head, plural(len(n.Findings), "finding", "findings"), n.Doctor), "", "  ", Width) {
			b.WriteString(l + "\n")
		}
		for _, f := range n.Findings {
			writeFinding(&b, f, "  ", colour)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func paint(s Severity, text string) string {
	switch s {
	case Critical:
		return ansiRed + text + ansiReset
	case Warning:
		return ansiYellow + text + ansiReset
	default:
		return ansiCyan + text + ansiReset
	}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// wrap breaks text into lines of at most width runes: the first line
// starts with first, the others with rest. Words longer than a line (a
// series with many labels) are cut, so no line ever exceeds width.
func wrap(text, first, rest string, width int) []string {
	var lines []string
	line := first
	empty := true
	flush := func() {
		lines = append(lines, strings.TrimRight(line, " "))
		line, empty = rest, true
	}
	for _, word := range strings.Fields(text) {
		for {
			room := width - utf8.RuneCountInString(line)
			if !empty {
				room-- // the space before the word
			}
			n := utf8.RuneCountInString(word)
			if n <= room {
				if !empty {
					line += " "
				}
				line += word
				empty = false
				break
			}
			if !empty {
				flush()
				continue
			}
			// The word alone does not fit a line: cut it.
			r := []rune(word)
			line += string(r[:room])
			word = string(r[room:])
			flush()
		}
	}
	if !empty || len(lines) == 0 {
		flush()
	}
	return lines
}
