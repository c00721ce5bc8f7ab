package qcow2

import (
	"bytes"
	"encoding/binary"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// memFile is an in-memory image file for the fuzz targets.
type memFile struct{ b []byte }

func (m *memFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (m *memFile) WriteAt(p []byte, off int64) (int, error) {
	if end := off + int64(len(p)); end > int64(len(m.b)) {
		if end > 16<<20 { // keep fuzzing fast: a real file would just be sparse
			return 0, io.ErrShortWrite
		}
		m.b = append(m.b, make([]byte, end-int64(len(m.b)))...)
	}
	return copy(m.b[off:], p), nil
}

func (m *memFile) Sync() error                { return nil }
func (m *memFile) Close() error               { return nil }
func (m *memFile) Stat() (os.FileInfo, error) { return memInfo(len(m.b)), nil }

type memInfo int64

func (s memInfo) Name() string       { return "mem" }
func (s memInfo) Size() int64        { return int64(s) }
func (s memInfo) Mode() fs.FileMode  { return 0o644 }
func (s memInfo) ModTime() time.Time { return time.Time{} }
func (s memInfo) IsDir() bool        { return false }
func (s memInfo) Sys() any           { return nil }

func addSeedImages(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.qcow2")
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// FuzzOpen parses arbitrary images (header, extensions, snapshot table); on success it
// reads data, lists snapshots, runs Check, and tries a few writes and snapshot operations.
func FuzzOpen(f *testing.F) {
	addSeedImages(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4<<20 {
			return
		}
		img, err := openFile(&memFile{b: append([]byte(nil), data...)}, "fuzz.qcow2", true)
		if err != nil {
			return
		}
		buf := make([]byte, 64<<10)
		n := min(int64(len(buf)), img.Size())
		img.ReadAt(buf[:n], 0)
		img.ReadAt(buf[:n], img.Size()-n)
		img.Map(0, min(img.Size(), 16<<20))
		img.ReadVMState(buf[:4096], 0)
		for _, s := range img.Snapshots() {
			img.FindSnapshot(s.Name)
		}
		img.Close()
		checkStorage(&memFile{b: append([]byte(nil), data...)}, "fuzz.qcow2", RepairNone)
		checkStorage(&memFile{b: append([]byte(nil), data...)}, "fuzz.qcow2", RepairAll)

		w, err := openFile(&memFile{b: append([]byte(nil), data...)}, "fuzz.qcow2", false)
		if err != nil {
			return
		}
		defer w.Close()
		n = min(int64(len(buf)), w.Size())
		w.WriteAt(buf[:n/2], n/4)
		w.WriteVMState(buf[:1000], 100)
		if s, err := w.CreateSnapshot(SnapshotInfo{Name: "f", VMStateSize: 1000}); err == nil {
			w.WriteAt(buf[:n/3], 0)
			w.ApplySnapshot(s.ID)
			w.DeleteSnapshot(s.ID, "")
		}
		w.Discard(0, n)
	})
}

// FuzzL2 decodes arbitrary L2 entries and decompresses arbitrary data as a compressed
// cluster (zlib and zstd), for every cluster size.
func FuzzL2(f *testing.F) {
	f.Add(uint64(0x8000000000050000), uint8(16), []byte{})
	f.Add(uint64(0x4000000000000200), uint8(12), []byte{0x78, 0x9c, 0x03, 0x00})
	f.Add(uint64(0x4000000000000000)|1<<54, uint8(9), []byte{0x28, 0xb5, 0x2f, 0xfd, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, e uint64, bits uint8, data []byte) {
		cb := uint(bits)%(maxClusterBits-minClusterBits+1) + minClusterBits
		for _, ct := range []uint8{compressionZlib, compressionZstd} {
			img := &Image{f: &sizedFile{storage: &memFile{b: data}, size: int64(len(data))}, clusterBits: cb, cs: int64(1) << cb}
			img.hdr.CompressionType = ct
			kind, host, err := img.decodeL2(e, 0)
			if err == nil && kind != kindCompressed && host%img.cs != 0 {
				t.Fatalf("unaligned host offset %#x accepted", host)
			}
			off, n := img.compressedRange(e)
			if off < 0 || n <= 0 || n > 2*img.cs {
				t.Fatalf("compressed range %d+%d for cluster bits %d", off, n, cb)
			}
			if e&oflagCompressed != 0 && off < 1<<20 {
				img.readCompressed(make([]byte, img.cs), e)
			}
		}
		// Refcount entries of every width round-trip.
		blk := make([]byte, 512)
		for order := uint(0); order <= maxRefcountOrder; order++ {
			w := uint(1) << order
			v := e & refcountMax(w)
			i := int64(bits) % (512 * 8 / int64(w))
			setRefEntry(blk, i, w, v)
			if got := getRefEntry(blk, i, w); got != v {
				t.Fatalf("refcount width %d: set %d got %d", w, v, got)
			}
		}
	})
}

// FuzzOps runs a random sequence of operations against an in-memory model; every read must
// match the model and Check must find the final image clean.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20})
	f.Add(bytes.Repeat([]byte{0x13, 0x57, 0x9b, 0xdf, 0x24, 0x68, 0xac, 0xe0}, 8))
	f.Add([]byte{4, 0, 0, 0, 5, 1, 1, 1, 0, 3, 3, 3, 6, 0, 0, 0, 7, 2, 2, 2})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 400 {
			return
		}
		fuzzOps(t, ops)
	})
}

