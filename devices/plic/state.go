package plic

import (
	"fmt"

	"github.com/snapvm/snapvm/vmstate"
)

// State is the PLIC's saved state.
type State struct {
	Priority  [NumSources]uint32
	Pending   [words]uint32
	Claimed   [words]uint32
	Level     [words]uint32
	Enable    [][words]uint32 // per context
	Threshold []uint32        // per context
}

// Save captures the state.
func (d *Device) Save() State {
	d.mu.Lock()
	defer d.mu.Unlock()
	return State{
		Priority:  d.priority,
		Pending:   d.pending,
		Claimed:   d.claimed,
		Level:     d.level,
		Enable:    append([][words]uint32(nil), d.enable...),
		Threshold: append([]uint32(nil), d.threshold...),
	}
}

// Restore replaces the state with st after validating it.
func (d *Device) Restore(st State) error {
	if len(st.Enable) != len(d.enable) || len(st.Threshold) != len(d.threshold) {
		return fmt.Errorf("plic: state for %d contexts, machine has %d", len(st.Enable), len(d.enable))
	}
	for i, p := range st.Priority {
		if p > prioMask {
			return fmt.Errorf("plic: priority %d of source %d out of range", p, i)
		}
	}
	for i, t := range st.Threshold {
		if t > prioMask {
			return fmt.Errorf("plic: threshold %d of context %d out of range", t, i)
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.priority, d.pending, d.claimed, d.level = st.Priority, st.Pending, st.Claimed, st.Level
	copy(d.enable, st.Enable)
	copy(d.threshold, st.Threshold)
	d.updateLocked()
	return nil
}

// SectionName implements vmstate.Section.
func (d *Device) SectionName() string { return "plic" }

// SectionVersion implements vmstate.Section.
func (d *Device) SectionVersion() uint32 { return 1 }

// SaveSection implements vmstate.Section.
func (d *Device) SaveSection(e *vmstate.Encoder) {
	st := d.Save()
	for _, p := range st.Priority {
		e.U32(p)
	}
	for w := 0; w < words; w++ {
		e.U32(st.Pending[w])
		e.U32(st.Claimed[w])
		e.U32(st.Level[w])
	}
	e.U32(uint32(len(st.Enable)))
	for c := range st.Enable {
		for w := 0; w < words; w++ {
			e.U32(st.Enable[c][w])
		}
		e.U32(st.Threshold[c])
	}
}

const maxContexts = 1024

// LoadSection implements vmstate.Section.
func (d *Device) LoadSection(dec *vmstate.Decoder, version uint32) error {
	if version != 1 {
		return fmt.Errorf("plic: unsupported state version %d", version)
	}
	var st State
	for i := range st.Priority {
		st.Priority[i] = dec.U32()
	}
	for w := 0; w < words; w++ {
		st.Pending[w] = dec.U32()
		st.Claimed[w] = dec.U32()
		st.Level[w] = dec.U32()
	}
	n := dec.U32()
	if n > maxContexts {
		return fmt.Errorf("plic: %d contexts exceed %d", n, maxContexts)
	}
	for c := uint32(0); c < n && dec.Err() == nil; c++ {
		var en [words]uint32
		for w := range en {
			en[w] = dec.U32()
		}
		st.Enable = append(st.Enable, en)
		st.Threshold = append(st.Threshold, dec.U32())
	}
	if err := dec.Err(); err != nil {
		return fmt.Errorf("plic: %w", err)
	}
	return d.Restore(st)
}
