package externale2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapvm/snapvm/guests"
	"github.com/snapvm/snapvm/tests/vmrun"
)

// TestDiskcheckAcrossSnapshotChain takes 21 external snapshots
// (node-name + snapshot-node-name) of the disk under a running diskcheck
// guest, checking after each one that the guest
// verifies more generations without a mismatch and that query-block and
// query-named-block-nodes show the new top node with the chain one deeper.
// After quit every image must pass qemu-img check, and qemu-img info
// --backing-chain must walk the whole chain through absolute backing paths.
func TestDiskcheckAcrossSnapshotChain(t *testing.T) {
	checkSnapshotChain(t, bootDiskcheck(t, 1))
}

// TestDiskcheckAcrossSnapshotChainOnQEMU runs the same checks against
// qemu-system-riscv64, which validates the test itself.
func TestDiskcheckAcrossSnapshotChainOnQEMU(t *testing.T) {
	checkSnapshotChain(t, bootDiskcheckOn(t, "qemu", vmrun.QEMU(t), 1))
}

func checkSnapshotChain(t *testing.T, g *guest) {
	const n = 21
	base := g.path("base0.qcow2")
	g.wantTop(0, "disk0", base, 0)
	chain := []string{base}

	ov := g.path("ov01.qcow2")
	g.run("blockdev-snapshot-sync", syncArgs("disk0", ov, "ov01"))
	chain = append(chain, ov)
	in := g.top(0)
	if in.NodeName != "ov01" || in.File != ov || in.BackingFileDepth != 1 || in.BackingFile != base {
		t.Fatalf("after the first snapshot: %+v", in)
	}
	g.progress("progress after the first snapshot")
	// The base is now opened read-only: other processes may read it (and
	// check it) while the guest runs, but the overlay stays write-locked.
	g.qemuImg("check", base)
	if out, err := exec.Command(qemuImg(t), "info", ov).CombinedOutput(); err == nil ||
		!strings.Contains(string(out), `Failed to get shared "write" lock`) {
		t.Fatalf("qemu-img info on the running overlay: %v\n%s", err, out)
	}
	top := "ov01"
	for i := 2; i <= n; i++ {
		ov := g.path(fmt.Sprintf("ov%02d.qcow2", i))
		node := fmt.Sprintf("ov%02d", i)
		g.run("blockdev-snapshot-sync", syncArgs(top, ov, node))
		chain = append(chain, ov)
		g.wantTop(0, node, ov, i)
		// Every few snapshots, and after the last, the guest must go on
		// verifying; in between the snapshots land at random points of
		// its write and verify phases.
		if i%5 == 0 || i == n {
			g.progress(fmt.Sprintf("progress after snapshot %d", i))
		}
		top = node
	}
	// The old nodes stay in the graph, read-only.
	ro := map[string]bool{}
	for _, nd := range g.nodes() {
		if nd.Drv == "qcow2" {
			ro[nd.File] = nd.RO
		}
	}
	for i, f := range chain {
		if want := i < len(chain)-1; ro[f] != want {
			t.Errorf("query-named-block-nodes: %s ro=%v, want %v (%v)", f, ro[f], want, ro)
		}
	}
	g.quit()

	for _, f := range chain {
		g.qemuImg("check", f)
	}
	// snapvm-img reads the chain as qemu-img does.
	qraw, sraw := g.path("q.raw"), g.path("s.raw")
	g.qemuImg("convert", "-O", "raw", chain[n], qraw)
	if out, err := exec.Command(snapvmImg(t), "convert", "-O", "raw", chain[n], sraw).CombinedOutput(); err != nil {
		t.Fatalf("snapvm-img convert: %v\n%s", err, out)
	}
	g.qemuImg("compare", "-f", "raw", "-F", "raw", qraw, sraw)
	var infos []struct {
		Filename            string `json:"filename"`
		BackingFilename     string `json:"backing-filename"`
		FullBackingFilename string `json:"full-backing-filename"`
		BackingFormat       string `json:"backing-filename-format"`
	}
	qemuInfo := g.qemuImg("info", "--backing-chain", "--output=json", chain[n])
	if err := json.Unmarshal([]byte(qemuInfo), &infos); err != nil {
		t.Fatal(err)
	}
	// snapvm-img describes the chain exactly as qemu-img does.
	for _, format := range []string{"json", "human"} {
		want := g.qemuImg("info", "--backing-chain", "--output="+format, chain[n])
		got, err := exec.Command(snapvmImg(t), "info", "--backing-chain", "--output="+format, chain[n]).CombinedOutput()
		if err != nil || string(got) != want {
			t.Fatalf("snapvm-img info --backing-chain --output=%s (%v) differs from qemu-img's:\n%s\nqemu-img:\n%s", format, err, got, want)
		}
	}
	if len(infos) != n+1 {
		t.Fatalf("qemu-img info --backing-chain: %d images, want %d", len(infos), n+1)
	}
	for i, info := range infos {
		want := chain[n-i]
		if info.Filename != want {
			t.Fatalf("chain[%d] = %s, want %s", i, info.Filename, want)
		}
		if i == n {
			if info.BackingFilename != "" {
				t.Fatalf("base has backing %q", info.BackingFilename)
			}
			continue
		}
		if b := chain[n-i-1]; info.BackingFilename != b || !filepath.IsAbs(info.BackingFilename) || info.BackingFormat != "qcow2" {
			t.Fatalf("%s: backing %q (%s), want absolute %q (qcow2)", want, info.BackingFilename, info.BackingFormat, b)
		}
	}
}

