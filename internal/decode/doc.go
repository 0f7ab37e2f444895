// Package decode names what the kernel and the wire hand netsonde: DNS
// names in wire format, rcodes and query types, EtherTypes, IP protocols,
// address families and TCP states as label values, and the cgroup2 mount
// in a mountinfo file. Each decoder is in one file, with its test and fuzz
// target beside it, so that a collector and a bpf/<name> package that need
// the same one share it instead of writing their own.
//
// Byte order is never assumed here: a decoder of multi-byte values takes
// the values already in host order (the BPF programs convert what they
// store) or a binary.ByteOrder from the eBPF object that wrote them
// (loader.Object.ByteOrder, the CollectionSpec's).
package decode
