package block

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func rawFile(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	return p
}

func mustArg(t *testing.T, s string) Options {
	t.Helper()
	o, err := ParseOptionsArg(s)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestNodeNames(t *testing.T) {
	p := rawFile(t, 1<<20)
	g := NewGraph()
	defer g.Close()
	cases := []struct{ name, want string }{
		{"1x", "Invalid node-name: '1x'"},
		{"a,b", "Invalid node-name: 'a,b'"},
		{"#block1", "Invalid node-name: '#block1'"},
		{"abcdefghijabcdefghijabcdefghij12", "Node name too long"},
	}
	for _, c := range cases {
		_, err := g.Add(Options{Driver: "file", Filename: p, NodeName: c.name})
		if err == nil || err.Error() != c.want {
			t.Errorf("%q: got %v, want %q", c.name, err, c.want)
		}
	}
	if _, err := g.Add(Options{Driver: "file", Filename: p}); err == nil || err.Error() != "'node-name' must be specified for the root node" {
		t.Errorf("anonymous root: %v", err)
	}
	if _, err := g.Add(Options{Driver: "file", Filename: p, NodeName: "abcdefghijabcdefghijabcdefghij1"}); err != nil {
		t.Errorf("31 chars: %v", err)
	}
	if _, err := g.Add(Options{Driver: "file", Filename: p, NodeName: "f0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Add(Options{Driver: "file", Filename: p, NodeName: "f0"}); err == nil || err.Error() != "Duplicate nodes with node-name='f0'" {
		t.Errorf("duplicate: %v", err)
	}
	// A nested anonymous child gets a generated name.
	n, err := g.Add(mustArg(t, "driver=raw,node-name=r0,file.driver=file,file.filename="+p))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(n.File().NodeName(), "#block") {
		t.Errorf("generated name %q", n.File().NodeName())
	}
	if _, err := g.Add(Options{Driver: "file", Filename: filepath.Join(t.TempDir(), "nope"), NodeName: "z"}); err == nil || !strings.HasSuffix(err.Error(), ": No such file or directory") || !strings.HasPrefix(err.Error(), "Could not open '") {
		t.Errorf("missing file: %v", err)
	}
	if _, err := g.Add(Options{Driver: "file", Filename: t.TempDir(), NodeName: "z"}); err == nil || !strings.HasSuffix(err.Error(), ": Is a directory") {
		t.Errorf("directory: %v", err)
	}
	if _, err := g.Add(mustArg(t, "driver=raw,node-name=z,file=nosuch")); err == nil || err.Error() != "Cannot find device='nosuch' nor node-name='nosuch'" {
		t.Errorf("missing child: %v", err)
	}
	if _, err := g.Add(mustArg(t, "driver=qcow2,node-name=z,file=f0")); err == nil || err.Error() != "Image is not in qcow2 format" {
		t.Errorf("raw as qcow2: %v", err)
	}
	// Failed Adds leave nothing behind.
	if _, ok := g.Node("z"); ok {
		t.Error("node z exists after failures")
	}
}

func TestRawIOAndReadOnly(t *testing.T) {
	p := rawFile(t, 1<<20)
	g := NewGraph()
	defer g.Close()
	n, err := g.Add(mustArg(t, "driver=raw,node-name=r0,file.driver=file,file.filename="+p))
	if err != nil {
		t.Fatal(err)
	}
	if n.Size() != 1<<20 || n.Driver() != "raw" || n.Filename() != p {
		t.Errorf("size %d drv %s file %s", n.Size(), n.Driver(), n.Filename())
	}
	data := bytes.Repeat([]byte{0xab}, 4096)
	if _, err := n.WriteAt(data, 8192); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 4096)
	if _, err := n.ReadAt(got, 8192); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}
	if _, err := n.ReadAt(got, 1<<20-100); err == nil {
		t.Error("read past the end succeeded")
	}
	if err := n.WriteZeroes(8192, 4096, false); err != nil {
		t.Fatal(err)
	}
	n.ReadAt(got, 8192)
	if !bytes.Equal(got, make([]byte, 4096)) {
		t.Error("write-zeroes left data")
	}
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	ro, err := g.Add(mustArg(t, "driver=raw,node-name=r1,read-only=on,file.driver=file,file.filename="+p))
	if err != nil {
		t.Fatal(err)
	}
	if !ro.ReadOnly() || !ro.File().ReadOnly() {
		t.Error("read-only not inherited by the file child")
	}
	if _, err := ro.WriteAt(data, 0); err != ErrReadOnly {
		t.Errorf("write to read-only: %v", err)
	}
	if err := g.SetReadOnly(ro, false); err != ErrReadOnly {
		t.Errorf("making a read-only-opened node writable: %v", err)
	}
	if err := g.SetReadOnly(n, true); err != nil || !n.ReadOnly() {
		t.Errorf("SetReadOnly: %v", err)
	}
}

