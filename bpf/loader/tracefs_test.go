package loader

import (
	"errors"
	"os"
	"strings"
	"testing"
)

// The record layouts the loader must tell apart: skb:kfree_skb moved
// protocol and reason when 6.11 inserted rx_sk; tcp_retransmit_skb gained
// err in 6.13.
func TestFieldOffsetAcrossKernels(t *testing.T) {
	for _, tc := range []struct {
		file, field  string
		offset, size int
		missing      bool
	}{
		{"kfree_skb-6.1.format", "skbaddr", 8, 8, false},
		{"kfree_skb-6.1.format", "protocol", 24, 2, false},
		{"kfree_skb-6.1.format", "reason", 28, 4, false},
		{"kfree_skb-6.1.format", "rx_sk", 0, 0, true},
		{"kfree_skb-6.18.format", "rx_sk", 24, 8, false},
		{"kfree_skb-6.18.format", "protocol", 32, 2, false},
		{"kfree_skb-6.18.format", "reason", 36, 4, false},
		{"tcp_retransmit_skb-6.18.format", "err", 76, 4, false},
		{"tcp_retransmit_skb-6.18.format", "saddr", 34, 4, false},
		{"tcp_retransmit_skb-6.18.format", "common_pid", 4, 4, false},
	} {
		b, err := os.ReadFile("testdata/" + tc.file)
		if err != nil {
			t.Fatal(err)
		}
		off, size, err := FieldOffset(string(b), tc.field)
		if tc.missing {
			if !errors.Is(err, ErrNoField) {
				t.Errorf("%s %s: want ErrNoField, got %v", tc.file, tc.field, err)
			}
			continue
		}
		if err != nil || off != tc.offset || size != tc.size {
			t.Errorf("%s %s: got offset %d size %d err %v; want %d %d", tc.file, tc.field, off, size, err, tc.offset, tc.size)
		}
	}
}

func TestFieldOffsetBadInput(t *testing.T) {
	for _, format := range []string{
		"",
		"field:int x;",
		"field:int x;\toffset:abc;\tsize:4;",
		"field:int x;\toffset:8;",
		"field:int x;\tsize:4;",
	} {
		if _, _, err := FieldOffset(format, "x"); err == nil {
			t.Errorf("%q: want an error", format)
		}
	}
}

func FuzzFieldOffset(f *testing.F) {
	for _, name := range []string{"kfree_skb-6.1.format", "kfree_skb-6.18.format", "tcp_retransmit_skb-6.18.format"} {
		b, err := os.ReadFile("testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b), "reason")
	}
	f.Add("field:int err;\toffset:76;\tsize:4;\tsigned:1;", "err")
	f.Fuzz(func(t *testing.T, format, field string) {
		off, size, err := FieldOffset(format, field)
		if err == nil && (off < 0 || size <= 0) {
			t.Fatalf("accepted offset %d size %d", off, size)
		}
		if err == nil && !strings.Contains(format, field) {
			t.Fatalf("found %q that the format does not contain", field)
		}
	})
}

// A forced hook picks that hook's rungs, in their order; none keeps the
// ladder as given; a hook without a rung is an error.
func TestLadder(t *testing.T) {
	rungs := []Rung{{Hook: HookTPBTF, Program: "a"}, {Hook: HookTPBTF, Program: "b"}, {Hook: HookRawTP, Program: "c"}, {Hook: HookTracepoint, Program: "d"}}
	names := func(rs []Rung) string {
		var s []string
		for _, r := range rs {
			s = append(s, r.Program)
		}
		return strings.Join(s, ",")
	}
	for _, tc := range []struct {
		hooks []string
		want  string
	}{{nil, "a,b,c,d"}, {[]string{HookTracepoint}, "d"}, {[]string{HookRawTP, HookTPBTF}, "c,a,b"}} {
		got, err := Ladder(tc.hooks, rungs...)
		if err != nil || names(got) != tc.want {
			t.Errorf("%v: got %q, %v; want %q", tc.hooks, names(got), err, tc.want)
		}
	}
	if _, err := Ladder([]string{HookFentry}, rungs...); err == nil {
		t.Error("a hook without a rung should be an error")
	}
}
