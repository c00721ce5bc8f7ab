// Package virtio is the virtio-mmio transport of the virt board (eight
// slots at 0x10001000 + i*0x1000, PLIC sources 1..8) in QEMU 7.2's default
// legacy (version 1) mode, the split virtqueue, and the virtio-blk device.
//
// Each transport with a device runs one worker goroutine that takes request
// chains off the queues, lets the device do the I/O, completes them in the
// used ring and raises the interrupt. Quiesce waits for that worker to go
// idle, so a paused VM has no request in flight.
package virtio

import (
	"sync"
	"time"

	"github.com/snapvm/snapvm/memory"
)

// Size is the decoded part of a slot.
const Size = 0x200

// Register offsets (legacy layout).
const (
	regMagic            = 0x000
	regVersion          = 0x004
	regDeviceID         = 0x008
	regVendorID         = 0x00c
	regDeviceFeatures   = 0x010
	regDeviceFeatSel    = 0x014
	regDriverFeatures   = 0x020
	regDriverFeatSel    = 0x024
	regGuestPageSize    = 0x028
	regQueueSel         = 0x030
	regQueueNumMax      = 0x034
	regQueueNum         = 0x038
	regQueueAlign       = 0x03c
	regQueuePFN         = 0x040
	regQueueNotify      = 0x050
	regInterruptStatus  = 0x060
	regInterruptACK     = 0x064
	regStatus           = 0x070
	configBase          = 0x100
	magicValue          = 0x74726976
	legacyVersion       = 1
	vendorQEMU          = 0x554d4551
	maxQueueSize        = 1024
	defaultQueueSize    = 256
	defaultQueueAlign   = 4096
	isrUsedBuffer       = 1
	statusDriverOK      = 4
	featureNotifyEmpty  = 1 << 24
	featureIndirectDesc = 1 << 28
	featureEventIdx     = 1 << 29
)

// Device is what a virtio device type implements on top of the transport.
type Device interface {
	// DeviceID is the virtio device type (2 = block).
	DeviceID() uint32
	// Features is the 64-bit device feature set offered to the driver.
	Features() uint64
	// NumQueues is the number of virtqueues.
	NumQueues() int
	// ReadConfig reads device config space; ok=false past its end.
	ReadConfig(off uint64, size int) (val uint64, ok bool)
	// WriteConfig writes device config space.
	WriteConfig(off uint64, size int, val uint64)
	// Reset returns the device to its power-on state (driver reset or
	// machine reset); no request is in flight.
	Reset()
	// Negotiated is told the driver's feature set when the driver sets
	// DRIVER_OK (where QEMU's virtio-blk applies it).
	Negotiated(features uint64)
	// SaveState and LoadState carry the device's own guest-visible state
	// (e.g. the write-cache setting) in the transport's snapshot section.
	SaveState() []byte
	LoadState(b []byte) error
	// Process handles one request chain from queue q on the worker
	// goroutine and returns the number of bytes written into the chain's
	// device-writable buffers. An error marks the device broken (the
	// request was malformed), as QEMU's virtio_error does.
	Process(q int, c *Chain) (written uint32, err error)
}

// Deps are the host resources a transport uses.
type Deps struct {
	// Name is the snapshot section name, e.g. "virtio-mmio@0x10008000".
	Name string
	RAM  *memory.RAM
	// IRQ drives the slot's PLIC line.
	IRQ func(level bool)
	// DMAWritten is told about guest memory the device wrote, so harts can
	// drop decoded code for it. May be nil.
	DMAWritten func(addr, n uint64)
}

// Transport is one virtio-mmio slot. With a nil Device it is an empty slot.
type Transport struct {
	deps Deps
	dev  Device

	mu        sync.Mutex
	cond      *sync.Cond // worker wake-ups and idle notification
	regs                 // guarded by mu; saved
	queues    []queue    // guarded by mu; saved
	irqLevel  bool       // guarded by mu; saved
	pending   bool       // guarded by mu: a notify not yet seen by the worker
	busy      bool       // guarded by mu: the worker is processing requests
	closed    bool       // guarded by mu
	workerEnd chan struct{}
	// recheck looks at the rings again shortly after the worker went idle
	// with EVENT_IDX: a driver whose store of avail.idx was not yet
	// visible when the worker published avail_event may have skipped its
	// kick (the handshake needs a full barrier on both sides).
	recheck *time.Timer
	held    bool // guarded by mu: quiesced for a paused VM; no rechecks

}

