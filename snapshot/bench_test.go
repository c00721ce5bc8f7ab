package snapshot

import (
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/snapvm/snapvm/memory"
	"github.com/snapvm/snapvm/qcow2"
)

// BenchmarkSaveLoad256M saves and loads 256 MiB of written RAM through a
// qcow2 image on the test's temporary directory.
func BenchmarkSaveLoad256M(b *testing.B) {
	ram, err := memory.New(0x80000000, 256<<20)
	if err != nil {
		b.Fatal(err)
	}
	defer ram.Close()
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < len(ram.Data); i += 8 {
		v := r.Uint64()
		for k := 0; k < 8; k++ {
			ram.Data[i+k] = byte(v >> (8 * k))
		}
	}
	ram.MarkRangeDirty(0, ram.Size())
	p := filepath.Join(b.TempDir(), "d.qcow2")
	if err := qcow2.Create(p, qcow2.CreateOptions{Size: 64 << 20}); err != nil {
		b.Fatal(err)
	}
	img, err := qcow2.Open(p, qcow2.OpenOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer img.Close()
	vm := &fakeVM{ram: ram}
	mgr := &Manager{VM: vm, Disks: &fakeDisks{disks: []Disk{{NodeName: "d", Display: "d", Image: img}}}}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := mgr.Save("s", "d", []string{"d"}, SaveOptions{}); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := mgr.Load("s", "d", []string{"d"}, LoadOptions{}); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		if err := mgr.Delete("s", []string{"d"}); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(t1.Sub(t0).Seconds(), "save-s")
		b.ReportMetric(t2.Sub(t1).Seconds(), "load-s")
		b.ReportMetric(time.Since(t2).Seconds(), "delete-s")
	}
}
