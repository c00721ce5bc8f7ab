package qcow2

import (
	"bytes"
	"encoding/binary"
	"sort"
)

// Atomic metadata switch for snapshot create / apply / delete / replace.
//
// These operations change refcounts of many clusters and, with them, the COPIED flags of
// the active L1/L2 tables. qemu-img check reports a COPIED flag that disagrees with the
// stored refcount as corruption, and no order of in-place writes avoids a window where one
// is updated and the other is not. So these operations never modify live metadata in
// place. They build, in clusters that are free in the current image:
//
//   - a new active L1 table, and new copies of the active L2 tables whose contents or
//     sharing change (an L2 table that stays exclusively owned and unchanged is reused);
//   - the new snapshot table;
//   - copies of every refcount block whose counts change, and a new refcount table;
//
// sync, and then switch the header fields size, l1_size, l1_table_offset,
// refcount_table_offset, refcount_table_clusters, nb_snapshots and snapshots_offset with a
// single 48-byte write at offset 24 (all in the first sector), and sync again. A kill
// before the switch leaves the old image (the new clusters have refcount 0 in it: not even
// leaks); after it, the new image is exact. Clusters released by the operation are freed
// by the switch itself, since the new refcount blocks already account for them.
//
// The resulting layout is ordinary qcow2: a new snapshot keeps the previous active L1 table
// (a copy of the active L1, as QEMU makes it) and the active tree gets its own L2 copies,
// which is the state QEMU reaches after the first write to each L2 range.

// tree is an L1 table and, through it, its L2 tables and data clusters.
type tree struct {
	l1   []uint64
	off  int64 // host offset of the L1 table (0 if none)
	size int64 // entries of the L1 table on disk
}

type treeSwitch struct {
	release      []tree   // trees whose references disappear (their L1 tables too)
	activeL1     []uint64 // logical new active L1: entries name existing L2 tables
	vmOff, vmLen int64    // guest range discarded in the new active tree (vm state)
	snaps        []snapshot
	size         uint64
	// keepActive: activeL1 is the current active tree, which stays referenced; only its
	// COPIED flags may change. Its references are then not counted out and back in, and
	// release must not contain it (its L1 table is released by the switch itself).
	keepActive bool
}

// txn accumulates refcount changes of one switch.
type txn struct {
	img        *Image
	delta      map[int64]int64
	maxTouched int64 // clusters below this may have been allocated by the transaction
	next       int64 // allocation cursor: clusters below it are in use or already taken
}

func (x *txn) add(c, d int64) {
	x.maxTouched = max(x.maxTouched, c+1)
	if v := x.delta[c] + d; v == 0 {
		delete(x.delta, c)
	} else {
		x.delta[c] = v
	}
}

func (x *txn) addRange(off, n, d int64) {
	if off == 0 || n <= 0 {
		return
	}
	cb := x.img.clusterBits
	for c := off >> cb; c <= (off+n-1)>>cb; c++ {
		x.add(c, d)
	}
}

// addEntry counts the clusters an L2 entry references.
func (x *txn) addEntry(e uint64, d int64) {
	if e&oflagCompressed != 0 {
		off, n := x.img.compressedRange(e)
		x.addRange(off, n, d)
	} else if host := int64(e & l2eOffsetMask); host != 0 {
		x.add(host>>x.img.clusterBits, d)
	}
}

// addTree counts every reference a tree holds: its L1 table, L2 tables and data. Each
// distinct L2 table is read once and counted with its multiplicity.
func (x *txn) addTree(t tree, d int64) error {
	img := x.img
	x.addRange(t.off, t.size*8, d)
	mult := make(map[int64]int64)
	var order []int64
	for i, l1e := range t.l1 {
		l2off, err := img.l2TableOffset(l1e, int64(i))
		if err != nil {
			return err
		}
		if l2off != 0 {
			if mult[l2off] == 0 {
				order = append(order, l2off)
			}
			mult[l2off]++
		}
	}
	for _, l2off := range order {
		m := mult[l2off] * d
		x.add(l2off>>img.clusterBits, m)
		tb, err := img.loadL2(l2off)
		if err != nil {
			return err
		}
		for j := int64(0); j < img.l2Entries(); j++ {
			e := binary.BigEndian.Uint64(tb.buf[j*8:])
			if e&oflagCompressed == 0 && int64(e&l2eOffsetMask)%img.cs != 0 {
				return formatErr(l2off+j*8, "L2 entry %#x: cluster offset not aligned", e)
			}
			x.addEntry(e, m)
		}
	}
	return nil
}

