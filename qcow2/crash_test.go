package qcow2

import (
	"bytes"
	"math"
	"math/rand"
	"os"
	"testing"
)

// recFile records every write so that any prefix of them can be replayed: the image a
// process kill at that instant would leave behind.
type recFile struct {
	*os.File
	log []recWrite
}

type recWrite struct {
	off  int64
	data []byte
}

func (r *recFile) WriteAt(p []byte, off int64) (int, error) {
	r.log = append(r.log, recWrite{off, append([]byte(nil), p...)})
	return r.File.WriteAt(p, off)
}

// TestCrashConsistency kills (replays a prefix of the writes of) a long sequence of
// allocating writes, COW, snapshot create/apply/delete/replace, vm state writes, refcount
// table growth and L1 growth, and checks every resulting image.
func TestCrashConsistency(t *testing.T) {
	// 512-byte clusters with 64-bit refcounts: a refcount block covers only 64 clusters, so
	// the refcount table grows and moves several times.
	t.Run("v3-512-rc64", func(t *testing.T) {
		crashConsistency(t, CreateOptions{Size: 1 << 20, ClusterSize: 512, RefcountBits: 64}, 70)
	})
	t.Run("v2-4k", func(t *testing.T) {
		crashConsistency(t, CreateOptions{Size: 1 << 20, ClusterSize: 4096, Compat: "0.10"}, 40)
	})
}

func crashConsistency(t *testing.T, o CreateOptions, steps int) {
	dir := t.TempDir()
	path := dir + "/crash.qcow2"
	if err := Create(path, o); err != nil {
		t.Fatal(err)
	}
	initial := readFileT(t, path)
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recFile{File: f}
	img, err := openFile(rec, path, false)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewSource(7))
	write := func() {
		n := rng.Intn(3000) + 1
		off := rng.Int63n(img.Size() - int64(n))
		if _, err := img.WriteAt(bytes.Repeat([]byte{byte(rng.Intn(255) + 1)}, n), off); err != nil {
			t.Fatal(err)
		}
	}
	for step := 0; step < steps; step++ {
		switch rng.Intn(11) {
		case 0:
			vm := bytes.Repeat([]byte{0x5a}, rng.Intn(4000)+1)
			if err := img.WriteVMState(vm, 0); err != nil {
				t.Fatal(err)
			}
			if _, err := img.CreateSnapshot(SnapshotInfo{Name: "s", VMStateSize: uint64(len(vm)), ICount: math.MaxUint64}); err != nil {
				t.Fatal(err)
			}
		case 1:
			if sn := img.Snapshots(); len(sn) > 0 {
				if err := img.ApplySnapshot(sn[rng.Intn(len(sn))].ID); err != nil {
					t.Fatal(err)
				}
			}
		case 2:
			if sn := img.Snapshots(); len(sn) > 1 {
				if err := img.DeleteSnapshot(sn[rng.Intn(len(sn))].ID, ""); err != nil {
					t.Fatal(err)
				}
			}
		case 3:
			if sn := img.Snapshots(); len(sn) > 0 {
				if _, err := img.ReplaceSnapshot(sn[0].ID, SnapshotInfo{Name: "r", ICount: math.MaxUint64}); err != nil {
					t.Fatal(err)
				}
			}
		case 4:
			if err := img.Flush(); err != nil {
				t.Fatal(err)
			}
		case 5:
			off := rng.Int63n(img.Size()-8192) &^ 511
			if err := img.Discard(off, 8192); err != nil {
				t.Fatal(err)
			}
		case 6:
			off := rng.Int63n(img.Size() - 8192)
			if err := img.WriteZeroes(off, rng.Int63n(8192), rng.Intn(2) == 0); err != nil {
				t.Fatal(err)
			}
		default:
			write()
		}
	}
	if err := img.Resize(3 << 20); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		write()
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	qemuImgCheck(t, path, false)

	log := rec.log
	t.Logf("%d writes recorded", len(log))
	state := append([]byte(nil), initial...)
	apply := func(w recWrite) {
		if end := w.off + int64(len(w.data)); end > int64(len(state)) {
			state = append(state, make([]byte, end-int64(len(state)))...)
		}
		copy(state[w.off:], w.data)
	}
	probe := dir + "/probe.qcow2"
	qemuEvery := max(len(log)/25, 1)
	for k := 0; k <= len(log); k++ {
		if k > 0 {
			apply(log[k-1])
		}
		if err := os.WriteFile(probe, state, 0o644); err != nil {
			t.Fatal(err)
		}
		r, err := Check(probe, RepairNone)
		if err != nil {
			t.Fatalf("after %d writes: %v", k, err)
		}
		if r.Corruptions != 0 || r.CheckErrors != 0 {
			t.Fatalf("after %d of %d writes: %+v\n%v", k, len(log), r, r.Messages)
		}
		if k%qemuEvery == 0 {
			qemuImgCheck(t, probe, true)
		}
	}
}
