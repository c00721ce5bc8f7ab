package qcow2

import (
	"encoding/binary"
	"os"
	"strings"
	"testing"
)

// TestCheckMatchesQemuImg compares Check's counts with qemu-img check on a clean image with
// snapshots, then on images with an injected leak and an injected refcount error.
func TestCheckMatchesQemuImg(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/c.qcow2"
	if err := Create(path, CreateOptions{Size: 16 << 20, ClusterSize: 4096}); err != nil {
		t.Fatal(err)
	}
	img := mustOpen(t, path, OpenOptions{})
	img.WriteAt(fill(50000, 1), 4096*10)
	img.CreateSnapshot(SnapshotInfo{Name: "a"})
	img.WriteAt(fill(20000, 2), 4096*12)
	img.WriteAt(fill(9000, 3), 8<<20)
	img.Close()
	q := qemuImgCheck(t, path, false)
	r, err := Check(path, RepairNone)
	if err != nil {
		t.Fatal(err)
	}
	if r.Corruptions != 0 || r.Leaks != 0 || r.ImageEndOffset != q.ImageEndOffset || r.AllocatedClusters != q.AllocatedClusters ||
		r.FragmentedClusters != q.FragmentedClusters || r.TotalClusters != q.TotalClusters {
		t.Fatalf("ours %+v\nqemu %+v", r, q)
	}

	// Leak: bump the refcount of the header cluster (16-bit entry 0 of the first block).
	setStoredRefcount(t, path, 0, 2)
	r, _ = Check(path, RepairNone)
	if r.Leaks != 1 || r.Corruptions != 0 || !contains(r.Messages, "Leaked cluster 0 refcount=2 reference=1") {
		t.Fatalf("leak: %+v", r)
	}
	r, _ = Check(path, RepairLeaks)
	if r.LeaksFixed != 1 || r.Leaks != 0 {
		t.Fatalf("repair leaks: %+v", r)
	}
	qemuImgCheck(t, path, false)

	// Error: drop the header cluster's refcount to 0.
	setStoredRefcount(t, path, 0, 0)
	r, _ = Check(path, RepairNone)
	if r.Corruptions != 1 || !contains(r.Messages, "ERROR cluster 0 refcount=0 reference=1") {
		t.Fatalf("error: %+v", r)
	}
	r, _ = Check(path, RepairAll)
	if r.CorruptionsFixed != 1 || r.Corruptions != 0 {
		t.Fatalf("repair all: %+v", r)
	}
	qemuImgCheck(t, path, false)
}

func contains(msgs []string, s string) bool {
	for _, m := range msgs {
		if strings.Contains(m, s) {
			return true
		}
	}
	return false
}

// setStoredRefcount patches the 16-bit refcount of cluster cl in the first refcount block.
func setStoredRefcount(t *testing.T, path string, cl int, v uint16) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var hdr [64]byte
	f.ReadAt(hdr[:], 0)
	rt := int64(binary.BigEndian.Uint64(hdr[48:]))
	var e [8]byte
	f.ReadAt(e[:], rt)
	rb := int64(binary.BigEndian.Uint64(e[:]))
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	f.WriteAt(b[:], rb+int64(cl)*2)
}

// TestCheckIncompleteSnapshotEntry: a v3 snapshot entry without extra data is reported
// (as qemu-img does) and repaired by RepairAll.
func TestCheckIncompleteSnapshotEntry(t *testing.T) {
	path := tempPath(t, "inc.qcow2")
	if err := Create(path, CreateOptions{Size: 1 << 20, ClusterSize: 4096}); err != nil {
		t.Fatal(err)
	}
	img := mustOpen(t, path, OpenOptions{})
	img.WriteAt(fill(5000, 1), 0)
	if _, err := img.CreateSnapshot(SnapshotInfo{Name: "x"}); err != nil {
		t.Fatal(err)
	}
	img.Close()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var hdr [72]byte
	f.ReadAt(hdr[:], 0)
	off := int64(binary.BigEndian.Uint64(hdr[64:]))
	entry := make([]byte, 40)
	f.ReadAt(entry, off)
	binary.BigEndian.PutUint32(entry[36:], 0) // extra_data_size
	entry = append(entry, "1x"...)            // id "1", name "x"
	f.WriteAt(entry, off)
	f.Close()
	out, code := run(t, []int{2}, "qemu-img", "check", path)
	if code != 2 || !strings.Contains(out, "ERROR snapshot table entry 0 is incomplete") {
		t.Fatalf("qemu-img check: %d\n%s", code, out)
	}
	r, err := Check(path, RepairNone)
	if err != nil || r.Corruptions != 1 || !contains(r.Messages, "ERROR snapshot table entry 0 is incomplete") {
		t.Fatalf("%+v %v", r, err)
	}
	if r, err = Check(path, RepairAll); err != nil || r.Corruptions != 0 || r.CorruptionsFixed != 1 {
		t.Fatalf("repair: %+v %v", r, err)
	}
	qemuImgCheck(t, path, false)
	img = mustOpen(t, path, OpenOptions{})
	defer img.Close()
	if s := img.Snapshots(); len(s) != 1 || s[0].Name != "x" || s[0].DiskSize != 1<<20 {
		t.Fatalf("%+v", s)
	}
}
