package externale2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/snapvm/snapvm/tests/vmrun"
)

// TestWriteCacheModeReported: diskcheck's driver does not negotiate
// VIRTIO_BLK_F_FLUSH, so the disk runs write-through (snapvm's virtio-blk
// does sync every write, as QEMU does). QEMU 7.2 then reports the backend's
// write cache as off: query-block cache.writeback false, `info block`
// "Cache mode: writethrough", on the original node and on every overlay an
// external snapshot puts on top; snapvm reports the mode the device runs
// with in the same places.
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
