package testenv

import "runtime"

// LiveHeap is the heap in use by live objects: after two collections, so
// that sync.Pools (a scrape's buffers) are empty too, as they are in the
// agent, whose collectors run many times between two scrapes. The heap
// tests (agent, collectors/drops) take it before and after.
func LiveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
