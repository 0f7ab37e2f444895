package loader

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// filterPrefix starts the name of every filter netsonde adds; the kind of
// program ("fragments", "dns") and the owner's id follow:
// netsonde:fragments:4242-98765.
const filterPrefix = "netsonde:"

// owner identifies the process that adds legacy tc filters. Filters outlive
// the process that added them (a kill -9 leaves them in the kernel,
// counting into maps nobody reads), so each carries its owner in its name:
// the process's pid and start time (/proc/PID/stat field 22, clock ticks
// after boot). The owner is alive while /proc/PID/stat shows that start
// time for a process that is not a zombie. A pid is reused only by a
// process started later, so no other process can pass for a dead owner, as
// any process could by binding the abstract socket whose name was in the
// filter before (0.1.0), keeping a dead agent's filters on the node.
//
// Agents judge each other through their own /proc, so they must share a
// PID namespace (the bundles' hostPID): to an agent in another one, a live
// neighbour looks dead.
type owner struct {
	id string
	// handle tells apart the filters of two owners on one interface (a
	// rolling update's two agents, or DNS's and fragments' in one): they
	// share tcPriority.
	handle uint32
}

func newOwner() (owner, error) {
	start, _, err := procStart(os.Getpid())
	if err != nil {
		return owner{}, fmt.Errorf("own start time: %w", err)
	}
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return owner{}, fmt.Errorf("filter handle: %w", err)
	}
	// Handles 1..0xfffe; two agents colliding on one is a 1/65534 chance,
	// and the second agent's add then fails visibly (EEXIST), it does not
	// replace the first's filter.
	h := binary.BigEndian.Uint32(b)%0xfffe + 1
	return owner{id: ownerID(os.Getpid(), start), handle: h}, nil
}

func ownerID(pid int, start uint64) string { return fmt.Sprintf("%d-%d", pid, start) }

// parseOwnerID reads an id made by ownerID; 0.1.0's random hex ids and
// anything else are not ids.
func parseOwnerID(id string) (pid int, start uint64, ok bool) {
	p, s, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	pid, err := strconv.Atoi(p)
	if err != nil || pid <= 0 {
		return 0, 0, false
	}
	start, err = strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return pid, start, true
}

// ownerOf returns the owner id in a filter name of ours, or "".
func ownerOf(name string) string {
	rest, ok := strings.CutPrefix(name, filterPrefix)
	if !ok {
		return ""
	}
	i := strings.LastIndexByte(rest, ':')
	if i < 0 {
		return ""
	}
	return rest[i+1:]
}

// alive says whether the process that id names still runs. An id that is
// none (a 0.1.0 filter's) names nobody: no process can be proven to own
// it. When /proc cannot be read at all, every owner is taken as alive:
// removing a live agent's filters would be worse than keeping stale ones.
func alive(id string) bool {
	pid, start, ok := parseOwnerID(id)
	if !ok {
		return false
	}
	got, zombie, err := procStart(pid)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return false
	case err != nil:
		return true
	}
	return got == start && !zombie
}

// procStart reads a process's start time and whether it is a zombie (dead,
// not yet reaped: its file descriptors and links are gone already).
func procStart(pid int) (start uint64, zombie bool, err error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false, err
	}
	return parseStat(b)
}

// parseStat reads the state (field 3) and start time (field 22) of a
// /proc/PID/stat line. The command name (field 2) is in parentheses and may
// hold spaces and parentheses itself: fields are counted after its last ')'.
func parseStat(b []byte) (start uint64, zombie bool, err error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, false, errors.New("stat: no command name")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, false, fmt.Errorf("stat: %d fields after the command name, want 20 or more", len(f))
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("stat start time: %w", err)
	}
	return start, f[0] == "Z" || f[0] == "X", nil
}
