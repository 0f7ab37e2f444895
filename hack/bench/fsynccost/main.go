// Command fsynccost measures what tracing fsyncs costs, in one run:
// nanoseconds per getpid() (the collateral cost on every syscall of the
// node) and per 2,300-byte write+fdatasync (the traced operation), with no
// tracer, with netsonde's ext4 hook and with the syscall-tracepoint hook,
// in alternating rounds. Prints a markdown table for BENCHMARKS.md.
// Needs root; run on an ext4 directory.
//
//	go run ./hack/bench/fsynccost -dir /var/tmp -rounds 7
package main

import (
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"time"

	"github.com/cilium/ebpf/rlimit"

	bpffsync "github.com/netsonde/netsonde/bpf/fsynctrace"
)

func main() {
	dir := flag.String("dir", "/var/tmp", "ext4 directory for the fdatasync workload")
	rounds := flag.Int("rounds", 7, "rounds per configuration, alternating")
	getpids := flag.Int("getpids", 2000000, "getpid calls per round")
	syncs := flag.Int("syncs", 300, "write+fdatasync pairs per round")
	flag.Parse()
	if err := rlimit.RemoveMemlock(); err != nil {
		log.Fatal(err)
	}
	// Trace this process itself, so every fdatasync below is traced.
	comm, _ := os.ReadFile("/proc/self/comm")
	me := string(comm[:len(comm)-1])
	var bounds [bpffsync.NumBounds]uint64
	for i := range bounds {
		bounds[i] = uint64(125000) << i
	}
	configs := []string{"none", bpffsync.SourceExt4, bpffsync.SourceSyscalls}
	gp := map[string][]float64{}
	fs := map[string][]float64{}
	f, err := os.CreateTemp(*dir, "fsynccost-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f.Name())
	buf := make([]byte, 2300)
	for r := 0; r < *rounds; r++ {
		for _, c := range configs {
			var tr *bpffsync.Probe
			if c != "none" {
				if tr, err = bpffsync.Load(bpffsync.Options{Source: c, Comms: []string{me}, Bounds: bounds}); err != nil {
					log.Fatalf("%s: %v", c, err)
				}
			}
			begin := time.Now()
			for i := 0; i < *getpids; i++ {
				syscall.Getpid()
			}
			gp[c] = append(gp[c], float64(time.Since(begin).Nanoseconds())/float64(*getpids))
			f.Truncate(0)
			f.Seek(0, 0)
			begin = time.Now()
			for i := 0; i < *syncs; i++ {
				f.Write(buf)
				syscall.Fdatasync(int(f.Fd()))
			}
			fs[c] = append(fs[c], float64(time.Since(begin).Nanoseconds())/float64(*syncs))
			if tr != nil {
				tr.Close()
			}
		}
	}
	med := func(v []float64) float64 { sort.Float64s(v); return v[len(v)/2] }
	fmt.Printf("%d rounds per configuration, alternating; %d getpid() and %d write+fdatasync of 2,300 bytes per round on %s; medians; %s\n\n",
		*rounds, *getpids, *syncs, filepath.Clean(*dir), time.Now().UTC().Format("2006-01-02"))
	fmt.Println("| | no tracer | ext4 tracepoints (default) | syscall tracepoints (last resort) |")
	fmt.Println("| --- | --- | --- | --- |")
	fmt.Printf("| ns per getpid() | %.0f | %.0f | %.0f |\n", med(gp["none"]), med(gp["ext4"]), med(gp["syscalls"]))
	fmt.Printf("| ratio to no tracer | 1.00 | %.2f | %.2f |\n", med(gp["ext4"])/med(gp["none"]), med(gp["syscalls"])/med(gp["none"]))
	fmt.Printf("| µs per write+fdatasync | %.1f | %.1f | %.1f |\n", med(fs["none"])/1e3, med(fs["ext4"])/1e3, med(fs["syscalls"])/1e3)
	fmt.Printf("| ratio to no tracer | 1.00 | %.3f | %.3f |\n", med(fs["ext4"])/med(fs["none"]), med(fs["syscalls"])/med(fs["none"]))
}
