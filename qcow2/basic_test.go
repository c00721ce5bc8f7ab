package qcow2

import (
	"bytes"
	"math/rand"
	"os"
	"testing"
)

func TestCreateWriteReadInterop(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    CreateOptions
	}{
		{"v3-64k", CreateOptions{Size: 64 << 20}},
		{"v2-64k", CreateOptions{Size: 64 << 20, Compat: "0.10"}},
		{"v3-512", CreateOptions{Size: 8 << 20, ClusterSize: 512}},
		{"v3-4k-rc1", CreateOptions{Size: 16 << 20, ClusterSize: 4096, RefcountBits: 1}},
		{"v3-4k-rc64", CreateOptions{Size: 16 << 20, ClusterSize: 4096, RefcountBits: 64}},
		{"v3-2m", CreateOptions{Size: 64 << 20, ClusterSize: 2 << 20}},
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
			for i := 0; i < 200; i++ {
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
