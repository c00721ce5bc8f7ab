// Package rtc is the goldfish real-time clock of the virt board (0x101000,
// PLIC source 11): nanoseconds since the Unix epoch, an alarm and its
// interrupt. The count follows the VM's virtual clock from a base time, so
// it stands still while the VM is paused and restores continuously.
package rtc

import (
	"sync"

	"github.com/snapvm/snapvm/vclock"
)

// Size is the decoded region (the device tree advertises 0x1000).
const Size = 0x24

// Register offsets.
const (
	regTimeLow     = 0x00
	regTimeHigh    = 0x04
	regAlarmLow    = 0x08
	regAlarmHigh   = 0x0c
	regIRQEnabled  = 0x10
	regClearAlarm  = 0x14
	regAlarmStatus = 0x18
	regClearIRQ    = 0x1c
)

// Device is one goldfish RTC.
type Device struct {
	clock *vclock.Clock
	irq   func(level bool)

	mu           sync.Mutex
	offset       int64  // guarded by mu; saved: RTC ns = clock ns + offset
	alarmNext    uint64 // guarded by mu; saved
	alarmRunning bool   // guarded by mu; saved
	irqPending   bool   // guarded by mu; saved
	irqEnabled   bool   // guarded by mu; saved
	timeHigh     uint32 // guarded by mu; saved: latched by a TIME_LOW read
}

// New creates an RTC reading baseUnixNs (host wall time, or a fixed base for
// reproducible runs) at the clock's current value.
func New(clock *vclock.Clock, baseUnixNs int64, irq func(level bool)) *Device {
	if irq == nil {
		irq = func(bool) {}
	}
	return &Device{clock: clock, irq: irq, offset: baseUnixNs - clock.Nanoseconds()}
}

// Reset clears the alarm and interrupt registers; the time keeps running.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.alarmNext, d.alarmRunning, d.irqPending, d.irqEnabled, d.timeHigh = 0, false, false, false, 0
	d.updateLocked()
}

func (d *Device) nowLocked() uint64 { return uint64(d.clock.Nanoseconds() + d.offset) }

func (d *Device) updateLocked() { d.irq(d.irqPending && d.irqEnabled) }

// Poll fires a due alarm and returns the clock time (ns) of the armed alarm,
// or -1 if none is armed.
func (d *Device) Poll() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.alarmRunning {
		return -1
	}
	if d.nowLocked() >= d.alarmNext {
		d.alarmRunning = false
		d.irqPending = true
		d.updateLocked()
		return -1
	}
	return int64(d.alarmNext) - d.offset
}

func (d *Device) setAlarmLocked() {
	if d.alarmNext <= d.nowLocked() {
		d.alarmRunning = false
		d.irqPending = true
	} else {
		d.alarmRunning = true
	}
	d.updateLocked()
}

// Load reads a 32-bit register (an 8-byte load at 0 returns the whole time,
// as QEMU 7.2 happens to do).
func (d *Device) Load(off uint64, size int) (uint64, bool) {
	if off+uint64(size) > Size || off%uint64(size) != 0 {
		return 0, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if size == 8 && off == regTimeLow {
		now := d.nowLocked()
		d.timeHigh = uint32(now >> 32)
		return now, true
	}
	if size != 4 {
		return 0, false
	}
	switch off {
	case regTimeLow:
		now := d.nowLocked()
		d.timeHigh = uint32(now >> 32)
		return now & 0xffffffff, true
	case regTimeHigh:
		return uint64(d.timeHigh), true
	case regAlarmLow:
		return d.alarmNext & 0xffffffff, true
	case regAlarmHigh:
		return d.alarmNext >> 32, true
	case regIRQEnabled:
		return b2u(d.irqEnabled), true
	case regAlarmStatus:
		return b2u(d.alarmRunning), true
	}
	return 0, true
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// Store writes a 32-bit register.
func (d *Device) Store(off uint64, size int, val uint64) bool {
	if size != 4 || off+4 > Size || off%4 != 0 {
		return false
	}
	v := val & 0xffffffff
	d.mu.Lock()
	defer d.mu.Unlock()
	switch off {
	case regTimeLow:
		now := d.nowLocked()
		d.offset += int64(now&^0xffffffff|v) - int64(now)
	case regTimeHigh:
		now := d.nowLocked()
		d.offset += int64(now&0xffffffff|v<<32) - int64(now)
	case regAlarmLow:
		d.alarmNext = d.alarmNext&^0xffffffff | v
		d.setAlarmLocked()
	case regAlarmHigh:
		d.alarmNext = d.alarmNext&0xffffffff | v<<32
	case regIRQEnabled:
		d.irqEnabled = v&1 != 0
		d.updateLocked()
	case regClearAlarm:
		d.alarmRunning = false
	case regClearIRQ:
		d.irqPending = false
		d.updateLocked()
	}
	return true
}
