// Package blockcmd registers the QMP commands for disk snapshots:
// blockdev-snapshot-sync, blockdev-snapshot, blockdev-snapshot-internal-sync,
// blockdev-snapshot-delete-internal-sync and transaction. Argument structs
// follow QEMU 7.2's schema (member order, optional members as pointers);
// the work is done by package block, whose errors are mapped here to QMP
// error classes.
package blockcmd

import (
	"context"
	"errors"
	"time"

	"github.com/snapvm/snapvm/block"
	"github.com/snapvm/snapvm/qmp"
)

// NewImageMode is QAPI's NewImageMode.
type NewImageMode string

// EnumValues lists the modes in schema order.
func (NewImageMode) EnumValues() []string { return []string{"existing", "absolute-paths"} }

// BlockdevSnapshotSync is the argument of blockdev-snapshot-sync.
type BlockdevSnapshotSync struct {
	Device           *string       `json:"device,omitempty"`
	NodeName         *string       `json:"node-name,omitempty"`
	SnapshotFile     string        `json:"snapshot-file"`
	SnapshotNodeName *string       `json:"snapshot-node-name,omitempty"`
	Format           *string       `json:"format,omitempty"`
	Mode             *NewImageMode `json:"mode,omitempty"`
}

// BlockdevSnapshot is the argument of blockdev-snapshot.
type BlockdevSnapshot struct {
	Node    string `json:"node"`
	Overlay string `json:"overlay"`
}

// BlockdevSnapshotInternal is the argument of blockdev-snapshot-internal-sync.
type BlockdevSnapshotInternal struct {
	Device string `json:"device"`
	Name   string `json:"name"`
}

// BlockdevSnapshotDeleteInternal is the argument of
// blockdev-snapshot-delete-internal-sync.
type BlockdevSnapshotDeleteInternal struct {
	Device string  `json:"device"`
	ID     *string `json:"id,omitempty"`
	Name   *string `json:"name,omitempty"`
}

// Abort is the (empty) data of the abort transaction action.
type Abort struct{}

// Options supplies what the internal snapshot entries record.
type Options struct {
	// VMClock returns the guest's virtual clock in nanoseconds (nil: 0).
	VMClock func() int64
	// Now returns the snapshot date (nil: time.Now).
	Now func() time.Time
}

// Register adds the five commands to s, acting on g, with a virtual clock
// of 0 for internal snapshots (use RegisterWith to pass the VM's clock).
func Register(s *qmp.Server, g *block.Graph) { RegisterWith(s, g, Options{}) }

// RegisterWith is Register with the clocks internal snapshots record.
func RegisterWith(s *qmp.Server, g *block.Graph, o Options) {
	c := &commands{g: g, o: o}
	qmp.Register(s, "blockdev-snapshot-sync", func(_ context.Context, a BlockdevSnapshotSync) (struct{}, error) {
		return struct{}{}, qmpError(g.SnapshotSync(syncAction(a)))
	})
	qmp.Register(s, "blockdev-snapshot", func(_ context.Context, a BlockdevSnapshot) (struct{}, error) {
		return struct{}{}, qmpError(g.SnapshotOverlay(block.SnapshotOverlay{Node: a.Node, Overlay: a.Overlay}))
	})
	qmp.Register(s, "blockdev-snapshot-internal-sync", func(_ context.Context, a BlockdevSnapshotInternal) (struct{}, error) {
		return struct{}{}, qmpError(g.InternalSnapshot(c.internalAction(a)))
	})
	qmp.Register(s, "blockdev-snapshot-delete-internal-sync", func(_ context.Context, a BlockdevSnapshotDeleteInternal) (block.SnapshotInfo, error) {
		info, err := g.DeleteInternalSnapshot(a.Device, a.ID, a.Name)
		return info, qmpError(err)
	})
	qmp.Register(s, "transaction", c.transaction)
}

type commands struct {
	g *block.Graph
	o Options
}

func syncAction(a BlockdevSnapshotSync) block.SnapshotSync {
	out := block.SnapshotSync{
		Device:           a.Device,
		NodeName:         a.NodeName,
		SnapshotFile:     a.SnapshotFile,
		SnapshotNodeName: a.SnapshotNodeName,
	}
	if a.Format != nil {
		out.Format = *a.Format
	}
	if a.Mode != nil {
		out.Mode = string(*a.Mode)
	}
	return out
}

func (c *commands) internalAction(a BlockdevSnapshotInternal) block.InternalSnapshot {
	out := block.InternalSnapshot{Device: a.Device, Name: a.Name}
	if c.o.Now != nil {
		out.Date = c.o.Now()
	} else {
		out.Date = time.Now()
	}
	if c.o.VMClock != nil {
		out.VMClockNsec = c.o.VMClock()
	}
	return out
}

// Error classes the seed gives blockdev-snapshot-sync (QEMU 7.2 answers
// GenericError for them; see docs/compat.md).
const (
	ClassOpenFileFailed     = "OpenFileFailed"
	ClassInvalidBlockFormat = "InvalidBlockFormat"
)

// qmpError maps a block error to its QMP error (nil stays nil).
func qmpError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, block.ErrDeviceNotFound):
		return qmp.NewError(qmp.ClassDeviceNotFound, err.Error())
	case errors.Is(err, block.ErrOpenFileFailed):
		return qmp.NewError(ClassOpenFileFailed, err.Error())
	case errors.Is(err, block.ErrInvalidFormat):
		return qmp.NewError(ClassInvalidBlockFormat, err.Error())
	}
	return qmp.Errorf("%s", err.Error())
}
