package qcow2

import (
	"encoding/binary"
	"fmt"
	"os"
)

// Offline consistency check, the equivalent of qemu-img check for qcow2.

// RepairMode selects what Check fixes.
type RepairMode int

const (
	RepairNone  RepairMode = iota
	RepairLeaks            // qemu-img check -r leaks
	RepairAll              // qemu-img check -r all
)

// CheckResult mirrors qemu-img check --output=json (QAPI ImageCheck).
type CheckResult struct {
	Filename           string `json:"filename"`
	Format             string `json:"format"`
	CheckErrors        int    `json:"check-errors"`
	Corruptions        int    `json:"corruptions,omitempty"`
	Leaks              int    `json:"leaks,omitempty"`
	CorruptionsFixed   int    `json:"corruptions-fixed,omitempty"`
	LeaksFixed         int    `json:"leaks-fixed,omitempty"`
	ImageEndOffset     int64  `json:"image-end-offset,omitempty"`
	TotalClusters      int64  `json:"total-clusters,omitempty"`
	AllocatedClusters  int64  `json:"allocated-clusters,omitempty"`
	FragmentedClusters int64  `json:"fragmented-clusters,omitempty"`
	CompressedClusters int64  `json:"compressed-clusters,omitempty"`
	// Messages are the ERROR / Leaked / Repairing lines qemu-img prints on stderr.
	Messages []string `json:"-"`
}

// Check verifies the image at path like qemu-img check, optionally repairing it. With a
// repair mode the result describes the repair pass: problems it fixed are counted in
// CorruptionsFixed / LeaksFixed (and reported as "Repairing ..." messages), the others in
// Corruptions / Leaks. qemu-img then checks again ("Double checking the fixed image
// now..."): call Check(path, RepairNone) for that.
func Check(path string, repair RepairMode) (*CheckResult, error) {
	return checkOnce(path, repair)
}

// l2Use is how often an L2 table is reached, from the active L1 and from snapshots.
type l2Use struct{ active, total uint32 }

type checker struct {
	img       *Image
	res       *CheckResult
	refs      []uint32         // expected refcount per host cluster
	fileEnd   int64            // clusters covered by the file
	nextData  int64            // next contiguous host offset (fragmentation count)
	tables    map[int64]*l2Use // L2 tables reached from any L1, walked once each
	order     []int64
	needBuild bool
}

