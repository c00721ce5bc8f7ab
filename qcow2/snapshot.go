package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Internal snapshots ("== Snapshots ==" in qcow2.txt), laid out and updated as QEMU 7.2 does.

// SnapshotInfo is one internal snapshot entry.
type SnapshotInfo struct {
	ID, Name    string
	VMStateSize uint64
	DateSec     uint32
	DateNsec    uint32
	VMClockNsec uint64
	ICount      uint64 // math.MaxUint64 = none (QEMU's -1); stored as given
	DiskSize    uint64 // set by CreateSnapshot to the current size
}

// ErrSnapshotNotFound is returned when no snapshot matches the given id or name.
var ErrSnapshotNotFound = errors.New("qcow2: snapshot not found")

// snapshot is one table entry as stored.
type snapshot struct {
	l1Off       uint64
	l1Size      uint32
	id, name    string
	dateSec     uint32
	dateNsec    uint32
	vmClockNsec uint64
	vmStateSize uint64
	diskSize    uint64
	icount      uint64
	extraTail   []byte // extra data beyond the 24 known bytes, preserved on rewrite
}

func (s *snapshot) info() SnapshotInfo {
	return SnapshotInfo{ID: s.id, Name: s.name, VMStateSize: s.vmStateSize, DateSec: s.dateSec,
		DateNsec: s.dateNsec, VMClockNsec: s.vmClockNsec, ICount: s.icount, DiskSize: s.diskSize}
}

func (s *snapshot) encodedLen() int64 {
	return (snapshotFixedLen + snapshotExtraWriteLen + int64(len(s.extraTail)) + int64(len(s.id)) + int64(len(s.name)) + 7) &^ 7
}

// readSnapshots loads the snapshot table named by the header.
func (img *Image) readSnapshots(fileSize int64) error {
	be := binary.BigEndian
	off := int64(img.hdr.SnapshotsOffset)
	start := off
	var fixed [snapshotFixedLen]byte
	for i := 0; i < int(img.hdr.NbSnapshots); i++ {
		if off-start+snapshotFixedLen > maxSnapshotsSize {
			return formatErr(start, "Snapshot table is too big")
		}
		if off+snapshotFixedLen > fileSize {
			return formatErr(off, "snapshot table entry %d beyond end of file", i)
		}
		if _, err := img.f.ReadAt(fixed[:], off); err != nil {
			return fmt.Errorf("qcow2: reading snapshot table: %w", err)
		}
		s := snapshot{
			l1Off:       be.Uint64(fixed[0:]),
			l1Size:      be.Uint32(fixed[8:]),
			dateSec:     be.Uint32(fixed[16:]),
			dateNsec:    be.Uint32(fixed[20:]),
			vmClockNsec: be.Uint64(fixed[24:]),
			vmStateSize: uint64(be.Uint32(fixed[32:])),
			icount:      math.MaxUint64,
			diskSize:    img.hdr.Size,
		}
		idLen, nameLen := int64(be.Uint16(fixed[12:])), int64(be.Uint16(fixed[14:]))
		extraLen := int64(be.Uint32(fixed[36:]))
		if extraLen > maxSnapshotExtraData {
			return formatErr(off, "Too much extra metadata in snapshot table entry %d", i)
		}
		varLen := extraLen + idLen + nameLen
		off += snapshotFixedLen
		if off-start+varLen > maxSnapshotsSize {
			return formatErr(start, "Snapshot table is too big")
		}
		if off+varLen > fileSize {
			return formatErr(off, "snapshot table entry %d beyond end of file", i)
		}
		v := make([]byte, varLen)
		if _, err := img.f.ReadAt(v, off); err != nil {
			return fmt.Errorf("qcow2: reading snapshot table: %w", err)
		}
		extra := v[:extraLen]
		if len(extra) >= 8 {
			s.vmStateSize = be.Uint64(extra)
		}
		if len(extra) >= 16 {
			s.diskSize = be.Uint64(extra[8:])
		}
		if len(extra) >= 24 {
			s.icount = be.Uint64(extra[16:])
			s.extraTail = append([]byte(nil), extra[24:]...)
		}
		s.id = string(v[extraLen : extraLen+idLen])
		s.name = string(v[extraLen+idLen:])
		off = (off + varLen + 7) &^ 7
		img.snaps = append(img.snaps, s)
	}
	return nil
}

