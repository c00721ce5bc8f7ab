package qcow2

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"testing"
)

func TestCreateWriteReadInterop(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    CreateOptions
	}{
		{"v3-64k", CreateOptions{Size: 16 << 20}},
		{"v2-64k", CreateOptions{Size: 16 << 20, Compat: "0.10"}},
		{"v3-512", CreateOptions{Size: 8 << 20, ClusterSize: 512}},
		{"v3-4k-rc1", CreateOptions{Size: 16 << 20, ClusterSize: 4096, RefcountBits: 1}},
		{"v3-4k-rc64", CreateOptions{Size: 16 << 20, ClusterSize: 4096, RefcountBits: 64}},
		{"v3-2m", CreateOptions{Size: 16 << 20, ClusterSize: 2 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := dir + "/a.qcow2"
			if err := Create(path, tc.o); err != nil {
				t.Fatal(err)
			}
			qemuImgCheck(t, path, false)
			img := mustOpen(t, path, OpenOptions{})
			ref := make([]byte, tc.o.Size)
			rng := rand.New(rand.NewSource(1))
			for i := 0; i < 120; i++ {
				n := rng.Intn(min(3*int(img.cs), 200000)) + 1
				off := rng.Int63n(tc.o.Size - int64(n))
				p := make([]byte, n)
				rng.Read(p)
				if _, err := img.WriteAt(p, off); err != nil {
					t.Fatal(err)
				}
				copy(ref[off:], p)
			}
			got := make([]byte, tc.o.Size)
			if _, err := img.ReadAt(got, 0); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, ref) {
				t.Fatal("read back differs")
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			qemuImgCheck(t, path, false)
			if err := os.WriteFile(dir+"/ref.raw", ref, 0o644); err != nil {
				t.Fatal(err)
			}
			run(t, nil, "qemu-img", "compare", "-f", "qcow2", "-F", "raw", path, dir+"/ref.raw")
		})
	}
}

// TestConcurrentUse hammers one image from several goroutines (run with -race).
func TestConcurrentUse(t *testing.T) {
	path := tempPath(t, "conc.qcow2")
	if err := Create(path, CreateOptions{Size: 8 << 20, ClusterSize: 4096}); err != nil {
		t.Fatal(err)
	}
	img := mustOpen(t, path, OpenOptions{})
	done := make(chan error, 4)
	for g := 0; g < 4; g++ {
		go func(g int) {
			rng := rand.New(rand.NewSource(int64(g)))
			p := make([]byte, 8192)
			for i := 0; i < 120; i++ {
				// Each goroutine owns a 2 MiB quarter of the disk and checks its own data.
				off := int64(g)<<21 + rng.Int63n(1<<21-8192)
				for j := range p {
					p[j] = byte(i + g)
				}
				if _, err := img.WriteAt(p, off); err != nil {
					done <- err
					return
				}
				q := make([]byte, len(p))
				if _, err := img.ReadAt(q, off); err != nil || !bytes.Equal(p, q) {
					done <- fmt.Errorf("goroutine %d: read back differs (%v)", g, err)
					return
				}
				switch {
				case g == 0 && i%50 == 0:
					if _, err := img.CreateSnapshot(SnapshotInfo{Name: fmt.Sprint(i)}); err != nil {
						done <- err
						return
					}
				case g == 1 && i%40 == 0:
					if err := img.Flush(); err != nil {
						done <- err
						return
					}
				}
			}
			done <- nil
		}(g)
	}
	for g := 0; g < 4; g++ {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	qemuImgCheck(t, path, false)
}
