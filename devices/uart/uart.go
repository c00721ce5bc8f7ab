// Package uart is the ns16550a serial port of the virt board (0x10000000,
// PLIC source 10), modelled on QEMU 7.2's 16550A: 16-byte receive FIFO,
// instantaneous transmission, THR-empty and receive interrupts. Output goes
// to an io.Writer; input comes from an io.Reader read by a goroutine.
package uart

import (
	"io"
	"sync"

	"github.com/snapvm/snapvm/vclock"
)

// Size is the decoded region (reg-shift 0: eight byte-wide registers).
const Size = 8

// FIFOSize is the depth of the receive FIFO.
const FIFOSize = 16

// Register offsets.
const (
	regRBR = 0 // RBR / THR / DLL
	regIER = 1 // IER / DLM
	regIIR = 2 // IIR / FCR
	regLCR = 3
	regMCR = 4
	regLSR = 5
	regMSR = 6
	regSCR = 7
)

// Register bits.
const (
	ierRDI  = 0x01
	ierTHRI = 0x02
	ierRLSI = 0x04
	ierMSI  = 0x08

	iirNone = 0x01
	iirTHRI = 0x02
	iirRDI  = 0x04
	iirRLSI = 0x06
	iirCTI  = 0x0c
	iirFIFO = 0xc0

	fcrFE  = 0x01
	fcrRFR = 0x02
	fcrXFR = 0x04

	lcrDLAB = 0x80

	mcrLoop = 0x10

	lsrDR   = 0x01
	lsrOE   = 0x02
	lsrPE   = 0x04
	lsrFE   = 0x08
	lsrBI   = 0x10
	lsrTHRE = 0x20
	lsrTEMT = 0x40
	lsrErr  = lsrOE | lsrPE | lsrFE | lsrBI

	msrDeltas = 0x0f
)

// Device is one 16550A.
type Device struct {
	out io.Writer
	irq func(level bool)
	// clock times the receive FIFO's character timeout; without one the
	// timeout is reported at once. wake tells the run loop a new deadline
	// exists.
	clock *vclock.Clock
	wake  func()

	mu        sync.Mutex
	cond      *sync.Cond // signalled when the guest frees FIFO space or on close
	regs                 // guarded by mu; saved
	rx        []byte     // guarded by mu; saved: receive FIFO (or the single RBR byte)
	inq       []byte     // guarded by mu; host input not yet accepted by the device
	holdInput bool       // guarded by mu: the VM is paused, leave input in inq
	closed    bool       // guarded by mu
	lastIRQ   bool       // guarded by mu; saved: line level last signalled
}

type regs struct {
	divider        uint16
	ier, iir       uint8
	lcr, mcr       uint8
	lsr, msr       uint8
	scr, fcr       uint8
	thrPending     bool  // QEMU's thr_ipending
	timeoutPending bool  // QEMU's timeout_ipending: character timeout (CTI)
	timeoutAt      int64 // virtual-clock time the FIFO timeout fires; 0 = not armed
}

// New creates a UART writing to out (nil discards) and signalling irq.
func New(out io.Writer, irq func(level bool)) *Device {
	if out == nil {
		out = io.Discard
	}
	if irq == nil {
		irq = func(bool) {}
	}
	d := &Device{out: out, irq: irq}
	d.cond = sync.NewCond(&d.mu)
	d.Reset()
	return d
}

// baudBase is the virt board's UART input clock divided by 16 (QEMU passes
// 399193 to serial_mm_init).
const baudBase = 399193

// SetClock makes the FIFO character timeout follow clock: four character
// times after the last received byte (or RBR read) with bytes below the
// trigger level, as QEMU does. wake is called when a timeout is armed so
// the run loop can include it in its next sleep.
func (d *Device) SetClock(clock *vclock.Clock, wake func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.clock, d.wake = clock, wake
}

// charTime is the time one character takes on the line, in ns, from the
// divisor and LCR (QEMU's serial_update_parameters; 9600 8N1 before the
// guest programs a valid divisor).
func (d *Device) charTime() int64 {
	if d.divider == 0 || uint32(d.divider) > baudBase {
		return 1_000_000_000 / 9600 * 10
	}
	frame := int64(1 + 5 + d.lcr&3) // start + data bits
	if d.lcr&0x08 != 0 {
		frame++ // parity
	}
	if d.lcr&0x04 != 0 {
		frame += 2
	} else {
		frame++
	}
	return 1_000_000_000 / int64(baudBase/uint32(d.divider)) * frame
}

