package fsyncprobe_test

import "golang.org/x/sys/unix"

type syscallStat struct{ major, minor uint32 }

func statDev(path string, out *syscallStat) error {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return err
	}
	out.major, out.minor = unix.Major(st.Dev), unix.Minor(st.Dev)
	return nil
}
