// Package vmstate defines how harts and devices save and restore themselves
// (the Section interface and its Encoder/Decoder) and the VM-state stream
// that snapshots store in a qcow2 image's vm-state area.
//
// Rules for sections, after QEMU's migration guidance: model the device, not
// the implementation (no host pointers, caches or file handles); treat every
// loaded byte as hostile (bounded lengths, checked values, errors not
// panics); a failed save never changes the running VM; grow a section by
// bumping its version and keeping the loader for older ones.
package vmstate

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Section is implemented by every hart and device. The machine registers
// sections in a fixed order; the snapshot code only ever sees this interface.
type Section interface {
	// SectionName is unique within a machine and stable across releases,
	// e.g. "hart0", "clint", "uart0", "virtio-mmio@0x10008000".
	SectionName() string
	// SectionVersion is the layout version written by Save.
	SectionVersion() uint32
	// SaveSection writes the state. It is called only while the VM is paused.
	SaveSection(e *Encoder)
	// LoadSection replaces the state with one saved at the given version,
	// or returns an error and leaves the caller to discard the machine state.
	LoadSection(d *Decoder, version uint32) error
}

// ErrShort means a section ended before all its fields were read.
var ErrShort = errors.New("vmstate: section truncated")

// Encoder appends little-endian fields to a buffer. It cannot fail.
type Encoder struct {
	buf []byte
}

// Bytes returns what was written.
func (e *Encoder) Bytes() []byte { return e.buf }

func (e *Encoder) U8(v uint8)   { e.buf = append(e.buf, v) }
func (e *Encoder) U16(v uint16) { e.buf = binary.LittleEndian.AppendUint16(e.buf, v) }
func (e *Encoder) U32(v uint32) { e.buf = binary.LittleEndian.AppendUint32(e.buf, v) }
func (e *Encoder) U64(v uint64) { e.buf = binary.LittleEndian.AppendUint64(e.buf, v) }
func (e *Encoder) I64(v int64)  { e.U64(uint64(v)) }
func (e *Encoder) Bool(v bool) {
	if v {
		e.U8(1)
	} else {
		e.U8(0)
	}
}

// U64s writes a length-prefixed slice.
func (e *Encoder) U64s(v []uint64) {
	e.U32(uint32(len(v)))
	for _, x := range v {
		e.U64(x)
	}
}

// Blob writes a length-prefixed byte string.
func (e *Encoder) Blob(b []byte) {
	e.U32(uint32(len(b)))
	e.buf = append(e.buf, b...)
}

// String writes a length-prefixed string.
func (e *Encoder) String(s string) { e.Blob([]byte(s)) }

// Decoder reads fields written by an Encoder. The first error sticks: later
// reads return zero values, and Err reports it, so a loader can read all its
// fields and check once.
type Decoder struct {
	buf []byte
	err error
}

// NewDecoder reads from b.
func NewDecoder(b []byte) *Decoder { return &Decoder{buf: b} }

// Err is the first error met, or nil.
func (d *Decoder) Err() error { return d.err }

// Remaining is the number of unread bytes.
func (d *Decoder) Remaining() int { return len(d.buf) }

// Fail records err (if none is recorded yet); loaders use it for bad values.
func (d *Decoder) Fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// Failf records a formatted error.
func (d *Decoder) Failf(format string, args ...any) { d.Fail(fmt.Errorf("vmstate: "+format, args...)) }

func (d *Decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.buf) {
		d.err = ErrShort
		return nil
	}
	b := d.buf[:n]
	d.buf = d.buf[n:]
	return b
}

func (d *Decoder) U8() uint8 {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *Decoder) U16() uint16 {
	if b := d.take(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (d *Decoder) U32() uint32 {
	if b := d.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (d *Decoder) U64() uint64 {
	if b := d.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return 0
}

func (d *Decoder) I64() int64 { return int64(d.U64()) }

func (d *Decoder) Bool() bool {
	v := d.U8()
	if v > 1 {
		d.Failf("bad boolean %d", v)
	}
	return v == 1
}

// U64s reads a length-prefixed slice of at most max elements.
func (d *Decoder) U64s(max int) []uint64 {
	n := d.U32()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(max) || uint64(n)*8 > uint64(len(d.buf)) {
		d.Failf("slice of %d elements exceeds limit %d or remaining data", n, max)
		return nil
	}
	out := make([]uint64, n)
	for i := range out {
		out[i] = d.U64()
	}
	return out
}

// Blob reads a length-prefixed byte string of at most max bytes. The result
// aliases the decoder's buffer.
func (d *Decoder) Blob(max int) []byte {
	n := d.U32()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(max) || n > math.MaxInt32 {
		d.Failf("blob of %d bytes exceeds limit %d", n, max)
		return nil
	}
	return d.take(int(n))
}

// String reads a length-prefixed string of at most max bytes.
func (d *Decoder) String(max int) string { return string(d.Blob(max)) }
