package main

import (
	"fmt"
	"io"
	"strings"

	"github.com/alecthomas/kingpin/v2"

	"github.com/netsonde/netsonde/bpf/loader"
)

func runCleanup(args []string, stdout, stderr io.Writer) int {
	app := kingpin.New("netsonde cleanup", "Removes what netsonde agents that did not stop (kill -9, an OOM kill) left on this node's interfaces "+
		"when no next agent comes to remove it, as after an uninstall: their legacy tc filters (--fragments.attach=tc, DNS's tc attach) "+
		"and the clsact qdiscs those filters were alone on. A running agent's filters are kept; TCX links go with their process and "+
		"netsonde pins nothing. Run it as root in the node's network and PID namespaces (on the node, or in a pod with hostNetwork and hostPID). "+
		"One line per filter or qdisc, then a summary; a second run finds nothing. Exit status 0: done; 1: something could not be removed; 2: bad flags.")
	app.HelpFlag.Short('h')
	app.UsageWriter(stdout)
	if _, err := app.Parse(args); err != nil {
		fmt.Fprintf(stderr, "netsonde cleanup: %v (see --help)\n", err)
		return 2
	}
	done, err := loader.Cleanup()
	var filters, qdiscs, kept int
	ifaces := map[string]bool{}
	for _, c := range done {
		fmt.Fprintln(stdout, c)
		switch {
		case c.Kept:
			kept++
			continue
		case c.Qdisc:
			qdiscs++
		default:
			filters++
		}
		ifaces[c.Interface] = true
	}
	fmt.Fprintf(stdout, "removed %d filters and %d clsact qdiscs on %d interfaces; kept %d filters of running agents\n", filters, qdiscs, len(ifaces), kept)
	if err != nil {
		// One line per interface that failed.
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "netsonde cleanup: %s\n", line)
		}
		return 1
	}
	return 0
}
