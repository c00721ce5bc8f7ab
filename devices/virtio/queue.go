package virtio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/snapvm/snapvm/memory"
)

// Descriptor flags.
const (
	descNext     = 1
	descWrite    = 2
	descIndirect = 4

	availNoInterrupt = 1
	descSize         = 16
)

// queue is one split virtqueue in the legacy layout: descriptor table at
// desc, available ring right after it, used ring at the next align boundary.
type queue struct {
	num   uint32 // saved
	align uint32 // saved
	desc  uint64 // saved: guest-physical address of the descriptor table (0 = not set up)

	lastAvail      uint16 // saved: next available entry the device will take
	usedIdx        uint16 // saved: next used entry the device will write
	signalledUsed  uint16 // saved: used index at the last interrupt (EVENT_IDX)
	signalledValid bool   // saved
	irqUsed        uint16 // derived: used index when the interrupt was last raised
}

func (q *queue) ready() bool { return q.desc != 0 && q.num != 0 && q.align != 0 }

func (q *queue) availAddr() uint64 { return q.desc + descSize*uint64(q.num) }

func (q *queue) usedAddr() uint64 {
	a := uint64(q.align)
	end := q.availAddr() + 2*(3+uint64(q.num))
	return (end + a - 1) / a * a
}

// Segment is one guest-physical buffer of a request.
type Segment struct {
	Addr uint64
	Len  uint32
}

// Chain is one request: the device-readable buffers followed by the
// device-writable ones, in descriptor order.
type Chain struct {
	Head uint16
	Out  []Segment // device-readable
	In   []Segment // device-writable
	ram  *memory.RAM
	dma  func(addr, n uint64)
}

// ErrMalformed marks a request chain that breaks the virtio rules.
var ErrMalformed = errors.New("virtio: malformed descriptor chain")

// OutLen is the total size of the readable buffers.
func (c *Chain) OutLen() uint64 {
	var n uint64
	for _, s := range c.Out {
		n += uint64(s.Len)
	}
	return n
}

// InLen is the total size of the writable buffers.
func (c *Chain) InLen() uint64 {
	var n uint64
	for _, s := range c.In {
		n += uint64(s.Len)
	}
	return n
}

// ReadOut copies len(p) bytes of the readable stream starting at off.
func (c *Chain) ReadOut(p []byte, off uint64) error {
	return c.walk(c.Out, off, uint64(len(p)), func(b []byte, pos uint64) error {
		copy(p[pos:], b)
		return nil
	}, false)
}

// WriteIn copies p into the writable stream at off.
func (c *Chain) WriteIn(p []byte, off uint64) error {
	return c.walk(c.In, off, uint64(len(p)), func(b []byte, pos uint64) error {
		copy(b, p[pos:])
		return nil
	}, true)
}

// OutSlices calls fn with the guest memory of the readable stream range
// [off, off+n), piece by piece (pos = offset within the range).
func (c *Chain) OutSlices(off, n uint64, fn func(b []byte, pos uint64) error) error {
	return c.walk(c.Out, off, n, fn, false)
}

// InSlices calls fn with the guest memory of the writable stream range
// [off, off+n); the memory is marked dirty afterwards.
func (c *Chain) InSlices(off, n uint64, fn func(b []byte, pos uint64) error) error {
	return c.walk(c.In, off, n, fn, true)
}

func (c *Chain) walk(segs []Segment, off, n uint64, fn func(b []byte, pos uint64) error, write bool) error {
	var pos uint64
	for _, s := range segs {
		if n == pos {
			break
		}
		if off >= uint64(s.Len) {
			off -= uint64(s.Len)
			continue
		}
		take := min(uint64(s.Len)-off, n-pos)
		addr := s.Addr + off
		b, err := c.ram.Slice(addr, take)
		if err != nil {
			return err
		}
		err = fn(b, pos)
		if write {
			c.ram.MarkRangeDirty(addr-c.ram.Base, take)
			if c.dma != nil {
				c.dma(addr, take)
			}
		}
		if err != nil {
			return err
		}
		pos += take
		off = 0
	}
	if pos != n {
		return fmt.Errorf("virtio: request buffers hold %d of %d bytes", pos, n)
	}
	return nil
}

