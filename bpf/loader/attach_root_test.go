package loader

import (
	"errors"
	"maps"
	"sync"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/netsonde/netsonde/internal/testenv"
)

// TestAttachmentsOnAnInterface, by tc and by TCX: attaching twice records
// the new value and adds nothing; an interface that is gone fails with
// ENODEV (what collectors.Interfaces takes for "deleted while we
// attached") and is forgotten; Detach, and Close of TCX links, leave no
// program on the interface.
func TestAttachmentsOnAnInterface(t *testing.T) {
	testenv.RequireRoot(t)
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.SchedCLS, License: "GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, -1), asm.Return()}}) // TC_ACT_UNSPEC, TCX_NEXT
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	for _, mode := range []string{HookTC, AttachAuto} {
		t.Run(mode, func(t *testing.T) {
			a, b := testenv.NewNetns(t), testenv.NewNetns(t)
			testenv.Veth(t, a, b, "at0", "at1", "198.18.111.1/24", "198.18.111.2/24", 1500)
			a.Exec(t, "ip", "link", "add", "gone0", "type", "veth", "peer", "name", "gone1")
			idx, gone := a.IfIndex(t, "at0"), a.IfIndex(t, "gone0")
			a.Exec(t, "ip", "link", "del", "gone0")

			var mu sync.Mutex
			programs, forgot := map[int]int{}, map[int]int{}
			at, err := NewAttachments(AttachOptions[string]{What: "test", Mode: mode,
				Programs: func(ifindex int, _ string) (Programs, error) {
					mu.Lock()
					programs[ifindex]++
					mu.Unlock()
					return Programs{Pair: Pair{Ingress: prog, Egress: prog}}, nil
				},
				Forget: func(ifindex int) {
					mu.Lock()
					forgot[ifindex]++
					mu.Unlock()
				}})
			if err != nil {
				t.Fatal(err)
			}
			// Close's workers run in the process's namespace, not a's:
			// tc filters are taken off here first, in a.
			t.Cleanup(func() {
				a.Do(func() error {
					for i := range at.Attached() {
						at.Detach(i)
					}
					return nil
				})
				at.Close()
			})
			hook := map[string]string{HookTC: HookTC, AttachAuto: HookTCX}[mode]
			// filters counts ours on the interface, tc filters or
			// TCX programs, both directions.
			filters := func() int {
				var n int
				if err := a.Do(func() error {
					fs, err := Filters(idx)
					n = len(fs)
					for _, at := range []ebpf.AttachType{ebpf.AttachTCXIngress, ebpf.AttachTCXEgress} {
						r, qerr := link.QueryPrograms(link.QueryOptions{Target: idx, Attach: at})
						if qerr != nil {
							return errors.Join(err, qerr)
						}
						n += len(r.Programs)
					}
					return err
				}); err != nil {
					t.Fatal(err)
				}
				return n
			}
			if err := a.Do(func() error {
				if err := at.Attach(idx, "one"); err != nil {
					return err
				}
				return at.Attach(idx, "two")
			}); err != nil {
				t.Fatal(err)
			}
			if got := at.Attached(); !maps.Equal(got, map[int]string{idx: "two"}) {
				t.Errorf("attached %v, want %d: two", got, idx)
			}
			if got := at.Hooks(); !maps.Equal(got, map[string]int{hook: 1}) {
				t.Errorf("hooks %v, want %s: 1", got, hook)
			}
			if n := filters(); n != 2 {
				t.Errorf("%d programs on the interface after two attaches, want 2", n)
			}
			if programs[idx] != 2 || forgot[idx] != 0 {
				t.Errorf("Programs ran %d times, Forget %d; want 2 and 0", programs[idx], forgot[idx])
			}

			err = a.Do(func() error { return at.Attach(gone, "gone") })
			if !errors.Is(err, unix.ENODEV) {
				t.Errorf("attach to a deleted interface: %v, want ENODEV", err)
			}
			if _, ok := at.Attached()[gone]; ok || forgot[gone] != 1 {
				t.Errorf("deleted interface attached %v, forgotten %d times; want not, once", ok, forgot[gone])
			}

			a.Do(func() error { at.Detach(idx); return nil })
			if len(at.Attached()) != 0 || len(at.Hooks()) != 0 || forgot[idx] != 1 {
				t.Errorf("after Detach: attached %v, hooks %v, forgotten %d times; want none, none, once", at.Attached(), at.Hooks(), forgot[idx])
			}
			if n := filters(); n != 0 {
				t.Errorf("%d filters after Detach", n)
			}

			if mode == AttachAuto {
				// TCX links close by their fd, in any namespace.
				if err := a.Do(func() error { return at.Attach(idx, "three") }); err != nil {
					t.Fatal(err)
				}
				if err := at.Close(); err != nil {
					t.Fatal(err)
				}
				if n := filters(); n != 0 || len(at.Attached()) != 0 {
					t.Errorf("after Close: %d programs on the interface, attached %v", n, at.Attached())
				}
			} else if err := at.Close(); err != nil {
				t.Fatal(err)
			}
			if err := a.Do(func() error { return at.Attach(idx, "four") }); err != nil || len(at.Attached()) != 0 {
				t.Errorf("attach after Close: %v, attached %v; want nothing done", err, at.Attached())
			}
		})
	}
}
