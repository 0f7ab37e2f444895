package dns

import (
	"encoding/binary"
	"testing"
	"time"
)

// BenchmarkPrograms times the programs in the kernel (BPF_PROG_TEST_RUN,
// which adds its own fixed cost to every run) on a non-DNS packet, a query
// and its answer.
func BenchmarkPrograms(b *testing.B) {
	_, progs := loadForTest(b, "")
	eg, in := progs[ProgramEgress], progs[ProgramIngress]
	q, answer := benchPackets()
	benchRuns(b, []benchCase{
		{"other_udp_egress", func(int) (time.Duration, error) {
			_, d, err := eg.Benchmark(packet(40000, 443, q), 1000, nil)
			return d, err
		}},
		{"query_egress", func(i int) (time.Duration, error) {
			p := packet(40000, 53, q)
			binary.BigEndian.PutUint16(p[14+28:], uint16(i))
			_, d, err := eg.Benchmark(p, 1, nil)
			return d, err
		}},
		{"query_egress_same_key", func(int) (time.Duration, error) {
			_, d, err := eg.Benchmark(packet(40000, 53, q), 1000, nil)
			return d, err
		}},
		{"unmatched_answer_ingress", func(int) (time.Duration, error) {
			_, d, err := in.Benchmark(answer, 1000, nil)
			return d, err
		}},
	})
}

// benchPackets returns a query for kubernetes.default.svc.cluster.local
// and a frame of its answer, from the resolver 198.18.53.1 to the client
// 198.18.53.2:40000.
func benchPackets() ([]byte, []byte) {
	q := dnsQuery(1, "kubernetes.default.svc.cluster.local", 1)
	ans := append([]byte(nil), q...)
	binary.BigEndian.PutUint16(ans[2:], 0x8000)
	answer := packet(53, 40000, ans)
	copy(answer[14+12:], []byte{198, 18, 53, 1})
	copy(answer[14+16:], []byte{198, 18, 53, 2})
	return q, answer
}

// benchCase is one timed case: run returns the kernel's time per run.
type benchCase struct {
	name string
	run  func(i int) (time.Duration, error)
}

func benchRuns(b *testing.B, cases []benchCase) {
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			var total time.Duration
			for i := 0; i < b.N; i++ {
				d, err := c.run(i)
				if err != nil {
					b.Fatal(err)
				}
				total += d
			}
			b.ReportMetric(float64(total.Nanoseconds())/float64(b.N), "ns/run")
		})
	}
}

// BenchmarkTCPrograms times the TC programs the same way, on an interface
// marked a pod's (the test run's loopback): a non-DNS packet, a pod's
// query coming in and its answer going out (an exchange: both runs), and
// an answer coming in to a port none of the node's sockets asked from.
func BenchmarkTCPrograms(b *testing.B) {
	p, err := Load(Options{Hook: HookTC})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { p.Close() })
	if err := p.maps.Ifaces.Put(uint32(1), IfacePod); err != nil {
		b.Fatal(err)
	}
	in, eg := p.tc.progs[bpfProgDnsTcIngress], p.tc.progs[bpfProgDnsTcEgress]
	q, answer := benchPackets()
	benchRuns(b, []benchCase{
		{"other_udp_ingress", func(int) (time.Duration, error) {
			_, d, err := in.Benchmark(packet(40000, 443, q), 1000, nil)
			return d, err
		}},
		{"exchange", func(i int) (time.Duration, error) {
			qp := packet(40000, 53, q)
			binary.BigEndian.PutUint16(qp[14+28:], uint16(i))
			_, d1, err := in.Benchmark(qp, 1, nil)
			if err != nil {
				return 0, err
			}
			ap := append([]byte(nil), answer...)
			binary.BigEndian.PutUint16(ap[14+28:], uint16(i))
			_, d2, err := eg.Benchmark(ap, 1, nil)
			return d1 + d2, err
		}},
		{"answer_ingress_not_the_nodes", func(int) (time.Duration, error) {
			_, d, err := in.Benchmark(answer, 1000, nil)
			return d, err
		}},
	})
}
