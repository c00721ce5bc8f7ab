package snapshote2e

import (
	"strings"
	"testing"
)

// TestInfoSnapshotsPartialName: for a disk attached with -blockdev and
// -device (no drive id, so its BlockBackend has no name) QEMU 7.2 titles
// the partial list with an empty name between the quotes
// (bdrv_get_device_name is empty); so does snapvm.
func TestInfoSnapshotsPartialName(t *testing.T) {
	for _, tg := range []target{qemuTarget(t), snapvmTarget(t)} {
		dir := t.TempDir()
		v := bootTicker(t, tg, []string{newDiskIn(t, dir, "d0.qcow2"), newDiskIn(t, dir, "d1.qcow2")})
		v.q.okJob(t, "snapshot-save", "part", "p1", "d0", "d0")
		out := v.q.hmp(t, "info snapshots")
		if want := "List of partial (non-loadable) snapshots on '':\r\n"; !strings.Contains(out, want) {
			t.Errorf("%s: info snapshots lacks %q:\n%s", tg.name, want, out)
		}
		v.quit(t)
	}
}

// TestHMPSnapshotArgumentErrors: QEMU 7.2 parses savevm's, loadvm's and
// delvm's argument as one word (name:s / name:s?) and refuses a missing
// or extra one with its usage texts; snapvm gives the same texts.
func TestHMPSnapshotArgumentErrors(t *testing.T) {
	want := []struct{ line, out string }{
		{"loadvm", "loadvm: string expected\r\nTry \"help loadvm\" for more information\r\n"},
		{"delvm", "delvm: string expected\r\nTry \"help delvm\" for more information\r\n"},
		{"savevm a b", "savevm: extraneous characters at the end of line\r\nTry \"help savevm\" for more information\r\n"},
		{"loadvm a b", "loadvm: extraneous characters at the end of line\r\nTry \"help loadvm\" for more information\r\n"},
		{"delvm a b", "delvm: extraneous characters at the end of line\r\nTry \"help delvm\" for more information\r\n"},
		{"info snapshots", "There is no snapshot available.\r\n"},
	}
	for _, tg := range []target{qemuTarget(t), snapvmTarget(t)} {
		v := bootTicker(t, tg, []string{newDiskIn(t, t.TempDir(), "d0.qcow2")})
		for _, w := range want {
			if out := v.q.hmp(t, w.line); out != w.out {
				t.Errorf("%s: %q: got %q, want %q", tg.name, w.line, out, w.out)
			}
		}
		v.quit(t)
	}
}

// TestLoadIntoOtherDeviceSetup: a snapshot saved on a VM with one
// virtio-blk disk, loaded into a VM with two (or the reverse), is refused
// before the guest is stopped or a disk reverted: the virtio slots'
// section names say what is plugged in, and the check before pausing
// compares them (docs/compat.md).
func TestLoadIntoOtherDeviceSetup(t *testing.T) {
	dir := t.TempDir()
	d0, d1 := newDiskIn(t, dir, "d0.qcow2"), newDiskIn(t, dir, "d1.qcow2")
	v := bootTicker(t, snapvmTarget(t), []string{d0})
	v.q.okJob(t, "snapshot-save", "s1", "one", "d0", "d0")
	v.quit(t)
	v = bootTicker(t, snapvmTarget(t), []string{d0, d1})
	checkRefusedLoad(t, v, "l1", "one", "Error -22 while loading VM state: ")
	v.q.okJob(t, "snapshot-save", "s2", "two", "d0", "d0", "d1")
	v.quit(t)
	v = bootTicker(t, snapvmTarget(t), []string{d0})
	checkRefusedLoad(t, v, "l2", "two", "Error -22 while loading VM state: ")
	v.quit(t)
}
