package qcow2

import (
	"encoding/binary"
	"os"
	"testing"
)

// TestLeakedClusterBeyondEOF: a cluster with a refcount but beyond the end of the file
// (what a crash after a refcount update leaves) must not be handed out again.
func TestLeakedClusterBeyondEOF(t *testing.T) {
	path := tempPath(t, "leak.qcow2")
	if err := Create(path, CreateOptions{Size: 1 << 20, ClusterSize: 4096}); err != nil {
		t.Fatal(err)
	}
	// Clusters 0-3 are used and the file ends inside cluster 3; mark cluster 4 as used.
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], 1)
	f.WriteAt(b[:], 2*4096+4*2)
	f.Close()
	img := mustOpen(t, path, OpenOptions{})
	img.WriteAt(fill(4096, 1), 0)
	img.Close()
	c := qemuImgCheck(t, path, true)
	if c.Leaks != 1 {
		t.Fatalf("%+v", c)
	}
}
