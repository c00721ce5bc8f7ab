package qcow2

import (
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
)

func benchImage(b *testing.B, size int64, prefill int64) *Image {
	b.Helper()
	path := tempPath(b, "bench.qcow2")
	if err := Create(path, CreateOptions{Size: size}); err != nil {
		b.Fatal(err)
	}
	img := mustOpen(b, path, OpenOptions{})
	buf := make([]byte, 1<<20)
	for off := int64(0); off < prefill; off += int64(len(buf)) {
		if _, err := img.WriteAt(buf, off); err != nil {
			b.Fatal(err)
		}
	}
	b.Cleanup(func() { img.Close() })
	return img
}

func BenchmarkRandWrite4K(b *testing.B) {
	const size = 1 << 30
	img := benchImage(b, size, 0)
	p := make([]byte, 4096)
	rng := rand.New(rand.NewSource(1))
	b.SetBytes(4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := img.WriteAt(p, rng.Int63n(size/4096)*4096); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRandRead4K(b *testing.B) {
	const size = 256 << 20
	img := benchImage(b, size, 64<<20)
	p := make([]byte, 4096)
	rng := rand.New(rand.NewSource(1))
	b.SetBytes(4096)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := img.ReadAt(p, rng.Int63n(64<<20/4096)*4096); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeqWrite64K(b *testing.B) {
	const size = 4 << 30
	img := benchImage(b, size, 0)
	p := make([]byte, 65536)
	b.SetBytes(65536)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := img.WriteAt(p, int64(i)*65536%size); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSeqRead64K(b *testing.B) {
	const size = 256 << 20
	img := benchImage(b, size, 64<<20)
	p := make([]byte, 65536)
	b.SetBytes(65536)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := img.ReadAt(p, int64(i)*65536%(64<<20)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCreateSnapshot(b *testing.B) {
	img := benchImage(b, 1<<30, 64<<20)
	vm := make([]byte, 8<<20)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := img.WriteVMState(vm, 0); err != nil {
			b.Fatal(err)
		}
		if _, err := img.CreateSnapshot(SnapshotInfo{Name: "b", VMStateSize: uint64(len(vm))}); err != nil {
			b.Fatal(err)
		}
		if len(img.Snapshots()) > 4 {
			if err := img.DeleteSnapshot(img.Snapshots()[0].ID, ""); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// TestNoAllocOnDataPath checks that reads and in-place writes do not allocate.
func TestNoAllocOnDataPath(t *testing.T) {
	path := tempPath(t, "alloc.qcow2")
	if err := Create(path, CreateOptions{Size: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	img := mustOpen(t, path, OpenOptions{})
	defer img.Close()
	p := make([]byte, 4096)
	img.WriteAt(make([]byte, 1<<20), 0)
	off := int64(0)
	if n := testing.AllocsPerRun(100, func() {
		img.WriteAt(p, off%(1<<20))
		img.ReadAt(p, (off+8192)%(1<<20))
		off += 4096
	}); n != 0 {
		t.Fatalf("%v allocations per in-place write+read", n)
	}
}

// vmStateWriters writes n bytes of vm state in 4 MiB extents (every other
// 4 KiB page of each extent when sparse) from three goroutines, as a VM
// snapshot's RAM pre-copy does.
func vmStateWriters(b *testing.B, img *Image, n int64, sparse bool) {
	const extent = 4 << 20
	src := make([]byte, extent)
	for i := range src {
		src[i] = byte(i>>12) | 1
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < 3; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				at := next.Add(extent) - extent
				if at >= n {
					return
				}
				if !sparse {
					if err := img.WriteVMState(src, at); err != nil {
						b.Error(err)
						return
					}
					continue
				}
				for p := int64(0); p < extent; p += 8192 {
					if err := img.WriteVMState(src[p:p+4096], at+p); err != nil {
						b.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkVMStateWrite256M allocates and writes 256 MiB of vm state, then
// rewrites half its pages in place.
func BenchmarkVMStateWrite256M(b *testing.B) {
	const n = 256 << 20
	b.Run("fresh", func(b *testing.B) {
		b.SetBytes(n)
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			img := benchImage(b, 64<<20, 0)
			b.StartTimer()
			vmStateWriters(b, img, n, false)
		}
	})
	b.Run("rewrite-sparse", func(b *testing.B) {
		img := benchImage(b, 64<<20, 0)
		vmStateWriters(b, img, n, false)
		b.SetBytes(n / 2)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			vmStateWriters(b, img, n, true)
		}
	})
}
