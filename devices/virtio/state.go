package virtio

import (
	"fmt"

	"github.com/snapvm/snapvm/vmstate"
)

// QueueState is one virtqueue's saved state.
type QueueState struct {
	Num, Align     uint32
	Desc           uint64
	LastAvail      uint16
	UsedIdx        uint16
	SignalledUsed  uint16
	SignalledValid bool
}

// State is a transport's saved state (the device's config space is derived
// from its backend and not saved). Saved only while quiesced: no request is
// in flight, so the queue indices describe everything.
type State struct {
	DeviceID         uint32
	HostFeaturesSel  uint32
	GuestFeaturesSel uint32
	GuestPageShift   uint32
	QueueSel         uint32
	Status           uint32
	ISR              uint32
	GuestFeatures    uint64
	Broken           bool
	IRQ              bool
	Queues           []QueueState
	Device           []byte // the device's own state (Device.SaveState)
}

// Save captures the state. The worker must be idle (Quiesce).
func (t *Transport) Save() State {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := State{
		HostFeaturesSel: t.hostFeaturesSel, GuestFeaturesSel: t.guestFeaturesSel,
		GuestPageShift: t.guestPageShift, QueueSel: t.queueSel, Status: t.status, ISR: t.isr,
		GuestFeatures: t.guestFeatures, Broken: t.broken, IRQ: t.irqLevel,
	}
	if t.dev != nil {
		st.DeviceID = t.dev.DeviceID()
		st.Device = t.dev.SaveState()
	}
	for _, q := range t.queues {
		st.Queues = append(st.Queues, QueueState{
			Num: q.num, Align: q.align, Desc: q.desc, LastAvail: q.lastAvail, UsedIdx: q.usedIdx,
			SignalledUsed: q.signalledUsed, SignalledValid: q.signalledValid,
		})
	}
	return st
}

// Restore replaces the state with st after validating it against this
// slot's device.
func (t *Transport) Restore(st State) error {
	var id uint32
	var features uint64
	if t.dev != nil {
		id, features = t.dev.DeviceID(), t.dev.Features()
	}
	if st.DeviceID != id || len(st.Queues) != len(t.queues) {
		return fmt.Errorf("virtio: state of device type %d with %d queues, slot has type %d with %d",
			st.DeviceID, len(st.Queues), id, len(t.queues))
	}
	if st.GuestFeatures&^features != 0 {
		return fmt.Errorf("virtio: driver features %#x not offered (%#x)", st.GuestFeatures, features)
	}
	if st.GuestPageShift > 31 || st.Status > 0xff || st.ISR > 3 {
		return fmt.Errorf("virtio: register out of range (page shift %d, status %#x, isr %#x)", st.GuestPageShift, st.Status, st.ISR)
	}
	for i, q := range st.Queues {
		if q.Num == 0 || q.Num > maxQueueSize {
			return fmt.Errorf("virtio: queue %d size %d out of range", i, q.Num)
		}
		if uint32(q.LastAvail-q.UsedIdx) > q.Num {
			return fmt.Errorf("virtio: queue %d has %d requests in use, more than its size %d", i, q.LastAvail-q.UsedIdx, q.Num)
		}
		if q.Desc != 0 && !t.deps.RAM.Contains(q.Desc, descSize*uint64(q.Num)) {
			return fmt.Errorf("virtio: queue %d descriptor table %#x outside RAM", i, q.Desc)
		}
	}
	if t.dev != nil && st.Device != nil {
		if err := t.dev.LoadState(st.Device); err != nil {
			return err
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.waitIdleLocked()
	t.regs = regs{
		hostFeaturesSel: st.HostFeaturesSel, guestFeaturesSel: st.GuestFeaturesSel,
		guestPageShift: st.GuestPageShift, queueSel: st.QueueSel, status: st.Status, isr: st.ISR,
		guestFeatures: st.GuestFeatures, broken: st.Broken,
	}
	for i, q := range st.Queues {
		t.queues[i] = queue{num: q.Num, align: q.Align, desc: q.Desc, lastAvail: q.LastAvail,
			usedIdx: q.UsedIdx, signalledUsed: q.SignalledUsed, signalledValid: q.SignalledValid, irqUsed: q.UsedIdx}
	}
	t.setIRQLocked(st.IRQ)
	return nil
}

// SectionName implements vmstate.Section.
func (t *Transport) SectionName() string { return t.deps.Name }

// SectionVersion implements vmstate.Section.
// Version 2 added the device's own state after the queues.
func (t *Transport) SectionVersion() uint32 { return 2 }

// SaveSection implements vmstate.Section.
func (t *Transport) SaveSection(e *vmstate.Encoder) {
	st := t.Save()
	for _, v := range []uint32{st.DeviceID, st.HostFeaturesSel, st.GuestFeaturesSel, st.GuestPageShift, st.QueueSel, st.Status, st.ISR} {
		e.U32(v)
	}
	e.U64(st.GuestFeatures)
	e.Bool(st.Broken)
	e.Bool(st.IRQ)
	e.U32(uint32(len(st.Queues)))
	for _, q := range st.Queues {
		e.U32(q.Num)
		e.U32(q.Align)
		e.U64(q.Desc)
		e.U16(q.LastAvail)
		e.U16(q.UsedIdx)
		e.U16(q.SignalledUsed)
		e.Bool(q.SignalledValid)
	}
	e.Blob(st.Device)
}

const (
	maxQueues      = 64
	maxDeviceState = 4096
)

// LoadSection implements vmstate.Section.
func (t *Transport) LoadSection(d *vmstate.Decoder, version uint32) error {
	if version != 1 && version != 2 {
		return fmt.Errorf("virtio: unsupported state version %d", version)
	}
	var st State
	for _, p := range []*uint32{&st.DeviceID, &st.HostFeaturesSel, &st.GuestFeaturesSel, &st.GuestPageShift, &st.QueueSel, &st.Status, &st.ISR} {
		*p = d.U32()
	}
	st.GuestFeatures = d.U64()
	st.Broken = d.Bool()
	st.IRQ = d.Bool()
	n := d.U32()
	if n > maxQueues {
		return fmt.Errorf("virtio: %d queues exceed %d", n, maxQueues)
	}
	for i := uint32(0); i < n && d.Err() == nil; i++ {
		var q QueueState
		q.Num = d.U32()
		q.Align = d.U32()
		q.Desc = d.U64()
		q.LastAvail = d.U16()
		q.UsedIdx = d.U16()
		q.SignalledUsed = d.U16()
		q.SignalledValid = d.Bool()
		st.Queues = append(st.Queues, q)
	}
	if version >= 2 {
		st.Device = append([]byte(nil), d.Blob(maxDeviceState)...)
	}
	if err := d.Err(); err != nil {
		return fmt.Errorf("virtio: %w", err)
	}
	return t.Restore(st)
}
