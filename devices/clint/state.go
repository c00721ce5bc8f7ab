package clint

import (
	"fmt"

	"github.com/snapvm/snapvm/vmstate"
)

// State is the CLINT's saved state. MTime is the counter's value when the
// VM was paused; the virtual clock's own value is saved with it so the
// section restores continuous time by itself.
type State struct {
	ClockNs  int64
	MTime    uint64
	MSIP     []bool
	MTimeCmp []uint64
}

// Save captures the state. The VM must be paused.
func (d *Device) Save() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return State{
		ClockNs:  d.clock.Nanoseconds(),
		MTime:    d.ticks() + d.timeOffset,
		MSIP:     append([]bool(nil), d.msip...),
		MTimeCmp: append([]uint64(nil), d.mtimecmp...),
	}
}

// Restore replaces the state with st (from Save on a CLINT with the same
// number of harts) and sets the virtual clock to st.ClockNs.
func (d *Device) Restore(st State) error {
	if len(st.MSIP) != len(d.harts) || len(st.MTimeCmp) != len(d.harts) {
		return fmt.Errorf("clint: state for %d harts, machine has %d", len(st.MSIP), len(d.harts))
	}
	if st.ClockNs < 0 {
		return fmt.Errorf("clint: negative clock %d", st.ClockNs)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.clock.Set(st.ClockNs)
	d.timeOffset = st.MTime - d.ticks()
	copy(d.msip, st.MSIP)
	copy(d.mtimecmp, st.MTimeCmp)
	d.updateLocked(true)
	return nil
}

// SectionName implements vmstate.Section.
func (d *Device) SectionName() string { return "clint" }

// SectionVersion implements vmstate.Section.
func (d *Device) SectionVersion() uint32 { return 1 }

// SaveSection implements vmstate.Section.
func (d *Device) SaveSection(e *vmstate.Encoder) {
	st := d.Save()
	e.I64(st.ClockNs)
	e.U64(st.MTime)
	e.U32(uint32(len(st.MSIP)))
	for i := range st.MSIP {
		e.Bool(st.MSIP[i])
		e.U64(st.MTimeCmp[i])
	}
}

// maxHarts bounds what a stream may claim.
const maxHarts = 512

// LoadSection implements vmstate.Section.
func (d *Device) LoadSection(dec *vmstate.Decoder, version uint32) error {
	if version != 1 {
		return fmt.Errorf("clint: unsupported state version %d", version)
	}
	var st State
	st.ClockNs = dec.I64()
	st.MTime = dec.U64()
	n := dec.U32()
	if n > maxHarts {
		return fmt.Errorf("clint: state for %d harts exceeds %d", n, maxHarts)
	}
	for i := uint32(0); i < n && dec.Err() == nil; i++ {
		st.MSIP = append(st.MSIP, dec.Bool())
		st.MTimeCmp = append(st.MTimeCmp, dec.U64())
	}
	if err := dec.Err(); err != nil {
		return fmt.Errorf("clint: %w", err)
	}
	return d.Restore(st)
}
