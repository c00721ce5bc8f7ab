package block

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"syscall"

	"github.com/snapvm/snapvm/qcow2"
)

// maxNodeName is the longest node name QEMU accepts (its buffer holds 32
// bytes with the terminating NUL).
const maxNodeName = 31

// Graph holds every node and backend of one VM (or one tool run). It is safe
// for concurrent use.
type Graph struct {
	mu       sync.Mutex
	nodes    []*Node // creation order
	byName   map[string]*Node
	backends []*Backend
	autoSeq  uint64
	locking  bool // take QEMU's image locks on file nodes (SetImageLocking)

	// Request accounting for Drain; see backend.go.
	ioMu     sync.Mutex
	ioCond   *sync.Cond
	inflight int // Backend requests in progress
	drainers int // Drain calls not yet released
}

// NewGraph returns an empty graph.
func NewGraph() *Graph {
	g := &Graph{byName: map[string]*Node{}}
	g.ioCond = sync.NewCond(&g.ioMu)
	return g
}

// Node returns the node called name.
func (g *Graph) Node(name string) (*Node, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	n, ok := g.byName[name]
	return n, ok
}

// Nodes returns all nodes in creation order (children before parents).
func (g *Graph) Nodes() []*Node {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*Node(nil), g.nodes...)
}

