// Package dns loads netsonde's DNS programs: TC programs on the node's
// interfaces (or, with HookCgroup, two cgroup_skb programs on the cgroup v2
// root) that count queries and answers on the client's side and match them
// in an in-flight table, and a kfree_skb program that counts dropped DNS
// packets. It reads their counts and sweeps the in-flight table for
// queries that were never answered.
package dns

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	nbpf "github.com/netsonde/netsonde/bpf"
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

// RespKey keys the answers of one namespace by rcode, and HistKey their
// latency by bucket (SumBucket: the sum in ns), as Read gives them; the
// kernel keeps both in one value per namespace (struct ans_val).
type (
	RespKey struct {
		Netns uint64
		Rcode uint16
	}
	HistKey struct {
		Netns  uint64
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
	// builds in one run (hack/bench/dnscost -before). Its programs, maps
	// and variables must have the names this build's have.
	Object string
}

// Probe is the loaded object.
type Probe struct {
	*loader.Object
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
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	if err := spec.Variables["timeout_ns"].Set(uint64(opts.Timeout.Nanoseconds())); err != nil {
		return nil, fmt.Errorf("set timeout: %w", err)
	}
	var ports [MaxPorts]uint16
	copy(ports[:], opts.Ports)
	if err := spec.Variables["extra_ports"].Set(ports); err != nil {
		return nil, fmt.Errorf("set ports: %w", err)
	}
	if err := sizeInflight(spec, opts.MaxInflight, opts.MaxInflightPerOwner); err != nil {
		return nil, err
	}
	if opts.TopNames > 0 {
		if err := spec.Variables["top_names"].Set(uint8(1)); err != nil {
			return nil, fmt.Errorf("set top names: %w", err)
		}
		// Room for many more names than are shown, so the top ones
		// are not pushed out by a burst of one-off names.
		n := uint32(min(max(64*opts.TopNames, 1024), 65536))
		spec.Maps["names"].MaxEntries = n
		spec.Maps["name_nxdomain"].MaxEntries = n
	}
	switch opts.Hook {
	case "", HookTC, HookCgroup:
	default:
		return nil, fmt.Errorf("unknown hook %q (want %s or %s)", opts.Hook, HookTC, HookCgroup)
	}
	// OnlyNetns filters the cgroup_skb programs and the drop counter,
	// which see the whole machine.
	obj, err := loader.New(spec, loader.Options{BTF: opts.BTF, OnlyNetns: opts.OnlyNetns})
	if err != nil {
		return nil, err
	}
	p := &Probe{Object: obj}
	if opts.Hook == HookCgroup {
		err = p.attachCgroup(opts)
	} else {
		// Attached to interfaces later, by Probe.Attach.
		p.tc, err = loadTC(obj, opts.Attach)
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

// attachCgroup attaches the cgroup_skb programs to opts.CgroupPath, or the
// root of the cgroup v2 hierarchy.
func (p *Probe) attachCgroup(opts Options) error {
	cg := opts.CgroupPath
	if cg == "" {
		var err error
		if cg, err = CgroupRoot("/proc/self/mountinfo"); err != nil {
			// No cgroup2 mount in sight: open the hierarchy's root
			// through a private mount. The links keep the cgroup once
			// attached, so the file is closed after.
			f, perr := loader.PrivateCgroupRoot()
			if perr != nil {
				return fmt.Errorf("%w; %w", err, perr)
			}
			defer f.Close()
			cg = fmt.Sprintf("/proc/self/fd/%d", f.Fd())
			p.Cgroup = "/ (cgroup2 root, mounted privately)"
		}
	}
	if p.Cgroup == "" {
		p.Cgroup = cg
	}
	// Each logical program has two forms, by how it reads the socket's
	// network namespace: bpf_rdonly_cast (6.2+), then
	// bpf_probe_read_kernel (older kernels). Both are cgroup_skb.
	forms := []string{"", "_read"}
	switch opts.NetnsRead {
	case NetnsReadCast:
		forms = forms[:1]
	case NetnsReadProbe:
		forms = forms[1:]
	}
	for _, d := range []struct {
		prog string
		typ  ebpf.AttachType
	}{{ProgramEgress, ebpf.AttachCGroupInetEgress}, {ProgramIngress, ebpf.AttachCGroupInetIngress}} {
		typ := d.typ
		attach := func(prog *ebpf.Program) (io.Closer, error) {
			// A link, never a plain attach: it goes with the agent,
			// even after kill -9, and coexists with other programs on
			// the root cgroup (BPF_F_ALLOW_MULTI semantics).
			return link.AttachCgroup(link.CgroupOptions{Path: cg, Attach: typ, Program: prog})
		}
		var rungs []loader.Rung
		for _, f := range forms {
			rungs = append(rungs, loader.Rung{Hook: loader.HookCgroupSkb, Program: d.prog + f, Target: cg, Attach: attach})
		}
		if err := p.AttachFirst(d.prog, rungs); err != nil {
			return err
		}
	}
	return nil
}

// DefaultMaxInflight is the in-flight table's size without
// Options.MaxInflight.
const DefaultMaxInflight = 16384

// sizeInflight sizes the in-flight table: an array of size slots rounded
// up to a power of two (at least 2: one bucket of two slots), whose mask
// the programs get in inflight_mask, and sets each owner's quota of it
// (perOwner, 0: a quarter of the slots). An older object (Options.Object)
// whose table is an LRU hash takes size as is.
func sizeInflight(spec *ebpf.CollectionSpec, size, perOwner uint32) error {
	m := spec.Maps["inflight"]
	if m == nil {
		return errors.New("object has no inflight map")
	}
	if m.Type != ebpf.Array {
		if size > 0 {
			m.MaxEntries = size
		}
		return nil
	}
	if size == 0 {
		size = DefaultMaxInflight
	}
	n := uint32(2)
	for n < size && n < 1<<30 {
		n <<= 1
	}
	m.MaxEntries = n
	if err := spec.Variables["inflight_mask"].Set(n - 1); err != nil {
		return fmt.Errorf("set inflight mask: %w", err)
	}
	// An older object has no quota.
	if q, ok := spec.Variables["owner_quota"]; ok {
		if perOwner == 0 {
			perOwner = max(n/4, 1)
		}
		if err := q.Set(int64(perOwner)); err != nil {
			return fmt.Errorf("set in-flight quota: %w", err)
		}
	}
	return nil
}

// attachDrops attaches the drop counter, which is optional: its failure
// is visible as dns_kfree_skb attached 0. Only a bad hook list fails.
func attachDrops(obj *loader.Object, hooks []string) error {
	rungs, err := loader.Ladder(hooks,
		loader.Rung{Hook: loader.HookTPBTF, Program: "dns_drop_btf", Target: "kfree_skb"},
		loader.Rung{Hook: loader.HookRawTP, Program: "dns_drop_raw", Target: "kfree_skb"})
	if err != nil {
		return fmt.Errorf("drop hook: %w", err)
	}
	_ = obj.AttachFirst(ProgramDrops, rungs)
	return nil
}

// CgroupRoot returns the mount point of the cgroup v2 hierarchy whose root
// is mounted (the root "/" of the hierarchy, not a container's subtree) in
// a mountinfo file.
func CgroupRoot(mountinfo string) (string, error) {
	f, err := os.Open(mountinfo)
	if err != nil {
		return "", fmt.Errorf("find cgroup2 mount: %w", err)
	}
	defer f.Close()
	return parseCgroupRoot(f)
}

func parseCgroupRoot(r io.Reader) (string, error) {
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64*1024), 1024*1024)
	var sub string
	for s.Scan() {
		// id parent major:minor root mountpoint options [optional...] - fstype source superoptions
		f := strings.Fields(s.Text())
		sep := -1
		for i, x := range f {
			if x == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+1 >= len(f) || f[sep+1] != "cgroup2" {
			continue
		}
		if f[3] == "/" {
			return unescapeMount(f[4]), nil
		}
		if sub == "" {
			sub = f[3]
		}
	}
	if err := s.Err(); err != nil {
		return "", fmt.Errorf("read mountinfo: %w", err)
	}
	if sub != "" {
		// A container's own cgroup namespace: attaching there would see
		// only the container's sockets, never the pods'.
		return "", fmt.Errorf("cgroup2 is mounted only from %q, not its root: mount the host's /sys/fs/cgroup (a hostPath volume) and give its path", sub)
	}
	return "", errors.New("no cgroup2 mount: the node must use cgroup v2")
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var c int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%o", &c); err == nil {
				b.WriteByte(byte(c))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Counts is what the kernel has counted since load.
type Counts struct {
	Queries   map[QueryKey]uint64
	Responses map[RespKey]uint64
	Latency   map[HistKey]uint64
	Timeouts  map[uint64]uint64
	// Refused counts, per owner, the queries not tracked because the
	// owner had its quota of the in-flight table.
	Refused map[uint64]uint64
	Drops   map[DropKey]uint64
	Stats   [statMax]uint64
}

// Read returns the kernel's counts.
func (p *Probe) Read() (Counts, error) {
	var c Counts
	var err error
	if c.Queries, err = nbpf.SumPerCPU[QueryKey](p.Map("queries")); err != nil {
		return c, err
	}
	if c.Responses, c.Latency, err = readAnswers(p.Map("answers")); err != nil {
		return c, err
	}
	if c.Timeouts, err = nbpf.SumPerCPU[uint64](p.Map("timeouts")); err != nil {
		return c, err
	}
	if c.Drops, err = nbpf.SumPerCPU[DropKey](p.Map("drops")); err != nil {
		return c, err
	}
	// An older object (Options.Object) has no quota.
	if m := p.Map("refused"); m != nil {
		if c.Refused, err = nbpf.SumPerCPU[uint64](m); err != nil {
			return c, err
		}
	}
	// An older object (Options.Object) may have fewer counters.
	n := min(len(c.Stats), int(p.Map("stats").MaxEntries()))
	for i := range n {
		if c.Stats[i], err = nbpf.SumArraySlot(p.Map("stats"), uint32(i)); err != nil {
			return c, err
		}
	}
	return c, nil
}

// readAnswers sums the answers map's per-CPU values and spreads them into
// counts by rcode and by latency bucket, with only the non-zero ones (and
// the sum's bucket with any bucket), as if each were its own key.
func readAnswers(m *ebpf.Map) (map[RespKey]uint64, map[HistKey]uint64, error) {
	resp, lat := map[RespKey]uint64{}, map[HistKey]uint64{}
	var ns uint64
	var per []bpfAnsVal
	it := m.Iterate()
	for it.Next(&ns, &per) {
		var sum bpfAnsVal
		for _, v := range per {
			for i := range sum.Rcode {
				sum.Rcode[i] += v.Rcode[i]
			}
			for i := range sum.Bucket {
				sum.Bucket[i] += v.Bucket[i]
			}
			sum.Sum += v.Sum
		}
		for i, n := range sum.Rcode {
			if n > 0 {
				resp[RespKey{Netns: ns, Rcode: uint16(i)}] = n
			}
		}
		any := false
		for i, n := range sum.Bucket {
			if n > 0 {
				lat[HistKey{Netns: ns, Bucket: uint32(i)}] = n
				any = true
			}
		}
		if any {
			lat[HistKey{Netns: ns, Bucket: SumBucket}] = sum.Sum
		}
	}
	if err := it.Err(); err != nil {
		return nil, nil, fmt.Errorf("read answers: %w", err)
	}
	return resp, lat, nil
}

// Swept is what one sweep closed as timeouts, per network namespace and
// per name hash (0: no name kept), and how many queries are in flight.
type Swept struct {
	ByNetns map[uint64]uint64
	ByName  map[uint64]uint64
	Live    int
}

// Sweep closes the queries older than timeout in the in-flight table.
// A query is closed once: by its answer, by a query that displaces it
// from its slot, or by this sweep, whichever frees its slot first.
func (p *Probe) Sweep(timeout time.Duration) (Swept, error) {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return Swept{}, fmt.Errorf("clock: %w", err)
	}
	now := uint64(ts.Nano())
	limit := uint64(timeout.Nanoseconds())
	if m := p.Map("inflight"); m.Type() != ebpf.Array {
		// An older build's object (Options.Object, for benchmarks):
		// its table is not this build's.
		return Swept{}, fmt.Errorf("in-flight table is a %s, not this build's array", m.Type())
	}
	return p.sweepArray(now, limit)
}

// NXDomainByName returns the NXDOMAIN answers counted per name hash
// (--dns.top-failing-names).
func (p *Probe) NXDomainByName() (map[uint64]uint64, error) {
	out := map[uint64]uint64{}
	var k, v uint64
	it := p.Map("name_nxdomain").Iterate()
	for it.Next(&k, &v) {
		out[k] = v
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("iterate NXDOMAIN names: %w", err)
	}
	return out, nil
}

// Name returns the name kept for a hash, decoded, if the kernel still
// has it.
func (p *Probe) Name(hash uint64) (string, bool) {
	var v bpfNameVal
	if err := p.Map("names").Lookup(hash, &v); err != nil {
		return "", false
	}
	return DecodeName(v.Name[:])
}

// DecodeName turns a wire-format name (length-prefixed labels ending in a
// 0) into dotted text, with bytes outside [A-Za-z0-9-_] escaped as \DDD
// and dots inside a label as \. (the zone-file forms): a label value must
// not carry raw control bytes. It reports false for anything not a
// complete, uncompressed name of at most 255 bytes.
func DecodeName(wire []byte) (string, bool) {
	var b strings.Builder
	off := 0
	for off < len(wire) {
		l := int(wire[off])
		if l == 0 {
			if b.Len() == 0 {
				return ".", true
			}
			return b.String(), true
		}
		if l&0xc0 != 0 || off+1+l > len(wire) || off+1+l > 255 {
			return "", false
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		for _, c := range wire[off+1 : off+1+l] {
			switch {
			case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
				b.WriteByte(c)
			case c == '.' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			default:
				fmt.Fprintf(&b, "\\%03d", c)
			}
		}
		off += 1 + l
	}
	return "", false
}

// Forget deletes the counters of owners and namespaces gone for good, so
// their series end and their room in the maps is freed: owners key the
// queries, answers, timeouts and refusals (network namespaces with
// HookCgroup, interfaces with HookTC), namespaces the drops. Apart, as an
// interface's index and a namespace's cookie are both small numbers.
func (p *Probe) Forget(c Counts, owners, namespaces map[uint64]bool) {
	gone := owners
	for k := range c.Queries {
		if gone[k.Netns] {
			_ = p.Map("queries").Delete(k)
		}
	}
	for k := range c.Responses {
		if gone[k.Netns] {
			_ = p.Map("answers").Delete(k.Netns)
		}
	}
	for k := range c.Timeouts {
		if gone[k] {
			_ = p.Map("timeouts").Delete(k)
		}
	}
	for k := range c.Refused {
		if gone[k] {
			_ = p.Map("refused").Delete(k)
		}
	}
	for k := range c.Drops {
		if namespaces[k.Netns] {
			_ = p.Map("drops").Delete(k)
		}
	}
}

// Owners returns every owner the counts of queries, answers and timeouts
// name: network namespaces (HookCgroup) or interfaces (HookTC).
func (c Counts) Owners() map[uint64]bool {
	out := map[uint64]bool{}
	for k := range c.Queries {
		out[k.Netns] = true
	}
	for k := range c.Responses {
		out[k.Netns] = true
	}
	for k := range c.Latency {
		out[k.Netns] = true
	}
	for k := range c.Timeouts {
		out[k] = true
	}
	for k := range c.Refused {
		out[k] = true
	}
	return out
}

// DropNamespaces returns every network namespace the drop counts name
// (the namespace a packet was dropped in, whatever the hook).
func (c Counts) DropNamespaces() map[uint64]bool {
	out := map[uint64]bool{}
	for k := range c.Drops {
		out[k.Netns] = true
	}
	return out
}
