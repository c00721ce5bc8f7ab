package qcow2

import (
	"bytes"
	"math"
	"os"
	"strings"
	"testing"
)

func fill(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

func TestSnapshotInteropQemuImg(t *testing.T) {
	for _, compat := range []string{"1.1", "0.10"} {
		t.Run(compat, func(t *testing.T) {
			dir := t.TempDir()
			path := dir + "/s.qcow2"
			if err := Create(path, CreateOptions{Size: 32 << 20, Compat: compat}); err != nil {
				t.Fatal(err)
			}
			img := mustOpen(t, path, OpenOptions{})
			img.WriteAt(fill(100000, 1), 0)
			img.WriteAt(fill(5000, 2), 20<<20)
			vm := bytes.Repeat([]byte("vmstate!"), 40000)
			if err := img.WriteVMState(vm, 0); err != nil {
				t.Fatal(err)
			}
			s1, err := img.CreateSnapshot(SnapshotInfo{Name: "first", VMStateSize: uint64(len(vm)), ICount: math.MaxUint64, VMClockNsec: 1234567890})
			if err != nil {
				t.Fatal(err)
			}
			if s1.ID != "1" || s1.DiskSize != 32<<20 {
				t.Fatalf("snapshot info %+v", s1)
			}
			// The active vm-state area is discarded after the snapshot.
			got := make([]byte, 4096)
			if err := img.ReadVMState(got, 0); err != nil || !bytes.Equal(got, make([]byte, 4096)) {
				t.Fatalf("vm state still visible in the active L1 (%v)", err)
			}
			img.WriteAt(fill(70000, 3), 30000) // COW over shared clusters
			s2, err := img.CreateSnapshot(SnapshotInfo{Name: "second", ICount: math.MaxUint64})
			if err != nil || s2.ID != "2" {
				t.Fatalf("%+v %v", s2, err)
			}
			img.WriteAt(fill(1000, 4), 0)
			if err := img.Close(); err != nil {
				t.Fatal(err)
			}
			qemuImgCheck(t, path, false)
			out, _ := run(t, nil, "qemu-img", "snapshot", "-l", path)
			if !strings.Contains(out, "first") || !strings.Contains(out, "312 KiB") || !strings.Contains(out, "second") {
				t.Fatalf("qemu-img snapshot -l:\n%s", out)
			}
			// qemu-img reverts to our snapshot; we read its data.
			run(t, nil, "qemu-img", "snapshot", "-a", "first", path)
			qemuImgCheck(t, path, false)
			img = mustOpen(t, path, OpenOptions{})
			want := make([]byte, 200000)
			copy(want, fill(100000, 1))
			got = make([]byte, len(want))
			img.ReadAt(got, 0)
			if !bytes.Equal(got, want) {
				t.Fatal("data after qemu-img snapshot -a differs")
			}
			vmGot := make([]byte, len(vm))
			if err := img.ReadVMState(vmGot, 0); err != nil || !bytes.Equal(vmGot, vm) {
				t.Fatalf("vm state after apply differs (%v)", err)
			}
			// Our apply of the second snapshot, then delete the first with qemu-img.
			if err := img.ApplySnapshot("second"); err != nil {
				t.Fatal(err)
			}
			img.ReadAt(got[:100], 30000)
			if !bytes.Equal(got[:100], fill(100, 3)) {
				t.Fatal("apply second: wrong data")
			}
			img.Close()
			qemuImgCheck(t, path, false)
			run(t, nil, "qemu-img", "snapshot", "-d", "first", path)
			qemuImgCheck(t, path, false)
			run(t, nil, "qemu-img", "snapshot", "-c", "third", path)
			img = mustOpen(t, path, OpenOptions{})
			sn := img.Snapshots()
			if len(sn) != 2 || sn[1].Name != "third" || sn[1].ID != "3" {
				t.Fatalf("snapshots %+v", sn)
			}
			if err := img.DeleteSnapshot("", "second"); err != nil {
				t.Fatal(err)
			}
			if _, err := img.ReplaceSnapshot("3", SnapshotInfo{Name: "third", ICount: math.MaxUint64}); err != nil {
				t.Fatal(err)
			}
			img.Close()
			qemuImgCheck(t, path, false)
			out, _ = run(t, nil, "qemu-img", "snapshot", "-l", path)
			if !strings.Contains(out, "4         third") {
				t.Fatalf("after replace:\n%s", out)
			}
			run(t, nil, "qemu-img", "snapshot", "-d", "third", path)
			qemuImgCheck(t, path, false)
			_ = os.Remove(path)
		})
	}
}

// TestSnapshotView reads a snapshot's disk and vm state without applying it, and compares
// with qemu-img convert -l.
func TestSnapshotView(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/v.qcow2"
	if err := Create(path, CreateOptions{Size: 4 << 20, ClusterSize: 4096}); err != nil {
		t.Fatal(err)
	}
	img := mustOpen(t, path, OpenOptions{})
	img.WriteAt(fill(10000, 1), 1000)
	vm := bytes.Repeat([]byte("state"), 3000)
	img.WriteVMState(vm, 0)
	if _, err := img.CreateSnapshot(SnapshotInfo{Name: "v", VMStateSize: uint64(len(vm))}); err != nil {
		t.Fatal(err)
	}
	img.WriteAt(fill(10000, 2), 0)
	img.Resize(8 << 20)
	view, err := img.OpenSnapshot("v")
	if err != nil {
		t.Fatal(err)
	}
	disk := make([]byte, view.Size())
	if _, err := view.ReadAt(disk, 0); err != nil {
		t.Fatal(err)
	}
	gvm := make([]byte, len(vm))
	if err := view.ReadVMState(gvm, 0); err != nil || !bytes.Equal(gvm, vm) {
		t.Fatalf("vm state via view: %v", err)
	}
	img.Close()
	run(t, nil, "qemu-img", "convert", "-l", "snapshot.name=v", "-O", "raw", path, dir+"/v.raw")
	// qemu-img convert -l uses the current size (8 MiB); the snapshot's disk is 4 MiB.
	if q := readFileT(t, dir+"/v.raw"); len(disk) != 4<<20 || !bytes.Equal(disk, q[:len(disk)]) {
		t.Fatal("snapshot view differs from qemu-img convert -l")
	}
}

// TestLargeVMState: a vm state above 4 GiB is stored in vm_state_size_large only (the
// 32-bit field is 0), and qemu-img lists its size.
func TestLargeVMState(t *testing.T) {
	path := tempPath(t, "big.qcow2")
	if err := Create(path, CreateOptions{Size: 1 << 20}); err != nil {
		t.Fatal(err)
	}
	img := mustOpen(t, path, OpenOptions{})
	const size = 5<<30 + 1
	if err := img.WriteVMState([]byte{0x42}, size-1); err != nil {
		t.Fatal(err)
	}
	if _, err := img.CreateSnapshot(SnapshotInfo{Name: "big", VMStateSize: size, ICount: math.MaxUint64}); err != nil {
		t.Fatal(err)
	}
	view, err := img.OpenSnapshot("big")
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if err := view.ReadVMState(b, size-2); err != nil || b[0] != 0 || b[1] != 0x42 {
		t.Fatalf("%v %x", err, b)
	}
	ext, err := view.MapVMState(0, size)
	if err != nil || len(ext) != 2 || ext[1].Off != size-1-(size-1)%65536 || !ext[1].Allocated {
		t.Fatalf("%+v %v", ext, err)
	}
	img.Close()
	qemuImgCheck(t, path, false)
	out, _ := run(t, nil, "qemu-img", "snapshot", "-l", path)
	if !strings.Contains(out, "5 GiB") {
		t.Fatalf("qemu-img snapshot -l:\n%s", out)
	}
	img = mustOpen(t, path, OpenOptions{ReadOnly: true})
	defer img.Close()
	if s := img.Snapshots(); s[0].VMStateSize != size {
		t.Fatalf("%+v", s)
	}
}