// validNodeName is QEMU's id_wellformed: a letter, then letters, digits,
// '-', '.' or '_'.
func validNodeName(s string) bool {
	if s == "" || !isLetter(s[0]) {
		return false
	}
	for _, c := range []byte(s[1:]) {
		if !isLetter(c) && !(c >= '0' && c <= '9') && c != '-' && c != '.' && c != '_' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// errnoText renders an OS error the way QEMU prints strerror: "No such file
// or directory".
func errnoText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		if s != "" {
			return strings.ToUpper(s[:1]) + s[1:]
		}
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// opening tracks the nodes one Add creates so a failure can undo them all.
type opening struct {
	g     *Graph
	nodes []*Node
	links []pendingLink // applied only when the whole Add succeeds
	names map[string]bool
}

type pendingLink struct {
	child, parent *Node
	role          string
}

func (op *opening) link(child, parent *Node, role string) {
	op.links = append(op.links, pendingLink{child, parent, role})
}

// Add creates the node o describes, with its nested children, following
// blockdev-add: the root must be named, names must be well formed and
// unique, referenced children must exist. Only the root is owned by the
// monitor (removable with Del); nested children go with their parent.
func (g *Graph) Add(o Options) (*Node, error) {
	if o.NodeName == "" {
		return nil, errors.New("'node-name' must be specified for the root node")
	}
	return g.addTree(o, nil, true)
}

// addTree opens the node o describes and its nested children, and puts
// them in the graph all together or not at all. inheritRO, if set, is the
// read-only mode children inherit; monitorOwned marks the root as one the
// monitor may delete.
func (g *Graph) addTree(o Options, inheritRO *bool, monitorOwned bool) (*Node, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	op := &opening{g: g, names: map[string]bool{}}
	n, err := op.open(o, inheritRO, monitorOwned)
	if err != nil {
		for i := len(op.nodes) - 1; i >= 0; i-- {
			op.nodes[i].drv.close()
		}
		return nil, err
	}
	for _, c := range op.nodes {
		g.nodes = append(g.nodes, c)
		g.byName[c.name] = c
	}
	for _, l := range op.links {
		link(l.child, l.parent, l.role)
	}
	return n, nil
}

func (op *opening) claimName(o Options) (string, error) {
	g := op.g
	if o.NodeName == "" {
		g.autoSeq++
		// QEMU's generated ids: "#block" + a counter + two random digits.
		for {
			name := fmt.Sprintf("#block%d%02d", g.autoSeq-1, rand.IntN(100))
			if g.byName[name] == nil && !op.names[name] {
				op.names[name] = true
				return name, nil
			}
		}
	}
	name := o.NodeName
	if !validNodeName(name) {
		return "", fmt.Errorf("Invalid node-name: '%s'", name)
	}
	for _, b := range g.backends {
		if b.name == name {
			return "", fmt.Errorf("node-name=%s is conflicting with a device id", name)
		}
	}
	if g.byName[name] != nil || op.names[name] {
		return "", fmt.Errorf("Duplicate nodes with node-name='%s'", name)
	}
	if len(name) > maxNodeName {
		return "", errors.New("Node name too long")
	}
	op.names[name] = true
	return name, nil
}

// child resolves a Ref to an existing node or opens the nested one.
func (op *opening) child(r *Ref, inheritRO bool) (*Node, error) {
	if r.Options != nil {
		// Nested children belong to their parent, named or not (QEMU:
		// "Node f is not owned by the monitor").
		return op.open(*r.Options, &inheritRO, false)
	}
	n := op.g.byName[r.NodeName]
	if n == nil {
		return nil, fmt.Errorf("Cannot find device='%s' nor node-name='%s'", r.NodeName, r.NodeName)
	}
	return n, nil
}

func link(child, parent *Node, role string) {
	child.parents = append(child.parents, parentLink{parent: parent, role: role})
}

func (op *opening) open(o Options, inheritRO *bool, monitorOwned bool) (*Node, error) {
	name, err := op.claimName(o)
	if err != nil {
		return nil, err
	}
	ro := false
	if inheritRO != nil {
		ro = *inheritRO
	}
	if o.ReadOnly != nil {
		ro = *o.ReadOnly
	}
	n := &Node{g: op.g, name: name, drvName: o.Driver, opts: o, monitorOwned: monitorOwned}
	n.readOnly.Store(ro)
	n.openedRO = ro

	switch o.Driver {
	case "file":
		d, err := openFileDriver(o.Filename, ro)
		if err != nil {
			return nil, fmt.Errorf("Could not open '%s': %s", o.Filename, errnoText(err))
		}
		if op.g.locking && o.Locking != "off" {
			// qcow2 content needs its metadata left alone by others.
			if d.lock, err = LockImage(o.Filename, !ro, qcow2.Probe(d.f)); err != nil {
				d.close()
				return nil, err
			}
		}
		n.filename = o.Filename
		n.drv = d
	case "raw":
		f, err := op.child(o.File, ro)
		if err != nil {
			return nil, err
		}
		n.file, n.filename = f, f.filename
		n.drv = rawDriver{file: f}
		op.link(f, n, "file")
	case "qcow2":
		f, err := op.child(o.File, ro)
		if err != nil {
			return nil, err
		}
		if f.drvName != "file" {
			return nil, fmt.Errorf("snapvm opens qcow2 images only over the file driver, not '%s'", f.drvName)
		}
		if fd, ok := f.drv.(*fileDriver); !ok || !qcow2.Probe(fd.f) {
			return nil, errors.New("Image is not in qcow2 format")
		}
		img, err := qcow2.Open(f.filename, qcow2.OpenOptions{ReadOnly: ro, NoBacking: true})
		if err != nil {
			return nil, errors.New(strings.TrimPrefix(err.Error(), "qcow2: "))
		}
		n.file, n.filename, n.img = f, f.filename, img
		n.drv = qcow2Driver{img: img}
		op.link(f, n, "file")
		// Registered before the backing is opened so a failure closes it.
		op.nodes = append(op.nodes, n)
		b, err := op.backingFor(n, o.Backing)
		if err != nil {
			return nil, err
		}
		if b != nil {
			n.backing.Store(b)
			img.SetBacking(b)
			op.link(b, n, "backing")
		}
		return n, nil
	default:
		return nil, fmt.Errorf("Parameter 'driver' does not accept value '%s'", o.Driver)
	}
	op.nodes = append(op.nodes, n)
	return n, nil
}

// backingFor opens the backing of qcow2 node n: the node r names or
// describes, none for a null r, and for an absent r the file the image
// header names (read-only, relative names resolved against the image's
// directory, format from the header or probed).
func (op *opening) backingFor(n *Node, r *Ref) (*Node, error) {
	if r != nil {
		if r.Null {
			return nil, nil
		}
		b, err := op.child(r, true)
		if err != nil {
			return nil, fmt.Errorf("Could not open backing file: %v", err)
		}
		return b, nil
	}
	name := n.img.BackingFile()
	if name == "" {
		return nil, nil
	}
	path := BackingPath(n.filename, name)
	format := n.img.BackingFormat()
	if format == "" {
		format = "raw"
		if f, err := os.Open(path); err == nil {
			if qcow2.Probe(f) {
				format = "qcow2"
			}
			f.Close()
		}
	}
	if format != "raw" && format != "qcow2" {
		return nil, fmt.Errorf("Could not open backing file: Unknown driver '%s'", format)
	}
	bo := Options{Driver: format, File: &Ref{Options: &Options{Driver: "file", Filename: path}}}
	ro := true
	b, err := op.open(bo, &ro, false)
	if err != nil {
		return nil, fmt.Errorf("Could not open backing file: %v", err)
	}
	return b, nil
}

// BackingPath resolves a backing file name stored in an image header the way
// QEMU does: absolute names as they are, relative ones against the
// directory part of the image's own filename.
func BackingPath(imageFilename, backing string) string {
	if strings.HasPrefix(backing, "/") {
		return backing
	}
	i := strings.LastIndexByte(imageFilename, '/')
	return imageFilename[:i+1] + backing
}

// Del removes a node added with Add, following blockdev-del: the node must
// exist, have no device attached, not be a backing child, be owned by the
// monitor and have no other parent. Children no one else uses go with it.
func (g *Graph) Del(nodeName string) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := g.byName[nodeName]
	if n == nil {
		return fmt.Errorf("Failed to find node with node-name='%s'", nodeName)
	}
	if n.backends > 0 {
		return fmt.Errorf("Node %s is in use", nodeName)
	}
	for _, p := range n.parents {
		if p.role == "backing" {
			return fmt.Errorf("Node '%s' is busy: node is used as backing hd of '%s'", nodeName, p.parent.name)
		}
	}
	if !n.monitorOwned {
		return fmt.Errorf("Node %s is not owned by the monitor", nodeName)
	}
	if len(n.parents) > 0 {
		return fmt.Errorf("Block device %s is in use", nodeName)
	}
	return g.remove(n)
}

// remove closes n and drops it from the graph, then any child left with no
// user that the monitor does not own. Preconditions: g.mu held, n unused.
func (g *Graph) remove(n *Node) error {
	err := n.drv.close()
	delete(g.byName, n.name)
	for i, x := range g.nodes {
		if x == n {
			g.nodes = append(g.nodes[:i], g.nodes[i+1:]...)
			break
		}
	}
	for _, c := range []*Node{n.file, n.Backing()} {
		if c == nil {
			continue
		}
		g.unlink(c, n)
		if len(c.parents) == 0 && c.backends == 0 && !c.monitorOwned {
			err = errors.Join(err, g.remove(c))
		}
	}
	return err
}

func (g *Graph) unlink(child, parent *Node) {
	for i, p := range child.parents {
		if p.parent == parent {
			child.parents = append(child.parents[:i], child.parents[i+1:]...)
			return
		}
	}
}

// SetBacking makes b the backing node of qcow2 node n (b may be nil to
// detach it); external snapshots use it to put an overlay over its base.
// It refuses a change that would make a cycle.
func (g *Graph) SetBacking(n, b *Node) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if n.img == nil {
		return fmt.Errorf("Node '%s' does not support backing images", n.name)
	}
	for x := b; x != nil; x = x.Backing() {
		if x == n {
			return fmt.Errorf("Making '%s' a backing child of '%s' would create a cycle", b.name, n.name)
		}
	}
	if old := n.Backing(); old != nil {
		g.unlink(old, n)
	}
	n.backing.Store(b)
	if b != nil {
		link(b, n, "backing")
		n.img.SetBacking(b)
	} else {
		n.img.SetBacking(nil)
	}
	return nil
}

