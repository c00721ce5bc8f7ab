//go:build snapvm_known_bug

package snapshote2e

import (
	"strings"
	"testing"
)

// TestInfoSnapshotsPartialName: for a disk attached with -blockdev and
// -device (no drive id, so its BlockBackend has no name) QEMU 7.2 titles
// the partial list "on ”:" (bdrv_get_device_name is empty); snapvm
// writes the node name ("on 'd0':"), a wire difference docs/compat.md
// does not list. Fails on snapvm until that is fixed or documented.
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