func encodeSnapshots(snaps []snapshot) []byte {
	be := binary.BigEndian
	n := int64(0)
	for i := range snaps {
		n += snaps[i].encodedLen()
	}
	buf := make([]byte, n)
	off := int64(0)
	for i := range snaps {
		s := &snaps[i]
		b := buf[off:]
		be.PutUint64(b[0:], s.l1Off)
		be.PutUint32(b[8:], s.l1Size)
		be.PutUint16(b[12:], uint16(len(s.id)))
		be.PutUint16(b[14:], uint16(len(s.name)))
		be.PutUint32(b[16:], s.dateSec)
		be.PutUint32(b[20:], s.dateNsec)
		be.PutUint64(b[24:], s.vmClockNsec)
		if s.vmStateSize <= math.MaxUint32 {
			// Older readers see a disk-only snapshot rather than a truncated one.
			be.PutUint32(b[32:], uint32(s.vmStateSize))
		}
		be.PutUint32(b[36:], uint32(snapshotExtraWriteLen+len(s.extraTail)))
		be.PutUint64(b[40:], s.vmStateSize)
		be.PutUint64(b[48:], s.diskSize)
		be.PutUint64(b[56:], s.icount)
		p := 64 + copy(b[64:], s.extraTail)
		p += copy(b[p:], s.id)
		copy(b[p:], s.name)
		off += s.encodedLen()
	}
	return buf
}

// writeSnapshotTable replaces the on-disk table with snaps: allocate, flush, write, flush,
// switch nb_snapshots+snapshots_offset with one 12-byte write, then free the old table.
// All metadata the new entries reference must already be durable.
func (img *Image) writeSnapshotTable(snaps []snapshot) error {
	buf := encodeSnapshots(snaps)
	if len(buf) > maxSnapshotsSize {
		return fmt.Errorf("%w: snapshot table would exceed %d bytes (File too large)", ErrUnsupported, maxSnapshotsSize)
	}
	var newOff int64
	if len(buf) > 0 {
		var err error
		if newOff, err = img.allocClusters((int64(len(buf)) + img.cs - 1) / img.cs); err != nil {
			return err
		}
		if err := img.flushMeta(); err != nil {
			return err
		}
		if _, err := img.f.WriteAt(buf, newOff); err != nil {
			return err
		}
		if err := img.f.Sync(); err != nil {
			return err
		}
	}
	var hb [12]byte
	binary.BigEndian.PutUint32(hb[:], uint32(len(snaps)))
	binary.BigEndian.PutUint64(hb[4:], uint64(newOff))
	if err := img.writeHeaderField(hdrOffNbSnapshots, hb[:]); err != nil {
		return err
	}
	oldOff, oldLen := int64(img.hdr.SnapshotsOffset), int64(len(encodeSnapshots(img.snaps)))
	img.hdr.NbSnapshots, img.hdr.SnapshotsOffset = uint32(len(snaps)), uint64(newOff)
	img.snaps = snaps
	if oldLen > 0 && oldOff != 0 {
		return img.freeRangeNow(oldOff, oldLen)
	}
	return nil
}

// Snapshots lists the snapshots in table order.
func (img *Image) Snapshots() []SnapshotInfo {
	img.mu.Lock()
	defer img.mu.Unlock()
	out := make([]SnapshotInfo, len(img.snaps))
	for i := range img.snaps {
		out[i] = img.snaps[i].info()
	}
	return out
}

// findSnapshot returns the index of the snapshot with that id, else the first with that
// name (QEMU's lookup order for goto), or -1.
func (img *Image) findSnapshot(idOrName string) int {
	for i := range img.snaps {
		if img.snaps[i].id == idOrName {
			return i
		}
	}
	for i := range img.snaps {
		if img.snaps[i].name == idOrName {
			return i
		}
	}
	return -1
}

// FindSnapshot looks a snapshot up by id first, then by name.
func (img *Image) FindSnapshot(idOrName string) (SnapshotInfo, bool) {
	img.mu.Lock()
	defer img.mu.Unlock()
	i := img.findSnapshot(idOrName)
	if i < 0 {
		return SnapshotInfo{}, false
	}
	return img.snaps[i].info(), true
}

