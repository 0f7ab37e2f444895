package main

import (
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/netsonde/netsonde/agent"
)

// The chart's collector switches follow the agent's collector table, so a
// new collector needs no edit in the chart: its `collectors.NAME` key is
// in values.schema.json (which rejects any other) and in the list of
// values.yaml's comment.
const (
	helmValuesPath = "deploy/helm/netsonde/values.yaml"
	helmSchemaPath = "deploy/helm/netsonde/values.schema.json"
)

func collectorNames() []string {
	var names []string
	for _, s := range agent.Collectors() {
		names = append(names, s.Name)
	}
	sort.Strings(names)
	return names
}

// schemaCollectors matches the properties of the schema's "collectors"
// object: one boolean per collector.
var schemaCollectors = regexp.MustCompile(`(?s)("collectors": \{\n.*?"properties": \{\n)((?:\s*"[a-z0-9]+": \{"type": "boolean"\},?\n)+)`)

func helmSchema(schema []byte, names []string) ([]byte, error) {
	m := schemaCollectors.FindSubmatchIndex(schema)
	if m == nil {
		return nil, fmt.Errorf("%s: no collectors.properties block of booleans", helmSchemaPath)
	}
	indent := strings.TrimRight(string(schema[m[4]:m[5]]), "\n")
	indent = indent[:len(indent)-len(strings.TrimLeft(indent, " "))]
	var b strings.Builder
	for i, n := range names {
		comma := ","
		if i == len(names)-1 {
			comma = ""
		}
		fmt.Fprintf(&b, "%s%q: {\"type\": \"boolean\"}%s\n", indent, n, comma)
	}
	out := append([]byte{}, schema[:m[4]]...)
	out = append(out, b.String()...)
	return append(out, schema[m[5]:]...), nil
}

// valuesCollectors matches the comment that lists the collectors, between
// its first line and `collectors: {}`.
var valuesCollectors = regexp.MustCompile(`(?m)(^# --no-collector\.NAME\)\..*\n)((?:^#.*\n)*?)(^collectors: \{\}\n)`) //nolint:gocritic // (?m): each ^ starts a line

func helmValues(values []byte, names []string) ([]byte, error) {
	m := valuesCollectors.FindSubmatchIndex(values)
	if m == nil {
		return nil, fmt.Errorf("%s: no collector list before `collectors: {}`", helmValuesPath)
	}
	var b strings.Builder
	line := "#"
	for i, n := range names {
		word := " " + n
		if i < len(names)-1 {
			word += ","
		} else {
			word += "."
		}
		if len(line)+len(word) > 76 {
			b.WriteString(line + "\n")
			line = "#"
		}
		line += word
	}
	b.WriteString(line + "\n")
	out := append([]byte{}, values[:m[4]]...)
	out = append(out, b.String()...)
	return append(out, values[m[5]:]...), nil
}
