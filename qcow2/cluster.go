package qcow2

import (
	"encoding/binary"
	"fmt"
)

// Guest data paths: reads, writes (with copy-on-write), zeroing, discard and Map.

func (img *Image) checkRange(off, n int64) error {
	if off < 0 || n < 0 || off > int64(img.hdr.Size) || n > int64(img.hdr.Size)-off {
		return fmt.Errorf("qcow2: request [%d, +%d) outside the virtual disk of %d bytes", off, n, img.hdr.Size)
	}
	return nil
}

// ReadAt reads guest data; the range must lie within [0, Size()).
func (img *Image) ReadAt(p []byte, off int64) (int, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.usable(); err != nil {
		return 0, err
	}
	if err := img.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	if err := img.readAt(p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

// WriteAt writes guest data; the range must lie within [0, Size()).
func (img *Image) WriteAt(p []byte, off int64) (int, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.writable(); err != nil {
		return 0, err
	}
	if err := img.checkRange(off, int64(len(p))); err != nil {
		return 0, err
	}
	if err := img.writeAt(p, off); err != nil {
		return 0, err
	}
	return len(p), nil
}

// readAt reads any guest range, the VM-state area included.
func (img *Image) readAt(p []byte, off int64) error { return img.readAtLater(p, off, nil) }

// readAtLater is readAt; with later set, data in allocated clusters is not read but
// appended to *later, for the caller to read once it has released the lock (ReadVMState).
func (img *Image) readAtLater(p []byte, off int64, later *[]dataCopy) error {
	for len(p) > 0 {
		ci := off >> img.clusterBits
		in := off & (img.cs - 1)
		n := min(int64(len(p)), img.cs-in)
		e, err := img.lookup(ci)
		if err != nil {
			return err
		}
		kind, host, err := img.decodeL2(e, ci)
		if err != nil {
			return err
		}
		switch kind {
		case kindNormal:
			first := ci
			// Extend over following clusters that are contiguous on the host.
			for n < int64(len(p)) {
				e2, err := img.lookup(ci + 1)
				if err != nil {
					return err
				}
				k2, h2, err := img.decodeL2(e2, ci+1)
				if err != nil || k2 != kindNormal || h2 != host+(ci+1-first)<<img.clusterBits {
					break
				}
				ci++
				n = min(int64(len(p)), n+img.cs)
			}
			if later != nil {
				*later = append(*later, dataCopy{p: p[:n], host: host + in})
			} else if err := img.readFull(p[:n], host+in); err != nil {
				return err
			}
		case kindZero:
			clear(p[:n])
		case kindUnallocated:
			// Extend over following unallocated clusters.
			for n < int64(len(p)) {
				e2, err := img.lookup(ci + 1)
				if err != nil || e2 != 0 {
					break
				}
				ci++
				n = min(int64(len(p)), n+img.cs)
			}
			if err := img.readBacking(p[:n], off); err != nil {
				return err
			}
		case kindCompressed:
			if err := img.readCompressed(img.scratchA, e); err != nil {
				return err
			}
			copy(p[:n], img.scratchA[in:])
		}
		p = p[n:]
		off += n
	}
	return nil
}

// readBacking reads an unallocated range from the backing image; zeros beyond its end.
func (img *Image) readBacking(p []byte, off int64) error {
	if img.backing == nil {
		clear(p)
		return nil
	}
	bsize := min(img.backing.Size(), int64(img.hdr.Size))
	n := int64(0)
	if off < bsize {
		n = min(int64(len(p)), bsize-off)
		if _, err := img.backing.ReadAt(p[:n], off); err != nil {
			return fmt.Errorf("qcow2: reading backing file: %w", err)
		}
	}
	clear(p[n:])
	return nil
}

// readGuestCluster fills buf (one cluster) with the current contents of guest cluster ci
// whose L2 entry is e; used to merge partial writes into a newly allocated cluster.
func (img *Image) readGuestCluster(buf []byte, ci int64, e uint64) error {
	kind, host, err := img.decodeL2(e, ci)
	if err != nil {
		return err
	}
	switch kind {
	case kindNormal:
		return img.readFull(buf, host)
	case kindCompressed:
		return img.readCompressed(buf, e)
	case kindZero:
		clear(buf)
		return nil
	default:
		return img.readBacking(buf, ci<<img.clusterBits)
	}
}

// releaseEntry queues the references held by an L2 entry that is being replaced.
func (img *Image) releaseEntry(e uint64) {
	if e&oflagCompressed != 0 {
		off, n := img.compressedRange(e)
		img.queueFree(off, n)
		return
	}
	if host := int64(e & l2eOffsetMask); host != 0 {
		img.queueFree(host, img.cs)
	}
}

// writeAt writes any guest range, the VM-state area included.
func (img *Image) writeAt(p []byte, off int64) error { return img.writeAtLater(p, off, nil) }

// writeAtLater is writeAt; with later set, data going to clusters that may be written
// outside the lock is appended to it instead of written (WriteVMState).
func (img *Image) writeAtLater(p []byte, off int64, later *[]dataCopy) error {
	tableSpan := int64(1) << (img.l2Bits + img.clusterBits)
	for len(p) > 0 {
		l1i := off >> (img.l2Bits + img.clusterBits)
		n := min(int64(len(p)), (l1i+1)*tableSpan-off)
		t, err := img.l2ForWrite(l1i)
		if err != nil {
			return err
		}
		if err := img.writeInTable(t, p[:n], off, later); err != nil {
			return err
		}
		p = p[n:]
		off += n
	}
	return nil
}

// inPlace reports whether a write to a cluster with L2 entry e can go to its host cluster.
func inPlace(e uint64) bool {
	return e&oflagCopied != 0 && e&(oflagCompressed|oflagZero) == 0 && e&l2eOffsetMask != 0
}

// writeInTable writes p at guest offset off; the range lies within the L2 table t.
//
// With later set, data going to clusters that are already in place, or to fresh clusters
// beyond the end of the file, is not written but appended to *later, for the caller to
// write once it has released the lock (see WriteVMState); the L2 entries are updated now.
func (img *Image) writeInTable(t *cachedTable, p []byte, off int64, later *[]dataCopy) error {
	mask := img.l2Entries() - 1
	for len(p) > 0 {
		ci := off >> img.clusterBits
		in := off & (img.cs - 1)
		e := binary.BigEndian.Uint64(t.buf[(ci&mask)*8:])
		// Count the clusters of this run: same treatment, and for in-place writes
		// contiguous host clusters.
		span := in + int64(len(p))
		nclusters := (span + img.cs - 1) >> img.clusterBits
		k := int64(1)
		if inPlace(e) {
			host := int64(e & l2eOffsetMask)
			for k < nclusters {
				e2 := binary.BigEndian.Uint64(t.buf[((ci+k)&mask)*8:])
				if !inPlace(e2) || int64(e2&l2eOffsetMask) != host+k*img.cs {
					break
				}
				k++
			}
			n := min(int64(len(p)), k*img.cs-in)
			if later != nil {
				*later = append(*later, dataCopy{p[:n], host + in})
			} else if _, err := img.f.WriteAt(p[:n], host+in); err != nil {
				return err
			}
			p = p[n:]
			off += n
			continue
		}
		for k < nclusters && !inPlace(binary.BigEndian.Uint64(t.buf[((ci+k)&mask)*8:])) {
			k++
		}
		n := min(int64(len(p)), k*img.cs-in)
		if err := img.writeNewClusters(t, ci, k, p[:n], in, later); err != nil {
			return err
		}
		p = p[n:]
		off += n
	}
	return nil
}

var zeroByte [1]byte

// readsZero reports whether guest cluster ci (entry in t) currently reads as all zeros
// without looking at data: a zero cluster, or unallocated with nothing behind it.
func (img *Image) readsZero(ci int64, t *cachedTable) bool {
	e := binary.BigEndian.Uint64(t.buf[(ci&(img.l2Entries()-1))*8:])
	if e&oflagCompressed != 0 {
		return false
	}
	if e&oflagZero != 0 {
		return true
	}
	if e&l2eOffsetMask != 0 {
		return false
	}
	return img.backing == nil || ci<<img.clusterBits >= min(img.backing.Size(), int64(img.hdr.Size))
}

// writeNewClusters allocates k contiguous host clusters for guest clusters ci..ci+k-1,
// writes p (starting at byte in of the first cluster) merged with the old contents of
// partially covered clusters, then points the L2 entries at the new clusters. With later
// set, fresh clusters needing no merge get their data written by the caller (writeInTable).
func (img *Image) writeNewClusters(t *cachedTable, ci, k int64, p []byte, in int64, later *[]dataCopy) error {
	mask := img.l2Entries() - 1
	host, err := img.allocClusters(k)
	if err != nil {
		return err
	}
	if host >= img.f.size && img.readsZero(ci, t) && img.readsZero(ci+k-1, t) {
		// Fresh space beyond the end of the file reads as zeros, and so does the old
		// contents of the partial clusters: write only the data, then make sure the file
		// covers the whole run.
		if later != nil {
			*later = append(*later, dataCopy{p, host + in})
		} else if _, err := img.f.WriteAt(p, host+in); err != nil {
			return err
		}
		if runEnd := host + k*img.cs; img.f.size < runEnd {
			if err := img.f.extend(runEnd, later != nil); err != nil {
				return err
			}
		}
	} else if err := img.writeMerged(t, ci, k, p, in, host); err != nil {
		return err
	}
	for i := int64(0); i < k; i++ {
		idx := ((ci + i) & mask) * 8
		img.releaseEntry(binary.BigEndian.Uint64(t.buf[idx:]))
		binary.BigEndian.PutUint64(t.buf[idx:], uint64(host+i*img.cs)|oflagCopied)
	}
	t.dirty = true
	img.zbufOff = 0
	return nil
}

// writeMerged writes p (starting at byte in of guest cluster ci) to the k new host clusters
// at host, merging partially covered head and tail clusters with their old contents.
func (img *Image) writeMerged(t *cachedTable, ci, k int64, p []byte, in, host int64) error {
	mask := img.l2Entries() - 1
	end := in + int64(len(p))
	firstFull, lastFull := int64(0), k
	if in != 0 || end < img.cs {
		// Head cluster, partially covered.
		buf := img.scratchA
		if err := img.readGuestCluster(buf, ci, binary.BigEndian.Uint64(t.buf[(ci&mask)*8:])); err != nil {
			return err
		}
		copy(buf[in:], p)
		if _, err := img.f.WriteAt(buf, host); err != nil {
			return err
		}
		firstFull = 1
	}
	if k > 1 && end&(img.cs-1) != 0 {
		// Tail cluster, partially covered.
		lastFull = k - 1
		tc := ci + k - 1
		buf := img.scratchB
		if err := img.readGuestCluster(buf, tc, binary.BigEndian.Uint64(t.buf[(tc&mask)*8:])); err != nil {
			return err
		}
		copy(buf, p[(k-1)*img.cs-in:])
		if _, err := img.f.WriteAt(buf, host+(k-1)*img.cs); err != nil {
			return err
		}
	}
	if lastFull > firstFull {
		// Fully covered clusters go straight from p in one write.
		a, b := firstFull*img.cs-in, lastFull*img.cs-in
		if _, err := img.f.WriteAt(p[a:b], host+firstFull*img.cs); err != nil {
			return err
		}
	}
	return nil
}
