package qcow2

// Refcount handling ("== Host cluster management ==" in qcow2.txt).
//
// Write ordering (crash consistency). The invariant kept on disk at every instant is
// "stored refcount >= number of references": a crash may leak clusters, never corrupt.
//
//  1. Increments first. Allocation bumps refcounts in the refcount-block cache. Any write of
//     metadata that adds a reference (L2 entry, L1 entry, snapshot table, header pointer)
//     happens only after the dirty refcount blocks were written and fsynced (flushMeta
//     step 1, or the explicit barriers of the snapshot and table-growth paths).
//  2. Data before pointer. Guest data goes to a newly allocated cluster with pwrite before the
//     L2 entry naming it is written (L2 tables are write-back cached and written in flushMeta).
//     Vm-state data may follow its pointer, into clusters that read as zeros until then
//     (vmstate_io.go).
//  3. Table before pointer. A new L2 table is written before the L1 entry naming it; a new L1,
//     refcount table or snapshot table is written and fsynced before the header field that
//     points to it is switched with one small write.
//  4. Decrements last. Dropping a reference queues the decrement in pendingFree. flushMeta
//     writes the L2/L1 changes, fsyncs, and only then applies the queued decrements; so a
//     cluster can be reused only after nothing on disk points to it any more.
//
// Dirty refcount blocks therefore only ever contain "safe" values and may be written at any
// time (for example when evicted); dirty L2 tables may be written after a refcount sync.
// The hot write path does no fsync at all: the fsyncs happen in flushMeta (guest flush,
// cache eviction of a dirty L2 table, snapshot operations, close).

import (
	"encoding/binary"
	"errors"
	"io"
	"math"
)

const reftableReservedMask = 0x1ff

func refcountMax(bits uint) uint64 {
	if bits == 64 {
		return math.MaxUint64
	}
	return uint64(1)<<bits - 1
}

func getRefEntry(b []byte, i int64, bits uint) uint64 {
	switch bits {
	case 8:
		return uint64(b[i])
	case 16:
		return uint64(binary.BigEndian.Uint16(b[i*2:]))
	case 32:
		return uint64(binary.BigEndian.Uint32(b[i*4:]))
	case 64:
		return binary.BigEndian.Uint64(b[i*8:])
	default: // 1, 2, 4: packed, least significant bits first
		bit := i * int64(bits)
		return uint64(b[bit/8]>>(bit%8)) & (uint64(1)<<bits - 1)
	}
}

func setRefEntry(b []byte, i int64, bits uint, v uint64) {
	switch bits {
	case 8:
		b[i] = byte(v)
	case 16:
		binary.BigEndian.PutUint16(b[i*2:], uint16(v))
	case 32:
		binary.BigEndian.PutUint32(b[i*4:], uint32(v))
	case 64:
		binary.BigEndian.PutUint64(b[i*8:], v)
	default:
		bit := i * int64(bits)
		mask := byte(1<<bits-1) << (bit % 8)
		b[bit/8] = b[bit/8]&^mask | byte(v)<<(bit%8)&mask
	}
}

// refblockOffset returns the host offset of the refcount block for block index ti (0 = none).
func (img *Image) refblockOffset(ti int64) int64 {
	if ti >= int64(len(img.reftable)) {
		return 0
	}
	return int64(img.reftable[ti] &^ reftableReservedMask)
}

// loadRefblock returns the cached refcount block at off, reading it if needed.
func (img *Image) loadRefblock(off int64) (*cachedTable, error) {
	if t := img.rbCache.get(off); t != nil {
		return t, nil
	}
	if off%img.cs != 0 || uint64(off) > maxClusterOffset {
		return nil, formatErr(off, "refcount block is not cluster aligned or out of range")
	}
	if v := img.rbCache.victim(); v != nil && v.dirty {
		if err := img.writeRefblock(v); err != nil {
			return nil, err
		}
	}
	t := img.rbCache.insert(off, int(img.cs))
	if err := img.readFull(t.buf, off); err != nil {
		img.rbCache.drop(off)
		return nil, err
	}
	return t, nil
}

