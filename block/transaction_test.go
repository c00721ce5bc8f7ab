package block

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/snapvm/snapvm/qcow2"
)

func TestTransactionEmpty(t *testing.T) {
	g := NewGraph()
	defer g.Close()
	if err := g.Transaction(nil, false); err != nil {
		t.Fatal(err)
	}
	if err := g.Transaction(nil, true); err != nil {
		t.Fatal(err)
	}
}

func TestTransactionCommitsAll(t *testing.T) {
	dir := t.TempDir()
	g := NewGraph()
	defer g.Close()
	d0 := newDisk(t, g, dir, "d0", "drive0", mib)
	d1 := newDisk(t, g, dir, "d1", "drive1", 2*mib)
	err := g.Transaction([]Action{
		SnapshotSync{Device: ptr("drive0"), SnapshotFile: filepath.Join(dir, "o0.qcow2"), SnapshotNodeName: ptr("o0")},
		SnapshotSync{NodeName: ptr("d1"), SnapshotFile: filepath.Join(dir, "o1.qcow2"), SnapshotNodeName: ptr("o1")},
		InternalSnapshot{Device: "o0", Name: "t1"}, // the overlay prepared by the first action
	}, false)
	if err != nil {
		t.Fatal(err)
	}
	if d0.be.Root().NodeName() != "o0" || d1.be.Root().NodeName() != "o1" || !d0.node.ReadOnly() || !d1.node.ReadOnly() {
		t.Fatalf("not all committed:\n%s", graphShape(g))
	}
	if _, ok := d0.be.Root().Qcow2().FindSnapshot("t1"); !ok {
		t.Fatal("internal snapshot missing on the new overlay")
	}
}

// TestTransactionRollback makes the last action fail and checks that the
// graph, the images and the directory are exactly as before.
func TestTransactionRollback(t *testing.T) {
	dir := t.TempDir()
	g := NewGraph()
	defer g.Close()
	d0 := newDisk(t, g, dir, "d0", "drive0", mib)
	d1 := newDisk(t, g, dir, "d1", "drive1", mib)
	pre := filepath.Join(dir, "pre.qcow2")
	newQcow2(t, pre, mib)
	ov := addQcow2(t, g, "pre", pre) // for blockdev-snapshot
	data := pattern(4, 4096)
	mustWrite(t, d0.be, data, 0)
	mustWrite(t, d1.be, data, 0)
	shape := graphShape(g)
	files := dirNames(t, dir)
	failures := []struct {
		name string
		last Action
		kind error
		desc string
	}{
		{"abort", AbortAction{}, nil, "Transaction aborted using Abort action"},
		{"bad format", SnapshotSync{Device: ptr("drive1"), SnapshotFile: filepath.Join(dir, "x.qcow2"), Format: "bogus"}, ErrInvalidFormat, "Unknown file format 'bogus'"},
		{"missing device", SnapshotSync{Device: ptr("nodev"), SnapshotFile: filepath.Join(dir, "x.qcow2")}, ErrDeviceNotFound, "Cannot find device='nodev' nor node-name=''"},
		{"duplicate internal", InternalSnapshot{Device: "drive1", Name: "dup"}, nil, "Snapshot with name 'dup' already exists on device 'drive1'"},
	}
	for _, f := range failures {
		t.Run(f.name, func(t *testing.T) {
			err := g.Transaction([]Action{
				SnapshotSync{Device: ptr("drive0"), SnapshotFile: filepath.Join(dir, "o0.qcow2"), SnapshotNodeName: ptr("o0")},
				SnapshotOverlay{Node: "drive1", Overlay: "pre"},
				InternalSnapshot{Device: "pre", Name: "dup"},      // on the overlay just put over drive1
				InternalSnapshot{Device: "drive0", Name: "ghost"}, // on o0
				f.last,
			}, false)
			wantErr(t, err, f.kind, f.desc)
			if got := graphShape(g); got != shape {
				t.Fatalf("graph changed:\n%s\nwas:\n%s", got, shape)
			}
			if got := dirNames(t, dir); !slices.Equal(got, files) {
				t.Fatalf("directory now %v, was %v", got, files)
			}
			for _, n := range []*Node{d0.node, d1.node, ov} {
				if len(n.Qcow2().Snapshots()) != 0 {
					t.Fatalf("%s keeps an internal snapshot", n.NodeName())
				}
			}
			checkUntouched(t, g, d0, shape, data)
			checkUntouched(t, g, d1, shape, data)
		})
	}
	if err := d0.be.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := d1.be.Flush(); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{d0.path, d1.path, pre} {
		qemuImg(t, "check", "-U", p)
	}
}

