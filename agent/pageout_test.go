package agent

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
	"testing"
)

func TestReadOnlyMappings(t *testing.T) {
	maps := []byte(`00400000-010e6000 r-xp 00000000 fd:00 1234                               /usr/bin/netsonde
010e6000-01ef6000 r--p 00ce6000 fd:00 1234                               /usr/bin/netsonde
01ef6000-02026000 rw-p 01af6000 fd:00 1234                               /usr/bin/netsonde
02026000-02050000 rw-p 00000000 00:00 0
7f55dd525000-7f55dd5e5000 r--p 00000000 fd:00 99                         /usr/bin/netsonde-other
7ffd1000-7ffd2000 r-xp 00000000 00:00 0                                  [vdso]
`)
	got, err := readOnlyMappings(maps, "/usr/bin/netsonde")
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]uintptr{{0x400000, 0x10e6000}, {0x10e6000, 0x1ef6000}}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %x, want %x", got, want)
	}
	// A path with spaces (a container's overlay path can have them).
	got, err = readOnlyMappings([]byte("1000-2000 r-xp 0 fd:00 1 /a b/net sonde\n"), "/a b/net sonde")
	if err != nil || len(got) != 1 {
		t.Fatalf("path with spaces: %x, %v", got, err)
	}
	for _, bad := range []string{"zz-2000 r-xp 0 fd:00 1 /x\n", "3000-2000 r-xp 0 fd:00 1 /x\n", "1000 r-xp 0 fd:00 1 /x\n"} {
		if _, err := readOnlyMappings([]byte(bad), "/x"); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func FuzzReadOnlyMappings(f *testing.F) {
	f.Add([]byte("00400000-010e6000 r-xp 00000000 fd:00 1234 /x\n"), "/x")
	f.Fuzz(func(t *testing.T, maps []byte, path string) {
		got, err := readOnlyMappings(maps, path)
		if err != nil {
			return
		}
		for _, r := range got {
			if r[1] <= r[0] {
				t.Fatalf("empty or reversed range %x", r)
			}
		}
	})
}

// TestReleaseStartupPagesShrinksRSS runs on the test binary itself, as
// any user: its code and read-only data are mapped from its file as the
// agent's are. Most of what the test process touched to get here (the
// testing package's start-up, the runtime's) is not touched again, so
// the binary's resident pages must fall well below what they were.
func TestReleaseStartupPagesShrinksRSS(t *testing.T) {
	before := exeRSS(t)
	mapped, err := releasePages()
	if err != nil {
		t.Fatalf("releasePages: %v", err)
	}
	after := exeRSS(t)
	t.Logf("binary's read-only mappings %d KiB; resident before %d KiB, after %d KiB", mapped>>10, before, after)
	if mapped <= 0 {
		t.Fatalf("mapped %d bytes", mapped)
	}
	if after > before/2 {
		t.Fatalf("binary's resident pages %d KiB after release, %d KiB before: not halved", after, before)
	}
}

// exeRSS is the resident KiB of the test binary's own read-only mappings,
// from /proc/self/smaps.
func exeRSS(t *testing.T) int {
	t.Helper()
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	kib, ours := 0, false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		switch {
		case len(f) >= 2 && bytes.Contains(f[0], []byte("-")) && len(f[1]) == 4:
			ours = len(f) >= 6 && string(bytes.Join(f[5:], []byte(" "))) == exe && f[1][1] != 'w'
		case ours && len(f) >= 2 && string(f[0]) == "Rss:":
			n, err := strconv.Atoi(string(f[1]))
			if err != nil {
				t.Fatal(err)
			}
			kib += n
		}
	}
	return kib
}