// newSnapshotID is the largest numeric id plus one (non-numeric ids count as 0).
func (img *Image) newSnapshotID() string {
	var maxID uint64
	for i := range img.snaps {
		if v, err := strconv.ParseUint(img.snaps[i].id, 10, 64); err == nil && v > maxID {
			maxID = v
		}
	}
	return strconv.FormatUint(maxID+1, 10)
}

// CreateSnapshot snapshots the active disk (and the vm-state area written so far): it
// copies the active L1, takes a reference on every cluster of the tree and appends the
// entry. Afterwards the vm-state area is discarded from the active L1. The ID is assigned
// unless s.ID is set (which must then be unused).
func (img *Image) CreateSnapshot(s SnapshotInfo) (SnapshotInfo, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.writable(); err != nil {
		return SnapshotInfo{}, err
	}
	sn, err := img.prepareSnapshot(s)
	if err != nil {
		return SnapshotInfo{}, err
	}
	snaps := append(append([]snapshot(nil), img.snaps...), sn)
	if err := img.writeSnapshotTable(snaps); err != nil {
		// The tree references stay: at worst leaked clusters (qemu-img check -r leaks).
		return SnapshotInfo{}, err
	}
	if err := img.discardVMState(sn.vmStateSize); err != nil {
		return SnapshotInfo{}, err
	}
	return sn.info(), img.flushMeta()
}

// ReplaceSnapshot creates s and removes snapshot oldID in one snapshot-table update, so a
// crash leaves either the old or the new snapshot whole. The old tree is released after.
func (img *Image) ReplaceSnapshot(oldID string, s SnapshotInfo) (SnapshotInfo, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.writable(); err != nil {
		return SnapshotInfo{}, err
	}
	oi := -1
	for i := range img.snaps {
		if img.snaps[i].id == oldID {
			oi = i
		}
	}
	if oi < 0 {
		return SnapshotInfo{}, fmt.Errorf("%w: id %q", ErrSnapshotNotFound, oldID)
	}
	old := img.snaps[oi]
	if err := img.validateSnapshotL1(&old); err != nil {
		return SnapshotInfo{}, err
	}
	oldL1, err := img.readSnapshotL1(&old)
	if err != nil {
		return SnapshotInfo{}, err
	}
	sn, err := img.prepareSnapshot(s)
	if err != nil {
		return SnapshotInfo{}, err
	}
	snaps := make([]snapshot, 0, len(img.snaps))
	snaps = append(snaps, img.snaps[:oi]...)
	snaps = append(snaps, img.snaps[oi+1:]...)
	snaps = append(snaps, sn)
	if err := img.writeSnapshotTable(snaps); err != nil {
		return SnapshotInfo{}, err
	}
	if err := img.releaseSnapshotTree(&old, oldL1); err != nil {
		return SnapshotInfo{}, err
	}
	if err := img.discardVMState(sn.vmStateSize); err != nil {
		return SnapshotInfo{}, err
	}
	return sn.info(), img.flushMeta()
}

