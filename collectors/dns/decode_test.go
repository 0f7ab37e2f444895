package dns

import (
	"reflect"
	"strings"
	"testing"
)

func TestHistogram(t *testing.T) {
	// Kernel buckets: <=1ms, <=2ms, <=5ms, <=10ms, <=20ms, <=50ms,
	// <=100ms, <=200ms, <=500ms, <=1s, <=2s, <=5s, above.
	per := []uint64{3, 0, 0, 0, 0, 0, 0, 127, 10, 0, 0, 0, 2}
	buckets, count, sum := Histogram(per, 2_500_000_000)
	if count != 142 {
		t.Errorf("count %d, want 142", count)
	}
	if sum != 2.5 {
		t.Errorf("sum %v, want 2.5", sum)
	}
	want := map[float64]uint64{0.001: 3, 0.002: 3, 0.005: 3, 0.01: 3, 0.02: 3, 0.05: 3, 0.1: 3,
		0.2: 130, 0.5: 140, 1: 140, 2: 140, 5: 140}
	if !reflect.DeepEqual(buckets, want) {
		t.Errorf("buckets %v, want %v", buckets, want)
	}
	// Fewer kernel buckets than edges (nothing counted above): still
	// cumulative, count from what there is.
	buckets, count, _ = Histogram([]uint64{1}, 0)
	if count != 1 || buckets[5] != 1 {
		t.Errorf("short: count %d, buckets %v", count, buckets)
	}
}

func TestParsePorts(t *testing.T) {
	got, err := ParsePorts([]string{"5353,8053", "53", " 5353 ", ""})
	if err != nil || !reflect.DeepEqual(got, []uint16{5353, 8053}) {
		t.Errorf("ParsePorts = %v, %v", got, err)
	}
	for _, bad := range []string{"0", "65536", "dns", "-1"} {
		if _, err := ParsePorts([]string{bad}); err == nil {
			t.Errorf("ParsePorts(%q): no error", bad)
		}
	}
	if _, err := ParsePorts([]string{"1,2,3,4,5,6,7,8,9"}); err == nil {
		t.Error("9 ports: no error")
	}
}

func FuzzParsePorts(f *testing.F) {
	f.Add("5353,8053")
	f.Add(",,,53")
	f.Fuzz(func(t *testing.T, s string) {
		ports, err := ParsePorts(strings.Split(s, ";"))
		if err != nil {
			return
		}
		if len(ports) > 8 {
			t.Fatalf("%d ports", len(ports))
		}
		for _, p := range ports {
			if p == 0 || p == 53 {
				t.Fatalf("port %d returned", p)
			}
		}
	})
}

func TestTopFailing(t *testing.T) {
	timeouts := map[uint64]uint64{1: 5, 2: 1, 3: 0}
	nx := map[uint64]uint64{2: 3, 4: 3, 5: 1}
	got := TopFailing(timeouts, nx, 3)
	// 1: 5; 2: 4; 4: 3; 5: 1; 3: 0 (never shown).
	if want := []uint64{1, 2, 4}; !reflect.DeepEqual(got, want) {
		t.Errorf("TopFailing = %v, want %v", got, want)
	}
	if got := TopFailing(map[uint64]uint64{3: 0}, nil, 5); len(got) != 0 {
		t.Errorf("names with no failure shown: %v", got)
	}
}

func TestPrune(t *testing.T) {
	m := map[uint64]uint64{}
	for i := uint64(1); i <= 10; i++ {
		m[i] = i
	}
	if got := Prune(m, 10); len(got) != 10 {
		t.Errorf("pruned at the limit: %v", got)
	}
	got := Prune(m, 8)
	if want := map[uint64]uint64{10: 10, 9: 9, 8: 8, 7: 7}; !reflect.DeepEqual(got, want) {
		t.Errorf("Prune = %v, want %v", got, want)
	}
}
