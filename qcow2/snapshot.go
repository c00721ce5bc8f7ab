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
	extraLen    int64  // extra_data_size as read (entries are always written with >= 24)
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
		s.extraLen = extraLen
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

// CreateSnapshot snapshots the active disk (and the vm-state area written so far): the
// snapshot gets a copy of the active L1 and a reference on every cluster of the tree, and
// the vm-state area is discarded from the active L1 in the same atomic switch. The ID is
// the largest numeric id plus one unless s.ID is set (it must then be unused). A zero date
// is replaced by the current time; ICount is stored as given (math.MaxUint64 = none).
func (img *Image) CreateSnapshot(s SnapshotInfo) (SnapshotInfo, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	img.waitVMCopies()
	if err := img.writable(); err != nil {
		return SnapshotInfo{}, err
	}
	sn, err := img.newSnapshot(s)
	if err != nil {
		return SnapshotInfo{}, err
	}
	snaps := append(append([]snapshot(nil), img.snaps...), sn)
	if err := img.switchTrees(img.snapshotSwitch(nil, snaps, sn.vmStateSize)); err != nil {
		return SnapshotInfo{}, err
	}
	return sn.info(), nil
}

// ReplaceSnapshot creates s and removes snapshot oldID in one atomic switch, so a crash
// leaves either the old or the new snapshot whole; the old tree is released by it.
func (img *Image) ReplaceSnapshot(oldID string, s SnapshotInfo) (SnapshotInfo, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	img.waitVMCopies()
	if err := img.writable(); err != nil {
		return SnapshotInfo{}, err
	}
	oi := -1
	for i := range img.snaps {
		if img.snaps[i].id == oldID {
			oi = i
			break
		}
	}
	if oi < 0 {
		return SnapshotInfo{}, fmt.Errorf("%w: id %q", ErrSnapshotNotFound, oldID)
	}
	old := img.snaps[oi]
	oldTree, err := img.snapshotTree(&old)
	if err != nil {
		return SnapshotInfo{}, err
	}
	sn, err := img.newSnapshot(s)
	if err != nil {
		return SnapshotInfo{}, err
	}
	snaps := make([]snapshot, 0, len(img.snaps))
	snaps = append(snaps, img.snaps[:oi]...)
	snaps = append(snaps, img.snaps[oi+1:]...)
	snaps = append(snaps, sn)
	if err := img.switchTrees(img.snapshotSwitch([]tree{oldTree}, snaps, sn.vmStateSize)); err != nil {
		return SnapshotInfo{}, err
	}
	return sn.info(), nil
}

// snapshotSwitch describes "the current active tree becomes a snapshot's tree".
func (img *Image) snapshotSwitch(release []tree, snaps []snapshot, vmStateSize uint64) *treeSwitch {
	ts := &treeSwitch{release: release, activeL1: img.l1, snaps: snaps, size: img.hdr.Size}
	if vmStateSize > 0 {
		ts.vmOff = img.vmStateOffset()
		ts.vmLen = (int64(vmStateSize) + img.cs - 1) &^ (img.cs - 1)
	}
	return ts
}

// newSnapshot builds the entry for a snapshot of the current active tree.
func (img *Image) newSnapshot(s SnapshotInfo) (snapshot, error) {
	if len(img.snaps) >= maxSnapshots {
		return snapshot{}, unsupported("too many snapshots (File too large)")
	}
	if img.refBits < 2 {
		return snapshot{}, unsupported("internal snapshots need refcount_bits >= 2")
	}
	if len(s.Name) > math.MaxUint16 || len(s.ID) > math.MaxUint16 {
		return snapshot{}, fmt.Errorf("qcow2: snapshot name or id too long")
	}
	if s.VMStateSize > uint64(math.MaxInt64/2) {
		return snapshot{}, fmt.Errorf("qcow2: vm state size %d out of range", s.VMStateSize)
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
	return snapshot{id: s.ID, name: s.Name, dateSec: s.DateSec, dateNsec: s.DateNsec,
		vmClockNsec: s.VMClockNsec, vmStateSize: s.VMStateSize, icount: s.ICount,
		diskSize: img.hdr.Size, l1Off: uint64(img.l1Off), l1Size: uint32(len(img.l1))}, nil
}

// snapshotTree validates and reads a snapshot's L1 table.
func (img *Image) snapshotTree(s *snapshot) (tree, error) {
	if err := img.validateSnapshotL1(s); err != nil {
		return tree{}, err
	}
	l1, err := img.readSnapshotL1(s)
	if err != nil {
		return tree{}, err
	}
	return tree{l1: l1, off: int64(s.l1Off), size: int64(s.l1Size)}, nil
}

func (img *Image) activeTree() tree {
	return tree{l1: img.l1, off: img.l1Off, size: int64(len(img.l1))}
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

// ApplySnapshot reverts the active disk to a snapshot (qemu-img snapshot -a): the disk
// size becomes the snapshot's, and the active tree becomes a copy of the snapshot's tree.
func (img *Image) ApplySnapshot(idOrName string) error {
	img.mu.Lock()
	defer img.mu.Unlock()
	img.waitVMCopies()
	if err := img.writable(); err != nil {
		return err
	}
	i := img.findSnapshot(idOrName)
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrSnapshotNotFound, idOrName)
	}
	sn := img.snaps[i]
	st, err := img.snapshotTree(&sn)
	if err != nil {
		return err
	}
	h := img.hdr
	h.Size = sn.diskSize
	if h.Size > math.MaxInt64 || h.l1VMStateIndex() > maxL1Size/8 {
		return formatErr(int64(img.hdr.SnapshotsOffset), "snapshot %s has an invalid disk size", sn.id)
	}
	n := max(len(img.l1), int(sn.l1Size), int(h.l1VMStateIndex()))
	l1 := make([]uint64, n)
	copy(l1, st.l1)
	return img.switchTrees(&treeSwitch{
		release:  []tree{img.activeTree()},
		activeL1: l1,
		snaps:    append([]snapshot(nil), img.snaps...),
		size:     sn.diskSize,
	})
}

// DeleteSnapshot removes the first snapshot matching both non-empty keys and releases its
// clusters; COPIED flags of the active tree are updated in the same atomic switch.
func (img *Image) DeleteSnapshot(id, name string) error {
	img.mu.Lock()
	defer img.mu.Unlock()
	img.waitVMCopies()
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
	st, err := img.snapshotTree(&sn)
	if err != nil {
		return err
	}
	snaps := make([]snapshot, 0, len(img.snaps)-1)
	snaps = append(snaps, img.snaps[:idx]...)
	snaps = append(snaps, img.snaps[idx+1:]...)
	return img.switchTrees(&treeSwitch{
		release:    []tree{st},
		activeL1:   img.l1,
		snaps:      snaps,
		size:       img.hdr.Size,
		keepActive: true,
	})
}