// prepareSnapshot writes the L1 copy and takes the tree references for a new entry; the
// caller puts the entry into the table.
func (img *Image) prepareSnapshot(s SnapshotInfo) (snapshot, error) {
	if len(img.snaps) >= maxSnapshots {
		return snapshot{}, fmt.Errorf("%w: too many snapshots (File too large)", ErrUnsupported)
	}
	if img.refBits < 2 {
		return snapshot{}, unsupported("internal snapshots need refcount_bits >= 2")
	}
	if len(s.Name) > math.MaxUint16 || len(s.ID) > math.MaxUint16 {
		return snapshot{}, fmt.Errorf("qcow2: snapshot name or id too long")
	}
	if s.ID == "" {
		s.ID = img.newSnapshotID()
	} else {
		for i := range img.snaps {
			if img.snaps[i].id == s.ID {
				return snapshot{}, fmt.Errorf("qcow2: snapshot id %q already exists", s.ID)
			}
		}
	}
	if s.DateSec == 0 && s.DateNsec == 0 {
		now := time.Now()
		s.DateSec, s.DateNsec = uint32(now.Unix()), uint32(now.Nanosecond()/1000*1000)
	}
	sn := snapshot{id: s.ID, name: s.Name, dateSec: s.DateSec, dateNsec: s.DateNsec,
		vmClockNsec: s.VMClockNsec, vmStateSize: s.VMStateSize, icount: s.ICount,
		diskSize: img.hdr.Size, l1Size: uint32(len(img.l1))}
	// Everything the L1 copy points to must be on disk first.
	if err := img.flushMeta(); err != nil {
		return snapshot{}, err
	}
	if len(img.l1) > 0 {
		bytes := int64(len(img.l1)) * 8
		off, err := img.allocClusters((bytes + img.cs - 1) / img.cs)
		if err != nil {
			return snapshot{}, err
		}
		buf := make([]byte, bytes)
		for i, v := range img.l1 {
			binary.BigEndian.PutUint64(buf[i*8:], v)
		}
		if _, err := img.f.WriteAt(buf, off); err != nil {
			return snapshot{}, err
		}
		sn.l1Off = uint64(off)
	}
	if err := img.updateTree(img.l1, 1, true); err != nil {
		return snapshot{}, err
	}
	// Refcounts, then the cleared COPIED flags, then (by the caller) the table entry.
	if err := img.flushMeta(); err != nil {
		return snapshot{}, err
	}
	return sn, img.f.Sync()
}

func (img *Image) validateSnapshotL1(s *snapshot) error {
	if uint64(s.l1Size)*8 > maxL1Size {
		return formatErr(int64(img.hdr.SnapshotsOffset), "Snapshot L1 table too large")
	}
	if s.l1Off%uint64(img.cs) != 0 || s.l1Off > math.MaxInt64-uint64(s.l1Size)*8 {
		return formatErr(int64(img.hdr.SnapshotsOffset), "Snapshot L1 table offset invalid")
	}
	return nil
}

func (img *Image) readSnapshotL1(s *snapshot) ([]uint64, error) {
	st, err := img.f.Stat()
	if err != nil {
		return nil, err
	}
	return readTable(img.f, int64(s.l1Off), int64(s.l1Size), st.Size(), "Snapshot L1 table")
}

// updateTree adds delta to the refcount of every L2 table and cluster reachable from l1
// (compressed clusters by their byte range). With active set, l1 is the active table and
// COPIED flags in it and its L2 tables are recomputed from the resulting refcounts.
// Without active, L2 COPIED flags are still cleared where refcounts exceed one.
func (img *Image) updateTree(l1 []uint64, delta int64, active bool) error {
	for i, l1e := range l1 {
		l2off, err := img.l2TableOffset(l1e, int64(i))
		if err != nil {
			return err
		}
		if l2off == 0 {
			continue
		}
		t, err := img.loadL2(l2off)
		if err != nil {
			return err
		}
		for j := int64(0); j < img.l2Entries(); j++ {
			e := binary.BigEndian.Uint64(t.buf[j*8:])
			if e == 0 {
				continue
			}
			ne := e
			if e&oflagCompressed != 0 {
				if delta != 0 {
					off, n := img.compressedRange(e)
					for c := off >> img.clusterBits; c <= (off+n-1)>>img.clusterBits; c++ {
						if err := img.addRef(c, delta); err != nil {
							return err
						}
					}
				}
				ne &^= oflagCopied
			} else if host := int64(e & l2eOffsetMask); host != 0 {
				if host%img.cs != 0 {
					return formatErr(l2off+j*8, "L2 entry %#x: cluster offset not aligned", e)
				}
				if delta != 0 {
					if err := img.addRef(host>>img.clusterBits, delta); err != nil {
						return err
					}
				}
				rc, err := img.refcount(host >> img.clusterBits)
				if err != nil {
					return err
				}
				if rc == 1 && active {
					ne |= oflagCopied
				} else if rc != 1 {
					ne &^= oflagCopied
				}
			}
			if ne != e && (active || delta > 0) {
				// The L2 table may have been evicted by refcount-block traffic; reload.
				if t, err = img.loadL2(l2off); err != nil {
					return err
				}
				binary.BigEndian.PutUint64(t.buf[j*8:], ne)
				t.dirty = true
			}
		}
		if delta != 0 {
			if err := img.addRef(l2off>>img.clusterBits, delta); err != nil {
				return err
			}
		}
		if active {
			rc, err := img.refcount(l2off >> img.clusterBits)
			if err != nil {
				return err
			}
			ne := l1e &^ oflagCopied
			if rc == 1 {
				ne |= oflagCopied
			}
			if ne != l1e {
				l1[i] = ne
				img.markL1Dirty(i)
			}
		}
	}
	return nil
}