// TestSnapshotSaveOnOverlay: after an external snapshot, a VM snapshot
// (snapshot-save) goes to the new top image; loading it rewinds diskcheck
// to an earlier generation, which then verifies again without a mismatch.
// On disk the overlay lists the snapshot and the base lists none.
func TestSnapshotSaveOnOverlay(t *testing.T) {
	g := bootDiskcheck(t, 1)
	ov := g.path("ov.qcow2")
	g.run("blockdev-snapshot-sync", syncArgs("disk0", ov, "ov"))
	g.wantTop(0, "ov", ov, 1)
	g.progress("progress after the external snapshot")

	// The base is read-only now: it cannot take a VM snapshot.
	g.job("snapshot-save", "s-base", "disk0", "Device 'disk0' is writable but does not support snapshots")
	g.job("snapshot-save", "s1", "ov", "")
	saved := LastGen(g.vm.Lines(0))
	g.progress("progress after the save")
	g.progress("more progress after the save")
	mark := len(g.vm.Output())
	g.job("snapshot-load", "s1", "ov", "")
	if err := g.vm.WaitLine(mark, slow, "a generation from before the load", func(l string) bool {
		return GenRE.MatchString(l) && LastGen([]string{l}) <= saved+1
	}); err != nil {
		t.Fatal(err)
	}
	g.progress("progress after the load")
	g.wantTop(0, "ov", ov, 1)
	g.quit()

	g.qemuImg("check", ov)
	if l := g.qemuImg("snapshot", "-l", ov); !strings.Contains(l, " s1 ") {
		t.Fatalf("qemu-img snapshot -l %s:\n%s", ov, l)
	}
	if l := g.qemuImg("snapshot", "-l", g.path("base0.qcow2")); l != "" {
		t.Fatalf("the base lists snapshots:\n%s", l)
	}

	// A new process started on the overlay (its backing opened from the
	// header) loads the snapshot: the guest goes on from the saved point,
	// reading what it wrote before the external snapshot through the base.
	kernel, err := guests.Path("diskcheck")
	if err != nil {
		t.Fatal(err)
	}
	v, err := Start("snapvm-restarted", vmrun.Snapvm(t), g.dir, DiskArgs(kernel, ov))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	g2 := &guest{t: t, vm: v, dir: g.dir}
	g2.wantTop(0, "disk0", ov, 1)
	g2.job("snapshot-load", "s1", "disk0", "")
	mark = len(v.Output())
	if err := v.WaitLine(mark, slow, "a generation after the saved one", func(l string) bool {
		return GenRE.MatchString(l) && LastGen([]string{l}) > saved
	}); err != nil {
		t.Fatal(err)
	}
	// The restored guest's first generation is the one it was in when
	// saved; its RAM expects the disk contents of that moment, so a disk
	// not reverted with it shows as MISMATCH.
	for _, l := range v.Lines(mark) {
		if GenRE.MatchString(l) {
			if n := LastGen([]string{l}); n > saved+1 {
				t.Fatalf("first generation after the load: %d (saved after gen %d)", n, saved)
			}
			break
		}
	}
	g2.progress("progress in the restarted VM")
	g2.quit()
	g.qemuImg("check", ov)
}

