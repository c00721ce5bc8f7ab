package qcow2

import (
	"fmt"
	"math"
)

// VM-state operations the VM-snapshot layer needs beyond QEMU's: starting a
// save from an empty area, and reading a snapshot's VM state before the disk
// is reverted to it (so a load can be checked before anything changes).

// DiscardVMState removes the whole vm-state area from the active L1, so that
// the next stream written there starts with nothing but holes. Clusters the
// snapshots reference stay theirs.
func (img *Image) DiscardVMState() error {
	img.mu.Lock()
	defer img.mu.Unlock()
	img.waitVMCopies()
	if err := img.writable(); err != nil {
		return err
	}
	span := int64(1) << (img.l2Bits + img.clusterBits)
	for l1i := int64(img.hdr.l1VMStateIndex()); l1i < int64(len(img.l1)); l1i++ {
		if img.l1[l1i]&l1eOffsetMask == 0 {
			continue
		}
		if err := img.zeroClusters(l1i*span, span, modeDiscard); err != nil {
			return err
		}
	}
	return img.flushMeta()
}

// ReadSnapshotVMState reads p from position pos of the vm-state area saved in
// snapshot id, through the snapshot's own L1 table; the active image is not
// changed. Holes read as zeros.
func (img *Image) ReadSnapshotVMState(id string, p []byte, pos int64) error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.usable(); err != nil {
		return err
	}
	i := -1
	for j := range img.snaps {
		if img.snaps[j].id == id {
			i = j
			break
		}
	}
	if i < 0 {
		return fmt.Errorf("%w: id %q", ErrSnapshotNotFound, id)
	}
	sn := img.snaps[i]
	if err := img.validateSnapshotL1(&sn); err != nil {
		return err
	}
	l1, err := img.readSnapshotL1(&sn)
	if err != nil {
		return err
	}
	// The area starts after the disk as it was when the snapshot was taken.
	shift := img.l2Bits + img.clusterBits
	base := int64((sn.diskSize + (uint64(1) << shift) - 1) >> shift << shift)
	limit := int64(len(l1)) << shift
	n := int64(len(p))
	if pos < 0 || base < 0 || pos > math.MaxInt64-base || base+pos > limit || n > limit-(base+pos) {
		// Beyond the snapshot's L1 everything is a hole.
		if pos >= 0 && base >= 0 && pos <= math.MaxInt64-base && base+pos >= limit {
			clear(p)
			return nil
		}
		return unsupported("vm state request [%d, +%d) out of range", pos, n)
	}
	active := img.l1
	img.l1 = l1
	defer func() { img.l1 = active }()
	return img.readAt(p, base+pos)
}
