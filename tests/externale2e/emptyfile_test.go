package externale2e

import (
	"os"
	"testing"

	"github.com/snapvm/snapvm/tests/vmrun"
)

// TestEmptySnapshotFileKeepsMode: a management layer may create the
// overlay file itself (empty, with the owner, mode or security label the VM
// must use) and pass it as snapshot-file in mode absolute-paths. QEMU 7.2
// writes the image into that file, so its mode (here 0600) survives, both
// when the snapshot is made and when a transaction aborts. snapvm writes a
// temporary file and renames it over the given one (block/external.go), so
// the file becomes a new inode with mode 0644, even after the abort, which
// compat.md says "empties the file again" (the disk should be as it was).
func TestEmptySnapshotFileKeepsMode(t *testing.T) {
	for _, c := range []struct{ name, bin string }{{"qemu", vmrun.QEMU(t)}, {"snapvm", vmrun.Snapvm(t)}} {
		t.Run(c.name, func(t *testing.T) {
			g := bootDiskcheckOn(t, c.name, c.bin, 1)
			f := g.path("pre.qcow2")
			if err := os.WriteFile(f, nil, 0o600); err != nil {
				t.Fatal(err)
			}
			mode := func(when string) {
				st, err := os.Stat(f)
				if err != nil {
					t.Fatal(err)
				}
				if st.Mode().Perm() != 0o600 {
					t.Errorf("%s: %s has mode %v, want -rw-------", when, f, st.Mode().Perm())
				}
			}
			g.fail("transaction", map[string]any{"actions": []map[string]any{
				{"type": "blockdev-snapshot-sync", "data": syncArgs("disk0", f, "pre")},
				{"type": "abort", "data": map[string]any{}},
			}}, "GenericError", "Transaction aborted using Abort action")
			mode("after the aborted transaction")
			g.run("blockdev-snapshot-sync", syncArgs("disk0", f, "pre"))
			mode("after the snapshot")
			g.progress("progress on the overlay")
		})
	}
}