// final returns the refcount cluster c will have after the switch.
func (x *txn) final(c int64) (uint64, error) {
	rc, err := x.img.refcount(c)
	if err != nil {
		return 0, err
	}
	d := x.delta[c]
	switch {
	case d < 0 && rc < uint64(-d):
		return 0, formatErr(c<<x.img.clusterBits, "refcount of cluster %d would drop below zero", c)
	case d > 0 && refcountMax(x.img.refBits)-rc < uint64(d):
		return 0, unsupported("refcount of cluster %d would exceed %d bits", c, x.img.refBits)
	}
	return uint64(int64(rc) + d), nil
}

// alloc reserves n contiguous clusters that are free now and untouched by the switch.
func (x *txn) alloc(n int64) (int64, error) {
	img := x.img
	// Clusters skipped by earlier allocations of this transaction stay unusable (they are
	// in use, taken, or being released), so the scan resumes where the last one ended.
	start, run := max(img.freeHint, x.next, 1), int64(0)
	for c := start; run < n; c++ {
		free := x.delta[c] == 0
		if free && img.refblockOffset(c>>img.rbBits) != 0 {
			rc, err := img.refcount(c)
			if err != nil {
				return 0, err
			}
			free = rc == 0
		}
		if free {
			run++
		} else {
			start, run = c+1, 0
		}
	}
	if uint64(start+n)<<img.clusterBits > maxClusterOffset {
		return 0, unsupported("image file would exceed the maximum cluster offset")
	}
	for c := start; c < start+n; c++ {
		x.add(c, 1)
	}
	x.maxTouched = max(x.maxTouched, start+n)
	x.next = start + n
	return start << img.clusterBits, nil
}

