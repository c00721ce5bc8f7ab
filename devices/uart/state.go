package uart

import (
	"fmt"

	"github.com/snapvm/snapvm/vmstate"
)

// State is the UART's saved state: every register, the THR-empty flag,
// the receive FIFO contents and the interrupt line level. Host input not
// yet accepted by the device stays with the host.
type State struct {
	Divider            uint16
	IER, IIR, LCR, MCR uint8
	LSR, MSR, SCR, FCR uint8
	THRPending         bool
	RX                 []byte
	IRQ                bool
	TimeoutPending     bool  // character timeout reported (CTI)
	TimeoutAt          int64 // virtual-clock ns of the armed FIFO timeout, 0 = none
}

// Save captures the state.
func (d *Device) Save() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return State{
		Divider: d.divider, IER: d.ier, IIR: d.iir, LCR: d.lcr, MCR: d.mcr,
		LSR: d.lsr, MSR: d.msr, SCR: d.scr, FCR: d.fcr,
		THRPending: d.thrPending, RX: append([]byte(nil), d.rx...), IRQ: d.lastIRQ,
		TimeoutPending: d.timeoutPending, TimeoutAt: d.timeoutAt,
	}
}

// Restore replaces the state with st after validating it.
func (d *Device) Restore(st State) error {
	if len(st.RX) > FIFOSize {
		return fmt.Errorf("uart: %d bytes in a %d-byte FIFO", len(st.RX), FIFOSize)
	}
	if st.FCR&fcrFE == 0 && len(st.RX) > 1 {
		return fmt.Errorf("uart: %d received bytes with the FIFO off", len(st.RX))
	}
	if (len(st.RX) > 0) != (st.LSR&lsrDR != 0) {
		return fmt.Errorf("uart: LSR.DR %#x disagrees with %d received bytes", st.LSR, len(st.RX))
	}
	if st.TimeoutAt < 0 {
		return fmt.Errorf("uart: negative timeout deadline %d", st.TimeoutAt)
	}
	if st.IER > 0x0f || st.MCR > 0x1f || st.FCR&^0xc9 != 0 {
		return fmt.Errorf("uart: register value out of range (IER %#x MCR %#x FCR %#x)", st.IER, st.MCR, st.FCR)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.regs = regs{
		divider: st.Divider, ier: st.IER, iir: st.IIR, lcr: st.LCR, mcr: st.MCR,
		lsr: st.LSR, msr: st.MSR, scr: st.SCR, fcr: st.FCR, thrPending: st.THRPending,
		timeoutPending: st.TimeoutPending, timeoutAt: st.TimeoutAt,
	}
	d.rx = append(d.rx[:0], st.RX...)
	d.updateLocked()
	return nil
}

// SectionName implements vmstate.Section.
func (d *Device) SectionName() string { return "uart0" }

// SectionVersion implements vmstate.Section.
// Version 2 added the FIFO character timeout.
func (d *Device) SectionVersion() uint32 { return 2 }

// SaveSection implements vmstate.Section.
func (d *Device) SaveSection(e *vmstate.Encoder) {
	st := d.Save()
	e.U16(st.Divider)
	for _, r := range []uint8{st.IER, st.IIR, st.LCR, st.MCR, st.LSR, st.MSR, st.SCR, st.FCR} {
		e.U8(r)
	}
	e.Bool(st.THRPending)
	e.Blob(st.RX)
	e.Bool(st.IRQ)
	e.Bool(st.TimeoutPending)
	e.I64(st.TimeoutAt)
}

// LoadSection implements vmstate.Section.
func (d *Device) LoadSection(dec *vmstate.Decoder, version uint32) error {
	if version != 1 && version != 2 {
		return fmt.Errorf("uart: unsupported state version %d", version)
	}
	var st State
	st.Divider = dec.U16()
	for _, r := range []*uint8{&st.IER, &st.IIR, &st.LCR, &st.MCR, &st.LSR, &st.MSR, &st.SCR, &st.FCR} {
		*r = dec.U8()
	}
	st.THRPending = dec.Bool()
	st.RX = append([]byte(nil), dec.Blob(FIFOSize)...)
	st.IRQ = dec.Bool()
	if version >= 2 {
		st.TimeoutPending = dec.Bool()
		st.TimeoutAt = dec.I64()
	}
	if err := dec.Err(); err != nil {
		return fmt.Errorf("uart: %w", err)
	}
	return d.Restore(st)
}