func (img *Image) writeRefblock(t *cachedTable) error {
	if _, err := img.f.WriteAt(t.buf, t.off); err != nil {
		return err
	}
	t.dirty = false
	img.refSynced = false
	return nil
}

// readFull reads len(p) bytes at off; bytes beyond the end of the file read as zeros.
func (img *Image) readFull(p []byte, off int64) error {
	n, err := img.f.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if n < len(p) {
		clear(p[n:])
	}
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

// refcount returns the stored refcount of host cluster c (0 if no refcount block covers it).
func (img *Image) refcount(c int64) (uint64, error) {
	rb := img.refblockOffset(c >> img.rbBits)
	if rb == 0 {
		return 0, nil
	}
	t, err := img.loadRefblock(rb)
	if err != nil {
		return 0, err
	}
	return getRefEntry(t.buf, c&(int64(1)<<img.rbBits-1), img.refBits), nil
}

// addRef changes the refcount of host cluster c by delta in the cache.
func (img *Image) addRef(c int64, delta int64) error {
	ti := c >> img.rbBits
	rb := img.refblockOffset(ti)
	if rb == 0 {
		if delta < 0 {
			return formatErr(c<<img.clusterBits, "freeing cluster %d with no refcount block", c)
		}
		if err := img.ensureRefblock(ti); err != nil {
			return err
		}
		rb = img.refblockOffset(ti)
	}
	t, err := img.loadRefblock(rb)
	if err != nil {
		return err
	}
	i := c & (int64(1)<<img.rbBits - 1)
	v := getRefEntry(t.buf, i, img.refBits)
	switch {
	case delta < 0 && v < uint64(-delta):
		return formatErr(c<<img.clusterBits, "refcount of cluster %d would drop below zero", c)
	case delta > 0 && refcountMax(img.refBits)-v < uint64(delta):
		return unsupported("refcount of cluster %d would exceed %d bits", c, img.refBits)
	}
	nv := uint64(int64(v) + delta)
	setRefEntry(t.buf, i, img.refBits, nv)
	t.dirty = true
	if nv == 0 {
		if c < img.freeHint {
			img.freeHint = c
		}
		img.l2Cache.drop(c << img.clusterBits)
		img.zbufOff = 0
	}
	return nil
}

// findFreeRun returns the first index of n consecutive clusters with refcount 0. The scan
// is bounded by the used clusters it passes, and those are bounded by the bits of the
// distinct refcount blocks (Open refuses a refcount table naming a block twice).
func (img *Image) findFreeRun(n int64) (int64, error) {
	// Cluster 0 holds the header, whatever a corrupt refcount block says.
	img.freeHint = max(img.freeHint, 1)
	start, run := img.freeHint, int64(0)
	for c := start; run < n; {
		ti := c >> img.rbBits
		if img.refblockOffset(ti) == 0 {
			// The whole block range is free.
			next := (ti + 1) << img.rbBits
			run += next - c
			c = next
			continue
		}
		rc, err := img.refcount(c)
		if err != nil {
			return 0, err
		}
		c++
		if rc == 0 {
			run++
		} else {
			if start == img.freeHint && run == 0 {
				img.freeHint = c // everything below c is in use
			}
			start, run = c, 0
		}
	}
	return start, nil
}

// allocClusters allocates n contiguous host clusters with refcount 1 and returns the offset
// of the first. The caller must reference them (or free them) before the next flushMeta.
func (img *Image) allocClusters(n int64) (int64, error) {
	for tries := 0; ; tries++ {
		if tries > 1024 {
			return 0, formatErr(img.reftableOff, "cannot allocate %d clusters", n)
		}
		c, err := img.findFreeRun(n)
		if err != nil {
			return 0, err
		}
		if uint64(c+n)<<img.clusterBits > maxClusterOffset {
			return 0, unsupported("image file would exceed the maximum cluster offset")
		}
		missing := int64(-1)
		for ti := c >> img.rbBits; ti <= (c+n-1)>>img.rbBits; ti++ {
			if img.refblockOffset(ti) == 0 {
				missing = ti
				break
			}
		}
		if missing >= 0 {
			// New refcount blocks take clusters themselves; search again afterwards.
			if err := img.ensureRefblock(missing); err != nil {
				return 0, err
			}
			continue
		}
		for i := int64(0); i < n; i++ {
			if err := img.addRef(c+i, 1); err != nil {
				return 0, err
			}
		}
		if c == img.freeHint {
			img.freeHint = c + n
		}
		return c << img.clusterBits, nil
	}
}

// ensureRefblock creates the refcount block for block index ti (growing the refcount table
// if needed). The block is written and synced before the table entry pointing to it.
func (img *Image) ensureRefblock(ti int64) error {
	for tries := 0; img.refblockOffset(ti) == 0; tries++ {
		if tries > 64 {
			return formatErr(img.reftableOff, "cannot allocate refcount block %d", ti)
		}
		if ti >= int64(len(img.reftable)) {
			if err := img.growReftable(ti + 1); err != nil {
				return err
			}
			continue
		}
		p, err := img.findFreeRun(1)
		if err != nil {
			return err
		}
		tp := p >> img.rbBits
		if tp != ti && img.refblockOffset(tp) == 0 {
			// The block's own cluster needs a block first; that one describes itself.
			if err := img.ensureRefblock(tp); err != nil {
				return err
			}
			continue
		}
		blockOff := p << img.clusterBits
		if uint64(blockOff) > maxClusterOffset {
			return unsupported("image file would exceed the maximum cluster offset")
		}
		if tp != ti {
			if err := img.addRef(p, 1); err != nil {
				return err
			}
		}
		if v := img.rbCache.victim(); v != nil && v.dirty {
			if err := img.writeRefblock(v); err != nil {
				return err
			}
		}
		t := img.rbCache.insert(blockOff, int(img.cs))
		clear(t.buf)
		t.dirty = true
		if tp == ti {
			setRefEntry(t.buf, p&(int64(1)<<img.rbBits-1), img.refBits, 1)
		}
		// Refcounts (of the block's own cluster) first, then the block, then the pointer.
		if err := img.writeDirtyRefblocks(); err != nil {
			return err
		}
		if err := img.f.Sync(); err != nil {
			return err
		}
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(blockOff))
		if _, err := img.f.WriteAt(b[:], img.reftableOff+ti*8); err != nil {
			return err
		}
		img.reftable[ti] = uint64(blockOff)
		img.refSynced = false
	}
	return nil
}

