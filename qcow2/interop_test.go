package qcow2

import (
	"bytes"
	"fmt"
	"math/rand"
	"os"
	"testing"
)

// qemuIO runs qemu-io commands on a qcow2 image.
func qemuIO(t testing.TB, path string, cmds ...string) {
	t.Helper()
	args := []string{"-f", "qcow2"}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	args = append(args, path)
	out, _ := run(t, nil, "qemu-io", args...)
	if bytes.Contains([]byte(out), []byte("error")) || bytes.Contains([]byte(out), []byte("Pattern verification failed")) {
		t.Fatalf("qemu-io %v:\n%s", cmds, out)
	}
}

// rawOf converts an image (its active state) to raw with qemu-img and returns the bytes.
func rawOf(t testing.TB, path string) []byte {
	t.Helper()
	raw := path + ".raw"
	run(t, nil, "qemu-img", "convert", "-O", "raw", path, raw)
	b := readFileT(t, raw)
	os.Remove(raw)
	return b
}

// readAll reads the whole virtual disk through this package.
func readAll(t testing.TB, path string) []byte {
	t.Helper()
	img := mustOpen(t, path, OpenOptions{ReadOnly: true})
	defer img.Close()
	b := make([]byte, img.Size())
	if _, err := img.ReadAt(b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestReadQemuImages reads images written by qemu-img/qemu-io in many configurations,
// modifies them, and checks the result with qemu-img.
func TestReadQemuImages(t *testing.T) {
	type cfg struct {
		opts string
		size int64
	}
	cfgs := []cfg{
		{"compat=0.10", 4 << 20},
		{"compat=1.1", 4 << 20},
		{"cluster_size=512", 2 << 20},
		{"cluster_size=4096,refcount_bits=1", 4 << 20},
		{"cluster_size=4096,refcount_bits=2", 4 << 20},
		{"cluster_size=4096,refcount_bits=4", 4 << 20},
		{"cluster_size=4096,refcount_bits=8", 4 << 20},
		{"cluster_size=4096,refcount_bits=32", 4 << 20},
		{"cluster_size=4096,refcount_bits=64", 4 << 20},
		{"cluster_size=2M", 8 << 20},
	}
	for _, c := range cfgs {
		t.Run(c.opts, func(t *testing.T) {
			dir := t.TempDir()
			path := dir + "/q.qcow2"
			run(t, nil, "qemu-img", "create", "-q", "-f", "qcow2", "-o", c.opts, path, fmt.Sprint(c.size))
			qemuIO(t, path, "write -P 0xab 0 100k", "write -P 0xcd 1M 64k", "write -z 1040k 8k")
			snaps := c.opts != "cluster_size=4096,refcount_bits=1"
			// Two snapshots plus the active tree need refcounts above 3.
			ours := snaps && c.opts != "cluster_size=4096,refcount_bits=2"
			if snaps {
				run(t, nil, "qemu-img", "snapshot", "-c", "s1", path)
				qemuIO(t, path, "write -P 0xef 4k 8k", "discard 1M 64k", "write -P 0x11 1536k 5000")
			}
			want := rawOf(t, path)
			if got := readAll(t, path); !bytes.Equal(got, want) {
				t.Fatal("read differs from qemu-img convert")
			}
			img := mustOpen(t, path, OpenOptions{})
			rng := rand.New(rand.NewSource(2))
			for i := 0; i < 40; i++ {
				n := rng.Intn(20000) + 1
				off := rng.Int63n(c.size - int64(n))
				p := bytes.Repeat([]byte{byte(i + 1)}, n)
				if _, err := img.WriteAt(p, off); err != nil {
					t.Fatal(err)
				}
				copy(want[off:], p)
			}
			if ours {
				if _, err := img.CreateSnapshot(SnapshotInfo{Name: "ours"}); err != nil {
					t.Fatal(err)
				}
				img.WriteAt(fill(3000, 0x77), 7000)
			}
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			qemuImgCheck(t, path, false)
			if ours {
				run(t, nil, "qemu-img", "snapshot", "-a", "ours", path)
			}
			if got := rawOf(t, path); !bytes.Equal(got, want) {
				t.Fatal("qemu-img sees different data after our writes")
			}
		})
	}
}

// TestCompressedImages reads images made by qemu-img convert -c (zlib and zstd), then
// overwrites parts of compressed clusters.
func TestCompressedImages(t *testing.T) {
	for _, ct := range []string{"zlib", "zstd"} {
		t.Run(ct, func(t *testing.T) {
			dir := t.TempDir()
			raw := make([]byte, 3<<20)
			rng := rand.New(rand.NewSource(3))
			for i := 0; i < len(raw); i += 4096 {
				if rng.Intn(3) > 0 {
					copy(raw[i:], bytes.Repeat([]byte(fmt.Sprintf("block %d ", i)), 400))
				}
			}
			os.WriteFile(dir+"/in.raw", raw, 0o644)
			path := dir + "/c.qcow2"
			run(t, nil, "qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", "-o", "compression_type="+ct+",cluster_size=16k", dir+"/in.raw", path)
			if got := readAll(t, path); !bytes.Equal(got, raw) {
				t.Fatal("compressed read differs")
			}
			img := mustOpen(t, path, OpenOptions{})
			img.WriteAt(fill(100, 9), 5000)
			copy(raw[5000:], fill(100, 9))
			img.WriteAt(fill(40000, 8), 1<<20+300)
			copy(raw[1<<20+300:], fill(40000, 8))
			if _, err := img.CreateSnapshot(SnapshotInfo{Name: "c"}); err != nil {
				t.Fatal(err)
			}
			img.WriteAt(fill(10, 7), 2<<20)
			copy(raw[2<<20:], fill(10, 7))
			img.Close()
			c := qemuImgCheck(t, path, false)
			if c.CompressedClusters == 0 {
				t.Fatal("no compressed clusters left")
			}
			r, err := Check(path, RepairNone)
			if err != nil || r.CompressedClusters != c.CompressedClusters || r.FragmentedClusters != c.FragmentedClusters || r.Corruptions+r.Leaks != 0 {
				t.Fatalf("Check: %+v %v; qemu %+v", r, err, c)
			}
			if got := rawOf(t, path); !bytes.Equal(got, raw) {
				t.Fatal("qemu-img sees different data")
			}
		})
	}
}

// TestBackingChains reads through qcow2 and raw backing files opened by name.
func TestBackingChains(t *testing.T) {
	dir := t.TempDir()
	base := make([]byte, 2<<20)
	for i := range base {
		base[i] = byte(i / 1000)
	}
	os.WriteFile(dir+"/base.raw", base, 0o644)
	run(t, nil, "qemu-img", "convert", "-f", "raw", "-O", "qcow2", dir+"/base.raw", dir+"/base.qcow2")
	// mid over qcow2 base (created by us), top over mid (created by qemu-img).
	if err := Create(dir+"/mid.qcow2", CreateOptions{BackingFile: "base.qcow2", BackingFormat: "qcow2"}); err != nil {
		t.Fatal(err)
	}
	mid := mustOpen(t, dir+"/mid.qcow2", OpenOptions{})
	if mid.Size() != 2<<20 || mid.BackingFormat() != "qcow2" {
		t.Fatalf("size %d fmt %q", mid.Size(), mid.BackingFormat())
	}
	mid.WriteAt(fill(3000, 0xaa), 70000)
	mid.WriteZeroes(128<<10, 64<<10, false)
	mid.Discard(256<<10, 64<<10)
	mid.Close()
	qemuImgCheck(t, dir+"/mid.qcow2", false)
	run(t, nil, "qemu-img", "create", "-q", "-f", "qcow2", "-b", "mid.qcow2", "-F", "qcow2", dir+"/top.qcow2")
	qemuIO(t, dir+"/top.qcow2", "write -P 0x55 1M 10k")
	want := rawOf(t, dir+"/top.qcow2")
	if got := readAll(t, dir+"/top.qcow2"); !bytes.Equal(got, want) {
		t.Fatal("chain read differs")
	}
	// Raw backing without a format extension (probed).
	if err := Create(dir+"/overraw.qcow2", CreateOptions{BackingFile: dir + "/base.raw", Size: 3 << 20}); err != nil {
		t.Fatal(err)
	}
	img := mustOpen(t, dir+"/overraw.qcow2", OpenOptions{})
	img.WriteAt(fill(10, 1), 65530)
	img.Close()
	qemuImgCheck(t, dir+"/overraw.qcow2", false)
	if got, want := readAll(t, dir+"/overraw.qcow2"), rawOf(t, dir+"/overraw.qcow2"); !bytes.Equal(got, want) {
		t.Fatal("raw-backed read differs")
	}
	// v2 overlay: write zeroes must hide backing data.
	if err := Create(dir+"/v2.qcow2", CreateOptions{Compat: "0.10", BackingFile: "base.raw", BackingFormat: "raw"}); err != nil {
		t.Fatal(err)
	}
	img = mustOpen(t, dir+"/v2.qcow2", OpenOptions{})
	img.WriteZeroes(100, 200000, true)
	img.Close()
	qemuImgCheck(t, dir+"/v2.qcow2", false)
	if got, want := readAll(t, dir+"/v2.qcow2"), rawOf(t, dir+"/v2.qcow2"); !bytes.Equal(got, want) || want[5000] != 0 {
		t.Fatal("v2 zeroes differ")
	}
}
