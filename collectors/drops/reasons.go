package drops

import (
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// reasonNames maps a kfree_skb reason value to its name, read from the
// running kernel's BTF so that a new kernel's reasons appear without a
// netsonde release, and a renumbered enum is named right.
type reasonNames map[uint32]string

// name returns the reason's name, or its number when the kernel's BTF did
// not name it (the drop is still counted).
func (r reasonNames) name(v uint32) string {
	if n, ok := r[v]; ok {
		return n
	}
	return fmt.Sprintf("%d", v)
}

// value is the reason named name (or given as its number).
func (r reasonNames) value(name string) (uint32, bool) {
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

// loadReasonNames reads enum skb_drop_reason from vmlinux BTF and, since
// 6.4, the subsystem enums: the high bits of a reason (SKB_DROP_REASON_
// SUBSYS_MASK) name a subsystem (enum skb_drop_reason_subsys) whose own
// enum (mac80211's, openvswitch's, ...) holds values that carry the
// subsystem in those same bits. That enum may live in a module's BTF.
//
// The subsystem enums have no fixed names, so every enum of the kernel is
// looked at. Decoding all of vmlinux's types with cilium/ebpf's btf package
// for that costs 30-40 MiB at start-up (the agent's whole peak); scanning
// the raw type records for enums costs the file's few MiB, one at a time.
func loadReasonNames(btfDir string) (reasonNames, error) {
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
	names := reasonNames{}
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

// ReasonNamer reads the kernel's drop reason names from its BTF and
// returns the function that names a reason, for other collectors that
// label drops the same way (dns). Call debug.FreeOSMemory after it: the
// parsed BTF is garbage once it returns.
func ReasonNamer(btfDir string) (func(uint32) string, error) {
	r, err := loadReasonNames(btfDir)
	if err != nil {
		return nil, err
	}
	return r.name, nil
}
