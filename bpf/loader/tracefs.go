package loader

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Event is what attaching a classic tracepoint needs from tracefs: the
// event's id (for perf_event_open) and its format file (the record layout,
// which differs between kernel versions).
type Event struct {
	Group, Name string
	ID          uint64
	Format      string
}

// tracefsPaths are where a node may already have tracefs (or debugfs with
// tracing/ inside it) mounted.
var tracefsPaths = []string{"/sys/kernel/tracing", "/sys/kernel/debug/tracing"}

// ReadEvent reads a tracepoint's id and format. root names a tracefs
// directory to read; empty means: the host's tracefs if this process sees
// one, else a tracefs mounted privately for the duration of the read.
//
// The private mount is why classic tracepoints work on nodes that never
// mounted tracefs, in containers with an empty /sys/kernel/tracing and
// under `ip netns exec` (which remounts /sys): a dedicated OS thread leaves
// the process's mount namespace (unshare(CLONE_NEWNS) is allowed for one
// thread of a multi-threaded process), makes its mounts private, mounts
// tracefs and reads the two files. The host's mounts are never touched, and
// the mount disappears with the thread, which is never returned to Go's
// pool. The perf event opened later with the id does not depend on any
// mount.
func ReadEvent(root, group, name string) (Event, error) {
	if root != "" {
		return readEvent(root, group, name)
	}
	for _, p := range tracefsPaths {
		if isTracefs(p) {
			return readEvent(p, group, name)
		}
	}
	return readEventPrivately(group, name)
}

func isTracefs(p string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return false
	}
	return st.Type == unix.TRACEFS_MAGIC || (st.Type == unix.DEBUGFS_MAGIC && strings.HasSuffix(p, "/tracing"))
}

func readEvent(root, group, name string) (Event, error) {
	dir := filepath.Join(root, "events", group, name)
	idText, err := os.ReadFile(filepath.Join(dir, "id"))
	if err != nil {
		return Event{}, fmt.Errorf("tracepoint %s:%s: %w", group, name, err)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(string(idText)), 10, 64)
	if err != nil {
		return Event{}, fmt.Errorf("tracepoint %s:%s: id %q: %w", group, name, idText, err)
	}
	format, err := os.ReadFile(filepath.Join(dir, "format"))
	if err != nil {
		return Event{}, fmt.Errorf("tracepoint %s:%s: %w", group, name, err)
	}
	return Event{Group: group, Name: name, ID: id, Format: string(format)}, nil
}

// privateMountPoint is where the private tracefs goes inside the thread's
// own mount namespace: it exists in every sysfs since 4.1, and mounting on
// it needs no write access to anything.
const privateMountPoint = "/sys/kernel/tracing"

func readEventPrivately(group, name string) (Event, error) {
	var ev Event
	err := withPrivateMount("tracefs", "tracefs", privateMountPoint, unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, func() error {
		var err error
		ev, err = readEvent(privateMountPoint, group, name)
		return err
	})
	return ev, err
}

// FieldOffset returns the offset and size of a field in a tracepoint's
// format file ("field:unsigned short protocol;\toffset:24;\tsize:2;...").
func FieldOffset(format, field string) (offset, size int, err error) {
	for _, line := range strings.Split(format, "\n") {
		line = strings.TrimSpace(line)
		decl, rest, ok := strings.Cut(line, ";")
		if !ok || !strings.HasPrefix(decl, "field:") {
			continue
		}
		decl = strings.TrimPrefix(decl, "field:")
		// The name is the last word of the declaration, before any [N].
		words := strings.Fields(decl)
		if len(words) == 0 {
			continue
		}
		n := words[len(words)-1]
		if i := strings.IndexByte(n, '['); i >= 0 {
			n = n[:i]
		}
		n = strings.TrimLeft(n, "*")
		if n != field {
			continue
		}
		offset, size = -1, -1
		for _, kv := range strings.Split(rest, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(kv), ":")
			if !ok {
				continue
			}
			switch k {
			case "offset":
				offset, err = strconv.Atoi(v)
			case "size":
				size, err = strconv.Atoi(v)
			}
			if err != nil {
				return 0, 0, fmt.Errorf("field %s: %q: %w", field, kv, err)
			}
		}
		if offset < 0 || size <= 0 {
			return 0, 0, fmt.Errorf("field %s: no offset or size in %q", field, line)
		}
		return offset, size, nil
	}
	return 0, 0, fmt.Errorf("no field %s: %w", field, ErrNoField)
}

// ErrNoField is returned by FieldOffset for a field the tracepoint lacks.
var ErrNoField = errors.New("field not in the tracepoint's format")

// Field is one tracepoint record field a program reads at an offset the
// loader sets: the field's name in the format, the size the program reads,
// and the object's variable that takes the offset.
type Field struct {
	Name     string
	Size     int
	Variable string
}

// SetLayout reads fields' offsets from a tracepoint's format and sets them
// in the object's variables, refusing a layout whose sizes differ from what
// the program reads.
func (o *Object) SetLayout(ev *Event, fields ...Field) error {
	for _, f := range fields {
		off, size, err := FieldOffset(ev.Format, f.Name)
		if err != nil {
			return fmt.Errorf("%s:%s layout: %w", ev.Group, ev.Name, err)
		}
		if size != f.Size {
			return fmt.Errorf("%s:%s layout: %s is %d bytes, the program reads %d", ev.Group, ev.Name, f.Name, size, f.Size)
		}
		v := o.maps.Variables[f.Variable]
		if v == nil {
			return fmt.Errorf("no variable %s in the object", f.Variable)
		}
		if err := v.Set(uint32(off)); err != nil {
			return fmt.Errorf("set %s: %w", f.Variable, err)
		}
	}
	return nil
}
