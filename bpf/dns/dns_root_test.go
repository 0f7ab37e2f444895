package dns

import (
	"encoding/binary"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/netsonde/netsonde/bpf/loader"
	"github.com/netsonde/netsonde/internal/testenv"
)

// loadForTest loads the object's cgroup_skb programs without attaching
// them: BPF_PROG_TEST_RUN feeds them packets, and only their own maps
// count (no other traffic of the machine).
func loadForTest(t testing.TB, form string) (*Probe, map[string]*ebpf.Program) {
	t.Helper()
	return loadSpecForTest(t, form, nil)
}

// loadSpecForTest is loadForTest with the spec changed by edit first.
func loadSpecForTest(t testing.TB, form string, edit func(*bpfSpecs) error) (*Probe, map[string]*ebpf.Program) {
	t.Helper()
	testenv.RequireRoot(t)
	spec, err := loadBpf()
	if err != nil {
		t.Fatal(err)
	}
	if edit != nil {
		var specs bpfSpecs
		if err := spec.Assign(&specs); err != nil {
			t.Fatal(err)
		}
		if err := edit(&specs); err != nil {
			t.Fatal(err)
		}
	}
	p := &Probe{}
	obj, err := loader.New(spec, loader.Options{}, &p.maps, &p.vars)
	if err != nil {
		t.Fatal(err)
	}
	p.Object = obj
	t.Cleanup(func() { obj.Close() })
	progs, err := obj.Load(ProgramEgress+form, ProgramIngress+form)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return p, map[string]*ebpf.Program{ProgramEgress: progs[ProgramEgress+form], ProgramIngress: progs[ProgramIngress+form]}
}

// packet builds an Ethernet + IPv4 + UDP frame (BPF_PROG_TEST_RUN wants
// the link layer; cgroup_skb programs see from the IP header on).
func packet(sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 14+20+8, 14+20+8+len(payload))
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+8+len(payload)))
	ip[8] = 64
	ip[9] = 17
	copy(ip[12:], []byte{198, 18, 53, 2})
	copy(ip[16:], []byte{198, 18, 53, 1})
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	return append(b, payload...)
}

// answerPacket is the answer to packet(40000, 53, dnsQuery(id, name,
// qtype)): ports and addresses swapped, the header's flags set (QR and
// the rcode).
func answerPacket(id uint16, name string, qtype, flags uint16) []byte {
	ans := dnsQuery(id, name, qtype)
	binary.BigEndian.PutUint16(ans[2:], flags)
	b := packet(53, 40000, ans)
	copy(b[14+12:], []byte{198, 18, 53, 1})
	copy(b[14+16:], []byte{198, 18, 53, 2})
	return b
}

func dnsQuery(id uint16, name string, qtype uint16) []byte {
	b := make([]byte, 12)
	binary.BigEndian.PutUint16(b[0:], id)
	binary.BigEndian.PutUint16(b[4:], 1)
	for _, l := range strings.Split(name, ".") {
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0, byte(qtype>>8), byte(qtype), 0, 1)
}

func run(t testing.TB, p *ebpf.Program, pkt []byte) {
	t.Helper()
	ret, err := p.Run(&ebpf.RunOptions{Data: pkt})
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	if ret != 1 {
		t.Fatalf("program returned %d, want 1 (a cgroup_skb program must never drop)", ret)
	}
}