// SetReadOnly changes whether the node accepts writes (QEMU's reopen to
// read-only when an external snapshot makes it a base). Making a node
// read-only flushes it first.
func (g *Graph) SetReadOnly(n *Node, ro bool) error {
	if ro && !n.ReadOnly() {
		if err := n.drv.flush(); err != nil {
			return err
		}
	}
	if !ro && n.openedRO {
		// Its file descriptors were opened read-only.
		return ErrReadOnly
	}
	if ro {
		// A read-only user lets other processes read the image again.
		for x := n; x != nil; x = x.file {
			if fd, ok := x.drv.(*fileDriver); ok {
				fd.lock.Downgrade()
			}
		}
	}
	n.readOnly.Store(ro)
	return nil
}

// Close closes every node. The graph must not be used afterwards.
func (g *Graph) Close() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var err error
	for i := len(g.nodes) - 1; i >= 0; i-- {
		err = errors.Join(err, g.nodes[i].drv.close())
	}
	g.nodes, g.byName, g.backends = nil, map[string]*Node{}, nil
	return err
}

// SetImageLocking makes file nodes opened from now on take QEMU's image
// locks (see LockImage), as QEMU does by default, so qemu-img refuses to
// modify a disk the VM uses and opening a disk another process writes
// fails with "Failed to get "write" lock". A node with locking=off is
// exempt. Off by default.
func (g *Graph) SetImageLocking(on bool) {
	g.mu.Lock()
	g.locking = on
	g.mu.Unlock()
}
