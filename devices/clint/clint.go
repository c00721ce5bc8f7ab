// Package clint is the SiFive-compatible core-local interruptor of the virt
// board (ACLINT MSWI + MTIMER at 0x2000000): per-hart msip and mtimecmp
// registers and the 10 MHz mtime counter, which follows the VM's virtual
// clock so it stands still while the VM is paused.
package clint

import (
	"sync"

	"github.com/snapvm/snapvm/vclock"
)

// Layout of the decoded region (the device tree advertises 0x10000, but
// QEMU decodes only 0xc000 of it).
const (
	Size         = 0xc000
	msipBase     = 0x0000
	mtimecmpBase = 0x4000
	mtimeOff     = 0xbff8
	// TimebaseHz is mtime's frequency (the DT's timebase-frequency).
	TimebaseHz = 10_000_000
	nsPerTick  = 1_000_000_000 / TimebaseHz
)

// Interrupt bits in mip driven by the CLINT.
const (
	irqMSIP = 3
	irqMTIP = 7
)

// Hart is the interrupt input of one hart.
type Hart interface {
	SetInterrupt(bit uint, level bool)
}

// Device is the CLINT for a fixed set of harts.
type Device struct {
	clock *vclock.Clock
	harts []Hart

	mu         sync.Mutex
	msip       []bool   // guarded by mu; saved
	mtimecmp   []uint64 // guarded by mu; saved
	timeOffset uint64   // guarded by mu; saved: mtime = clock ticks + timeOffset
	mtip       []bool   // guarded by mu; derived: last MTIP level sent
}

// New creates a CLINT for harts, reading time from clock.
func New(clock *vclock.Clock, harts []Hart) *Device {
	d := &Device{clock: clock, harts: harts}
	d.msip = make([]bool, len(harts))
	d.mtimecmp = make([]uint64, len(harts))
	d.mtip = make([]bool, len(harts))
	d.Reset()
	return d
}

// Reset restores power-on values: msip 0, mtimecmp 0 (so MTIP is set at
// once, as on QEMU) and mtime continuing from the clock.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.harts {
		d.msip[i] = false
		d.mtimecmp[i] = 0
	}
	d.timeOffset = 0
	d.updateLocked(true)
}

func (d *Device) ticks() uint64 { return uint64(d.clock.Nanoseconds()) / nsPerTick }

// MTime is the current mtime (also what the time CSR reads).
func (d *Device) MTime() uint64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ticks() + d.timeOffset
}

// updateLocked recomputes MSIP and MTIP for every hart. force sends the
// levels even where they did not change.
func (d *Device) updateLocked(force bool) {
	now := d.ticks() + d.timeOffset
	for i, h := range d.harts {
		h.SetInterrupt(irqMSIP, d.msip[i])
		level := now >= d.mtimecmp[i]
		if force || level != d.mtip[i] {
			d.mtip[i] = level
			h.SetInterrupt(irqMTIP, level)
		}
	}
}

// Poll updates the MTIP lines from the current time and returns the virtual
// time (in clock nanoseconds) at which the next timer fires, or -1 if none
// is armed in the future. The run loop calls it between instruction slices
// and sleeps in WFI no longer than the deadline.
func (d *Device) Poll() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	ns := d.clock.Nanoseconds()
	now := uint64(ns)/nsPerTick + d.timeOffset
	next := int64(-1)
	for i, h := range d.harts {
		level := now >= d.mtimecmp[i]
		if level != d.mtip[i] {
			d.mtip[i] = level
			h.SetInterrupt(irqMTIP, level)
		}
		if level {
			continue
		}
		// Ticks until the compare value, converted back to clock time;
		// rounded up so the wake-up is never early.
		delta := d.mtimecmp[i] - now
		if delta > uint64(1<<62)/nsPerTick {
			continue // effectively never (e.g. mtimecmp = ~0)
		}
		due := ns + int64(delta)*nsPerTick
		if next < 0 || due < next {
			next = due
		}
	}
	return next
}

// Load reads msip (4 bytes), mtimecmp and mtime (4 or 8 bytes).
func (d *Device) Load(off uint64, size int) (uint64, bool) {
	if off+uint64(size) > Size || off%uint64(size) != 0 {
		return 0, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < mtimecmpBase {
		if size != 4 {
			return 0, false
		}
		h := off / 4
		if h < uint64(len(d.harts)) && d.msip[h] {
			return 1, true
		}
		return 0, true
	}
	if size != 4 && size != 8 {
		return 0, false
	}
	var reg uint64
	base := off &^ 7
	switch {
	case base == mtimeOff:
		reg = d.ticks() + d.timeOffset
	case (base-mtimecmpBase)/8 < uint64(len(d.harts)):
		reg = d.mtimecmp[(base-mtimecmpBase)/8]
	default:
		return 0, true
	}
	if size == 4 && off&4 != 0 {
		return reg >> 32, true
	}
	if size == 4 {
		return reg & 0xffffffff, true
	}
	return reg, true
}

// Store writes msip, mtimecmp or mtime and re-evaluates the interrupt lines.
func (d *Device) Store(off uint64, size int, val uint64) bool {
	if off+uint64(size) > Size || off%uint64(size) != 0 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < mtimecmpBase {
		if size != 4 {
			return false
		}
		if h := off / 4; h < uint64(len(d.harts)) {
			d.msip[h] = val&1 != 0
			d.harts[h].SetInterrupt(irqMSIP, d.msip[h])
		}
		return true
	}
	if size != 4 && size != 8 {
		return false
	}
	merge := func(old uint64) uint64 {
		switch {
		case size == 8:
			return val
		case off&4 != 0:
			return old&0xffffffff | (val&0xffffffff)<<32
		default:
			return old&^0xffffffff | val&0xffffffff
		}
	}
	base := off &^ 7
	switch {
	case base == mtimeOff:
		now := d.ticks()
		d.timeOffset = merge(now+d.timeOffset) - now
	case (base-mtimecmpBase)/8 < uint64(len(d.harts)):
		h := (base - mtimecmpBase) / 8
		d.mtimecmp[h] = merge(d.mtimecmp[h])
	default:
		return true
	}
	d.updateLocked(false)
	return true
}
