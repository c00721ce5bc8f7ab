package qcow2

import (
	"bytes"
	"math"
	"math/rand"
	"os"
	"sync"
	"testing"
	"time"
)

// vmPiece is one WriteVMState call of the concurrency tests.
type vmPiece struct {
	pos  int64
	data []byte
}

// vmPieces cuts [0, n) into runs of random data, of 1 to 40 pages or (one
// in four, large enough to bypass the page cache) 64 to 160 pages, leaving
// some runs out as holes.
func vmPieces(rng *rand.Rand, n int64) []vmPiece {
	var out []vmPiece
	for pos := int64(0); pos < n; {
		pages := rng.Intn(40) + 1
		if rng.Intn(4) == 0 {
			pages = rng.Intn(97) + 64
		}
		l := min(int64(pages)*4096, n-pos)
		if rng.Intn(5) != 0 {
			d := make([]byte, l)
			rng.Read(d)
			out = append(out, vmPiece{pos, d})
		}
		pos += l
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// writePieces writes the pieces from four goroutines; done, if set, is
// called after each write returned.
func writePieces(t *testing.T, img *Image, pieces []vmPiece, done func(i int)) {
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < len(pieces); i += 4 {
				if err := img.WriteVMState(pieces[i].data, pieces[i].pos); err != nil {
					t.Error(err)
					return
				}
				if done != nil {
					done(i)
				}
			}
		}()
	}
	wg.Wait()
}

// Concurrent vm-state writes that share clusters, with guest writes and
// flushes going on, store exactly what was written, leave holes as zeros,
// and leave an image qemu-img check finds clean; a second round rewrites
// the same clusters in place.
func TestConcurrentVMStateWrites(t *testing.T) {
	path := tempPath(t, "vm.qcow2")
	if err := Create(path, CreateOptions{Size: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	img := mustOpen(t, path, OpenOptions{})
	defer img.Close()
	rng := rand.New(rand.NewSource(1))
	const n = 6 << 20
	want := make([]byte, n)
	for round := 0; round < 2; round++ {
		pieces := vmPieces(rng, n)
		for _, p := range pieces {
			copy(want[p.pos:], p.data)
		}
		stop := make(chan struct{})
		guest := make(chan struct{})
		go func() {
			defer close(guest)
			g := rand.New(rand.NewSource(2))
			buf := make([]byte, 8192)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				g.Read(buf)
				if _, err := img.WriteAt(buf, g.Int63n(4<<20-8192)); err != nil {
					t.Error(err)
					return
				}
				if i%8 == 0 {
					if err := img.Flush(); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
		writePieces(t, img, pieces, nil)
		close(stop)
		<-guest
		got := make([]byte, n)
		if err := img.ReadVMState(got, 0); err != nil {
			t.Fatal(err)
		}
		if i := firstDiff(got, want); i >= 0 {
			t.Fatalf("round %d: vm state differs first at byte %#x", round, i)
		}
		if err := img.Flush(); err != nil {
			t.Fatal(err)
		}
		qemuImgCheck(t, path, false)
	}
	if img.direct == nil {
		t.Error("no vm-state write bypassed the page cache")
	}
}

// A snapshot created while vm-state writes are going on holds every write
// that had returned before it was asked for, each write whole or not at
// all, and does not change afterwards.
func TestSnapshotDuringVMStateWrites(t *testing.T) {
	path := tempPath(t, "vm.qcow2")
	if err := Create(path, CreateOptions{Size: 4 << 20}); err != nil {
		t.Fatal(err)
	}
	// Slow data writes keep some of them in flight when the snapshot is
	// asked for.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	img, err := openFile(slowFile{f}, path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	const n = 8 << 20
	pieces := vmPieces(rand.New(rand.NewSource(3)), n)
	var (
		mu       sync.Mutex
		returned = make([]bool, len(pieces))
		count    int
		before   []bool
		snapErr  error
		atSnap   []byte // the snapshot's vm state as soon as it exists
		snapDone = make(chan struct{})
	)
	writePieces(t, img, pieces, func(i int) {
		mu.Lock()
		defer mu.Unlock()
		returned[i] = true
		count++
		if count == len(pieces)/2 {
			before = append([]bool(nil), returned...)
			go func() {
				defer close(snapDone)
				var sn SnapshotInfo
				if sn, snapErr = img.CreateSnapshot(SnapshotInfo{Name: "mid", VMStateSize: n, ICount: math.MaxUint64}); snapErr == nil {
					atSnap = make([]byte, n)
					snapErr = img.ReadSnapshotVMState(sn.ID, atSnap, 0)
				}
			}()
		}
	})
	<-snapDone
	if snapErr != nil {
		t.Fatal(snapErr)
	}
	id := img.Snapshots()[0].ID
	now := make([]byte, n)
	if err := img.ReadSnapshotVMState(id, now, 0); err != nil {
		t.Fatal(err)
	}
	if i := firstDiff(now, atSnap); i >= 0 {
		t.Fatalf("the snapshot's vm state changed after it was created, first at byte %#x", i)
	}
	for i, p := range pieces {
		got := make([]byte, len(p.data))
		if err := img.ReadSnapshotVMState(id, got, p.pos); err != nil {
			t.Fatal(err)
		}
		switch {
		case bytes.Equal(got, p.data):
		case before[i]:
			t.Fatalf("write %d at %#x returned before the snapshot but is not in it", i, p.pos)
		case !bytes.Equal(got, make([]byte, len(got))):
			t.Fatalf("write %d at %#x is in the snapshot in part", i, p.pos)
		}
	}
	if err := img.Flush(); err != nil {
		t.Fatal(err)
	}
	qemuImgCheck(t, path, false)
}

// slowFile delays data writes (page multiples that are not whole clusters,
// unlike metadata) by 20 ms.
type slowFile struct{ *os.File }

func (f slowFile) WriteAt(p []byte, off int64) (int, error) {
	if len(p)%4096 == 0 && len(p)%(64<<10) != 0 {
		time.Sleep(20 * time.Millisecond)
	}
	return f.File.WriteAt(p, off)
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}