func TestDel(t *testing.T) {
	p := rawFile(t, 1<<20)
	g := NewGraph()
	defer g.Close()
	if _, err := g.Add(mustArg(t, "driver=file,node-name=f0,filename="+p)); err != nil {
		t.Fatal(err)
	}
	r0, err := g.Add(mustArg(t, "driver=raw,node-name=r0,file=f0"))
	if err != nil {
		t.Fatal(err)
	}
	r1, err := g.Add(mustArg(t, "driver=raw,node-name=r1,file.driver=file,file.node-name=f1,file.filename="+p))
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Del("nosuch"); err == nil || err.Error() != "Failed to find node with node-name='nosuch'" {
		t.Errorf("nosuch: %v", err)
	}
	if err := g.Del("f0"); err == nil || err.Error() != "Block device f0 is in use" {
		t.Errorf("f0: %v", err)
	}
	b, err := g.NewBackend("", r0)
	if err != nil {
		t.Fatal(err)
	}
	if err := g.Del("r0"); err == nil || err.Error() != "Node r0 is in use" {
		t.Errorf("attached: %v", err)
	}
	b.Detach()
	if err := g.Del("r0"); err != nil {
		t.Fatal(err)
	}
	if err := g.Del("f0"); err != nil {
		t.Fatalf("f0 after its parent went: %v", err)
	}
	// A nested child belongs to its parent even when named.
	if r1.File().NodeName() != "f1" {
		t.Errorf("nested name %q", r1.File().NodeName())
	}
	if err := g.Del("f1"); err == nil || err.Error() != "Node f1 is not owned by the monitor" {
		t.Errorf("named nested child: %v", err)
	}
	if err := g.Del("r1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.Node("f1"); ok {
		t.Error("nested child outlived its parent")
	}
	r2, err := g.Add(mustArg(t, "driver=raw,node-name=r2,file.driver=file,file.filename="+p))
	if err != nil {
		t.Fatal(err)
	}
	child := r2.File().NodeName()
	if err := g.Del(child); err == nil || err.Error() != "Node "+child+" is not owned by the monitor" {
		t.Errorf("generated child: %v", err)
	}
	if err := g.Del("r2"); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.Node(child); ok {
		t.Error("generated child outlived its parent")
	}
}

func TestQueryNamedBlockNodesRaw(t *testing.T) {
	p := rawFile(t, 1<<20)
	g := NewGraph()
	defer g.Close()
	n, err := g.Add(mustArg(t, "driver=raw,node-name=r0,file.driver=file,file.node-name=f0,file.filename="+p))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := g.NewBackend("drive0", n)
	b.SetQdev("vd0")
	nodes := g.QueryNamedBlockNodes()
	if len(nodes) != 2 || nodes[0].NodeName != "r0" || nodes[1].NodeName != "f0" {
		t.Fatalf("nodes %+v", nodes)
	}
	js, _ := json.Marshal(nodes[0])
	for _, want := range []string{`"file":"` + p + `"`, `"node-name":"r0"`, `"ro":false`, `"drv":"raw"`, `"backing_file_depth":0`,
		`"encrypted":false`, `"detect_zeroes":"off"`, `"image":{"filename":"` + p + `","format":"raw","dirty-flag":false,"actual-size":`,
		`"virtual-size":1048576`, `"cache":{"writeback":true,"direct":false,"no-flush":false}`, `"write_threshold":0`} {
		if !strings.Contains(string(js), want) {
			t.Errorf("missing %s in %s", want, js)
		}
	}
	if strings.Contains(string(js), "backing_file\"") || strings.Contains(string(js), "snapshots") {
		t.Errorf("absent members present: %s", js)
	}
	qb := g.QueryBlock()
	js, _ = json.Marshal(qb)
	if !strings.HasPrefix(string(js), `[{"device":"drive0","qdev":"vd0","type":"unknown","removable":false,"locked":false,"inserted":{`) ||
		!strings.HasSuffix(string(js), `"io-status":"ok"}]`) || strings.Contains(string(js), "tray_open") {
		t.Errorf("query-block: %s", js)
	}
}