// job runs a snapshot-save/-load job on node and waits for it to conclude;
// wantErr is the job's expected error ("" for success).
func (g *guest) job(cmd, tag, node, wantErr string) {
	g.t.Helper()
	id := fmt.Sprintf("%s-%s", cmd, tag)
	g.run(cmd, map[string]any{"job-id": id, "tag": tag, "vmstate": node, "devices": []string{node}})
	deadline := time.Now().Add(slow)
	for {
		var jobs []struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Error  string `json:"error"`
		}
		if err := json.Unmarshal(g.run("query-jobs", nil), &jobs); err != nil {
			g.t.Fatal(err)
		}
		for _, j := range jobs {
			if j.ID != id || j.Status != "concluded" {
				continue
			}
			if j.Error != wantErr {
				g.t.Fatalf("%s %s on %s: error %q, want %q", cmd, tag, node, j.Error, wantErr)
			}
			g.run("job-dismiss", map[string]any{"id": id})
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("%s %s did not conclude: %+v", cmd, tag, jobs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestTransactions on a guest with two disks (diskcheck exercises one):
// two blockdev-snapshot-sync actions followed by an abort action change
// nothing and leave no file behind; internal + external snapshot actions
// either both happen or, when the second fails, neither does.
func TestTransactions(t *testing.T) {
	g := bootDiskcheck(t, 2)
	base0, base1 := g.path("base0.qcow2"), g.path("base1.qcow2")
	before := g.files()
	act := func(kind string, data map[string]any) map[string]any {
		return map[string]any{"type": kind, "data": data}
	}
	tx := func(actions ...map[string]any) map[string]any { return map[string]any{"actions": actions} }

	g.fail("transaction", tx(
		act("blockdev-snapshot-sync", syncArgs("disk0", g.path("a0.qcow2"), "a0")),
		act("blockdev-snapshot-sync", syncArgs("disk1", g.path("a1.qcow2"), "a1")),
		act("abort", map[string]any{}),
	), "GenericError", "Transaction aborted using Abort action")
	g.wantTop(0, "disk0", base0, 0)
	g.wantTop(1, "disk1", base1, 0)
	if got := g.files(); fmt.Sprint(got) != fmt.Sprint(before) {
		t.Fatalf("files after the aborted transaction: %v, before %v", got, before)
	}
	g.progress("progress after the aborted transaction")

	// The second action fails (no such directory): the internal snapshot
	// the first one took is dropped again.
	g.fail("transaction", tx(
		act("blockdev-snapshot-internal-sync", map[string]any{"device": "disk0", "name": "int0"}),
		act("blockdev-snapshot-sync", syncArgs("disk1", g.path("nodir/b1.qcow2"), "b1")),
	), "OpenFileFailed", "No such file or directory")
	g.wantTop(0, "disk0", base0, 0)
	g.wantTop(1, "disk1", base1, 0)

	// Two overlays on one disk in one transaction: the second action sees
	// the first one's overlay (a snapshot of the old node is refused).
	g.fail("transaction", tx(
		act("blockdev-snapshot-sync", syncArgs("disk1", g.path("x1.qcow2"), "x1")),
		act("blockdev-snapshot-sync", syncArgs("disk1", g.path("x2.qcow2"), "x2")),
	), "GenericError", "Node 'disk1' is busy: node is used as backing hd of 'x1'")
	g.wantTop(1, "disk1", base1, 0)
	g.run("transaction", tx(
		act("blockdev-snapshot-sync", syncArgs("disk1", g.path("x1.qcow2"), "x1")),
		act("blockdev-snapshot-sync", syncArgs("x1", g.path("x2.qcow2"), "x2")),
	))
	g.wantTop(1, "x2", g.path("x2.qcow2"), 2)

	g.run("transaction", tx(
		act("blockdev-snapshot-internal-sync", map[string]any{"device": "disk0", "name": "int1"}),
		act("blockdev-snapshot-sync", syncArgs("x2", g.path("b1.qcow2"), "b1")),
	))
	g.wantTop(0, "disk0", base0, 0)
	g.wantTop(1, "b1", g.path("b1.qcow2"), 3)
	g.progress("progress after the transaction")
	// Both bases stayed writable through the aborts: a snapshot of the
	// exercised disk still works.
	g.run("blockdev-snapshot-sync", syncArgs("disk0", g.path("c0.qcow2"), "c0"))
	g.wantTop(0, "c0", g.path("c0.qcow2"), 1)
	g.progress("progress after the last snapshot")
	g.quit()

	l := g.qemuImg("snapshot", "-l", base0)
	if !strings.Contains(l, " int1 ") || strings.Contains(l, "int0") {
		t.Fatalf("qemu-img snapshot -l %s (want int1, not int0):\n%s", base0, l)
	}
	for _, f := range []string{base0, base1, g.path("x1.qcow2"), g.path("x2.qcow2"), g.path("b1.qcow2"), g.path("c0.qcow2")} {
		g.qemuImg("check", f)
	}
}

// TestFailedSnapshotsKeepGuestRunning injects bad requests into a running
// guest: each gets the error class compat.md gives, leaves no file behind
// (and a file that was there untouched), and the guest goes on verifying
// its disk on the original image.
func TestFailedSnapshotsKeepGuestRunning(t *testing.T) {
	g := bootDiskcheck(t, 1)
	base := g.path("base0.qcow2")
	existing := g.path("existing.qcow2")
	content := []byte("not an image, and it must stay as it is\n")
	if err := os.WriteFile(existing, content, 0o644); err != nil {
		t.Fatal(err)
	}
	before := g.files()
	nodir := g.path("nodir/ov.qcow2")
	for _, c := range []struct {
		args        map[string]any
		class, desc string
	}{
		{syncArgs("disk0", nodir, "ov"), "OpenFileFailed", "Could not create '" + nodir + "': No such file or directory"},
		// As in QEMU, "device" names a BlockBackend, and -device drive=<node>
		// makes an anonymous one: the node name alone does not match.
		{map[string]any{"device": "disk0", "snapshot-file": g.path("ov.qcow2")}, "DeviceNotFound", "Cannot find device='disk0' nor node-name=''"},
		{syncArgs("disk0", existing, "ov"), "OpenFileFailed", "Could not create '" + existing + "': File exists"},
		// The running disk itself: refused before anything is written.
		{syncArgs("disk0", base, "ov"), "OpenFileFailed", "Error: Trying to create an image with the same filename as the backing file"},
		{map[string]any{"node-name": "disk0", "snapshot-file": g.path("ov.qcow2"), "snapshot-node-name": "ov", "format": "bogus"},
			"InvalidBlockFormat", "Unknown file format 'bogus'"},
		{map[string]any{"device": "nodisk", "snapshot-file": g.path("ov.qcow2")}, "DeviceNotFound", "Cannot find device='nodisk' nor node-name=''"},
	} {
		g.fail("blockdev-snapshot-sync", c.args, c.class, c.desc)
		g.wantTop(0, "disk0", base, 0)
		if got := g.files(); fmt.Sprint(got) != fmt.Sprint(before) {
			t.Fatalf("after %v: files %v, before %v", c.args, got, before)
		}
		g.progress(fmt.Sprintf("progress after the failed %v", c.args))
	}
	if b, _ := os.ReadFile(existing); string(b) != string(content) {
		t.Fatalf("the existing file was changed: %q", b)
	}
	// HMP's snapshot_blkdev names a device only, which -device drive=<node>
	// leaves anonymous: refused, nothing changes.
	out := g.run("human-monitor-command", map[string]any{"command-line": "snapshot_blkdev disk0 " + nodir})
	if !strings.Contains(string(out), "Error: Cannot find device='disk0' nor node-name=''") {
		t.Fatalf("HMP snapshot_blkdev: %s", out)
	}
	g.wantTop(0, "disk0", base, 0)
	g.progress("progress after the HMP request")
	// No failed request left a node or a file behind: the same names work.
	ov := g.path("ov.qcow2")
	g.run("blockdev-snapshot-sync", syncArgs("disk0", ov, "ov"))
	g.wantTop(0, "ov", ov, 1)
	g.progress("progress after the snapshot that worked")
	g.quit()
	g.qemuImg("check", base)
	g.qemuImg("check", ov)
}

// TestExistingOverlays stacks overlays the management layer made itself
// under a running guest: one created by qemu-img and attached with mode
// "existing", one opened by blockdev-add with "backing": null and attached
// with blockdev-snapshot (the node opened without its header's backing
// file gets the running chain as backing). The guest verifies on and the
// chain on disk is the one qemu-img created.
func TestExistingOverlays(t *testing.T) {
	g := bootDiskcheck(t, 1)
	base := g.path("base0.qcow2")
	e1 := g.path("e1.qcow2")
	g.qemuImg("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", e1)
	g.run("blockdev-snapshot-sync", map[string]any{"node-name": "disk0", "snapshot-file": e1,
		"snapshot-node-name": "e1", "mode": "existing"})
	g.wantTop(0, "e1", e1, 1)
	g.progress("progress on the existing overlay")

	e2 := g.path("e2.qcow2")
	g.qemuImg("create", "-q", "-f", "qcow2", "-b", e1, "-F", "qcow2", e2)
	g.run("blockdev-add", map[string]any{"driver": "qcow2", "node-name": "e2", "backing": nil,
		"file": map[string]any{"driver": "file", "filename": e2}})
	g.fail("blockdev-snapshot", map[string]any{"node": "disk0", "overlay": "e2"},
		"GenericError", "Node 'disk0' is busy: node is used as backing hd of 'e1'")
	g.run("blockdev-snapshot", map[string]any{"node": "e1", "overlay": "e2"})
	g.wantTop(0, "e2", e2, 2)
	g.progress("progress on the blockdev-add overlay")
	g.quit()
	for _, f := range []string{base, e1, e2} {
		g.qemuImg("check", f)
	}
	if out := g.qemuImg("info", "--backing-chain", e2); strings.Count(out, "image: ") != 3 {
		t.Fatalf("qemu-img info --backing-chain %s:\n%s", e2, out)
	}
}

// TestSnapshotBeforeStartAndAcrossReset: a snapshot taken in prelaunch
// (-S) is what the guest boots on, and after system_reset the guest, booting
// again from scratch, runs on the overlay and can be snapshotted again.
func TestSnapshotBeforeStartAndAcrossReset(t *testing.T) {
	g := startDiskcheck(t, "snapvm", vmrun.Snapvm(t), 1, "-S")
	ov1, ov2 := g.path("ov1.qcow2"), g.path("ov2.qcow2")
	g.run("blockdev-snapshot-sync", syncArgs("disk0", ov1, "ov1"))
	g.run("cont", nil)
	g.progress("progress after cont")
	g.wantTop(0, "ov1", ov1, 1)
	mark := len(g.vm.Output())
	g.run("system_reset", nil)
	if err := g.vm.WaitLine(mark, slow, "the guest booting again", func(l string) bool {
		return strings.HasPrefix(l, "diskcheck: virtio-blk in slot")
	}); err != nil {
		t.Fatal(err)
	}
	g.progress("progress after the reset")
	g.wantTop(0, "ov1", ov1, 1)
	g.run("blockdev-snapshot-sync", syncArgs("ov1", ov2, "ov2"))
	g.wantTop(0, "ov2", ov2, 2)
	g.progress("progress after the second snapshot")
	g.quit()
	for _, f := range []string{g.path("base0.qcow2"), ov1, ov2} {
		g.qemuImg("check", f)
	}
	if l := g.qemuImg("map", "--output=json", g.path("base0.qcow2")); strings.Contains(l, `"data": true`) {
		t.Fatalf("the guest wrote to the base before the prelaunch snapshot:\n%s", l)
	}
}

// TestRelativePaths: the VM opened its disk by a relative name and the
// overlay goes to another directory, also named relatively. snapvm writes
// the base's absolute name as the backing file (compat.md; QEMU 7.2 would
// write "base0.qcow2", which the overlay's directory cannot resolve), so
// the chain opens again after the VM exits.
func TestRelativePaths(t *testing.T) {
	kernel, err := guests.Path("diskcheck")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	newImage(t, filepath.Join(dir, "base0.qcow2"))
	if err := os.Mkdir(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	v, err := Start("snapvm", vmrun.Snapvm(t), dir, DiskArgs(kernel, "base0.qcow2"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	g := &guest{t: t, vm: v, dir: dir}
	g.progress("the first verified generation")
	g.run("blockdev-snapshot-sync", syncArgs("disk0", "sub/ov.qcow2", "ov"))
	if in := g.top(0); in.NodeName != "ov" || in.BackingFileDepth != 1 {
		t.Fatalf("query-block: %+v", in)
	}
	g.progress("progress on the overlay")
	g.quit()
	ov := filepath.Join(dir, "sub", "ov.qcow2")
	g.qemuImg("check", ov)
	var info struct {
		BackingFilename string `json:"backing-filename"`
	}
	if err := json.Unmarshal([]byte(g.qemuImg("info", "--output=json", ov)), &info); err != nil {
		t.Fatal(err)
	}
	if want := filepath.Join(dir, "base0.qcow2"); info.BackingFilename != want {
		t.Fatalf("backing file %q, want %q", info.BackingFilename, want)
	}
	if out := g.qemuImg("info", "--backing-chain", ov); strings.Count(out, "image: ") != 2 {
		t.Fatalf("qemu-img info --backing-chain:\n%s", out)
	}
}
