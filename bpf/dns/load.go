// Package dns loads netsonde's DNS programs: TC programs on the node's
// interfaces (or, with HookCgroup, two cgroup_skb programs on the cgroup v2
// root) that count queries and answers on the client's side and match them
// in an in-flight table, and a kfree_skb program that counts dropped DNS
// packets. It reads their counts and sweeps the in-flight table for
// queries that were never answered.
package dns

import (
	"fmt"
	"time"

	"github.com/cilium/ebpf"

	"github.com/netsonde/netsonde/bpf/loader"
)

// Logical programs, as reported in netsonde_bpf_program_attached.
const (
	ProgramEgress  = "dns_egress"
	ProgramIngress = "dns_ingress"
	ProgramDrops   = "dns_kfree_skb"
)

// How the programs read a socket's network namespace.
const (
	NetnsReadAuto  = "auto"
	NetnsReadCast  = "cast"
	NetnsReadProbe = "probe_read"
)

// Edges are the upper bounds of the kernel's latency buckets, in seconds,
// as edges[] in dns.c; the kernel's last bucket is above the last edge.
var Edges = []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5}

// NBuckets is the kernel's number of latency buckets: one per edge and
// one above the last (NBUCKETS in dns.c).
const NBuckets = 13

// SumBucket is the hist key's bucket that holds the sum of latencies (ns).
const SumBucket = NBuckets

// MaxPorts is how many ports besides 53 the programs can watch.
const MaxPorts = 8

// Stats indices, as in dns.c.
const (
	StatTracked = iota
	StatAnswered
	StatLate
	StatUnmatched
	StatMalformed
	StatRetransmitted
	StatNotTracked
	StatLost
	StatEvicted
	StatRefused
	statMax
)

// Key types as the kernel keys its maps.
type (
	FlowVal  = bpfFlowVal
	QueryKey = bpfQueryKey
	DropKey  = bpfDropKey
)

// RespKey keys the answers of one owner by rcode, and HistKey their
// latency by bucket (SumBucket: the sum in ns), as Read gives them; the
// kernel keeps both in one value per owner (struct ans_val). An owner, as
// in QueryKey and FlowVal, is what a query is counted for: with HookTC
// the index of the pod's interface it crossed (0: the node's own
// sockets), with HookCgroup its socket's network namespace's cookie.
type (
	RespKey struct {
		Owner uint64
		Rcode uint16
	}
	HistKey struct {
		Owner  uint64
		Bucket uint32
	}
)

// Options for Load.
type Options struct {
	// Hook is where the programs look: HookTC (the default; interfaces
	// are then attached one by one with Probe.Attach) or HookCgroup.
	Hook string
	// Attach is how HookTC's programs go on an interface: AttachTC (the
	// default) or AttachTCX.
	Attach string
	// BTF is the kernel BTF shared by the objects loaded at start-up.
	BTF *loader.KernelBTF
	// Timeout is how long a query waits for its answer (default 5 s).
	Timeout time.Duration
	// Ports are DNS server ports besides 53 (at most MaxPorts).
	Ports []uint16
	// MaxInflight is the size of the in-flight table (default 16384),
	// rounded up to a power of two (at least 2): buckets of two slots.
	MaxInflight uint32
	// MaxInflightPerOwner is how many slots of the table one owner (a
	// pod's interface or network namespace, the node) may hold
	// (--dns.max-inflight-per-pod); 0: a quarter of the table, at least 1.
	MaxInflightPerOwner uint32
	// CgroupPath (HookCgroup) is the cgroup v2 directory to attach to; empty: the
	// root of the first cgroup2 mount in /proc/self/mountinfo.
	CgroupPath string
	// OnlyNetns, if set, restricts the cgroup_skb programs' and the drop
	// counter's counting to these network namespaces (tests, which must
	// not count the machine's other DNS traffic). The TC programs see only
	// the interfaces of the namespace they are attached in, which tests
	// make their own.
	OnlyNetns []uint64
	// TopNames, when above 0, keeps the names of queries and counts
	// NXDOMAIN answers per name in bounded kernel tables
	// (--dns.top-failing-names); 0 does none of that work.
	TopNames int
	// NetnsRead chooses how the socket's namespace is read: NetnsReadAuto
	// (""), NetnsReadCast or NetnsReadProbe.
	NetnsRead string
	// DropHooks are tried in order for the drop counter; empty: tp_btf
	// then raw_tp.
	DropHooks []string
	// Object, if set, is an object file loaded instead of the embedded
	// one: an older build of dns.c, for benchmarks that compare two
	// builds in one run (hack/bench/dnscost -before). It must have every
	// program, map and variable this build's has, by name (builds since
	// the in-flight quota, issue 24): Load fails otherwise.
	Object string
}