func TestTransactionGroupedRefused(t *testing.T) {
	dir := t.TempDir()
	g := NewGraph()
	defer g.Close()
	newDisk(t, g, dir, "d0", "drive0", mib)
	cases := []struct {
		a    Action
		desc string
	}{
		{SnapshotSync{Device: ptr("drive0"), SnapshotFile: filepath.Join(dir, "o.qcow2")}, "Action 'blockdev-snapshot-sync' does not support Transaction property completion-mode = grouped"},
		{SnapshotOverlay{Node: "drive0", Overlay: "x"}, "Action 'blockdev-snapshot' does not support Transaction property completion-mode = grouped"},
		{InternalSnapshot{Device: "drive0", Name: "s"}, "Action 'blockdev-snapshot-internal-sync' does not support Transaction property completion-mode = grouped"},
		{AbortAction{}, "Transaction aborted using Abort action"},
	}
	for _, c := range cases {
		wantErr(t, g.Transaction([]Action{c.a}, true), nil, c.desc)
	}
	if names := dirNames(t, dir); !slices.Equal(names, []string{"d0.qcow2"}) {
		t.Fatalf("files: %v", names)
	}
}

func TestSnapshotOverlay(t *testing.T) {
	dir := t.TempDir()
	g := NewGraph()
	defer g.Close()
	d := newDisk(t, g, dir, "base", "drive0", mib)
	a := pattern(6, 4096)
	mustWrite(t, d.be, a, 0)

	add := func(name string, backing *Ref) *Node {
		p := filepath.Join(dir, name+".qcow2")
		if _, err := os.Stat(p); err != nil {
			newQcow2(t, p, mib)
		}
		n, err := g.Add(Options{Driver: "qcow2", NodeName: name, File: &Ref{Options: &Options{Driver: "file", Filename: p}}, Backing: backing})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	ov := add("ov", &Ref{Null: true})
	// An overlay whose header names a backing file opens it.
	if err := qcow2.Create(filepath.Join(dir, "hasb.qcow2"), qcow2.CreateOptions{Size: mib, BackingFile: "ov.qcow2", BackingFormat: "qcow2"}); err != nil {
		t.Fatal(err)
	}
	add("hasb", nil)
	rawPath := rawFile(t, mib)
	if _, err := g.Add(mustArg(t, "driver=raw,node-name=rawov,file.driver=file,file.node-name=rawfile,file.filename="+rawPath)); err != nil {
		t.Fatal(err)
	}
	lone := add("lone", &Ref{Null: true})

	shape := graphShape(g)
	cases := []struct {
		node, overlay, desc string
	}{
		{"nodevice", "ov", "Cannot find device='nodevice' nor node-name='nodevice'"},
		{"drive0", "noov", "Cannot find device='noov' nor node-name='noov'"},
		{"drive0", "drive0", "The overlay is already in use"},
		{"drive0", "base", "The overlay is already in use"},
		{"drive0", d.node.File().NodeName(), "The overlay is already in use"},
		{"drive0", "hasb", "The overlay already has a backing image"},
		{"drive0", "rawov", "The overlay does not support backing images"},
		// Nothing reads through an unused raw node: its file is not in use.
		{"drive0", "rawfile", "The overlay does not support backing images"},
		{"lone", "lone", "Making 'lone' a backing child of 'lone' would create a cycle"},
	}
	for _, c := range cases {
		err := g.SnapshotOverlay(SnapshotOverlay{Node: c.node, Overlay: c.overlay})
		wantErr(t, err, nil, c.desc)
		checkUntouched(t, g, d, shape, a)
		if lone.ReadOnly() {
			t.Fatal("lone became read-only")
		}
	}
	if err := g.SnapshotOverlay(SnapshotOverlay{Node: "drive0", Overlay: "ov"}); err != nil {
		t.Fatal(err)
	}
	if d.be.Root() != ov || ov.Backing() != d.node || !d.node.ReadOnly() {
		t.Fatal("not switched")
	}
	expectRead(t, d.be, a, 0)
	// The old node now has an overlay.
	err := g.SnapshotOverlay(SnapshotOverlay{Node: "base", Overlay: "lone"})
	wantErr(t, err, nil, "Node 'base' is busy: node is used as backing hd of 'ov'")
	// ov now serves the device.
	err = g.SnapshotOverlay(SnapshotOverlay{Node: "lone", Overlay: "ov"})
	wantErr(t, err, nil, "The overlay is already in use")
	if err := g.Del("ov"); err == nil {
		t.Error("attached overlay deletable")
	}
}

func TestInternalSnapshots(t *testing.T) {
	dir := t.TempDir()
	g := NewGraph()
	defer g.Close()
	d := newDisk(t, g, dir, "disk0", "drive0", mib)
	a := pattern(7, 4096)
	mustWrite(t, d.be, a, 0)
	date := time.Unix(1700000000, 123456789)
	err := g.InternalSnapshot(InternalSnapshot{Device: "drive0", Name: "s1", Date: date, VMClockNsec: 3_500_000_000})
	if err != nil {
		t.Fatal(err)
	}
	mustWrite(t, d.be, pattern(8, 4096), 0)

	ro := filepath.Join(dir, "ro.qcow2")
	newQcow2(t, ro, mib)
	if _, err := g.Add(Options{Driver: "qcow2", NodeName: "ronode", ReadOnly: ptr(true), File: &Ref{Options: &Options{Driver: "file", Filename: ro}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Add(mustArg(t, "driver=raw,node-name=rawnode,file.driver=file,file.node-name=rawfile,file.filename="+rawFile(t, mib))); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		device, name, desc string
	}{
		{"drive0", "s1", "Snapshot with name 's1' already exists on device 'drive0'"},
		{"disk0", "s1", "Snapshot with name 's1' already exists on device 'disk0'"},
		{"drive0", "", "Name is empty"},
		{"nodev", "x", "Cannot find device='nodev' nor node-name='nodev'"},
		{"ronode", "x", "Device 'ronode' is read only"},
		{"rawnode", "x", "Block format 'raw' used by device 'rawnode' does not support internal snapshots"},
		{"rawfile", "x", "Need a root block node"},
		{d.node.File().NodeName(), "x", "Need a root block node"},
	}
	for _, c := range cases {
		wantErr(t, g.InternalSnapshot(InternalSnapshot{Device: c.device, Name: c.name}), nil, c.desc)
	}
	if n := len(d.node.Qcow2().Snapshots()); n != 1 {
		t.Fatalf("%d snapshots", n)
	}

	delCases := []struct {
		device   string
		id, name *string
		desc     string
	}{
		{"drive0", nil, nil, "Name or id must be provided"},
		{"nodev", nil, ptr("s1"), "Cannot find device='nodev' nor node-name='nodev'"},
		{"drive0", nil, ptr("zz"), "Snapshot with id 'null' and name 'zz' does not exist on device 'drive0'"},
		{"drive0", ptr("9"), nil, "Snapshot with id '9' and name 'null' does not exist on device 'drive0'"},
		{"drive0", ptr("1"), ptr("other"), "Snapshot with id '1' and name 'other' does not exist on device 'drive0'"},
		{"rawnode", nil, ptr("s1"), "Failed to get a snapshot list: Operation not supported"},
		{"rawfile", nil, ptr("s1"), "Need a root block node"},
	}
	for _, c := range delCases {
		_, err := g.DeleteInternalSnapshot(c.device, c.id, c.name)
		wantErr(t, err, nil, c.desc)
	}
	info, err := g.DeleteInternalSnapshot("drive0", ptr("1"), ptr("s1"))
	if err != nil {
		t.Fatal(err)
	}
	want := SnapshotInfo{ID: "1", Name: "s1", DateSec: 1700000000, DateNsec: 123456000, VMClockSec: 3, VMClockNsec: 500_000_000}
	if info != want {
		t.Fatalf("deleted %+v, want %+v", info, want)
	}
	if len(d.node.Qcow2().Snapshots()) != 0 {
		t.Fatal("not deleted")
	}
	// By name only, then by id only.
	for i, name := range []string{"a", "b"} {
		if err := g.InternalSnapshot(InternalSnapshot{Device: "disk0", Name: name}); err != nil {
			t.Fatal(err)
		}
		_ = i
	}
	if info, err := g.DeleteInternalSnapshot("disk0", nil, ptr("a")); err != nil || info.ID != "1" || info.ICount != nil {
		t.Fatalf("by name: %+v %v", info, err)
	}
	if info, err := g.DeleteInternalSnapshot("drive0", ptr("2"), nil); err != nil || info.Name != "b" {
		t.Fatalf("by id: %+v %v", info, err)
	}
	expectRead(t, d.be, pattern(8, 4096), 0)
	if err := d.be.Flush(); err != nil {
		t.Fatal(err)
	}
	qemuImg(t, "check", "-U", d.path)
}

// TestSnapshotOverlayUnderUnusedNode replays a sequence observed on QEMU
// 7.2: a node that is only the backing of an unused node can become an
// overlay, and afterwards the device's node is busy.
func TestSnapshotOverlayUnderUnusedNode(t *testing.T) {
	dir := t.TempDir()
	g := NewGraph()
	defer g.Close()
	d := newDisk(t, g, dir, "disk0", "drive0", mib)
	a := pattern(11, 4096)
	mustWrite(t, d.be, a, 0)
	for _, name := range []string{"lone", "top"} {
		newQcow2(t, filepath.Join(dir, name+".qcow2"), mib)
	}
	if _, err := g.Add(Options{Driver: "qcow2", NodeName: "lone", Backing: &Ref{Null: true}, File: &Ref{Options: &Options{Driver: "file", Filename: filepath.Join(dir, "lone.qcow2")}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Add(Options{Driver: "qcow2", NodeName: "top", Backing: &Ref{NodeName: "lone"}, File: &Ref{Options: &Options{Driver: "file", Filename: filepath.Join(dir, "top.qcow2")}}}); err != nil {
		t.Fatal(err)
	}
	if err := g.SnapshotOverlay(SnapshotOverlay{Node: "drive0", Overlay: "lone"}); err != nil {
		t.Fatal(err)
	}
	expectRead(t, d.be, a, 0)
	err := g.SnapshotSync(SnapshotSync{Device: ptr("drive0"), SnapshotFile: filepath.Join(dir, "o.qcow2")})
	wantErr(t, err, nil, "Node 'drive0' is busy: node is used as backing hd of 'top'")
	err = g.SnapshotSync(SnapshotSync{NodeName: ptr("disk0"), SnapshotNodeName: ptr("x"), SnapshotFile: filepath.Join(dir, "o.qcow2")})
	wantErr(t, err, nil, "Node 'disk0' is busy: node is used as backing hd of 'lone'")
}
