//go:build snapvm_known_bug

package externale2e

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/snapvm/snapvm/tests/vmrun"
)

// TestWriteCacheModeReported: diskcheck's driver does not negotiate
// VIRTIO_BLK_F_FLUSH, so the disk runs write-through (snapvm's virtio-blk
// does sync every write, as QEMU does). QEMU 7.2 then reports the backend's
// write cache as off: query-block cache.writeback false, `info block`
// "Cache mode: writethrough", on the original node and on every overlay an
// external snapshot puts on top. snapvm keeps reporting writeback
// (block/query.go fills BlockCache{Writeback: true} whatever the device
// negotiated).
func TestWriteCacheModeReported(t *testing.T) {
	for _, c := range []struct{ name, bin string }{{"qemu", vmrun.QEMU(t)}, {"snapvm", vmrun.Snapvm(t)}} {
		t.Run(c.name, func(t *testing.T) {
			g := bootDiskcheckOn(t, c.name, c.bin, 1)
			g.run("blockdev-snapshot-sync", syncArgs("disk0", g.path("ov.qcow2"), "ov"))
			if in := g.top(0); in.Cache.Writeback {
				t.Errorf("query-block: cache %+v, want writeback false (the guest did not negotiate FLUSH)", in.Cache)
			}
			var info string
			if err := json.Unmarshal(g.run("human-monitor-command", map[string]any{"command-line": "info block"}), &info); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(info, "Cache mode:       writethrough") {
				t.Errorf("info block:\n%s", info)
			}
		})
	}
}

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
