package block

import (
	"bytes"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func qemuIO(t *testing.T, args ...string) {
	t.Helper()
	out, err := exec.Command("qemu-io", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-io %v: %v\n%s", args, err, out)
	}
}

// TestQcow2BackingChain opens an overlay whose header names its base: the
// base becomes a read-only node of the graph, reads fall through to it,
// writes stay in the overlay, and the query views describe the chain.
func TestQcow2BackingChain(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	top := filepath.Join(dir, "top.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", base, "4M")
	qemuIO(t, "-c", "write -P 0x5a 0 64k", base)
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", "base.qcow2", "-F", "qcow2", top)

	g := NewGraph()
	defer g.Close()
	n, err := g.Add(mustArg(t, "driver=qcow2,node-name=top,file.driver=file,file.filename="+top))
	if err != nil {
		t.Fatal(err)
	}
	b := n.Backing()
	if b == nil || b.Driver() != "qcow2" || !b.ReadOnly() || !strings.HasPrefix(b.NodeName(), "#block") || b.Filename() != base {
		t.Fatalf("backing node %+v", b)
	}
	if n.Qcow2() == nil || n.Size() != 4<<20 {
		t.Fatal("no image")
	}
	buf := make([]byte, 4096)
	if _, err := n.ReadAt(buf, 0); err != nil || !bytes.Equal(buf, bytes.Repeat([]byte{0x5a}, 4096)) {
		t.Fatalf("read through to base: %v %x", err, buf[:8])
	}
	if _, err := n.WriteAt(bytes.Repeat([]byte{1}, 4096), 0); err != nil {
		t.Fatal(err)
	}
	b.ReadAt(buf, 0)
	if buf[0] != 0x5a {
		t.Error("write reached the base")
	}
	info := n.DeviceInfo()
	if info.BackingFile != "base.qcow2" || info.BackingFileDepth != 1 || info.Image.BackingImage == nil ||
		info.Image.FullBackingFilename != base || info.Image.BackingFilenameFormat != "qcow2" || info.Image.ClusterSize != 65536 {
		t.Errorf("device info %+v", info)
	}
	js, _ := json.Marshal(info.Image.FormatSpecific)
	if string(js) != `{"type":"qcow2","data":{"compat":"1.1","compression-type":"zlib","lazy-refcounts":false,"refcount-bits":16,"corrupt":false,"extended-l2":false}}` {
		t.Errorf("format-specific %s", js)
	}
	if got := len(g.QueryNamedBlockNodes()); got != 4 {
		t.Errorf("%d nodes, want 4 (top, its file, base, its file)", got)
	}
	for _, d := range g.QueryNamedBlockNodesFlat(true) {
		if d.Image.BackingImage != nil {
			t.Errorf("flat answer nests a backing image for %s", d.NodeName)
		}
	}
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := g.Del("top"); err != nil {
		t.Fatal(err)
	}
	if got := len(g.Nodes()); got != 0 {
		t.Errorf("%d nodes left after deleting the chain", got)
	}
}

func TestQcow2ExplicitBacking(t *testing.T) {
	dir := t.TempDir()
	base := filepath.Join(dir, "base.qcow2")
	top := filepath.Join(dir, "top.qcow2")
	qemuImg(t, "create", "-q", "-f", "qcow2", base, "1M")
	qemuImg(t, "create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", top)
	g := NewGraph()
	defer g.Close()
	if _, err := g.Add(mustArg(t, "driver=qcow2,node-name=b0,read-only=on,file.driver=file,file.filename="+base)); err != nil {
		t.Fatal(err)
	}
	n, err := g.Add(mustArg(t, "driver=qcow2,node-name=t0,backing=b0,file.driver=file,file.filename="+top))
	if err != nil {
		t.Fatal(err)
	}
	if n.Backing().NodeName() != "b0" {
		t.Errorf("backing %s", n.Backing().NodeName())
	}
	if err := g.Del("b0"); err == nil || err.Error() != "Node 'b0' is busy: node is used as backing hd of 't0'" {
		t.Errorf("del base: %v", err)
	}
	if _, err := g.Add(mustArg(t, "driver=qcow2,node-name=t1,backing=nosuch,file.driver=file,file.filename="+top)); err == nil ||
		err.Error() != "Could not open backing file: Cannot find device='nosuch' nor node-name='nosuch'" {
		t.Errorf("missing backing: %v", err)
	}
	none, err := g.Add(mustArg(t, "driver=qcow2,node-name=t2,backing=,read-only=on,file.driver=file,file.filename="+top))
	if err != nil || none.Backing() != nil {
		t.Errorf("backing null: %v", err)
	}
	if err := g.SetBacking(b0(t, g), n); err == nil || !strings.Contains(err.Error(), "would create a cycle") {
		t.Errorf("cycle: %v", err)
	}
}

func b0(t *testing.T, g *Graph) *Node {
	n, ok := g.Node("b0")
	if !ok {
		t.Fatal("no b0")
	}
	return n
}
