// Package block is snapvm's block layer: a graph of named nodes (drivers
// file, raw and qcow2, with qcow2 backing chains as nodes of the graph), the
// backends devices attach to, request draining for snapshots, and the QMP
// query-block / query-named-block-nodes views, all with QEMU 7.2's names,
// rules and error texts.
package block

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/snapvm/snapvm/qcow2"
)

var (
	// ErrReadOnly is returned for a write to a read-only node.
	ErrReadOnly = errors.New("block: Block node is read-only")
	// ErrOutOfRange is returned for a request outside the node's size.
	ErrOutOfRange = errors.New("block: request beyond the end of the node")
)

// driver is what a node's format or protocol implements.
type driver interface {
	readAt(p []byte, off int64) (int, error)
	writeAt(p []byte, off int64) (int, error)
	writeZeroes(off, n int64, unmap bool) error
	discard(off, n int64) error
	flush() error
	size() int64
	close() error
}

// parentLink records who uses a node as a child, for blockdev-del's checks.
type parentLink struct {
	parent *Node
	role   string // "file" or "backing"
}

// Node is one node of the block graph. Its I/O methods are safe for
// concurrent use; requests issued on a Node directly are not counted by
// Graph.Drain (only Backend requests are), which is what lets code that
// holds a drain still reach the disks.
type Node struct {
	g        *Graph
	name     string
	drvName  string
	filename string // the protocol filename (for format nodes, their file child's)
	opts     Options
	file     *Node
	backing  atomic.Pointer[Node]
	readOnly atomic.Bool
	openedRO bool // opened without write access; cannot become writable
	drv      driver
	img      *qcow2.Image // driver qcow2 only

	// Guarded by g.mu.
	monitorOwned bool
	parents      []parentLink
	backends     int
}

// NodeName returns the node's name (QEMU's node-name; "#block…" when generated).
func (n *Node) NodeName() string { return n.name }

// Driver returns "file", "raw" or "qcow2".
func (n *Node) Driver() string { return n.drvName }

// Filename returns the host file the node (or its protocol child) reads.
func (n *Node) Filename() string { return n.filename }

// ReadOnly reports whether writes are refused.
func (n *Node) ReadOnly() bool { return n.readOnly.Load() }

// File returns the protocol child of a format node, nil for driver file.
func (n *Node) File() *Node { return n.file }

// Backing returns the backing node of a qcow2 node, nil if none.
func (n *Node) Backing() *Node { return n.backing.Load() }

// Qcow2 returns the open image of a qcow2 node, nil for other drivers.
func (n *Node) Qcow2() *qcow2.Image { return n.img }

// Size returns the node's length in bytes (the virtual disk size for qcow2).
func (n *Node) Size() int64 { return n.drv.size() }

func (n *Node) check(off int64, l int64) error {
	if off < 0 || l < 0 || off > n.drv.size()-l {
		return fmt.Errorf("%w: node '%s', offset %d length %d, size %d", ErrOutOfRange, n.name, off, l, n.drv.size())
	}
	return nil
}

// ReadAt reads from the node; qcow2 reads fall through to the backing node.
func (n *Node) ReadAt(p []byte, off int64) (int, error) {
	if err := n.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	return n.drv.readAt(p, off)
}

// WriteAt writes to the node.
func (n *Node) WriteAt(p []byte, off int64) (int, error) {
	if n.readOnly.Load() {
		return 0, ErrReadOnly
	}
	if err := n.check(off, int64(len(p))); err != nil {
		return 0, err
	}
	return n.drv.writeAt(p, off)
}

// WriteZeroes makes [off, off+len) read as zeros; unmap allows deallocation.
func (n *Node) WriteZeroes(off, length int64, unmap bool) error {
	if n.readOnly.Load() {
		return ErrReadOnly
	}
	if err := n.check(off, length); err != nil {
		return err
	}
	return n.drv.writeZeroes(off, length, unmap)
}

// Discard tells the node the range's content is no longer needed.
func (n *Node) Discard(off, length int64) error {
	if n.readOnly.Load() {
		return ErrReadOnly
	}
	if err := n.check(off, length); err != nil {
		return err
	}
	if n.opts.Discard == "" || n.opts.Discard == "ignore" || n.opts.Discard == "off" {
		return nil // QEMU's default discard=ignore: accepted, nothing done
	}
	return n.drv.discard(off, length)
}

// Flush makes completed writes durable.
func (n *Node) Flush() error {
	if n.opts.CacheNoFlush != nil && *n.opts.CacheNoFlush {
		return nil
	}
	return n.drv.flush()
}

// qcow2 backing interface: a Node serves as the backing of a qcow2 image.
var _ qcow2.Backing = (*Node)(nil)

// depth is the number of backing nodes below n.
func (n *Node) depth() int {
	d := 0
	for b := n.Backing(); b != nil; b = b.Backing() {
		d++
	}
	return d
}
