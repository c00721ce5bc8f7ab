package qcow2

import (
	"encoding/binary"
	"math"
)

// Zeroing, discard and allocation maps.

type zeroMode int

const (
	modeDiscard   zeroMode = iota // guest discard (v3: reads as zero afterwards; v2: unallocated)
	modeZero                      // write zeroes, keeping an exclusively owned host cluster
	modeZeroUnmap                 // write zeroes, releasing the host cluster
)

// Extent describes the allocation status of a guest range.
type Extent struct {
	Off, Len  int64
	Allocated bool // data lives in this image (not in the backing chain)
	Zero      bool // reads as zeros
}

// WriteZeroes makes [off, off+n) read as zeros. With unmap, whole clusters are released.
func (img *Image) WriteZeroes(off, n int64, unmap bool) error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.writable(); err != nil {
		return err
	}
	if err := img.checkRange(off, n); err != nil {
		return err
	}
	if img.hdr.Version < 3 && img.backing != nil {
		// No zero flag in v2: zeros must hide the backing data, so write them.
		return img.writeZeroData(off, n)
	}
	mode := modeZero
	if unmap {
		mode = modeZeroUnmap
	}
	return img.zeroAligned(off, n, mode, true)
}

// Discard releases the fully covered clusters of [off, off+n); partial clusters are left.
func (img *Image) Discard(off, n int64) error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.writable(); err != nil {
		return err
	}
	if err := img.checkRange(off, n); err != nil {
		return err
	}
	return img.zeroAligned(off, n, modeDiscard, false)
}

// zeroAligned applies mode to the whole clusters in [off, off+n); with writePartial the
// partial head and tail are zeroed by writing zero bytes.
func (img *Image) zeroAligned(off, n int64, mode zeroMode, writePartial bool) error {
	start := (off + img.cs - 1) &^ (img.cs - 1)
	end := (off + n) &^ (img.cs - 1)
	if end <= start {
		if writePartial {
			return img.writeZeroData(off, n)
		}
		return nil
	}
	if writePartial {
		if err := img.writeZeroData(off, start-off); err != nil {
			return err
		}
		if err := img.writeZeroData(end, off+n-end); err != nil {
			return err
		}
	}
	return img.zeroClusters(start, end-start, mode)
}

func (img *Image) writeZeroData(off, n int64) error {
	zeros := make([]byte, min(n, 1<<20))
	for n > 0 {
		k := min(n, int64(len(zeros)))
		if err := img.writeAt(zeros[:k], off); err != nil {
			return err
		}
		off += k
		n -= k
	}
	return nil
}

// zeroClusters rewrites the L2 entries of the cluster-aligned range [off, off+n).
func (img *Image) zeroClusters(off, n int64, mode zeroMode) error {
	span := int64(1) << (img.l2Bits + img.clusterBits)
	mask := img.l2Entries() - 1
	v3 := img.hdr.Version >= 3
	for n > 0 {
		l1i := off / span
		cnt := min(n, (l1i+1)*span-off)
		hasTable := l1i < int64(len(img.l1)) && img.l1[l1i]&l1eOffsetMask != 0
		if hasTable || (v3 && img.backing != nil) {
			t, err := img.l2ForWrite(l1i)
			if err != nil {
				return err
			}
			for ci := off >> img.clusterBits; ci < (off+cnt)>>img.clusterBits; ci++ {
				idx := (ci & mask) * 8
				e := binary.BigEndian.Uint64(t.buf[idx:])
				ne := img.zeroEntry(e, mode, v3)
				if ne == e {
					continue
				}
				if e&l2eOffsetMask != 0 && ne&l2eOffsetMask == 0 || e&oflagCompressed != 0 {
					img.releaseEntry(e)
				}
				binary.BigEndian.PutUint64(t.buf[idx:], ne)
				t.dirty = true
			}
			img.zbufOff = 0
		}
		off += cnt
		n -= cnt
	}
	return nil
}

