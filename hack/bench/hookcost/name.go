package main

import "unsafe"

// unsafePtr is a NUL-terminated copy of s for prctl(PR_SET_NAME).
func unsafePtr(s string) unsafe.Pointer {
	b := append([]byte(s), 0)
	return unsafe.Pointer(&b[0])
}