// recheckDelay is how long after going idle the worker looks at the rings
// once more (see Transport.recheck); far longer than a store takes to
// become visible, far shorter than any I/O timeout.
var recheckDelay = time.Millisecond

// barrierWord is the target of fullBarrier's atomic operation.
var barrierWord atomic.Uint64

// fullBarrier orders this goroutine's earlier stores to guest RAM before its
// later loads (a locked instruction on amd64, a full fence on arm64). The
// event-index handshake is a store-then-load on both sides; without it a
// kick or an interrupt could be lost.
func fullBarrier() { barrierWord.Add(1) }

func (t *Transport) u16(addr uint64) (uint16, error) {
	b, err := t.deps.RAM.Slice(addr, 2)
	if err != nil {
		return 0, err
	}
	return binary.LittleEndian.Uint16(b), nil
}

func (t *Transport) putU16(addr uint64, v uint16) error {
	var b [2]byte
	binary.LittleEndian.PutUint16(b[:], v)
	return t.deps.RAM.WriteAt(b[:], addr)
}

// popLocked takes the next available chain from q, or returns nil.
func (t *Transport) popLocked(qi int) (*Chain, error) {
	q := &t.queues[qi]
	if !q.ready() {
		return nil, nil
	}
	availIdx, err := t.u16(q.availAddr() + 2)
	if err != nil {
		return nil, err
	}
	if uint32(availIdx-q.lastAvail) > q.num {
		return nil, fmt.Errorf("virtio: available index %d moved more than %d past %d", availIdx, q.num, q.lastAvail)
	}
	if availIdx == q.lastAvail {
		if t.guestFeatures&featureEventIdx != 0 {
			// Ask for a kick at the next buffer, then look again in case
			// the driver added one meanwhile.
			if err := t.putU16(q.usedAddr()+4+8*uint64(q.num), q.lastAvail); err != nil {
				return nil, err
			}
			fullBarrier()
			if availIdx, err = t.u16(q.availAddr() + 2); err != nil || availIdx == q.lastAvail {
				return nil, err
			}
		} else {
			return nil, nil
		}
	}
	head, err := t.u16(q.availAddr() + 4 + 2*(uint64(q.lastAvail)%uint64(q.num)))
	if err != nil {
		return nil, err
	}
	q.lastAvail++
	c, err := t.readChain(q, head)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// readChain follows the descriptors from head (and at most one level of
// indirect table), bounding the walk by the table sizes.
func (t *Transport) readChain(q *queue, head uint16) (*Chain, error) {
	c := &Chain{Head: head, ram: t.deps.RAM, dma: t.deps.DMAWritten}
	if uint32(head) >= q.num {
		return nil, fmt.Errorf("%w: head %d beyond queue size %d", ErrMalformed, head, q.num)
	}
	table, size := q.desc, uint32(q.num)
	idx := uint32(head)
	indirect := false
	var buf [descSize]byte
	visited := uint32(0) // descriptors read from the current table
	for {
		if visited >= size {
			return nil, fmt.Errorf("%w: loop in descriptor chain", ErrMalformed)
		}
		visited++
		if err := t.deps.RAM.ReadAt(buf[:], table+descSize*uint64(idx)); err != nil {
			return nil, err
		}
		addr := binary.LittleEndian.Uint64(buf[0:])
		length := binary.LittleEndian.Uint32(buf[8:])
		flags := binary.LittleEndian.Uint16(buf[12:])
		next := binary.LittleEndian.Uint16(buf[14:])
		if flags&descIndirect != 0 {
			if indirect || flags&descNext != 0 || t.guestFeatures&featureIndirectDesc == 0 {
				return nil, fmt.Errorf("%w: bad indirect descriptor", ErrMalformed)
			}
			if length == 0 || length%descSize != 0 || length/descSize > maxQueueSize*4 {
				return nil, fmt.Errorf("%w: indirect table of %d bytes", ErrMalformed, length)
			}
			indirect = true
			table, size, idx, visited = addr, length/descSize, 0, 0
			continue
		}
		if !t.deps.RAM.Contains(addr, uint64(length)) {
			return nil, fmt.Errorf("%w: buffer %#x+%#x outside RAM", ErrMalformed, addr, length)
		}
		seg := Segment{Addr: addr, Len: length}
		if flags&descWrite != 0 {
			c.In = append(c.In, seg)
		} else {
			if len(c.In) > 0 {
				return nil, fmt.Errorf("%w: readable buffer after a writable one", ErrMalformed)
			}
			c.Out = append(c.Out, seg)
		}
		if flags&descNext == 0 {
			return c, nil
		}
		idx = uint32(next)
		if idx >= size {
			return nil, fmt.Errorf("%w: next %d beyond table size %d", ErrMalformed, idx, size)
		}
	}
}

// pushLocked completes chain head with len written bytes and decides
// whether the driver wants an interrupt.
func (t *Transport) pushLocked(qi int, head uint16, written uint32) (notify bool, err error) {
	q := &t.queues[qi]
	used := q.usedAddr()
	var e [8]byte
	binary.LittleEndian.PutUint32(e[0:], uint32(head))
	binary.LittleEndian.PutUint32(e[4:], written)
	if err := t.deps.RAM.WriteAt(e[:], used+4+8*(uint64(q.usedIdx)%uint64(q.num))); err != nil {
		return false, err
	}
	old := q.usedIdx
	q.usedIdx++
	if err := t.putU16(used+2, q.usedIdx); err != nil {
		return false, err
	}
	if t.guestFeatures&featureEventIdx != 0 {
		fullBarrier() // the used index must be visible before used_event is read
		event, err := t.u16(q.availAddr() + 4 + 2*uint64(q.num))
		if err != nil {
			return false, err
		}
		valid := q.signalledValid
		q.signalledValid = true
		prev := q.signalledUsed
		if !valid {
			prev = old
		}
		q.signalledUsed = q.usedIdx
		// vring_need_event: interrupt when the new index passes used_event.
		return !valid || q.usedIdx-event-1 < q.usedIdx-prev, nil
	}
	flags, err := t.u16(q.availAddr())
	if err != nil {
		return false, err
	}
	if flags&availNoInterrupt == 0 {
		return true, nil
	}
	if t.guestFeatures&featureNotifyEmpty != 0 {
		// The driver asked for an interrupt whenever the queue runs empty.
		availIdx, err := t.u16(q.availAddr() + 2)
		return err == nil && availIdx == q.lastAvail, err
	}
	return false, nil
}

// worker processes notified queues until the transport is closed.
func (t *Transport) worker() {
	defer close(t.workerEnd)
	t.mu.Lock()
	defer t.mu.Unlock()
	for {
		for !t.pending && !t.closed {
			t.cond.Wait()
		}
		if t.closed {
			return
		}
		t.pending = false
		t.busy = true
		for qi := range t.queues {
			t.drainQueueLocked(qi)
		}
		t.busy = false
		t.cond.Broadcast()
		if t.guestFeatures&featureEventIdx != 0 && !t.held {
			t.recheck.Reset(recheckDelay)
		}
	}
}

// drainQueueLocked processes every available chain of queue qi. The lock is
// released while the device does the I/O.
func (t *Transport) drainQueueLocked(qi int) {
	for !t.broken && t.status&statusDriverOK != 0 && !t.closed {
		c, err := t.popLocked(qi)
		if err != nil {
			t.broken = true
			return
		}
		if c == nil {
			return
		}
		t.mu.Unlock()
		written, perr := t.dev.Process(qi, c)
		t.mu.Lock()
		if perr != nil {
			t.broken = true
			return
		}
		notify, err := t.pushLocked(qi, c.Head, written)
		if err != nil {
			t.broken = true
			return
		}
		if notify {
			t.queues[qi].irqUsed = t.queues[qi].usedIdx
			t.isr |= isrUsedBuffer
			t.setIRQLocked(true)
		}
	}
}
