// Package plic is the SiFive platform-level interrupt controller of the virt
// board (0xc000000): 96 sources with 3-bit priorities, and per hart an
// M-mode context (driving mip.MEIP) and an S-mode context (mip.SEIP), with
// QEMU 7.2's pending/claim/complete behaviour.
package plic

import (
	"sync"
)

// Layout.
const (
	Size         = 0x600000
	NumSources   = 96
	words        = NumSources / 32
	prioMask     = 7
	pendingBase  = 0x1000
	enableBase   = 0x2000
	enableStride = 0x80
	contextBase  = 0x200000
	contextSize  = 0x1000
)

// Interrupt bits in mip driven by the PLIC.
const (
	irqSEIP = 9
	irqMEIP = 11
)

// Hart is the interrupt input of one hart.
type Hart interface {
	SetInterrupt(bit uint, level bool)
}

// Device is the PLIC.
type Device struct {
	harts []Hart

	mu        sync.Mutex
	priority  [NumSources]uint32 // guarded by mu; saved
	pending   [words]uint32      // guarded by mu; saved
	claimed   [words]uint32      // guarded by mu; saved
	level     [words]uint32      // guarded by mu; saved: current input line levels
	enable    [][words]uint32    // guarded by mu; saved, per context
	threshold []uint32           // guarded by mu; saved, per context
}

// New creates a PLIC with two contexts (M, S) per hart.
func New(harts []Hart) *Device {
	d := &Device{harts: harts}
	d.enable = make([][words]uint32, 2*len(harts))
	d.threshold = make([]uint32, 2*len(harts))
	d.Reset()
	return d
}

// Reset clears all registers and lowers the hart lines. Input levels are
// kept: they belong to the devices, which reset themselves.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.priority = [NumSources]uint32{}
	d.pending = [words]uint32{}
	d.claimed = [words]uint32{}
	for i := range d.enable {
		d.enable[i] = [words]uint32{}
		d.threshold[i] = 0
	}
	d.updateLocked()
}

// SetIRQ is a device's line into source src (1..95). As in QEMU 7.2, every
// call with level high pends the source (devices re-signal on register
// accesses), and a low level withdraws a pending, unclaimed request.
func (d *Device) SetIRQ(src int, level bool) {
	if src <= 0 || src >= NumSources {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	w, b := src/32, uint32(1)<<(src%32)
	if level {
		d.level[w] |= b
		d.pending[w] |= b
	} else {
		d.level[w] &^= b
		d.pending[w] &^= b
	}
	d.updateLocked()
}

// Line returns a function that drives source src.
func (d *Device) Line(src int) func(level bool) {
	return func(level bool) { d.SetIRQ(src, level) }
}

// best returns the highest-priority source that is pending, enabled for ctx,
// not claimed and above the context's threshold (ties: lowest ID), or 0.
func (d *Device) bestLocked(ctx int) int {
	best, bestPrio := 0, d.threshold[ctx]
	for w := 0; w < words; w++ {
		cand := d.pending[w] & d.enable[ctx][w] &^ d.claimed[w]
		for cand != 0 {
			bit := 0
			for cand&(1<<bit) == 0 {
				bit++
			}
			cand &^= 1 << bit
			src := w*32 + bit
			if src == 0 {
				continue
			}
			if p := d.priority[src]; p > bestPrio {
				best, bestPrio = src, p
			}
		}
	}
	return best
}

func (d *Device) updateLocked() {
	for h, hart := range d.harts {
		hart.SetInterrupt(irqMEIP, d.bestLocked(2*h) != 0)
		hart.SetInterrupt(irqSEIP, d.bestLocked(2*h+1) != 0)
	}
}

// Load reads a register; only aligned 4-byte accesses are decoded.
func (d *Device) Load(off uint64, size int) (uint64, bool) {
	if size != 4 || off%4 != 0 || off >= Size {
		return 0, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case off < pendingBase:
		if src := off / 4; src < NumSources {
			return uint64(d.priority[src]), true
		}
	case off < enableBase:
		if w := (off - pendingBase) / 4; w < words {
			return uint64(d.pending[w]), true
		}
	case off < contextBase:
		ctx, w := (off-enableBase)/enableStride, (off-enableBase)%enableStride/4
		if ctx < uint64(len(d.enable)) && w < words {
			return uint64(d.enable[ctx][w]), true
		}
	default:
		ctx, reg := (off-contextBase)/contextSize, (off-contextBase)%contextSize
		if ctx >= uint64(len(d.threshold)) {
			break
		}
		switch reg {
		case 0:
			return uint64(d.threshold[ctx]), true
		case 4:
			return uint64(d.claimLocked(int(ctx))), true
		}
	}
	return 0, true
}

func (d *Device) claimLocked(ctx int) int {
	src := d.bestLocked(ctx)
	if src != 0 {
		w, b := src/32, uint32(1)<<(src%32)
		d.pending[w] &^= b
		d.claimed[w] |= b
		d.updateLocked()
	}
	return src
}

// Store writes a register; only aligned 4-byte accesses are decoded.
func (d *Device) Store(off uint64, size int, val uint64) bool {
	if size != 4 || off%4 != 0 || off >= Size {
		return false
	}
	v := uint32(val)
	d.mu.Lock()
	defer d.mu.Unlock()
	switch {
	case off < pendingBase:
		if src := off / 4; src < NumSources {
			d.priority[src] = v & prioMask
		}
	case off < enableBase:
		// Pending bits are read-only.
		return true
	case off < contextBase:
		ctx, w := (off-enableBase)/enableStride, (off-enableBase)%enableStride/4
		if ctx < uint64(len(d.enable)) && w < words {
			d.enable[ctx][w] = v
		}
		// QEMU 7.2 does not re-evaluate the hart lines on an enable
		// write: a source already pending is delivered at the next
		// update (device signal, claim, complete, priority or
		// threshold write).
		return true
	default:
		ctx, reg := (off-contextBase)/contextSize, (off-contextBase)%contextSize
		if ctx >= uint64(len(d.threshold)) {
			return true
		}
		switch reg {
		case 0:
			d.threshold[ctx] = v & prioMask
		case 4:
			// Completion of a source enabled for this context ends its
			// claim; a line still high pends again only when its device
			// signals again (QEMU 7.2).
			if src := int(v); src > 0 && src < NumSources && d.enable[ctx][src/32]&(1<<(src%32)) != 0 {
				d.claimed[src/32] &^= 1 << (src % 32)
			}
		}
	}
	d.updateLocked()
	return true
}
