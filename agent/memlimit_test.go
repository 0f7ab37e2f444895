package agent

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func TestSetMemoryLimit(t *testing.T) {
	t.Setenv("GOMEMLIMIT", "")
	os.Unsetenv("GOMEMLIMIT")
	prev := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(prev) })

	dir := t.TempDir()
	write := func(s string) {
		if err := os.WriteFile(filepath.Join(dir, "memory.max"), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		env, max string
		want     int64
		wantErr  bool
	}{
		{env: "134217728", max: "max", want: 120795955},
		{max: "268435456\n", want: 241591910},
		{max: "max\n", want: 0},
		{env: "128Mi", wantErr: true},
	} {
		t.Setenv(MemoryLimitEnv, tc.env)
		write(tc.max)
		got, err := SetMemoryLimit(dir)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("env %q, memory.max %q: got %d, %v; want %d (error %v)", tc.env, tc.max, got, err, tc.want, tc.wantErr)
		}
		if tc.want > 0 && debug.SetMemoryLimit(-1) != tc.want {
			t.Errorf("runtime limit not set to %d", tc.want)
		}
	}
	t.Setenv(MemoryLimitEnv, "")
	if got, err := SetMemoryLimit(filepath.Join(dir, "absent")); got != 0 || err != nil {
		t.Errorf("no cgroup file, no env: got %d, %v", got, err)
	}
}
