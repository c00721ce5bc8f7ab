package rtc

import (
	"fmt"

	"github.com/snapvm/snapvm/vmstate"
)

// State is the RTC's saved state. Time is the RTC count when the VM was
// paused (QEMU saves the same), so a restored guest continues from it.
type State struct {
	Time         uint64
	AlarmNext    uint64
	AlarmRunning bool
	IRQPending   bool
	IRQEnabled   bool
	TimeHigh     uint32
}

// Save captures the state.
func (d *Device) Save() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return State{Time: d.nowLocked(), AlarmNext: d.alarmNext, AlarmRunning: d.alarmRunning,
		IRQPending: d.irqPending, IRQEnabled: d.irqEnabled, TimeHigh: d.timeHigh}
}

// Restore replaces the state with st, relative to the clock's current value
// (restore the virtual clock first).
func (d *Device) Restore(st State) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.offset = int64(st.Time) - d.clock.Nanoseconds()
	d.alarmNext, d.alarmRunning = st.AlarmNext, st.AlarmRunning
	d.irqPending, d.irqEnabled, d.timeHigh = st.IRQPending, st.IRQEnabled, st.TimeHigh
	d.updateLocked()
	return nil
}

// SectionName implements vmstate.Section.
func (d *Device) SectionName() string { return "rtc" }

// SectionVersion implements vmstate.Section.
func (d *Device) SectionVersion() uint32 { return 1 }

// SaveSection implements vmstate.Section.
func (d *Device) SaveSection(e *vmstate.Encoder) {
	st := d.Save()
	e.U64(st.Time)
	e.U64(st.AlarmNext)
	e.Bool(st.AlarmRunning)
	e.Bool(st.IRQPending)
	e.Bool(st.IRQEnabled)
	e.U32(st.TimeHigh)
}

// LoadSection implements vmstate.Section.
func (d *Device) LoadSection(dec *vmstate.Decoder, version uint32) error {
	if version != 1 {
		return fmt.Errorf("rtc: unsupported state version %d", version)
	}
	var st State
	st.Time = dec.U64()
	st.AlarmNext = dec.U64()
	st.AlarmRunning = dec.Bool()
	st.IRQPending = dec.Bool()
	st.IRQEnabled = dec.Bool()
	st.TimeHigh = dec.U32()
	if err := dec.Err(); err != nil {
		return fmt.Errorf("rtc: %w", err)
	}
	return d.Restore(st)
}