type snapModel struct {
	id   string
	disk []byte
	vm   []byte
}

func fuzzOps(t *testing.T, ops []byte) {
	const size = 256 << 10
	const vmSize = 64 << 10
	cs := []int{512, 4096, 65536}[0]
	if len(ops) > 0 {
		cs = []int{512, 4096, 65536}[ops[0]%3]
	}
	dir := t.TempDir()
	path := dir + "/ops.qcow2"
	compat := "1.1"
	if len(ops) > 1 && ops[1]%4 == 0 {
		compat = "0.10"
	}
	if err := Create(path, CreateOptions{Size: size, ClusterSize: cs, Compat: compat}); err != nil {
		t.Fatal(err)
	}
	mem := &memFile{b: readFileT(t, path)}
	img, err := openFile(mem, path, false)
	if err != nil {
		t.Fatal(err)
	}
	disk := make([]byte, size)
	vm := make([]byte, vmSize)
	var snaps []snapModel
	rd := func(i int) int64 { // 16-bit argument from the op stream
		if i+1 < len(ops) {
			return int64(binary.BigEndian.Uint16(ops[i:]))
		}
		return int64(i * 7919)
	}
	for i := 2; i+4 < len(ops); i += 5 {
		a, b := rd(i+1), rd(i+3)
		switch ops[i] % 9 {
		case 0, 1: // write
			off := a * 4 % size
			n := b%(3*int64(cs)) + 1
			n = min(n, size-off)
			p := bytes.Repeat([]byte{ops[i] | 1}, int(n))
			if _, err := img.WriteAt(p, off); err != nil {
				t.Fatal(err)
			}
			copy(disk[off:], p)
		case 2: // write zeroes
			off := a * 4 % size
			n := min(b*4+1, size-off)
			if err := img.WriteZeroes(off, n, ops[i]&16 != 0); err != nil {
				t.Fatal(err)
			}
			clear(disk[off : off+n])
		case 3: // discard (whole clusters only change)
			off := a * 4 % size
			n := min(b*8+1, size-off)
			if err := img.Discard(off, n); err != nil {
				t.Fatal(err)
			}
			s := (off + int64(cs) - 1) &^ int64(cs-1)
			e := (off + n) &^ int64(cs-1)
			if e > s {
				clear(disk[s:e])
			}
		case 4: // vm state write
			off := a % vmSize
			n := min(b%8192+1, vmSize-off)
			p := bytes.Repeat([]byte{ops[i] | 2}, int(n))
			if err := img.WriteVMState(p, off); err != nil {
				t.Fatal(err)
			}
			copy(vm[off:], p)
		case 5: // snapshot create
			vms := uint64(b % vmSize)
			s, err := img.CreateSnapshot(SnapshotInfo{Name: "s", VMStateSize: vms, ICount: math.MaxUint64})
			if err != nil {
				t.Fatal(err)
			}
			snaps = append(snaps, snapModel{s.ID, append([]byte(nil), disk...), append([]byte(nil), vm...)})
			clear(vm[:min(vmSize, (int64(vms)+int64(cs)-1)&^int64(cs-1))])
		case 6: // apply
			if len(snaps) > 0 {
				s := snaps[int(a)%len(snaps)]
				if err := img.ApplySnapshot(s.id); err != nil {
					t.Fatal(err)
				}
				copy(disk, s.disk)
				copy(vm, s.vm)
			}
		case 7: // delete
			if len(snaps) > 0 {
				k := int(a) % len(snaps)
				if err := img.DeleteSnapshot(snaps[k].id, ""); err != nil {
					t.Fatal(err)
				}
				snaps = append(snaps[:k], snaps[k+1:]...)
			}
		case 8: // replace the oldest snapshot
			if len(snaps) > 0 {
				s, err := img.ReplaceSnapshot(snaps[0].id, SnapshotInfo{Name: "r", ICount: math.MaxUint64})
				if err != nil {
					t.Fatal(err)
				}
				snaps = append(snaps[1:], snapModel{s.ID, append([]byte(nil), disk...), append([]byte(nil), vm...)})
			}
		}
	}
	got := make([]byte, size)
	if _, err := img.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, disk) {
		t.Fatal("disk differs from model")
	}
	gvm := make([]byte, vmSize)
	if err := img.ReadVMState(gvm, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(gvm, vm) {
		t.Fatal("vm state differs from model")
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := checkStorage(&memFile{b: mem.b}, path, RepairNone)
	if err != nil || r.Corruptions+r.Leaks+r.CheckErrors != 0 {
		t.Fatalf("check: %+v %v", r, err)
	}
	// Every snapshot still reads back as recorded.
	img, err = openFile(mem, path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	for _, s := range snaps {
		if err := img.ApplySnapshot(s.id); err != nil {
			t.Fatal(err)
		}
		img.ReadAt(got, 0)
		img.ReadVMState(gvm, 0)
		if !bytes.Equal(got, s.disk) || !bytes.Equal(gvm, s.vm) {
			t.Fatalf("snapshot %s differs from model", s.id)
		}
	}
}
