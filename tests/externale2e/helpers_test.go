package externale2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapvm/snapvm/block"
	"github.com/snapvm/snapvm/guests"
	"github.com/snapvm/snapvm/tests/vmrun"
)

func TestMain(m *testing.M) {
	code := m.Run()
	vmrun.Cleanup()
	os.Exit(code)
}

// slow bounds every wait for guest progress: the interpreter on a loaded
// 2-core machine verifies a diskcheck generation in well under a second,
// the first one (cold decode cache) in a few.
const slow = time.Minute

func qemuImg(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Fatal("qemu-img not found: install it with scripts/setup.sh (Debian package qemu-utils)")
	}
	return p
}

func newImage(t *testing.T, path string) {
	t.Helper()
	if out, err := exec.Command(qemuImg(t), "create", "-q", "-f", "qcow2", path, "16M").CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, out)
	}
}

// guest is a running diskcheck VM on snapvm and the directory holding its
// images.
type guest struct {
	t   *testing.T
	vm  *VM
	dir string
}

// bootDiskcheck starts diskcheck on snapvm with n fresh 16 MiB qcow2 disks
// (dir/base0.qcow2, ... as nodes disk0, ...) and waits for its first
// verified generation.
func bootDiskcheck(t *testing.T, n int) *guest {
	t.Helper()
	return bootDiskcheckOn(t, "snapvm", vmrun.Snapvm(t), n)
}

// bootDiskcheckOn is bootDiskcheck on another VM binary.
func bootDiskcheckOn(t *testing.T, name, bin string, n int) *guest {
	t.Helper()
	g := startDiskcheck(t, name, bin, n)
	g.progress("the first verified generation")
	return g
}

