// Package dropreason names the kernel's packet drop reasons (enum
// skb_drop_reason and, since 6.4, the subsystems' enums) from the running
// kernel's BTF. It is the kernel knowledge the drops and dns collectors
// share: the agent reads the names once at start and hands them to both
// through collectors.Deps, so neither reaches into the other.
package dropreason

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Names maps a kfree_skb reason value to its name, read from the
// running kernel's BTF so that a new kernel's reasons appear without a
// netsonde release, and a renumbered enum is named right.
type Names map[uint32]string

// Name returns the reason's name, or its number when the kernel's BTF did
// not name it (the drop is still counted).
func (r Names) Name(v uint32) string {
	if n, ok := r[v]; ok {
		return n
	}
	return fmt.Sprintf("%d", v)
}

// Value is the reason named name (or given as its number): the one a
// capture filter names.
func (r Names) Value(name string) (uint32, bool) {
	for v, n := range r {
		if n == name {
			return v, true
		}
	}
	if v, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(v), true
	}
	return 0, false
}

const reasonPrefix = "SKB_DROP_REASON_"

// Load reads enum skb_drop_reason from vmlinux BTF and, since
// 6.4, the subsystem enums: the high bits of a reason (SKB_DROP_REASON_
// SUBSYS_MASK) name a subsystem (enum skb_drop_reason_subsys) whose own
// enum (mac80211's, openvswitch's, ...) holds values that carry the
// subsystem in those same bits. That enum may live in a module's BTF.
//
// The subsystem enums have no fixed names, so every enum of the kernel is
// looked at. Decoding all of vmlinux's types with cilium/ebpf's btf package
// for that costs 30-40 MiB at start-up (the agent's whole peak); scanning
// the raw type records for enums costs the file's few MiB, one at a time.
func Load(btfDir string) (Names, error) {
	vmlinux, err := readRawBTF(filepath.Join(btfDir, "vmlinux"), nil)
	if err != nil {
		return nil, fmt.Errorf("load kernel BTF: %w", err)
	}
	var core, subsys []rawEnumValue
	if err := vmlinux.enums(func(name string, values []rawEnumValue) bool {
		switch name {
		case "skb_drop_reason":
			core = values
		case "skb_drop_reason_subsys":
			subsys = values
		}
		return core == nil || subsys == nil
	}); err != nil {
		return nil, fmt.Errorf("kernel BTF: %w", err)
	}
	if core == nil {
		return nil, errors.New("enum skb_drop_reason not in kernel BTF")
	}
	names := Names{}
	var mask uint64
	for _, v := range core {
		switch {
		case v.name == reasonPrefix+"SUBSYS_MASK":
			mask = v.value
		case v.name == reasonPrefix+"MAX", !strings.HasPrefix(v.name, reasonPrefix):
			// SKB_NOT_DROPPED_YET and SKB_CONSUMED are not drops.
		default:
			names[uint32(v.value)] = strings.TrimPrefix(v.name, reasonPrefix)
		}
	}
	if mask == 0 || subsys == nil {
		return names, nil // before 6.4: no subsystems
	}
	shift := bits.TrailingZeros64(mask)
	want := map[uint64]bool{}
	for _, v := range subsys {
		if v.value != 0 && !strings.HasSuffix(v.name, "_NUM") {
			want[v.value] = true
		}
	}
	collect := func(name string, values []rawEnumValue) bool {
		if len(values) == 0 || name == "skb_drop_reason" || name == "skb_drop_reason_subsys" {
			return true
		}
		id := values[0].value >> shift
		if !want[id] || !allInSubsystem(values, id, shift) {
			return true
		}
		for _, v := range values {
			names[uint32(v.value)] = v.name
		}
		return true
	}
	if err := vmlinux.enums(collect); err != nil {
		return nil, fmt.Errorf("kernel BTF: %w", err)
	}
	if mods, err := os.ReadDir(btfDir); err == nil {
		for _, m := range mods {
			if m.Name() == "vmlinux" {
				continue
			}
			// One module at a time: each is garbage once scanned.
			if mod, err := readRawBTF(filepath.Join(btfDir, m.Name()), vmlinux); err == nil {
				_ = mod.enums(collect) // a module we cannot read names nothing
			}
		}
	}
	return names, nil
}

func allInSubsystem(values []rawEnumValue, id uint64, shift int) bool {
	for _, v := range values {
		if v.value>>shift != id || v.value>>32 != 0 {
			return false
		}
	}
	return true
}

// Cache reads the names once per BTF directory for every collector that
// asks (drops and dns), however many ask; the names are a few hundred
// strings, the BTF they come from a few MiB that is garbage once read.
// The zero value is ready; a nil Cache reads every time.
type Cache struct {
	mu   sync.Mutex
	read map[string]cached
}

type cached struct {
	names Names
	err   error
}

// Names returns the names read from btfDir, reading them on first use.
// Call debug.FreeOSMemory after a first read: the raw BTF is garbage then.
func (c *Cache) Names(btfDir string) (Names, error) {
	if c == nil {
		return Load(btfDir)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r, ok := c.read[btfDir]; ok {
		return r.names, r.err
	}
	names, err := Load(btfDir)
	if c.read == nil {
		c.read = map[string]cached{}
	}
	c.read[btfDir] = cached{names, err}
	return names, err
}