// releaseSnapshotTree drops the references of a snapshot no longer in the table and frees
// its L1 table, then recomputes COPIED flags of the active tree.
func (img *Image) releaseSnapshotTree(s *snapshot, l1 []uint64) error {
	if err := img.updateTree(l1, -1, false); err != nil {
		return err
	}
	if s.l1Size > 0 {
		if err := img.freeRangeNow(int64(s.l1Off), int64(s.l1Size)*8); err != nil {
			return err
		}
	}
	return img.updateTree(img.l1, 0, true)
}

// ApplySnapshot reverts the active disk to a snapshot (qemu-img snapshot -a).
func (img *Image) ApplySnapshot(idOrName string) error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.writable(); err != nil {
		return err
	}
	i := img.findSnapshot(idOrName)
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrSnapshotNotFound, idOrName)
	}
	sn := img.snaps[i]
	if err := img.validateSnapshotL1(&sn); err != nil {
		return err
	}
	snL1, err := img.readSnapshotL1(&sn)
	if err != nil {
		return err
	}
	if err := img.flushMeta(); err != nil {
		return err
	}
	if sn.diskSize != img.hdr.Size {
		if err := img.setSize(sn.diskSize); err != nil {
			return err
		}
	}
	if int(sn.l1Size) > len(img.l1) {
		if err := img.growL1(int(sn.l1Size), true); err != nil {
			return err
		}
	}
	// Take the snapshot tree's references (and clear its stale COPIED flags) first.
	if err := img.updateTree(snL1, 1, false); err != nil {
		return err
	}
	if err := img.flushMeta(); err != nil {
		return err
	}
	if err := img.f.Sync(); err != nil {
		return err
	}
	newL1 := make([]uint64, len(img.l1))
	for j, v := range snL1 {
		// Every L2 table is now shared with the snapshot: COPIED must be clear on disk.
		newL1[j] = v &^ oflagCopied
	}
	oldL1 := img.l1
	img.l1 = newL1
	if err := img.writeL1Range(0, len(newL1)); err != nil {
		img.l1 = oldL1
		return err
	}
	if err := img.f.Sync(); err != nil {
		return err
	}
	if err := img.updateTree(oldL1, -1, false); err != nil {
		return err
	}
	if err := img.updateTree(img.l1, 0, true); err != nil {
		return err
	}
	return img.flushMeta()
}

// DeleteSnapshot removes the first snapshot matching both non-empty keys.
func (img *Image) DeleteSnapshot(id, name string) error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.writable(); err != nil {
		return err
	}
	if id == "" && name == "" {
		return fmt.Errorf("%w: no id or name given", ErrSnapshotNotFound)
	}
	idx := -1
	for i := range img.snaps {
		if (id == "" || img.snaps[i].id == id) && (name == "" || img.snaps[i].name == name) {
			idx = i
			break
		}
	}
	if idx < 0 {
		return fmt.Errorf("%w: id %q name %q", ErrSnapshotNotFound, id, name)
	}
	sn := img.snaps[idx]
	if err := img.validateSnapshotL1(&sn); err != nil {
		return err
	}
	l1, err := img.readSnapshotL1(&sn)
	if err != nil {
		return err
	}
	if err := img.flushMeta(); err != nil {
		return err
	}
	snaps := make([]snapshot, 0, len(img.snaps)-1)
	snaps = append(snaps, img.snaps[:idx]...)
	snaps = append(snaps, img.snaps[idx+1:]...)
	if err := img.writeSnapshotTable(snaps); err != nil {
		return err
	}
	if err := img.releaseSnapshotTree(&sn, l1); err != nil {
		return err
	}
	return img.flushMeta()
}