func queriesByType(t testing.TB, p *Probe) map[uint16]uint64 {
	t.Helper()
	out := map[uint16]uint64{}
	var k QueryKey
	var per []uint64
	it := p.maps.Queries.Iterate()
	for it.Next(&k, &per) {
		for _, v := range per {
			out[k.Qtype] += v
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func stat(t testing.TB, p *Probe, i uint32) uint64 {
	t.Helper()
	var per []uint64
	if err := p.maps.Stats.Lookup(i, &per); err != nil {
		t.Fatal(err)
	}
	var s uint64
	for _, v := range per {
		s += v
	}
	return s
}

// TestParserInKernel runs the programs on chosen packets and checks what
// they counted: the qtype walk, the malformed cases, the match.
func TestParserInKernel(t *testing.T) {
	for _, form := range []string{"", "_read"} {
		t.Run("form"+form, func(t *testing.T) { testParser(t, form) })
	}
}

func testParser(t *testing.T, form string) {
	p, progs := loadForTest(t, form)
	eg, in := progs[ProgramEgress], progs[ProgramIngress]
	loop := dnsQuery(2, "x", 1)[:12]
	loop = append(loop, 0xc0, 12, 0, 1, 0, 1)
	long := dnsQuery(3, strings.Repeat(strings.Repeat("a", 63)+".", 4)+"b", 1)
	for _, pkt := range [][]byte{
		packet(40000, 53, dnsQuery(1, "ok.test", 28)),  // AAAA
		packet(40000, 53, dnsQuery(4, "ok.test", 65)),  // HTTPS
		packet(40000, 53, dnsQuery(5, "ok.test", 255)), // ANY: other
		packet(40000, 53, loop),                        // other
		packet(40000, 53, long),                        // 257 bytes: other
		// 151 bytes of name: past the one-load buffer, walked label by label.
		packet(40000, 53, dnsQuery(11, strings.Repeat("b", 60)+"."+strings.Repeat("c", 60)+"."+strings.Repeat("d", 20)+".test", 33)),
		packet(40000, 53, nil),                       // malformed
		packet(40000, 53, []byte{1, 2, 3}),           // malformed
		packet(40000, 80, dnsQuery(6, "ok.test", 1)), // not DNS
	} {
		run(t, eg, pkt)
	}
	got := queriesByType(t, p)
	want := map[uint16]uint64{28: 1, 65: 1, 33: 1, 0: 3}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("queries of folded type %d: %d, want %d (all: %v)", k, got[k], v, got)
		}
	}
	if len(got) != len(want) {
		t.Errorf("queries by type: %v, want %v", got, want)
	}
	if m := stat(t, p, StatMalformed); m != 2 {
		t.Errorf("malformed: %d, want 2", m)
	}
	if n := stat(t, p, StatTracked); n != 6 {
		t.Errorf("tracked: %d, want 6", n)
	}
	// The answer to query 1 (ports and addresses swapped) matches it; the
	// same answer again, and one with another ID, match nothing.
	ans := dnsQuery(1, "ok.test", 28)
	binary.BigEndian.PutUint16(ans[2:], 0x8003) // QR, NXDOMAIN
	swapped := packet(53, 40000, ans)
	copy(swapped[14+12:], []byte{198, 18, 53, 1})
	copy(swapped[14+16:], []byte{198, 18, 53, 2})
	run(t, in, swapped)
	run(t, in, swapped)
	binary.BigEndian.PutUint16(swapped[14+28:], 0x7777)
	run(t, in, swapped)
	if n := stat(t, p, StatAnswered); n != 1 {
		t.Errorf("answered: %d, want 1", n)
	}
	if n := stat(t, p, StatUnmatched); n != 2 {
		t.Errorf("unmatched: %d, want 2", n)
	}
	resp, _, err := readAnswers(p.maps.Answers)
	if err != nil {
		t.Fatal(err)
	}
	var n uint64
	for k, v := range resp {
		if k.Rcode != 3 {
			t.Errorf("response rcode %d, want 3", k.Rcode)
		}
		n += v
	}
	if n != 1 {
		t.Errorf("responses: %d, want 1 (%v)", n, resp)
	}
}

// FuzzPrograms feeds the in-kernel parser arbitrary DNS payloads to and
// from port 53 and arbitrary IP packets: the programs must always pass
// the packet (return 1), whatever they make of it.
func FuzzPrograms(f *testing.F) {
	f.Add(dnsQuery(1, "ok.test", 1), false)
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xc0, 12}, true)
	f.Add([]byte{}, false)
	f.Add(packet(1, 53, nil)[14:], true)
	_, progs := loadForTest(f, "")
	f.Fuzz(func(t *testing.T, data []byte, raw bool) {
		// BPF_PROG_TEST_RUN takes at most a page; DNS over UDP here is
		// at most an MTU anyway.
		if len(data) > 1400 {
			data = data[:1400]
		}
		pkts := [][]byte{packet(40000, 53, data), packet(53, 40000, data)}
		if raw && len(data) > 0 {
			eth := make([]byte, 14, 14+len(data))
			binary.BigEndian.PutUint16(eth[12:], 0x0800)
			if data[0]>>4 == 6 {
				binary.BigEndian.PutUint16(eth[12:], 0x86dd)
			}
			pkts = append(pkts, append(eth, data...))
		}
		for i, p := range pkts {
			for _, prog := range progs {
				ret, err := prog.Run(&ebpf.RunOptions{Data: p})
				if err != nil {
					// The kernel refuses to run on a raw frame shorter
					// than its IP header (EINVAL before the program
					// runs); that is not the program.
					if i == 2 {
						continue
					}
					t.Fatalf("run: %v", err)
				}
				if ret != 1 {
					t.Fatalf("returned %d", ret)
				}
			}
		}
	})
}