// TestDrainRace runs readers and writers through backends while draining
// repeatedly: no request may be in flight inside a drained section, and
// every request issued must complete. Run it under -race.
func TestDrainRace(t *testing.T) {
	p := rawFile(t, 1<<20)
	g := NewGraph()
	defer g.Close()
	n, err := g.Add(mustArg(t, "driver=raw,node-name=r0,file.driver=file,file.filename="+p))
	if err != nil {
		t.Fatal(err)
	}
	b, err := g.NewBackend("d0", n)
	if err != nil {
		t.Fatal(err)
	}
	var bad atomic.Int64
	var done atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			buf := make([]byte, 4096)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				off := int64((w*64+i%64)*4096) % (1 << 20)
				var err error
				if i%2 == 0 {
					_, err = b.WriteAt(buf, off)
				} else {
					_, err = b.ReadAt(buf, off)
				}
				if err != nil {
					t.Error(err)
					return
				}
				done.Add(1)
			}
		}(w)
	}
	for i := 0; i < 50; i++ {
		release := g.Drain()
		// No request may be inside the graph at any point of the section.
		for j := 0; j < 20; j++ {
			g.ioMu.Lock()
			if g.inflight != 0 {
				bad.Add(1)
			}
			g.ioMu.Unlock()
			time.Sleep(10 * time.Microsecond)
		}
		release()
		release() // idempotent
		time.Sleep(100 * time.Microsecond)
	}
	close(stop)
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d drained sections saw requests", bad.Load())
	}
	if done.Load() == 0 {
		t.Error("no request completed")
	}
}

func TestReplaceRoot(t *testing.T) {
	p := rawFile(t, 1<<20)
	q := rawFile(t, 2<<20)
	g := NewGraph()
	defer g.Close()
	a, _ := g.Add(mustArg(t, "driver=raw,node-name=a,file.driver=file,file.filename="+p))
	c, _ := g.Add(mustArg(t, "driver=raw,node-name=c,file.driver=file,file.filename="+q))
	b, _ := g.NewBackend("d0", a)
	release := g.Drain()
	b.ReplaceRoot(c)
	release()
	if b.Root() != c || b.Size() != 2<<20 {
		t.Error("root not replaced")
	}
	if err := g.Del("a"); err != nil {
		t.Errorf("old root still in use: %v", err)
	}
	if err := g.Del("c"); err == nil {
		t.Error("new root deletable while attached")
	}
	if _, err := g.NewBackend("d0", c); err == nil || err.Error() != "Device with id 'd0' already exists" {
		t.Errorf("duplicate backend: %v", err)
	}
}

// TestImageLocking: with locking on, a second writer of the same file is
// refused with QEMU's text, qemu-img cannot open a qcow2 image being
// written, and a node made read-only lets readers in again.
func TestImageLocking(t *testing.T) {
	p := filepath.Join(t.TempDir(), "l.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", p, "1M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s (install it with scripts/setup.sh (Debian package qemu-utils / qemu-system-misc))", err, out)
	}
	g := NewGraph()
	defer g.Close()
	g.SetImageLocking(true)
	n, err := g.Add(mustArg(t, "driver=qcow2,node-name=a,file.driver=file,file.filename="+p))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Add(mustArg(t, "driver=qcow2,node-name=b,file.driver=file,file.filename="+p)); err == nil || err.Error() != `Failed to get "write" lock` {
		t.Errorf("second writer: %v", err)
	}
	if _, err := g.Add(mustArg(t, "driver=qcow2,node-name=c,read-only=on,file.driver=file,file.filename="+p)); err == nil || err.Error() != `Failed to get shared "write" lock` {
		t.Errorf("reader of a written file: %v", err)
	}
	if out, err := exec.Command("qemu-img", "info", p).CombinedOutput(); err == nil || !strings.Contains(string(out), `Failed to get shared "write" lock`) {
		t.Errorf("qemu-img info while written: %v %s", err, out)
	}
	if err := g.SetReadOnly(n, true); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "info", p).CombinedOutput(); err != nil {
		t.Errorf("qemu-img info after the node became read-only: %v %s", err, out)
	}
	if out, err := exec.Command("qemu-io", "-c", "write 0 4k", p).CombinedOutput(); err == nil || !strings.Contains(string(out), `"write" lock`) {
		t.Errorf("qemu-io write to a read-only-used qcow2: %v %s", err, out)
	}
	if err := g.Del("a"); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-io", "-c", "write 0 4k", p).CombinedOutput(); err != nil {
		t.Errorf("qemu-io write after the node went: %v %s", err, out)
	}
}