// Probe is the loaded object.
type Probe struct {
	*loader.Object
	// maps and vars are the object's, by bpf2go's names (loader.New).
	maps bpfMaps
	vars bpfVariables
	// Cgroup is where the cgroup_skb programs are attached (HookCgroup).
	Cgroup string
	// tc is the TC programs and their interfaces (HookTC), else nil.
	tc *tcState
}

// Load loads the programs and attaches them. The drop counter is optional:
// when none of its hooks works, the rest still runs and its program is
// reported not attached.
func Load(opts Options) (*Probe, error) {
	if len(opts.Ports) > MaxPorts {
		return nil, fmt.Errorf("at most %d extra DNS ports, got %d", MaxPorts, len(opts.Ports))
	}
	spec, err := loadBpf()
	if opts.Object != "" {
		spec, err = ebpf.LoadCollectionSpec(opts.Object)
	}
	if err != nil {
		return nil, fmt.Errorf("parse object: %w", err)
	}
	var specs bpfSpecs
	if err := spec.Assign(&specs); err != nil {
		return nil, fmt.Errorf("object: %w", err)
	}
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if err := specs.TimeoutNs.Set(uint64(opts.Timeout.Nanoseconds())); err != nil {
		return nil, fmt.Errorf("set timeout: %w", err)
	}
	var ports [MaxPorts]uint16
	copy(ports[:], opts.Ports)
	if err := specs.ExtraPorts.Set(ports); err != nil {
		return nil, fmt.Errorf("set ports: %w", err)
	}
	if err := sizeInflight(&specs, opts.MaxInflight, opts.MaxInflightPerOwner); err != nil {
		return nil, err
	}
	if opts.TopNames > 0 {
		if err := specs.TopNames.Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("set top names: %w", err)
		}
		// Room for many more names than are shown, so the top ones
		// are not pushed out by a burst of one-off names.
		n := uint32(min(max(64*opts.TopNames, 1024), 65536))
		specs.Names.MaxEntries = n
		specs.NameNxdomain.MaxEntries = n
	}
	switch opts.Hook {
	case "", HookTC, HookCgroup:
	default:
		return nil, fmt.Errorf("unknown hook %q (want %s or %s)", opts.Hook, HookTC, HookCgroup)
	}
	// OnlyNetns filters the cgroup_skb programs and the drop counter,
	// which see the whole machine.
	p := &Probe{}
	obj, err := loader.New(spec, loader.Options{BTF: opts.BTF, OnlyNetns: opts.OnlyNetns}, &p.maps, &p.vars)
	if err != nil {
		return nil, err
	}
	p.Object = obj
	if opts.Hook == HookCgroup {
		err = p.attachCgroup(opts)
	} else {
		// Attached to interfaces later, by Probe.Attach.
		p.tc, err = p.loadTC(opts.Attach)
	}
	if err == nil {
		err = attachDrops(obj, opts.DropHooks)
	}
	if err != nil {
		obj.Close()
		return nil, err
	}
	return p, nil
}

// DefaultMaxInflight is the in-flight table's size without
// Options.MaxInflight.
const DefaultMaxInflight = 16384

// sizeInflight sizes the in-flight table: an array of size slots rounded
// up to a power of two (at least 2: one bucket of two slots), whose mask
// the programs get in inflight_mask, and sets each owner's quota of it
// (perOwner, 0: a quarter of the slots).
func sizeInflight(specs *bpfSpecs, size, perOwner uint32) error {
	m := specs.Inflight
	if m.Type != ebpf.Array {
		return fmt.Errorf("in-flight table is a %s, not this build's array", m.Type)
	}
	if size == 0 {
		size = DefaultMaxInflight
	}
	n := uint32(2)
	for n < size && n < 1<<30 {
		n <<= 1
	}
	m.MaxEntries = n
	if err := specs.InflightMask.Set(n - 1); err != nil {
		return fmt.Errorf("set inflight mask: %w", err)
	}
	if perOwner == 0 {
		perOwner = max(n/4, 1)
	}
	if err := specs.OwnerQuota.Set(int64(perOwner)); err != nil {
		return fmt.Errorf("set in-flight quota: %w", err)
	}
	return nil
}

// attachDrops attaches the drop counter, which is optional: its failure
// is visible as dns_kfree_skb attached 0. Only a bad hook list fails.
func attachDrops(obj *loader.Object, hooks []string) error {
	rungs, err := loader.Ladder(hooks,
		loader.Rung{Hook: loader.HookTPBTF, Program: bpfProgDnsDropBtf, Target: "kfree_skb"},
		loader.Rung{Hook: loader.HookRawTP, Program: bpfProgDnsDropRaw, Target: "kfree_skb"})
	if err != nil {
		return fmt.Errorf("drop hook: %w", err)
	}
	_ = obj.AttachFirst(ProgramDrops, rungs)
	return nil
}
