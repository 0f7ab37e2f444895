package dns

// Objects for little- and big-endian targets: the programs use CO-RE,
// BPF_PROG arguments and __sk_buff only, so one object serves every
// architecture of a byte order.
// <asm/types.h> is in Debian's multiarch include directory: amd64's or
// arm64's, whichever this host has (clang skips a directory that is not
// there), so the objects generate alike on either host.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu" -target bpfel,bpfeb -type flow_val -type query_key -type ans_val -type drop_key -type name_val bpf dns.c
