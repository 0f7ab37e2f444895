package drops

// Objects for little- and big-endian targets (amd64, arm64, ...; s390x):
// the programs use CO-RE reads and BPF_PROG arguments only, no pt_regs, so
// one object serves every architecture of a byte order.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel,bpfeb -type drop_key -type drop_slot -type capture_filter -type capture_state bpf drops.c
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel,bpfeb empty empty.c
