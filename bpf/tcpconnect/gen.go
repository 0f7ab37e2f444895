package tcpconnect

//go:generate go tool bpf2go -cc clang-19 -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I/usr/include/x86_64-linux-gnu" -target bpfel,bpfeb -type ns_stats -type inflight_conn bpf tcpconnect.c