// growReftable moves the refcount table to a larger place at the end of the image. New
// refcount blocks needed to describe the new table are placed right before it, so the new
// area describes itself. The header switch is one 12-byte write (offset + cluster count).
func (img *Image) growReftable(minEntries int64) error {
	perCluster := img.cs / 8
	entries := max(minEntries, int64(len(img.reftable))*2, perCluster)
	var start, k, tableClusters int64
	var missing []int64
	for {
		tableClusters = (entries + perCluster - 1) / perCluster
		if tableClusters*img.cs > maxRefTableSize {
			return unsupported("Reference count table too large")
		}
		var err error
		if start, err = img.findFreeRun(tableClusters + k); err != nil {
			return err
		}
		end := start + tableClusters + k
		missing = missing[:0]
		for ti := start >> img.rbBits; ti <= (end-1)>>img.rbBits; ti++ {
			if img.refblockOffset(ti) == 0 {
				missing = append(missing, ti)
			}
		}
		need := (end-1)>>img.rbBits + 1
		if int64(len(missing)) <= k && need <= tableClusters*perCluster {
			break
		}
		k = max(k, int64(len(missing)))
		entries = max(entries, need)
	}
	newTable := make([]uint64, tableClusters*perCluster)
	copy(newTable, img.reftable)
	blocks := make(map[int64][]byte, len(missing))
	for i, ti := range missing {
		off := (start + int64(i)) << img.clusterBits
		newTable[ti] = uint64(off)
		blocks[ti] = make([]byte, img.cs)
	}
	// The blocks come first, the table right after them; spare clusters of the searched run
	// (when fewer blocks were needed than reserved) stay free.
	used := int64(len(missing)) + tableClusters
	tableStart := start + int64(len(missing))
	for c := start; c < start+used; c++ {
		ti := c >> img.rbBits
		if b := blocks[ti]; b != nil {
			setRefEntry(b, c&(int64(1)<<img.rbBits-1), img.refBits, 1)
		} else if err := img.addRef(c, 1); err != nil {
			return err
		}
	}
	for i, ti := range missing {
		if _, err := img.f.WriteAt(blocks[ti], (start+int64(i))<<img.clusterBits); err != nil {
			return err
		}
	}
	raw := make([]byte, len(newTable)*8)
	for i, v := range newTable {
		binary.BigEndian.PutUint64(raw[i*8:], v)
	}
	if _, err := img.f.WriteAt(raw, tableStart<<img.clusterBits); err != nil {
		return err
	}
	if err := img.writeDirtyRefblocks(); err != nil {
		return err
	}
	if err := img.f.Sync(); err != nil {
		return err
	}
	var hb [12]byte
	binary.BigEndian.PutUint64(hb[:], uint64(tableStart<<img.clusterBits))
	binary.BigEndian.PutUint32(hb[8:], uint32(tableClusters))
	if err := img.writeHeaderField(hdrOffRefTableOffset, hb[:]); err != nil {
		return err
	}
	oldOff, oldClusters := img.reftableOff, int64(len(img.reftable))*8/img.cs
	img.reftable, img.reftableOff = newTable, tableStart<<img.clusterBits
	img.hdr.RefcountTableOffset, img.hdr.RefcountTableClusters = uint64(img.reftableOff), uint32(tableClusters)
	if start+used > img.freeHint && start <= img.freeHint {
		img.freeHint = start + used
	}
	// The header no longer points to the old table: its clusters can be freed at once.
	for i := int64(0); i < oldClusters; i++ {
		if err := img.addRef(oldOff>>img.clusterBits+i, -1); err != nil {
			return err
		}
	}
	return nil
}