type regs struct {
	hostFeaturesSel  uint32
	guestFeaturesSel uint32
	guestPageShift   uint32
	queueSel         uint32
	status           uint32
	isr              uint32
	guestFeatures    uint64
	broken           bool // a malformed request stopped processing until reset
}

// NewTransport creates a slot for dev (nil: empty slot) and starts its
// worker.
func NewTransport(dev Device, deps Deps) *Transport {
	if deps.IRQ == nil {
		deps.IRQ = func(bool) {}
	}
	t := &Transport{deps: deps, dev: dev}
	t.cond = sync.NewCond(&t.mu)
	if dev != nil {
		t.queues = make([]queue, dev.NumQueues())
		t.workerEnd = make(chan struct{})
		t.recheck = time.AfterFunc(time.Hour, t.recheckRings)
		t.recheck.Stop()
		go t.worker()
	}
	t.resetLocked()
	return t
}

// Device returns the attached device (nil for an empty slot).
func (t *Transport) Device() Device { return t.dev }

func (t *Transport) resetLocked() {
	t.regs = regs{}
	if t.dev != nil {
		t.dev.Reset()
	}
	for i := range t.queues {
		t.queues[i] = queue{num: defaultQueueSize, align: defaultQueueAlign}
	}
	t.setIRQLocked(false)
}

func (t *Transport) setIRQLocked(level bool) {
	t.irqLevel = level
	t.deps.IRQ(level)
}

// waitIdleLocked waits until the worker has nothing to do.
func (t *Transport) waitIdleLocked() {
	for (t.pending || t.busy) && !t.closed {
		t.cond.Wait()
	}
}

// Quiesce returns once every request the driver has made available so far
// has completed, kicked or not. The caller must make sure no new
// notifications arrive (the harts are paused) and call Release when the
// VM runs again.
func (t *Transport) Quiesce() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.held = true
	if t.availPendingLocked() {
		t.pending = true
		t.cond.Broadcast()
	}
	t.waitIdleLocked()
}

// Release ends Quiesce's hold.
func (t *Transport) Release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.held = false
}

// availPendingLocked reports whether a ready queue has available entries
// the device has not taken.
func (t *Transport) availPendingLocked() bool {
	if t.dev == nil || t.broken || t.status&statusDriverOK == 0 {
		return false
	}
	for i := range t.queues {
		q := &t.queues[i]
		if !q.ready() {
			continue
		}
		if idx, err := t.u16(q.availAddr() + 2); err == nil && idx != q.lastAvail {
			return true
		}
	}
	return false
}

func (t *Transport) recheckRings() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held || t.closed || t.pending || t.busy {
		return
	}
	if t.availPendingLocked() {
		t.pending = true
		t.cond.Broadcast()
		return
	}
	t.recheckInterruptsLocked()
}

// recheckInterruptsLocked raises an interrupt the driver asked for through
// used_event after the worker had already decided against it (the same
// missing-barrier window as for kicks, on the interrupt side).
func (t *Transport) recheckInterruptsLocked() {
	if t.guestFeatures&featureEventIdx == 0 || t.broken || t.status&statusDriverOK == 0 {
		return
	}
	for i := range t.queues {
		q := &t.queues[i]
		if !q.ready() || q.irqUsed == q.usedIdx {
			continue
		}
		event, err := t.u16(q.availAddr() + 4 + 2*uint64(q.num))
		if err != nil || q.usedIdx-event-1 >= q.usedIdx-q.irqUsed {
			continue
		}
		q.irqUsed = q.usedIdx
		t.isr |= isrUsedBuffer
		t.setIRQLocked(true)
	}
}

// Reset is a device reset (machine reset): in-flight requests complete
// first, as QEMU drains before resetting.
func (t *Transport) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.waitIdleLocked()
	t.resetLocked()
}

// Close stops the worker.
func (t *Transport) Close() {
	t.mu.Lock()
	t.closed = true
	t.cond.Broadcast()
	t.mu.Unlock()
	if t.recheck != nil {
		t.recheck.Stop()
	}
	if t.workerEnd != nil {
		<-t.workerEnd
	}
}