func checkOnce(path string, repair RepairMode) (*CheckResult, error) {
	flag := os.O_RDONLY
	if repair != RepairNone {
		flag = os.O_RDWR
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	return checkStorage(f, path, repair)
}

// checkStorage checks an image file; it closes f.
func checkStorage(f storage, path string, repair RepairMode) (*CheckResult, error) {
	img, err := openFileMode(f, path, repair == RepairNone, true)
	if err != nil {
		f.Close()
		return nil, err
	}
	defer img.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	c := &checker{img: img, res: &CheckResult{Filename: path, Format: "qcow2"}, tables: make(map[int64]*l2Use)}
	c.fileEnd = (st.Size() + img.cs - 1) >> img.clusterBits
	c.refs = make([]uint32, c.fileEnd)
	c.res.TotalClusters = (int64(img.hdr.Size) + img.cs - 1) >> img.clusterBits

	incomplete := c.checkSnapshotTable(repair == RepairAll)
	c.calculate()
	c.compare(repair)
	c.checkCopied(repair == RepairAll)
	if incomplete && repair == RepairAll && c.res.Corruptions == 0 {
		// Rewriting the table stores every entry with the full 24 bytes of extra data.
		if err := img.switchTrees(&treeSwitch{activeL1: img.l1, snaps: img.snaps,
			size: img.hdr.Size, keepActive: true}); err != nil {
			return c.res, err
		}
	}
	if repair != RepairNone {
		if err := img.flushMeta(); err != nil {
			return c.res, err
		}
		if c.res.Corruptions == 0 && img.hdr.Version >= 3 &&
			img.hdr.IncompatibleFeatures&(incompatDirty|incompatCorrupt) != 0 {
			var b [8]byte
			img.hdr.IncompatibleFeatures &^= incompatDirty | incompatCorrupt
			binary.BigEndian.PutUint64(b[:], img.hdr.IncompatibleFeatures)
			if err := img.writeHeaderField(hdrOffIncompatible, b[:]); err != nil {
				return c.res, err
			}
		}
	}
	return c.res, nil
}

// checkSnapshotTable reports v3 snapshot entries with less than the 16 bytes of extra data
// version 3 requires; it returns whether any was found (fixed by rewriting the table).
func (c *checker) checkSnapshotTable(fix bool) bool {
	found := false
	if c.img.hdr.Version < 3 {
		return false
	}
	for i := range c.img.snaps {
		if c.img.snaps[i].extraLen < snapshotExtraV3Min {
			c.msg("%s snapshot table entry %d is incomplete", c.word(fix), i)
			found = true
			if fix {
				c.res.CorruptionsFixed++
			} else {
				c.res.Corruptions++
			}
		}
	}
	return found
}

func (c *checker) msg(format string, args ...any) {
	c.res.Messages = append(c.res.Messages, fmt.Sprintf(format, args...))
}

// ref counts one expected reference to every cluster overlapping [off, off+n).
func (c *checker) ref(off, n int64) { c.refN(off, n, 1) }

// refN counts m references to every cluster overlapping [off, off+n).
func (c *checker) refN(off, n int64, m uint32) {
	if n <= 0 || m == 0 {
		return
	}
	if off < 0 || uint64(off) > maxClusterOffset {
		c.msg("ERROR: offset %#x is out of range", uint64(off))
		c.res.Corruptions++
		return
	}
	cb := c.img.clusterBits
	for cl := off >> cb; cl <= (off+n-1)>>cb; cl++ {
		if cl >= int64(len(c.refs)) {
			c.msg("ERROR: cluster %d is beyond the end of the image", cl)
			c.res.Corruptions++
			return
		}
		if v := c.refs[cl] + m; v >= c.refs[cl] {
			c.refs[cl] = v
		} else {
			c.refs[cl] = ^uint32(0) // saturate
		}
	}
}

// calculate builds the expected refcount of every cluster from all metadata.
func (c *checker) calculate() {
	img := c.img
	c.ref(0, img.cs) // header
	c.walkL1(img.l1, img.l1Off, int64(len(img.l1)), true)
	for i := range img.snaps {
		s := &img.snaps[i]
		if s.l1Off%uint64(img.cs) != 0 {
			c.msg("ERROR snapshot %s (%s) l1_offset=%#x: L1 table is not cluster aligned; snapshot table entry corrupted", s.id, s.name, s.l1Off)
			c.res.Corruptions++
			continue
		}
		if uint64(s.l1Size)*8 > maxL1Size {
			c.msg("ERROR snapshot %s (%s) l1_size=%#x: L1 table is too large; snapshot table entry corrupted", s.id, s.name, s.l1Size)
			c.res.Corruptions++
			continue
		}
		l1, err := img.readSnapshotL1(s)
		if err != nil {
			c.msg("ERROR snapshot %s (%s): %v", s.id, s.name, err)
			c.res.CheckErrors++
			continue
		}
		c.walkL1(l1, int64(s.l1Off), int64(s.l1Size), false)
	}
	c.walkTables()
	if len(img.snaps) > 0 {
		c.ref(int64(img.hdr.SnapshotsOffset), int64(len(encodeSnapshots(img.snaps))))
	}
	c.ref(img.reftableOff, int64(len(img.reftable))*8)
	for i, e := range img.reftable {
		off := int64(e &^ reftableReservedMask)
		if off == 0 {
			continue
		}
		if off%img.cs != 0 {
			c.msg("ERROR refcount block %d is not cluster aligned; refcount table entry corrupted", i)
			c.res.Corruptions++
			continue
		}
		if off>>img.clusterBits >= c.fileEnd {
			c.msg("ERROR refcount block %d is outside image", i)
			c.res.Corruptions++
			continue
		}
		c.ref(off, img.cs)
	}
}

// walkL1 counts an L1 table and notes the L2 tables it reaches.
func (c *checker) walkL1(l1 []uint64, l1Off, l1Size int64, active bool) {
	img := c.img
	c.ref(l1Off, l1Size*8)
	for _, l1e := range l1 {
		l2off := int64(l1e & l1eOffsetMask)
		if l2off == 0 {
			continue
		}
		if l2off%img.cs != 0 {
			c.msg("ERROR l2_offset=%x: Table is not cluster aligned; L1 entry corrupted", l2off)
			c.res.Corruptions++
			continue
		}
		u := c.tables[l2off]
		if u == nil {
			u = &l2Use{}
			c.tables[l2off] = u
			c.order = append(c.order, l2off)
		}
		u.total++
		if active {
			u.active++
		}
	}
}

// walkTables counts every L2 table and the clusters its entries reference, once per
// table with the number of paths reaching it, and gathers the allocation statistics of
// the active tree.
func (c *checker) walkTables() {
	img := c.img
	for _, l2off := range c.order {
		u := c.tables[l2off]
		c.refN(l2off, img.cs, u.total)
		if l2off>>img.clusterBits >= c.fileEnd {
			continue // already reported; it would read as zeros
		}
		t, err := img.loadL2(l2off)
		if err != nil {
			c.msg("ERROR: I/O error in check_refcounts_l2: %v", err)
			c.res.CheckErrors++
			continue
		}
		// Copy: the cache may recycle the buffer while counting.
		l2 := append([]byte(nil), t.buf...)
		c.nextData = 0 // contiguity is judged within one L2 table, as qemu-img does
		act := int64(u.active)
		for j := int64(0); j < img.l2Entries(); j++ {
			e := binary.BigEndian.Uint64(l2[j*8:])
			if e&oflagCompressed != 0 {
				off, n := img.compressedRange(e)
				c.res.AllocatedClusters += act
				c.res.CompressedClusters += act
				// Compressed clusters are fragmented by nature (qemu-img counts them so).
				c.res.FragmentedClusters += act
				c.refN(off, n, u.total)
				continue
			}
			host := int64(e & l2eOffsetMask)
			if host == 0 {
				continue
			}
			if host%img.cs != 0 {
				c.msg("ERROR offset=%x: Cluster is not properly aligned; L2 entry corrupted", host)
				c.res.Corruptions++
				continue
			}
			if act > 0 {
				c.res.AllocatedClusters += act
				if c.nextData != 0 && host != c.nextData {
					c.res.FragmentedClusters += act
				}
				c.nextData = host + img.cs
			}
			c.refN(host, img.cs, u.total)
		}
	}
}

// compare reports (and with repair fixes) differences between stored and expected refcounts.
func (c *checker) compare(repair RepairMode) {
	img := c.img
	highest := int64(-1)
	type fix struct {
		cl    int64
		delta int64
		leak  bool
	}
	var fixes []fix
	for cl := int64(0); cl < int64(len(c.refs)); cl++ {
		stored, err := img.refcount(cl)
		if err != nil {
			c.msg("ERROR: cannot get refcount of cluster %d: %v", cl, err)
			c.res.CheckErrors++
			continue
		}
		want := uint64(c.refs[cl])
		if stored > 0 || want > 0 {
			highest = cl
		}
		if stored == want {
			continue
		}
		leak := stored > want
		fixIt := repair == RepairAll || (repair == RepairLeaks && leak)
		word := "ERROR"
		switch {
		case fixIt:
			word = "Repairing"
		case leak:
			word = "Leaked"
		}
		c.msg("%s cluster %d refcount=%d reference=%d", word, cl, stored, want)
		if fixIt {
			fixes = append(fixes, fix{cl, int64(want) - int64(stored), leak})
		} else if leak {
			c.res.Leaks++
		} else {
			c.res.Corruptions++
		}
	}
	c.res.ImageEndOffset = (highest + 1) << img.clusterBits
	if len(fixes) == 0 {
		return
	}
	// New refcount blocks must not land on clusters that are referenced but unaccounted for.
	img.freeHint = max(img.freeHint, int64(len(c.refs)))
	for _, f := range fixes {
		if err := img.addRef(f.cl, f.delta); err != nil {
			c.msg("ERROR: could not repair cluster %d: %v", f.cl, err)
			c.res.CheckErrors++
			continue
		}
		if f.leak {
			c.res.LeaksFixed++
		} else {
			c.res.CorruptionsFixed++
		}
	}
}

// checkCopied verifies that COPIED is set exactly on active L1/L2 entries whose cluster has
// refcount 1.
func (c *checker) checkCopied(fix bool) {
	img := c.img
	for i, l1e := range img.l1 {
		l2off := int64(l1e & l1eOffsetMask)
		if l2off == 0 || l2off%img.cs != 0 {
			continue
		}
		rc, err := img.refcount(l2off >> img.clusterBits)
		if err != nil {
			c.res.CheckErrors++
			continue
		}
		if (rc == 1) != (l1e&oflagCopied != 0) {
			c.msg("%s OFLAG_COPIED L2 cluster: l1_index=%d l1_entry=%x refcount=%d", c.word(fix), i, l1e, rc)
			if fix {
				img.l1[i] = l1e ^ oflagCopied
				img.markL1Dirty(i)
				c.res.CorruptionsFixed++
			} else {
				c.res.Corruptions++
			}
		}
		t, err := img.loadL2(l2off)
		if err != nil {
			c.res.CheckErrors++
			continue
		}
		for j := int64(0); j < img.l2Entries(); j++ {
			e := binary.BigEndian.Uint64(t.buf[j*8:])
			host := int64(e & l2eOffsetMask)
			if e&oflagCompressed != 0 && e&oflagCopied != 0 {
				off, _ := img.compressedRange(e)
				c.msg("ERROR: coffset=%#x: Compressed cluster has QCOW_OFLAG_COPIED set", off)
				c.res.Corruptions++
				continue
			}
			if e&oflagCompressed != 0 || host == 0 || host%img.cs != 0 {
				continue
			}
			rc, err := img.refcount(host >> img.clusterBits)
			if err != nil {
				c.res.CheckErrors++
				continue
			}
			if (rc == 1) != (e&oflagCopied != 0) {
				c.msg("%s OFLAG_COPIED data cluster: l2_entry=%x refcount=%d", c.word(fix), e, rc)
				if fix {
					if t, err = img.loadL2(l2off); err != nil {
						c.res.CheckErrors++
						break
					}
					binary.BigEndian.PutUint64(t.buf[j*8:], e^oflagCopied)
					t.dirty = true
					c.res.CorruptionsFixed++
				} else {
					c.res.Corruptions++
				}
			}
		}
	}
}

func (c *checker) word(fix bool) string {
	if fix {
		return "Repairing"
	}
	return "ERROR"
}
