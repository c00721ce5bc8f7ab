package qcow2

import "fmt"

// SnapshotView reads the disk and the vm state of an internal snapshot without applying
// it (what qemu-img convert -l and QEMU's load_tmp do). It stays usable while the snapshot
// exists; after the snapshot is deleted or replaced its methods return ErrSnapshotNotFound.
type SnapshotView struct {
	img  *Image
	info SnapshotInfo
	l1   []uint64
	l1At uint64 // L1 offset of the entry, to notice deletion
}

// OpenSnapshot returns a read-only view of a snapshot found by id first, then by name.
func (img *Image) OpenSnapshot(idOrName string) (*SnapshotView, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.usable(); err != nil {
		return nil, err
	}
	i := img.findSnapshot(idOrName)
	if i < 0 {
		return nil, fmt.Errorf("%w: %q", ErrSnapshotNotFound, idOrName)
	}
	sn := img.snaps[i]
	t, err := img.snapshotTree(&sn)
	if err != nil {
		return nil, err
	}
	if sn.diskSize > uint64(maxL1Size/8)<<(img.l2Bits+img.clusterBits) {
		return nil, formatErr(int64(img.hdr.SnapshotsOffset), "snapshot %s has an invalid disk size", sn.id)
	}
	return &SnapshotView{img: img, info: sn.info(), l1: t.l1, l1At: sn.l1Off}, nil
}

// Info returns the snapshot's entry.
func (v *SnapshotView) Info() SnapshotInfo { return v.info }

// Size is the virtual disk size recorded in the snapshot.
func (v *SnapshotView) Size() int64 { return int64(v.info.DiskSize) }

// with runs fn with the image's active L1 and size temporarily replaced by the snapshot's.
// fn must only read.
func (v *SnapshotView) with(fn func() error) error {
	img := v.img
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.usable(); err != nil {
		return err
	}
	alive := false
	for i := range img.snaps {
		if img.snaps[i].id == v.info.ID && img.snaps[i].l1Off == v.l1At {
			alive = true
		}
	}
	if !alive {
		return fmt.Errorf("%w: %q was deleted", ErrSnapshotNotFound, v.info.ID)
	}
	l1, size := img.l1, img.hdr.Size
	img.l1, img.hdr.Size = v.l1, v.info.DiskSize
	defer func() { img.l1, img.hdr.Size = l1, size }()
	return fn()
}

// ReadAt reads the snapshot's disk; the range must lie within [0, Size()).
func (v *SnapshotView) ReadAt(p []byte, off int64) (int, error) {
	err := v.with(func() error {
		if err := v.img.checkRange(off, int64(len(p))); err != nil {
			return err
		}
		return v.img.readAt(p, off)
	})
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// Map reports the allocation status of the snapshot's disk.
func (v *SnapshotView) Map(off, n int64) (ext []Extent, err error) {
	err = v.with(func() error {
		if err := v.img.checkRange(off, n); err != nil {
			return err
		}
		ext, err = v.img.mapRange(off, n)
		return err
	})
	return ext, err
}

// ReadVMState reads the snapshot's vm state; holes read as zeros.
func (v *SnapshotView) ReadVMState(p []byte, pos int64) error {
	return v.with(func() error {
		off, err := v.img.checkVMState(pos, int64(len(p)))
		if err != nil {
			return err
		}
		return v.img.readAt(p, off)
	})
}

// MapVMState reports which parts of the snapshot's vm state are allocated.
func (v *SnapshotView) MapVMState(pos, n int64) (ext []Extent, err error) {
	err = v.with(func() error {
		off, err := v.img.checkVMState(pos, n)
		if err != nil {
			return err
		}
		if ext, err = v.img.mapRange(off, n); err != nil {
			return err
		}
		for i := range ext {
			ext[i].Off -= off - pos
			if !ext[i].Allocated {
				ext[i].Zero = true
			}
		}
		return nil
	})
	return ext, err
}