// zeroEntry computes the new L2 entry for a cluster being zeroed or discarded.
func (img *Image) zeroEntry(e uint64, mode zeroMode, v3 bool) uint64 {
	if !v3 {
		return 0
	}
	allocated := e&oflagCompressed != 0 || e&l2eOffsetMask != 0
	switch mode {
	case modeDiscard:
		if allocated || img.backing != nil {
			return oflagZero
		}
		return e
	case modeZero:
		if inPlace(e) {
			return e | oflagZero
		}
		if e&oflagZero != 0 && e&oflagCompressed == 0 {
			return e
		}
		return oflagZero
	default:
		return oflagZero
	}
}

// Map reports the allocation status of [off, off+n), merging equal neighbours.
func (img *Image) Map(off, n int64) ([]Extent, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.usable(); err != nil {
		return nil, err
	}
	if err := img.checkRange(off, n); err != nil {
		return nil, err
	}
	return img.mapRange(off, n)
}

func (img *Image) mapRange(off, n int64) ([]Extent, error) {
	var out []Extent
	span := int64(1) << (img.l2Bits + img.clusterBits)
	end := off + n
	for off < end {
		ci := off >> img.clusterBits
		l1i := ci >> img.l2Bits
		var e uint64
		step := min(end, (ci+1)<<img.clusterBits) - off
		if l1i >= int64(len(img.l1)) || img.l1[l1i]&l1eOffsetMask == 0 {
			// A whole L2 range is unallocated.
			step = min(end, (l1i+1)*span) - off
		} else {
			var err error
			if e, err = img.lookup(ci); err != nil {
				return nil, err
			}
		}
		kind, _, err := img.decodeL2(e, ci)
		if err != nil {
			return nil, err
		}
		ext := Extent{Off: off, Len: step}
		switch kind {
		case kindNormal, kindCompressed:
			ext.Allocated = true
		case kindZero:
			ext.Allocated, ext.Zero = true, true
		default:
			ext.Zero = img.backing == nil || off >= min(img.backing.Size(), int64(img.hdr.Size))
		}
		if k := len(out); k > 0 && out[k-1].Allocated == ext.Allocated && out[k-1].Zero == ext.Zero &&
			out[k-1].Off+out[k-1].Len == off {
			out[k-1].Len += step
		} else {
			out = append(out, ext)
		}
		off += step
	}
	return out, nil
}

// VMStateOffset is the guest offset where the vm-state area starts: the first L1 entry
// lying entirely beyond the virtual disk.
func (img *Image) VMStateOffset() int64 {
	img.mu.Lock()
	defer img.mu.Unlock()
	return img.vmStateOffset()
}

func (img *Image) vmStateOffset() int64 {
	return int64(img.hdr.l1VMStateIndex()) << (img.l2Bits + img.clusterBits)
}

func (img *Image) checkVMState(pos, n int64) (int64, error) {
	base := img.vmStateOffset()
	limit := int64(maxL1Size/8) << (img.l2Bits + img.clusterBits)
	if pos < 0 || n < 0 || pos > math.MaxInt64-base || base+pos > limit || n > limit-(base+pos) {
		return 0, unsupported("vm state request [%d, +%d) out of range", pos, n)
	}
	return base + pos, nil
}

// MapVMState reports which parts of [pos, pos+n) of the vm-state area are allocated;
// offsets are vm-state positions.
func (img *Image) MapVMState(pos, n int64) ([]Extent, error) {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.usable(); err != nil {
		return nil, err
	}
	off, err := img.checkVMState(pos, n)
	if err != nil {
		return nil, err
	}
	ext, err := img.mapRange(off, n)
	for i := range ext {
		ext[i].Off -= off - pos
		if !ext[i].Allocated {
			ext[i].Zero = true
		}
	}
	return ext, err
}

// discardVMState removes the first size bytes of the vm-state area from the active L1, as
// QEMU does after creating a snapshot (the snapshot keeps its own references).
func (img *Image) discardVMState(size uint64) error {
	if size == 0 {
		return nil
	}
	n := (int64(size) + img.cs - 1) &^ (img.cs - 1)
	off, err := img.checkVMState(0, n)
	if err != nil {
		return err
	}
	return img.zeroClusters(off, n, modeDiscard)
}
