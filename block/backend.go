package block

import (
	"fmt"
	"sync"
	"sync/atomic"
)

// Backend is QEMU's BlockBackend: what a device (virtio-blk) is attached to.
// It forwards requests to its root node and counts them so Graph.Drain can
// wait for them. All methods are safe for concurrent use.
type Backend struct {
	g    *Graph
	name string
	root atomic.Pointer[Node]

	mu   sync.Mutex
	qdev string // id of the device using it, for query-block

	// writeThrough is the device's write-cache mode as the guest set it
	// (false: writeback, QEMU's default); query-block reports it.
	writeThrough atomic.Bool
}

// SetWriteCache records the write-cache mode the device runs with.
func (b *Backend) SetWriteCache(on bool) { b.writeThrough.Store(!on) }

// WriteCache reports the device's write-cache mode.
func (b *Backend) WriteCache() bool { return !b.writeThrough.Load() }

// NewBackend attaches a backend called name ("" = anonymous, as for
// -device drive=<node-name>) to root. A named backend must not clash with
// another backend or a node name.
func (g *Graph) NewBackend(name string, root *Node) (*Backend, error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if name != "" {
		for _, b := range g.backends {
			if b.name == name {
				return nil, fmt.Errorf("Device with id '%s' already exists", name)
			}
		}
		if g.byName[name] != nil {
			return nil, fmt.Errorf("Device name '%s' conflicts with an existing node name", name)
		}
	}
	if root == nil || g.byName[root.name] != root {
		return nil, fmt.Errorf("block: root node is not in the graph")
	}
	b := &Backend{g: g, name: name}
	b.root.Store(root)
	root.backends++
	g.backends = append(g.backends, b)
	return b, nil
}

// Backends returns all backends in creation order.
func (g *Graph) Backends() []*Backend {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*Backend(nil), g.backends...)
}

// Detach removes the backend from the graph; its root can then be deleted.
func (b *Backend) Detach() {
	g := b.g
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, x := range g.backends {
		if x == b {
			g.backends = append(g.backends[:i], g.backends[i+1:]...)
			b.root.Load().backends--
			return
		}
	}
}

// Name returns the device/drive name ("" for an anonymous backend).
func (b *Backend) Name() string { return b.name }

// Root returns the node requests go to.
func (b *Backend) Root() *Node { return b.root.Load() }

// SetQdev records the id of the device model using the backend.
func (b *Backend) SetQdev(id string) {
	b.mu.Lock()
	b.qdev = id
	b.mu.Unlock()
}

// Qdev returns the id recorded by SetQdev.
func (b *Backend) Qdev() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.qdev
}

// ReplaceRoot points the backend at n (an external snapshot's overlay).
// Call it while the graph is drained so no request sees both roots.
func (b *Backend) ReplaceRoot(n *Node) {
	g := b.g
	g.mu.Lock()
	defer g.mu.Unlock()
	old := b.root.Swap(n)
	if old != nil {
		old.backends--
	}
	n.backends++
}

// Size returns the root's size.
func (b *Backend) Size() int64 { return b.Root().Size() }

// ReadOnly reports whether the root refuses writes.
func (b *Backend) ReadOnly() bool { return b.Root().ReadOnly() }

// ReadAt reads from the root node.
func (b *Backend) ReadAt(p []byte, off int64) (int, error) {
	b.g.begin()
	defer b.g.end()
	return b.Root().ReadAt(p, off)
}

// WriteAt writes to the root node.
func (b *Backend) WriteAt(p []byte, off int64) (int, error) {
	b.g.begin()
	defer b.g.end()
	return b.Root().WriteAt(p, off)
}

// WriteZeroes zeroes a range of the root node.
func (b *Backend) WriteZeroes(off, n int64, unmap bool) error {
	b.g.begin()
	defer b.g.end()
	return b.Root().WriteZeroes(off, n, unmap)
}

// Discard discards a range of the root node.
func (b *Backend) Discard(off, n int64) error {
	b.g.begin()
	defer b.g.end()
	return b.Root().Discard(off, n)
}

// Flush makes the root node's completed writes durable.
func (b *Backend) Flush() error {
	b.g.begin()
	defer b.g.end()
	return b.Root().Flush()
}

// begin waits while the graph is drained, then counts a request in flight.
func (g *Graph) begin() {
	g.ioMu.Lock()
	for g.drainers > 0 {
		g.ioCond.Wait()
	}
	g.inflight++
	g.ioMu.Unlock()
}

func (g *Graph) end() {
	g.ioMu.Lock()
	g.inflight--
	if g.inflight == 0 {
		g.ioCond.Broadcast()
	}
	g.ioMu.Unlock()
}

// Drain waits until no Backend request is in flight and holds new ones back
// until release is called (release is idempotent). Drains nest: requests
// resume after the last one is released. While drained, work on Nodes
// directly: a Backend request from the draining goroutine would wait for
// its own release.
func (g *Graph) Drain() (release func()) {
	g.ioMu.Lock()
	g.drainers++
	for g.inflight > 0 {
		g.ioCond.Wait()
	}
	g.ioMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			g.ioMu.Lock()
			g.drainers--
			g.ioCond.Broadcast()
			g.ioMu.Unlock()
		})
	}
}