// armTimeoutLocked (re)starts the FIFO timeout.
func (d *Device) armTimeoutLocked() {
	if d.clock == nil {
		d.timeoutPending = true // no clock: report at once
		return
	}
	d.timeoutAt = d.clock.Nanoseconds() + 4*d.charTime()
	if d.wake != nil {
		d.wake()
	}
}

// Poll fires a due FIFO timeout and returns the clock time of the armed
// one, or -1.
func (d *Device) Poll() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timeoutAt == 0 || d.clock == nil {
		return -1
	}
	if d.clock.Nanoseconds() < d.timeoutAt {
		return d.timeoutAt
	}
	d.timeoutAt = 0
	if len(d.rx) > 0 && d.fifoMode() {
		d.timeoutPending = true
		d.updateLocked()
	}
	return -1
}

// Reset restores the power-on register values and empties the FIFO.
func (d *Device) Reset() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.regs = regs{divider: 0x0c, iir: iirNone, mcr: 0x08, lsr: lsrTHRE | lsrTEMT, msr: 0xb0}
	d.rx = d.rx[:0]
	d.updateLocked()
	d.cond.Broadcast()
}

// trigger is the receive FIFO interrupt level from FCR bits 7:6.
func (d *Device) trigger() int {
	return [4]int{1, 4, 8, 14}[d.fcr>>6]
}

func (d *Device) fifoMode() bool { return d.fcr&fcrFE != 0 }

// updateLocked recomputes IIR and signals the interrupt line, in QEMU's
// priority order.
func (d *Device) updateLocked() {
	id := uint8(iirNone)
	switch {
	case d.ier&ierRLSI != 0 && d.lsr&lsrErr != 0:
		id = iirRLSI
	case d.ier&ierRDI != 0 && d.timeoutPending:
		id = iirCTI
	case d.ier&ierRDI != 0 && d.lsr&lsrDR != 0 && (!d.fifoMode() || len(d.rx) >= d.trigger()):
		id = iirRDI
	case d.ier&ierTHRI != 0 && d.thrPending:
		id = iirTHRI
	case d.ier&ierMSI != 0 && d.msr&msrDeltas != 0:
		id = 0
	}
	d.iir = id
	if d.fifoMode() {
		d.iir |= iirFIFO
	}
	d.lastIRQ = id != iirNone
	d.irq(d.lastIRQ)
}

// receiveLocked takes one byte into the receiver.
func (d *Device) receiveLocked(b byte) {
	if d.fifoMode() {
		if len(d.rx) >= FIFOSize {
			d.lsr |= lsrOE
		} else {
			d.rx = append(d.rx, b)
		}
	} else {
		if d.lsr&lsrDR != 0 {
			d.lsr |= lsrOE
		}
		d.rx = append(d.rx[:0], b)
	}
	d.lsr |= lsrDR
}

// roomLocked reports whether the receiver can take a byte without overrun.
func (d *Device) roomLocked() bool {
	if d.mcr&mcrLoop != 0 {
		return false
	}
	if d.fifoMode() {
		return len(d.rx) < FIFOSize
	}
	return d.lsr&lsrDR == 0
}

// acceptLocked moves queued host input into the receiver as far as it has
// room, like a character backend that asks can_receive first.
func (d *Device) acceptLocked() {
	if d.holdInput || len(d.inq) == 0 {
		return
	}
	moved := false
	for len(d.inq) > 0 && d.roomLocked() {
		d.receiveLocked(d.inq[0])
		d.inq = d.inq[1:]
		moved = true
	}
	if moved {
		if d.fifoMode() {
			d.armTimeoutLocked()
		}
		d.updateLocked()
	}
	if len(d.inq) == 0 {
		d.cond.Broadcast()
	}
}

// HoldInput stops (true) or restarts (false) delivery of host input into the
// device; the machine holds it while the VM is paused so device state cannot
// change under a snapshot.
func (d *Device) HoldInput(hold bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.holdInput = hold
	d.acceptLocked()
}

// Input queues bytes typed by the host side, blocking until the guest has
// taken them (or the device is closed).
func (d *Device) Input(p []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inq = append(d.inq, p...)
	d.acceptLocked()
	for len(d.inq) > 0 && !d.closed {
		d.cond.Wait()
	}
}

// AttachInput starts a goroutine that feeds everything read from r to the guest.
func (d *Device) AttachInput(r io.Reader) {
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := r.Read(buf)
			if n > 0 {
				d.Input(buf[:n])
			}
			if err != nil {
				return
			}
			d.mu.Lock()
			closed := d.closed
			d.mu.Unlock()
			if closed {
				return
			}
		}
	}()
}