// switchTrees performs the switch described by ts (see the comment at the top).
func (img *Image) switchTrees(ts *treeSwitch) error {
	// Pending metadata goes out first (in its own safe order); the sync before the switch
	// below makes it durable together with the new structures.
	if err := img.flushMeta(); err != nil {
		return err
	}
	x := &txn{img: img, delta: make(map[int64]int64)}
	for _, t := range ts.release {
		if err := x.addTree(t, -1); err != nil {
			return err
		}
	}

	// New active tree, pass 1: count the references of the L2 tables named by activeL1,
	// with the vm-state discard applied.
	st, err := img.f.Stat()
	if err != nil {
		return err
	}
	newL1 := make([]uint64, len(ts.activeL1))
	seen := make(map[int64]bool)
	for i, l1e := range ts.activeL1 {
		src, err := img.l2TableOffset(l1e, int64(i))
		if err != nil {
			return err
		}
		if src == 0 {
			continue
		}
		if seen[src] || src+img.cs > st.Size() {
			return formatErr(img.l1Off+int64(i)*8, "L2 table %#x is shared within the active L1 or beyond the end of the file", src)
		}
		seen[src] = true
		buf, err := img.activeL2Copy(ts, i, src)
		if err != nil {
			return err
		}
		for j := int64(0); j < img.l2Entries(); j++ {
			e := binary.BigEndian.Uint64(buf[j*8:])
			if e&oflagCompressed == 0 && int64(e&l2eOffsetMask)%img.cs != 0 {
				return formatErr(src+j*8, "L2 entry %#x: cluster offset not aligned", e)
			}
			if !ts.keepActive {
				x.addEntry(e, 1)
			}
		}
		if !ts.keepActive {
			x.add(src>>img.clusterBits, 1)
		}
	}
	if ts.keepActive {
		x.addRange(img.l1Off, int64(len(img.l1))*8, -1) // replaced by the new L1 below
	}
	// Pass 2: COPIED flags from the final refcounts (allocations below only take clusters
	// no tree references, so they cannot change). A table that stays exclusively owned and
	// unchanged is reused; any other is written to a new cluster right away (nothing
	// references that cluster before the switch).
	for i, l1e := range ts.activeL1 {
		src := int64(l1e & l1eOffsetMask)
		if src == 0 {
			continue
		}
		buf, err := img.activeL2Copy(ts, i, src)
		if err != nil {
			return err
		}
		for j := int64(0); j < img.l2Entries(); j++ {
			e := binary.BigEndian.Uint64(buf[j*8:])
			ne := e &^ oflagCopied
			if host := int64(e & l2eOffsetMask); e&oflagCompressed == 0 && host != 0 {
				rc, err := x.final(host >> img.clusterBits)
				if err != nil {
					return err
				}
				if rc == 1 {
					ne |= oflagCopied
				}
			}
			if ne != e {
				binary.BigEndian.PutUint64(buf[j*8:], ne)
			}
		}
		tb, err := img.loadL2(src)
		if err != nil {
			return err
		}
		changed := !bytes.Equal(tb.buf, buf)
		rc, err := x.final(src >> img.clusterBits)
		if err != nil {
			return err
		}
		if rc == 1 && !changed {
			newL1[i] = uint64(src) | oflagCopied
			continue
		}
		x.add(src>>img.clusterBits, -1)
		dst, err := x.alloc(1)
		if err != nil {
			return err
		}
		if _, err := img.f.WriteAt(buf, dst); err != nil {
			return err
		}
		newL1[i] = uint64(dst) | oflagCopied
	}
	// New active L1 and snapshot table.
	var l1Off int64
	if len(newL1) > 0 {
		var err error
		if l1Off, err = x.alloc((int64(len(newL1))*8 + img.cs - 1) / img.cs); err != nil {
			return err
		}
	}
	snapBuf := encodeSnapshots(ts.snaps)
	if len(snapBuf) > maxSnapshotsSize {
		return unsupported("snapshot table would exceed %d bytes (File too large)", maxSnapshotsSize)
	}
	var snapOff int64
	if len(snapBuf) > 0 {
		var err error
		if snapOff, err = x.alloc((int64(len(snapBuf)) + img.cs - 1) / img.cs); err != nil {
			return err
		}
	}
	if len(img.snaps) > 0 {
		x.addRange(int64(img.hdr.SnapshotsOffset), int64(len(encodeSnapshots(img.snaps))), -1)
	}
	// New refcount blocks for every block whose counts change, and a new refcount table.
	newBlocks, rtOff, rtEntries, err := img.planRefcounts(x)
	if err != nil {
		return err
	}
	// Check every final refcount before writing anything.
	byBlock := make(map[int64][]int64)
	for c := range x.delta {
		if _, err := x.final(c); err != nil {
			return err
		}
		byBlock[c>>img.rbBits] = append(byBlock[c>>img.rbBits], c)
	}

	// Write the new structures (all in clusters unused by the current image).
	if len(newL1) > 0 {
		buf := make([]byte, len(newL1)*8)
		for i, v := range newL1 {
			binary.BigEndian.PutUint64(buf[i*8:], v)
		}
		if _, err := img.f.WriteAt(buf, l1Off); err != nil {
			return err
		}
	}
	if len(snapBuf) > 0 {
		if _, err := img.f.WriteAt(snapBuf, snapOff); err != nil {
			return err
		}
	}
	blockBuf := make([]byte, img.cs)
	tis := make([]int64, 0, len(newBlocks))
	for ti := range newBlocks {
		tis = append(tis, ti)
	}
	sort.Slice(tis, func(a, b int) bool { return tis[a] < tis[b] })
	for _, ti := range tis {
		if old := img.refblockOffset(ti); old != 0 {
			t, err := img.loadRefblock(old)
			if err != nil {
				return err
			}
			copy(blockBuf, t.buf)
		} else {
			clear(blockBuf)
		}
		for _, c := range byBlock[ti] {
			rc, _ := x.final(c)
			setRefEntry(blockBuf, c&(int64(1)<<img.rbBits-1), img.refBits, rc)
		}
		if _, err := img.f.WriteAt(blockBuf, newBlocks[ti]); err != nil {
			return err
		}
	}
	newRT := make([]uint64, rtEntries)
	copy(newRT, img.reftable)
	for ti, off := range newBlocks {
		newRT[ti] = uint64(off)
	}
	rtBuf := make([]byte, rtEntries*8)
	for i, v := range newRT {
		binary.BigEndian.PutUint64(rtBuf[i*8:], v)
	}
	if _, err := img.f.WriteAt(rtBuf, rtOff); err != nil {
		return err
	}
	if err := img.f.Sync(); err != nil {
		return err
	}

	// The switch.
	var hb [48]byte
	be := binary.BigEndian
	be.PutUint64(hb[0:], ts.size)
	be.PutUint32(hb[8:], img.hdr.CryptMethod)
	be.PutUint32(hb[12:], uint32(len(newL1)))
	be.PutUint64(hb[16:], uint64(l1Off))
	be.PutUint64(hb[24:], uint64(rtOff))
	be.PutUint32(hb[32:], uint32(rtEntries*8/img.cs))
	be.PutUint32(hb[36:], uint32(len(ts.snaps)))
	be.PutUint64(hb[40:], uint64(snapOff))
	if err := img.writeHeaderField(hdrOffSize, hb[:]); err != nil {
		return err
	}

	img.hdr.Size = ts.size
	img.l1, img.l1Off = newL1, l1Off
	img.hdr.L1Size, img.hdr.L1TableOffset = uint32(len(newL1)), uint64(l1Off)
	img.reftable, img.reftableOff = newRT, rtOff
	img.hdr.RefcountTableOffset, img.hdr.RefcountTableClusters = uint64(rtOff), uint32(rtEntries*8/img.cs)
	img.snaps = ts.snaps
	img.hdr.NbSnapshots, img.hdr.SnapshotsOffset = uint32(len(ts.snaps)), uint64(snapOff)
	img.rbCache.clear()
	img.l2Cache.clear()
	img.freeHint = 0
	img.zbufOff = 0
	return nil
}

