package fsynctrace

// <asm/types.h> is in Debian's multiarch include directory: amd64's or
// arm64's, whichever this host has (clang skips a directory that is not
// there), so the objects generate alike on either host.
//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu -I/usr/include/aarch64-linux-gnu" -target bpfel,bpfeb -type hist_key -type sum_key -type comm_key bpf fsynctrace.c
