package qcow2

import (
	"bytes"
	"fmt"
	"math"
	"math/rand"
	"strings"
	"testing"
)

// TestDifferentialQemu runs the same random sequence of writes, zero writes, discards,
// vm-state writes and snapshot create/apply/delete through this package (image A) and
// through qemu-io / qemu-img (image B), then compares data, vm state, snapshot lists and
// check results.
func TestDifferentialQemu(t *testing.T) {
	for _, seed := range []int64{1, 2, 3} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			differential(t, seed, 30)
		})
	}
}

func differential(t *testing.T, seed int64, steps int) {
	dir := t.TempDir()
	a, b := dir+"/a.qcow2", dir+"/b.qcow2"
	rng := rand.New(rand.NewSource(seed))
	cs := []int{512, 4096, 65536}[rng.Intn(3)]
	size := int64(4 << 20)
	if err := Create(a, CreateOptions{Size: size, ClusterSize: cs}); err != nil {
		t.Fatal(err)
	}
	run(t, nil, "qemu-img", "create", "-q", "-f", "qcow2", "-o", fmt.Sprintf("cluster_size=%d", cs), b, fmt.Sprint(size))
	var ioCmds []string
	flushIO := func() {
		if len(ioCmds) > 0 {
			qemuIO(t, b, ioCmds...)
			ioCmds = nil
		}
	}
	var names []string
	img := mustOpen(t, a, OpenOptions{})
	for step := 0; step < steps; step++ {
		op := rng.Intn(12)
		switch {
		case op < 5:
			n := rng.Int63n(3*int64(cs)) + 1
			off := rng.Int63n(size - n)
			pat := rng.Intn(255) + 1
			if _, err := img.WriteAt(bytes.Repeat([]byte{byte(pat)}, int(n)), off); err != nil {
				t.Fatal(err)
			}
			ioCmds = append(ioCmds, fmt.Sprintf("write -q -P %d %d %d", pat, off, n))
		case op == 5:
			n := rng.Int63n(4*int64(cs)) + 1
			off := rng.Int63n(size - n)
			if err := img.WriteZeroes(off, n, rng.Intn(2) == 0); err != nil {
				t.Fatal(err)
			}
			ioCmds = append(ioCmds, fmt.Sprintf("write -q -z %d %d", off, n))
		case op == 6:
			n := (rng.Int63n(4) + 1) * int64(cs)
			off := rng.Int63n((size-n)/int64(cs)) * int64(cs)
			if err := img.Discard(off, n); err != nil {
				t.Fatal(err)
			}
			ioCmds = append(ioCmds, fmt.Sprintf("discard -q %d %d", off, n))
		case op == 7:
			// qemu-io wants sector-aligned vm-state requests.
			n := (rng.Int63n(2*int64(cs)) + 512) &^ 511
			off := rng.Int63n(1<<20) &^ 511
			pat := rng.Intn(255) + 1
			if err := img.WriteVMState(bytes.Repeat([]byte{byte(pat)}, int(n)), off); err != nil {
				t.Fatal(err)
			}
			ioCmds = append(ioCmds, fmt.Sprintf("write -q -b -P %d %d %d", pat, off, n))
		case op <= 9:
			name := fmt.Sprintf("s%d", step)
			if _, err := img.CreateSnapshot(SnapshotInfo{Name: name, ICount: math.MaxUint64}); err != nil {
				t.Fatal(err)
			}
			img.Close()
			flushIO()
			run(t, nil, "qemu-img", "snapshot", "-c", name, b)
			names = append(names, name)
			img = mustOpen(t, a, OpenOptions{})
		case op == 10 && len(names) > 0:
			name := names[rng.Intn(len(names))]
			if err := img.ApplySnapshot(name); err != nil {
				t.Fatal(err)
			}
			flushIO()
			run(t, nil, "qemu-img", "snapshot", "-a", name, b)
		case op == 11 && len(names) > 0:
			i := rng.Intn(len(names))
			if err := img.DeleteSnapshot("", names[i]); err != nil {
				t.Fatal(err)
			}
			flushIO()
			run(t, nil, "qemu-img", "snapshot", "-d", names[i], b)
			names = append(names[:i], names[i+1:]...)
		}
	}
	if err := img.Close(); err != nil {
		t.Fatal(err)
	}
	flushIO()
	qemuImgCheck(t, a, false)
	qemuImgCheck(t, b, true)
	run(t, nil, "qemu-img", "compare", "-q", a, b)
	la, _ := run(t, nil, "qemu-img", "snapshot", "-l", a)
	lb, _ := run(t, nil, "qemu-img", "snapshot", "-l", b)
	if snapNames(la) != snapNames(lb) {
		t.Fatalf("snapshot lists differ:\n%s\n%s", la, lb)
	}
	ia, ib := mustOpen(t, a, OpenOptions{ReadOnly: true}), mustOpen(t, b, OpenOptions{ReadOnly: true})
	defer ia.Close()
	defer ib.Close()
	va, vb := make([]byte, 1<<20+2*cs), make([]byte, 1<<20+2*cs)
	if err := ia.ReadVMState(va, 0); err != nil {
		t.Fatal(err)
	}
	if err := ib.ReadVMState(vb, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(va, vb) {
		t.Fatal("vm state areas differ")
	}
	r, err := Check(a, RepairNone)
	if err != nil || r.Corruptions+r.Leaks+r.CheckErrors != 0 {
		t.Fatalf("Check: %+v %v", r, err)
	}
}

// snapNames extracts the ID and TAG columns of qemu-img snapshot -l.
func snapNames(out string) string {
	var s []string
	for _, line := range strings.Split(out, "\n")[2:] {
		if f := strings.Fields(line); len(f) >= 2 {
			s = append(s, f[0]+" "+f[1])
		}
	}
	return strings.Join(s, ",")
}