func (img *Image) writeDirtyRefblocks() error {
	return img.rbCache.forEachDirty(img.writeRefblock)
}

// queueFree records that the clusters overlapping [off, off+n) lose one reference once the
// metadata that dropped it is on disk.
func (img *Image) queueFree(off, n int64) {
	if off == 0 || n <= 0 {
		return
	}
	img.pendingFree = append(img.pendingFree, hostRange{off, n})
}

// freeRangeNow decrements the refcounts of the clusters overlapping [off, off+n).
func (img *Image) freeRangeNow(off, n int64) error {
	first := off >> img.clusterBits
	last := (off + n - 1) >> img.clusterBits
	for c := first; c <= last; c++ {
		if err := img.addRef(c, -1); err != nil {
			return err
		}
	}
	return nil
}

// flushMeta writes all cached metadata in crash-safe order (see the comment at the top).
func (img *Image) flushMeta() error {
	if err := img.writeDirtyRefblocks(); err != nil {
		return err
	}
	if !img.refSynced {
		if err := img.f.Sync(); err != nil {
			return err
		}
		img.refSynced = true
	}
	wroteRefs := false
	if err := img.l2Cache.forEachDirty(func(t *cachedTable) error {
		wroteRefs = true
		return img.writeL2(t)
	}); err != nil {
		return err
	}
	if img.l1DirtyLo < img.l1DirtyHi {
		wroteRefs = true
		if err := img.writeL1Range(img.l1DirtyLo, img.l1DirtyHi); err != nil {
			return err
		}
	}
	if len(img.pendingFree) == 0 {
		return nil
	}
	if wroteRefs {
		if err := img.f.Sync(); err != nil {
			return err
		}
	}
	pending := img.pendingFree
	img.pendingFree = nil
	for _, r := range pending {
		if err := img.freeRangeNow(r.off, r.n); err != nil {
			return err
		}
	}
	return img.writeDirtyRefblocks()
}
