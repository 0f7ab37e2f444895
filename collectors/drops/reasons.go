package drops

import (
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
	"strings"

	"github.com/cilium/ebpf/btf"
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

const reasonPrefix = "SKB_DROP_REASON_"

// loadReasonNames reads enum skb_drop_reason from vmlinux BTF and, since
// 6.4, the subsystem enums: the high bits of a reason (SKB_DROP_REASON_
// SUBSYS_MASK) name a subsystem (enum skb_drop_reason_subsys) whose own
// enum (mac80211's, openvswitch's, ...) holds values that carry the
// subsystem in those same bits. That enum may live in a module's BTF.
func loadReasonNames(btfDir string) (reasonNames, error) {
	vmlinux, err := btf.LoadSplitSpec(filepath.Join(btfDir, "vmlinux"), nil)
	if err != nil {
		return nil, fmt.Errorf("load kernel BTF: %w", err)
	}
	var core *btf.Enum
	if err := vmlinux.TypeByName("skb_drop_reason", &core); err != nil {
		return nil, fmt.Errorf("enum skb_drop_reason in kernel BTF: %w", err)
	}
	names := reasonNames{}
	var mask uint64
	for _, v := range core.Values {
		switch {
		case v.Name == reasonPrefix+"SUBSYS_MASK":
			mask = v.Value
		case v.Name == reasonPrefix+"MAX", !strings.HasPrefix(v.Name, reasonPrefix):
			// SKB_NOT_DROPPED_YET and SKB_CONSUMED are not drops.
		default:
			names[uint32(v.Value)] = strings.TrimPrefix(v.Name, reasonPrefix)
		}
	}
	if mask == 0 {
		return names, nil // before 6.4: no subsystems
	}
	shift := bits.TrailingZeros64(mask)

	var subsys *btf.Enum
	if err := vmlinux.TypeByName("skb_drop_reason_subsys", &subsys); err != nil {
		return names, nil
	}
	want := map[uint64]string{}
	for _, v := range subsys.Values {
		if v.Value != 0 && !strings.HasSuffix(v.Name, "_NUM") {
			want[v.Value] = v.Name
		}
	}
	specs := []*btf.Spec{vmlinux}
	if mods, err := os.ReadDir(btfDir); err == nil {
		for _, m := range mods {
			if m.Name() == "vmlinux" {
				continue
			}
			if s, err := btf.LoadSplitSpec(filepath.Join(btfDir, m.Name()), vmlinux); err == nil {
				specs = append(specs, s)
			}
		}
	}
	for _, s := range specs {
		for typ, err := range s.All() {
			if err != nil {
				break
			}
			e, ok := typ.(*btf.Enum)
			if !ok || len(e.Values) == 0 || e == core || e == subsys {
				continue
			}
			id := e.Values[0].Value >> shift
			if _, ok := want[id]; !ok {
				continue
			}
			if !allInSubsystem(e, id, shift) {
				continue
			}
			for _, v := range e.Values {
				names[uint32(v.Value)] = v.Name
			}
		}
	}
	return names, nil
}

func allInSubsystem(e *btf.Enum, id uint64, shift int) bool {
	for _, v := range e.Values {
		if v.Value>>shift != id || v.Value>>32 != 0 {
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
