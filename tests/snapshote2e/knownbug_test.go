//go:build snapvm_known_bug

package snapshote2e

import (
	"strings"
	"testing"
)

// TestInfoSnapshotsPartialName: for a disk attached with -blockdev and
// -device (no drive id, so its BlockBackend has no name) QEMU 7.2 titles
// the partial list with an empty name between the quotes
// (bdrv_get_device_name is empty); snapvm writes the node name, d0, a
// wire difference docs/compat.md does not list. Fails on snapvm until
// that is fixed or documented.
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
// or extra one with its usage texts. snapvm answers "Error: Parameter
// 'name' is missing" for a missing tag, and takes the whole rest of the
// line as the tag: "savevm a b" creates a snapshot named "a b" that
// "loadvm a b" then loads.
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
