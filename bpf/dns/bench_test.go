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
	q := dnsQuery(1, "kubernetes.default.svc.cluster.local", 1)
	ans := append([]byte(nil), q...)
	binary.BigEndian.PutUint16(ans[2:], 0x8000)
	answer := packet(53, 40000, ans)
	copy(answer[14+12:], []byte{198, 18, 53, 1})
	copy(answer[14+16:], []byte{198, 18, 53, 2})
	for _, c := range []struct {
		name string
		run  func(i int) (time.Duration, error)
	}{
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
	} {
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
