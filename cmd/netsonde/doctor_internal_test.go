package main

import (
	"reflect"
	"testing"
)

func TestMissingCapabilities(t *testing.T) {
	const (
		root    = "000001ffffffffff"
		none    = "0000000000000000"
		daemon  = "000000c000201000" // BPF, PERFMON, SYS_ADMIN, NET_ADMIN
		oldKern = "0000000000201000" // SYS_ADMIN and NET_ADMIN: a kernel before CAP_BPF
		noNet   = "000000c000000000" // BPF and PERFMON only
	)
	for _, tc := range []struct {
		eff  string
		want []string
	}{
		{root, nil},
		{daemon, nil},
		{oldKern, nil},
		{none, []string{"CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"}},
		{noNet, []string{"CAP_NET_ADMIN"}},
	} {
		eff, ok := capEff("Name:\tnetsonde\nCapInh:\t0000000000000000\nCapEff:\t" + tc.eff + "\nCapBnd:\t000001ffffffffff\n")
		if !ok {
			t.Fatalf("CapEff %s not parsed", tc.eff)
		}
		if got := missingFrom(eff); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("CapEff %s: missing %v, want %v", tc.eff, got, tc.want)
		}
	}
	if _, ok := capEff("Name:\tx\n"); ok {
		t.Error("no CapEff line parsed as a value")
	}
}