// Close releases a blocked input goroutine.
func (d *Device) Close() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = true
	d.cond.Broadcast()
}

// Load reads the register at off. Wider aligned accesses act on the single
// byte register at off, as QEMU's memory core does for this device.
func (d *Device) Load(off uint64, size int) (uint64, bool) {
	if off >= Size || off%uint64(size) != 0 {
		return 0, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	return uint64(d.readLocked(off)), true
}

func (d *Device) readLocked(off uint64) uint8 {
	switch off {
	case regRBR:
		if d.lcr&lcrDLAB != 0 {
			return uint8(d.divider)
		}
		var b uint8
		if len(d.rx) > 0 {
			b = d.rx[0]
			d.rx = d.rx[1:]
		}
		if len(d.rx) == 0 {
			d.lsr &^= lsrDR | lsrBI
		} else if d.fifoMode() {
			d.armTimeoutLocked()
		}
		if d.fifoMode() {
			d.timeoutPending = false
		}
		d.updateLocked()
		d.acceptLocked()
		return b
	case regIER:
		if d.lcr&lcrDLAB != 0 {
			return uint8(d.divider >> 8)
		}
		return d.ier
	case regIIR:
		v := d.iir
		if v&0x0f == iirTHRI {
			d.thrPending = false
			d.updateLocked()
		}
		return v
	case regLCR:
		return d.lcr
	case regMCR:
		return d.mcr
	case regLSR:
		v := d.lsr
		if d.lsr&(lsrOE|lsrBI) != 0 {
			d.lsr &^= lsrOE | lsrBI
			d.updateLocked()
		}
		return v
	case regMSR:
		if d.mcr&mcrLoop != 0 {
			// Loopback: modem inputs follow the MCR outputs.
			m := d.mcr
			return (m&0x02)<<3 | (m&0x01)<<5 | (m&0x04)<<4 | (m&0x08)<<4
		}
		v := d.msr
		if d.msr&msrDeltas != 0 {
			d.msr &^= msrDeltas
			d.updateLocked()
		}
		return v
	default:
		return d.scr
	}
}

// Store writes the register at off (the low byte of val).
func (d *Device) Store(off uint64, size int, val uint64) bool {
	if off >= Size || off%uint64(size) != 0 {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.writeLocked(off, uint8(val))
	return true
}

func (d *Device) writeLocked(off uint64, v uint8) {
	switch off {
	case regRBR:
		if d.lcr&lcrDLAB != 0 {
			d.divider = d.divider&0xff00 | uint16(v)
			return
		}
		// Transmission is instantaneous: THRE drops and rises again.
		d.thrPending = false
		d.lsr &^= lsrTHRE | lsrTEMT
		d.updateLocked()
		if d.mcr&mcrLoop != 0 {
			d.receiveLocked(v)
			if d.fifoMode() {
				d.armTimeoutLocked()
			}
		} else {
			d.out.Write([]byte{v}) //nolint:errcheck // a failing console must not stop the guest
		}
		d.lsr |= lsrTHRE | lsrTEMT
		d.thrPending = true
		d.updateLocked()
	case regIER:
		if d.lcr&lcrDLAB != 0 {
			d.divider = d.divider&0x00ff | uint16(v)<<8
			return
		}
		changed := (d.ier ^ v) & 0x0f
		d.ier = v & 0x0f
		if changed&ierTHRI != 0 {
			// THRI enabled while THR is empty raises the interrupt at
			// once (Linux's 8250 driver tests for this).
			d.thrPending = d.ier&ierTHRI != 0 && d.lsr&lsrTHRE != 0
		}
		if changed != 0 {
			d.updateLocked()
		}
	case regIIR: // FCR
		if (v^d.fcr)&fcrFE != 0 {
			v |= fcrRFR | fcrXFR
		}
		if v&fcrRFR != 0 {
			d.rx = d.rx[:0]
			d.lsr &^= lsrDR | lsrBI
			d.timeoutAt, d.timeoutPending = 0, false
		}
		if v&fcrXFR != 0 {
			d.lsr |= lsrTHRE
			d.thrPending = true
		}
		d.fcr = v & 0xc9
		d.updateLocked()
		d.acceptLocked()
	case regLCR:
		d.lcr = v
	case regMCR:
		d.mcr = v & 0x1f
		d.acceptLocked()
	case regLSR, regMSR:
		// Read-only.
	default:
		d.scr = v
	}
}
