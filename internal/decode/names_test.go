package decode

import "testing"

// checkNames fails t for every value whose name is not want's.
func checkNames[T uint8 | uint16](t *testing.T, fn string, name func(T) string, want map[T]string) {
	t.Helper()
	for v, w := range want {
		if got := name(v); got != w {
			t.Errorf("%s(%#x) = %q, want %q", fn, v, got, w)
		}
	}
}