// activeL2Copy returns scratchB filled with the L2 table src as it will be in the new
// active tree at L1 index i (vm-state range discarded).
func (img *Image) activeL2Copy(ts *treeSwitch, i int, src int64) ([]byte, error) {
	tb, err := img.loadL2(src)
	if err != nil {
		return nil, err
	}
	buf := img.scratchB
	copy(buf, tb.buf)
	span := int64(1) << (img.l2Bits + img.clusterBits)
	base := int64(i) * span
	if ts.vmLen > 0 && base < ts.vmOff+ts.vmLen && base+span > ts.vmOff {
		for j := int64(0); j < img.l2Entries(); j++ {
			if g := base + j<<img.clusterBits; g >= ts.vmOff && g < ts.vmOff+ts.vmLen {
				e := binary.BigEndian.Uint64(buf[j*8:])
				binary.BigEndian.PutUint64(buf[j*8:], img.zeroEntry(e, modeDiscard, img.hdr.Version >= 3))
			}
		}
	}
	return buf, nil
}

// planRefcounts allocates a new copy of every refcount block whose counts change (and new
// blocks where none exist) plus a new refcount table, until the allocations themselves are
// accounted for. It returns block index -> new offset, the table offset and its entries.
func (img *Image) planRefcounts(x *txn) (map[int64]int64, int64, int64, error) {
	newBlocks := make(map[int64]int64)
	var rtOff, rtEntries int64
	perCluster := img.cs / 8
	for {
		progress := false
		var pending []int64
		for c := range x.delta {
			if _, ok := newBlocks[c>>img.rbBits]; !ok {
				pending = append(pending, c>>img.rbBits)
			}
		}
		for _, ti := range pending {
			if _, ok := newBlocks[ti]; ok {
				continue
			}
			off, err := x.alloc(1)
			if err != nil {
				return nil, 0, 0, err
			}
			newBlocks[ti] = off
			if old := img.refblockOffset(ti); old != 0 {
				x.add(old>>img.clusterBits, -1)
			}
			progress = true
		}
		need := int64(len(img.reftable))
		for ti := range newBlocks {
			need = max(need, ti+1)
		}
		need = (need + perCluster - 1) / perCluster * perCluster
		if need*8 > maxRefTableSize {
			return nil, 0, 0, unsupported("Reference count table too large")
		}
		if rtEntries < need {
			if rtEntries > 0 {
				x.addRange(rtOff, rtEntries*8, -1) // give back the too small one
			} else {
				x.addRange(img.reftableOff, int64(len(img.reftable))*8, -1)
			}
			off, err := x.alloc(need * 8 / img.cs)
			if err != nil {
				return nil, 0, 0, err
			}
			rtOff, rtEntries = off, need
			progress = true
		}
		if !progress {
			return newBlocks, rtOff, rtEntries, nil
		}
	}
}