// startDiskcheck starts the VM without waiting for the guest; extra
// options (e.g. -S) are appended.
func startDiskcheck(t *testing.T, name, bin string, n int, extra ...string) *guest {
	t.Helper()
	kernel, err := guests.Path("diskcheck")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var imgs []string
	for i := 0; i < n; i++ {
		img := filepath.Join(dir, "base"+string(rune('0'+i))+".qcow2")
		newImage(t, img)
		imgs = append(imgs, img)
	}
	v, err := Start(name, bin, dir, append(DiskArgs(kernel, imgs...), extra...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(v.Kill)
	return &guest{t: t, vm: v, dir: dir}
}

func (g *guest) path(name string) string { return filepath.Join(g.dir, name) }

// progress waits until diskcheck verifies a generation that started after
// this call (the second gen line after the mark: the first may have been
// mostly done before), and fails on MISMATCH.
func (g *guest) progress(what string) {
	g.t.Helper()
	mark := len(g.vm.Output())
	last := LastGen(g.vm.Lines(0))
	if err := g.vm.WaitLine(mark, slow, what, func(l string) bool {
		m := GenRE.FindStringSubmatch(l)
		return m != nil && LastGen([]string{l}) >= last+2
	}); err != nil {
		g.t.Fatal(err)
	}
	if err := CheckDiskcheck(g.vm.Output()); err != nil {
		g.t.Fatalf("%v\n%s", err, g.vm.Output())
	}
}

func (g *guest) run(cmd string, args any) json.RawMessage {
	g.t.Helper()
	r, err := g.vm.Run(cmd, args)
	if err != nil {
		g.t.Fatalf("%s %v: %v", cmd, args, err)
	}
	return r
}

// fail runs a command that must fail with class and a description holding
// desc.
func (g *guest) fail(cmd string, args any, class, desc string) {
	g.t.Helper()
	_, err := g.vm.Run(cmd, args)
	var qe *QMPError
	if !errors.As(err, &qe) {
		g.t.Fatalf("%s %v: want error %s %q, got %v", cmd, args, class, desc, err)
	}
	if qe.Class != class || !strings.Contains(qe.Desc, desc) {
		g.t.Fatalf("%s %v: error %s %q, want %s containing %q", cmd, args, qe.Class, qe.Desc, class, desc)
	}
}

func (g *guest) blocks() []block.BlockInfo {
	g.t.Helper()
	var bi []block.BlockInfo
	if err := json.Unmarshal(g.run("query-block", nil), &bi); err != nil {
		g.t.Fatal(err)
	}
	return bi
}

func (g *guest) nodes() []block.BlockDeviceInfo {
	g.t.Helper()
	var n []block.BlockDeviceInfo
	if err := json.Unmarshal(g.run("query-named-block-nodes", nil), &n); err != nil {
		g.t.Fatal(err)
	}
	return n
}

// top is query-block's inserted node of the idx-th device with a medium
// (QEMU also lists its board's empty default drives).
func (g *guest) top(idx int) *block.BlockDeviceInfo {
	g.t.Helper()
	var in []*block.BlockDeviceInfo
	bi := g.blocks()
	for _, b := range bi {
		if b.Inserted != nil {
			in = append(in, b.Inserted)
		}
	}
	if idx >= len(in) {
		g.t.Fatalf("query-block: %+v", bi)
	}
	return in[idx]
}

// wantTop checks that device idx runs on node with that file and chain
// depth, both in query-block and query-named-block-nodes.
func (g *guest) wantTop(idx int, node, file string, depth int) {
	g.t.Helper()
	in := g.top(idx)
	if in.NodeName != node || in.File != file || in.BackingFileDepth != depth || in.RO {
		g.t.Fatalf("query-block device %d: node %q file %q depth %d ro %v; want node %q file %q depth %d rw",
			idx, in.NodeName, in.File, in.BackingFileDepth, in.RO, node, file, depth)
	}
	for _, n := range g.nodes() {
		if n.NodeName == node {
			if n.BackingFileDepth != depth || n.File != file {
				g.t.Fatalf("query-named-block-nodes %q: file %q depth %d, want %q %d", node, n.File, n.BackingFileDepth, file, depth)
			}
			return
		}
	}
	g.t.Fatalf("query-named-block-nodes has no %q", node)
}

// quit ends the VM and checks diskcheck's whole output once more.
func (g *guest) quit() {
	g.t.Helper()
	if err := CheckDiskcheck(g.vm.Output()); err != nil {
		g.t.Fatalf("%v\n%s", err, g.vm.Output())
	}
	if err := g.vm.Quit(30 * time.Second); err != nil {
		g.t.Fatal(err)
	}
}

func (g *guest) qemuImg(args ...string) string {
	g.t.Helper()
	out, err := exec.Command(qemuImg(g.t), args...).CombinedOutput()
	if err != nil {
		g.t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// files lists the directory's image files (the QMP socket excluded).
func (g *guest) files() []string {
	g.t.Helper()
	ents, err := os.ReadDir(g.dir)
	if err != nil {
		g.t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		if !strings.HasSuffix(e.Name(), ".sock") {
			names = append(names, e.Name())
		}
	}
	return names
}

func syncArgs(node, file, overlay string) map[string]any {
	return map[string]any{"node-name": node, "snapshot-file": file, "snapshot-node-name": overlay, "format": "qcow2"}
}

var (
	imgOnce sync.Once
	imgPath string
	imgErr  error
)

// snapvmImg builds ./cmd/snapvm-img next to the snapvm binary vmrun built.
func snapvmImg(t *testing.T) string {
	t.Helper()
	imgOnce.Do(func() {
		root, err := vmrun.ModuleRoot()
		if err != nil {
			imgErr = err
			return
		}
		imgPath = filepath.Join(filepath.Dir(vmrun.Snapvm(t)), "snapvm-img")
		cmd := exec.Command(filepath.Join(runtime.GOROOT(), "bin", "go"), "build", "-o", imgPath, "./cmd/snapvm-img")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			imgErr = fmt.Errorf("go build ./cmd/snapvm-img: %v\n%s", err, out)
		}
	})
	if imgErr != nil {
		t.Fatal(imgErr)
	}
	return imgPath
}
