package qcow2

import (
	"encoding/binary"
)

// Cluster mapping ("== Cluster mapping ==" in qcow2.txt): guest cluster -> L1 entry -> L2
// table -> L2 entry -> host cluster.

type clusterKind int

const (
	kindUnallocated clusterKind = iota // reads from the backing file (or zeros)
	kindZero                           // reads as zeros (v3 zero flag); host may still be set
	kindNormal                         // data at host offset
	kindCompressed                     // compressed data at a host byte range
)

// decodeL2 classifies an L2 entry. host is the host cluster offset (normal and zero
// clusters) or byte offset (compressed).
func (img *Image) decodeL2(e uint64, at int64) (clusterKind, int64, error) {
	if e&oflagCompressed != 0 {
		off, _ := img.compressedRange(e)
		return kindCompressed, off, nil
	}
	host := int64(e & l2eOffsetMask)
	if host%img.cs != 0 {
		return 0, 0, formatErr(at, "L2 entry %#x: cluster offset not aligned", e)
	}
	if e&oflagZero != 0 {
		return kindZero, host, nil
	}
	if host == 0 {
		return kindUnallocated, 0, nil
	}
	return kindNormal, host, nil
}

func (img *Image) l2Entries() int64 { return int64(1) << img.l2Bits }

// l2TableOffset validates and returns the L2 table offset of an L1 entry (0 = none).
func (img *Image) l2TableOffset(l1e uint64, l1i int64) (int64, error) {
	off := int64(l1e & l1eOffsetMask)
	if off%img.cs != 0 {
		return 0, formatErr(img.l1Off+l1i*8, "L2 table offset %#x not cluster aligned; L1 entry corrupted", off)
	}
	return off, nil
}

// loadL2 returns the cached L2 table at off, reading it if needed.
func (img *Image) loadL2(off int64) (*cachedTable, error) {
	if t := img.l2Cache.get(off); t != nil {
		return t, nil
	}
	if err := img.makeL2Room(); err != nil {
		return nil, err
	}
	t := img.l2Cache.insert(off, int(img.cs))
	if err := img.readFull(t.buf, off); err != nil {
		img.l2Cache.drop(off)
		return nil, err
	}
	return t, nil
}

// makeL2Room writes back the L2 table the next insert will evict, if it is dirty. The
// refcounts it depends on must be durable first.
func (img *Image) makeL2Room() error {
	v := img.l2Cache.victim()
	if v == nil || !v.dirty {
		return nil
	}
	if err := img.writeDirtyRefblocks(); err != nil {
		return err
	}
	if !img.refSynced {
		if err := img.f.Sync(); err != nil {
			return err
		}
		img.refSynced = true
	}
	return img.writeL2(v)
}

func (img *Image) writeL2(t *cachedTable) error {
	if _, err := img.f.WriteAt(t.buf, t.off); err != nil {
		return err
	}
	t.dirty = false
	return nil
}

func (img *Image) markL1Dirty(i int) {
	img.l1DirtyLo = min(img.l1DirtyLo, i)
	img.l1DirtyHi = max(img.l1DirtyHi, i+1)
}

func (img *Image) writeL1Range(lo, hi int) error {
	buf := make([]byte, (hi-lo)*8)
	for i := lo; i < hi; i++ {
		binary.BigEndian.PutUint64(buf[(i-lo)*8:], img.l1[i])
	}
	if _, err := img.f.WriteAt(buf, img.l1Off+int64(lo)*8); err != nil {
		return err
	}
	img.l1DirtyLo, img.l1DirtyHi = int(^uint(0)>>1), 0
	return nil
}

// lookup returns the L2 entry for guest cluster ci (0 if unmapped).
func (img *Image) lookup(ci int64) (uint64, error) {
	l1i := ci >> img.l2Bits
	if l1i >= int64(len(img.l1)) {
		return 0, nil
	}
	l2off, err := img.l2TableOffset(img.l1[l1i], l1i)
	if err != nil || l2off == 0 {
		return 0, err
	}
	t, err := img.loadL2(l2off)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint64(t.buf[(ci&(img.l2Entries()-1))*8:]), nil
}

// l2ForWrite returns the active L2 table for L1 index l1i, ready to be modified: it is
// allocated if missing and copied if shared with a snapshot (COPIED clear).
func (img *Image) l2ForWrite(l1i int64) (*cachedTable, error) {
	if l1i >= int64(len(img.l1)) {
		if err := img.growL1(int(l1i)+1, false); err != nil {
			return nil, err
		}
	}
	l1e := img.l1[l1i]
	old, err := img.l2TableOffset(l1e, l1i)
	if err != nil {
		return nil, err
	}
	if old != 0 && l1e&oflagCopied != 0 {
		return img.loadL2(old)
	}
	if old != 0 {
		t, err := img.loadL2(old)
		if err != nil {
			return nil, err
		}
		copy(img.scratchB, t.buf)
	}
	newOff, err := img.allocClusters(1)
	if err != nil {
		return nil, err
	}
	if err := img.makeL2Room(); err != nil {
		return nil, err
	}
	t := img.l2Cache.insert(newOff, int(img.cs))
	if old != 0 {
		copy(t.buf, img.scratchB)
		img.queueFree(old, img.cs)
	} else {
		clear(t.buf)
	}
	t.dirty = true
	img.l1[l1i] = uint64(newOff) | oflagCopied
	img.markL1Dirty(int(l1i))
	return t, nil
}

// growL1 moves the active L1 to a bigger table. exact=false grows by 1.5x steps as QEMU does.
// Order: new table written and synced, then the header switch (one 12-byte write), then the
// old table is freed.
func (img *Image) growL1(minSize int, exact bool) error {
	size := minSize
	if !exact {
		size = max(len(img.l1), 1)
		for size < minSize {
			size = (size*3 + 1) / 2
		}
	}
	if int64(size)*8 > maxL1Size {
		if int64(minSize)*8 > maxL1Size {
			return unsupported("Active L1 table too large")
		}
		size = maxL1Size / 8
	}
	if size <= len(img.l1) {
		return nil
	}
	bytes := int64(size) * 8
	newOff, err := img.allocClusters((bytes + img.cs - 1) / img.cs)
	if err != nil {
		return err
	}
	if err := img.flushMeta(); err != nil {
		return err
	}
	nl1 := make([]uint64, size)
	copy(nl1, img.l1)
	buf := make([]byte, bytes)
	for i, v := range nl1 {
		binary.BigEndian.PutUint64(buf[i*8:], v)
	}
	if _, err := img.f.WriteAt(buf, newOff); err != nil {
		return err
	}
	if err := img.f.Sync(); err != nil {
		return err
	}
	var hb [12]byte
	binary.BigEndian.PutUint32(hb[:], uint32(size))
	binary.BigEndian.PutUint64(hb[4:], uint64(newOff))
	if err := img.writeHeaderField(hdrOffL1Size, hb[:]); err != nil {
		return err
	}
	oldOff, oldLen := img.l1Off, int64(len(img.l1))*8
	img.l1, img.l1Off = nl1, newOff
	img.hdr.L1Size, img.hdr.L1TableOffset = uint32(size), uint64(newOff)
	if oldLen > 0 {
		// The header no longer names the old table; free it at once.
		return img.freeRangeNow(oldOff, oldLen)
	}
	return nil
}
