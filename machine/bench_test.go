package machine

import (
	"testing"

	"github.com/snapvm/snapvm/guests"
)

// BenchmarkCpubench runs the cpubench guest (10 rounds) on the whole board:
// interpreter, run loop, timers and UART.
func BenchmarkCpubench(b *testing.B) {
	elf, err := guests.ELF("cpubench")
	if err != nil {
		b.Fatal(err)
	}
	var insns uint64
	for i := 0; i < b.N; i++ {
		m, err := New(Config{Kernel: elf, Append: "rounds=10", RAMSize: 32 << 20})
		if err != nil {
			b.Fatal(err)
		}
		<-m.Done()
		insns += m.Harts()[0].Instret()
		m.Close()
	}
	b.ReportMetric(float64(insns)/b.Elapsed().Seconds()/1e6, "Minsn/s")
}