// Load reads a register. Registers take 4-byte accesses (8-byte ones are
// split in two, narrower ones read 0); config space takes 1, 2 and 4.
func (t *Transport) Load(off uint64, size int) (uint64, bool) {
	if off+uint64(size) > Size || off%uint64(size) != 0 {
		return 0, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if size == 8 {
		return t.load4Locked(off) | t.load4Locked(off+4)<<32, true
	}
	if off >= configBase {
		if t.dev == nil {
			return 0, true
		}
		v, ok := t.dev.ReadConfig(off-configBase, size)
		if !ok {
			return 1<<(8*size) - 1, true
		}
		return v, true
	}
	if size != 4 {
		if t.dev == nil {
			// An empty slot answers magic, version and vendor at any
			// width (QEMU checks the width only with a device present).
			return t.load4Locked(off) & (1<<(8*size) - 1), true
		}
		return 0, true
	}
	return t.load4Locked(off), true
}

func (t *Transport) load4Locked(off uint64) uint64 {
	if off >= configBase {
		if t.dev == nil {
			return 0
		}
		v, ok := t.dev.ReadConfig(off-configBase, 4)
		if !ok {
			return 0xffffffff
		}
		return v
	}
	switch off {
	case regMagic:
		return magicValue
	case regVersion:
		return legacyVersion
	case regVendorID:
		return vendorQEMU
	}
	if t.dev == nil {
		return 0
	}
	switch off {
	case regDeviceID:
		return uint64(t.dev.DeviceID())
	case regDeviceFeatures:
		if t.hostFeaturesSel == 0 {
			return t.dev.Features() & 0xffffffff
		}
		return 0
	case regQueueNumMax:
		if t.queueSel < uint32(len(t.queues)) {
			return maxQueueSize
		}
		return 0
	case regQueuePFN:
		if t.queueSel < uint32(len(t.queues)) {
			return t.queues[t.queueSel].desc >> t.guestPageShift
		}
		return 0
	case regInterruptStatus:
		return uint64(t.isr)
	case regStatus:
		return uint64(t.status)
	}
	return 0
}

// Store writes a register.
func (t *Transport) Store(off uint64, size int, val uint64) bool {
	if off+uint64(size) > Size || off%uint64(size) != 0 {
		return false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.dev == nil {
		return true
	}
	if size == 8 {
		t.store4Locked(off, val&0xffffffff)
		t.store4Locked(off+4, val>>32)
		return true
	}
	if off >= configBase {
		t.dev.WriteConfig(off-configBase, size, val)
		return true
	}
	if size == 4 {
		t.store4Locked(off, val&0xffffffff)
	}
	return true
}

func (t *Transport) store4Locked(off uint64, v uint64) {
	if off >= configBase {
		t.dev.WriteConfig(off-configBase, 4, v)
		return
	}
	q := (*queue)(nil)
	if t.queueSel < uint32(len(t.queues)) {
		q = &t.queues[t.queueSel]
	}
	switch off {
	case regDeviceFeatSel:
		t.hostFeaturesSel = uint32(v)
	case regDriverFeatures:
		if t.guestFeaturesSel == 0 {
			t.guestFeatures = v & t.dev.Features()
		}
	case regDriverFeatSel:
		t.guestFeaturesSel = uint32(v)
	case regGuestPageSize:
		shift := uint32(0)
		for shift < 31 && v != 0 && v&(1<<shift) == 0 {
			shift++
		}
		if v == 0 {
			shift = 0
		}
		t.guestPageShift = shift
	case regQueueSel:
		t.queueSel = uint32(v)
	case regQueueNum:
		// As QEMU: a queue cannot be sized 0, and at most 1024.
		if q != nil && v != 0 && v <= maxQueueSize {
			q.num = uint32(v)
		}
	case regQueueAlign:
		if q != nil {
			q.align = uint32(v)
		}
	case regQueuePFN:
		if v == 0 {
			// Writing 0 resets the whole device in QEMU's legacy mode.
			t.deviceResetLocked()
			return
		}
		if q != nil {
			q.desc = v << t.guestPageShift
			q.lastAvail, q.usedIdx, q.signalledValid = 0, 0, false
		}
	case regQueueNotify:
		if v < uint64(len(t.queues)) {
			t.pending = true
			t.cond.Broadcast()
		}
	case regInterruptACK:
		t.isr &^= uint32(v)
		t.setIRQLocked(t.isr != 0)
	case regStatus:
		if v == 0 {
			t.deviceResetLocked()
			return
		}
		t.status = uint32(v) & 0xff
		if t.status&statusDriverOK != 0 {
			t.dev.Negotiated(t.guestFeatures)
			// Requests made available before DRIVER_OK are looked at now.
			t.pending = true
			t.cond.Broadcast()
		}
	}
}

// deviceResetLocked is a driver-initiated reset: let in-flight requests
// finish, then clear the transport.
func (t *Transport) deviceResetLocked() {
	t.waitIdleLocked()
	t.resetLocked()
}
