// Package memory owns guest RAM: one host mapping for the whole DRAM region
// plus two page bitmaps that every store (hart or device DMA) updates.
//
// The "written" bitmap records pages the guest has ever stored to since the
// RAM was created or last loaded; pages outside it are known to be zero and
// are skipped by snapshot save. The "dirty" bitmap records pages changed since
// it was last cleared; incremental saves and fast resets build on it.
package memory

import (
	"errors"
	"fmt"
	"math/bits"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// PageSize is the granularity of dirty tracking and of RAM in the vm-state area.
const (
	PageShift = 12
	PageSize  = 1 << PageShift
)

// MaxSize bounds the RAM a machine may be given (the virt board's DRAM window
// below the 64-bit PCIe hole allows far more, but this is what the host can
// reasonably map).
const MaxSize = 64 << 30

// RAM is guest DRAM at a fixed guest-physical base.
type RAM struct {
	Base uint64
	// Data is the host mapping. Stores through it directly must be followed
	// by MarkDirty; use the Write helpers where speed does not matter.
	Data []byte

	written []uint64 // one bit per page, set atomically
	dirty   []uint64 // one bit per page, set atomically
}

// New maps size bytes of zeroed anonymous memory for guest RAM at base.
func New(base, size uint64) (*RAM, error) {
	if size == 0 || size%PageSize != 0 {
		return nil, fmt.Errorf("memory: RAM size %d is not a positive multiple of %d", size, PageSize)
	}
	if size > MaxSize {
		return nil, fmt.Errorf("memory: RAM size %d exceeds the maximum of %d", size, uint64(MaxSize))
	}
	data, err := unix.Mmap(-1, 0, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("memory: map %d bytes: %w", size, err)
	}
	// Transparent huge pages cut the cost of first touches (page faults are
	// expensive under a hypervisor); dirty tracking stays at 4 KiB.
	_ = unix.Madvise(data, unix.MADV_HUGEPAGE)
	pages := size / PageSize
	words := (pages + 63) / 64
	return &RAM{Base: base, Data: data, written: make([]uint64, words), dirty: make([]uint64, words)}, nil
}

// Close unmaps the RAM. The RAM must not be used afterwards.
func (r *RAM) Close() error {
	if r.Data == nil {
		return nil
	}
	err := unix.Munmap(r.Data)
	r.Data = nil
	return err
}

// Size is the RAM size in bytes.
func (r *RAM) Size() uint64 { return uint64(len(r.Data)) }

// Pages is the number of pages.
func (r *RAM) Pages() uint64 { return uint64(len(r.Data)) / PageSize }

// Contains reports whether [addr, addr+n) lies inside RAM.
func (r *RAM) Contains(addr, n uint64) bool {
	off := addr - r.Base
	return addr >= r.Base && off <= uint64(len(r.Data)) && n <= uint64(len(r.Data))-off
}

// MarkDirty records a store to the page holding offset off (relative to Base).
// It is on the interpreter's store path: one atomic OR, skipped when the bits
// are already set.
func (r *RAM) MarkDirty(off uint64) {
	page := off >> PageShift
	w, b := page/64, uint64(1)<<(page%64)
	if atomic.LoadUint64(&r.dirty[w])&b == 0 {
		atomic.OrUint64(&r.dirty[w], b)
	}
	if atomic.LoadUint64(&r.written[w])&b == 0 {
		atomic.OrUint64(&r.written[w], b)
	}
}

// PageBitmaps returns the dirty and written bitmaps themselves (one bit per
// page, bit i%64 of word i/64), for generated code that marks stores inline
// exactly as MarkDirty does: store first, then set each bit with an atomic
// OR when it is clear.
func (r *RAM) PageBitmaps() (dirty, written []uint64) { return r.dirty, r.written }

// MarkRangeDirty marks every page overlapping [off, off+n).
func (r *RAM) MarkRangeDirty(off, n uint64) {
	if n == 0 {
		return
	}
	for p := off >> PageShift; p <= (off+n-1)>>PageShift; p++ {
		r.MarkDirty(p << PageShift)
	}
}

var errRange = errors.New("memory: access outside RAM")

// Slice returns the host bytes backing guest-physical [addr, addr+n) without
// marking anything dirty; callers that write must call MarkRangeDirty.
func (r *RAM) Slice(addr, n uint64) ([]byte, error) {
	if !r.Contains(addr, n) {
		return nil, fmt.Errorf("%w: %#x+%#x", errRange, addr, n)
	}
	off := addr - r.Base
	return r.Data[off : off+n : off+n], nil
}

// ReadAt copies guest-physical memory at addr into p (device DMA reads).
func (r *RAM) ReadAt(p []byte, addr uint64) error {
	s, err := r.Slice(addr, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(p, s)
	return nil
}

// WriteAt copies p to guest-physical memory at addr and marks it dirty.
func (r *RAM) WriteAt(p []byte, addr uint64) error {
	s, err := r.Slice(addr, uint64(len(p)))
	if err != nil {
		return err
	}
	copy(s, p)
	r.MarkRangeDirty(addr-r.Base, uint64(len(p)))
	return nil
}

// Written reports whether page i has been stored to since creation or the
// last ResetWritten.
func (r *RAM) Written(i uint64) bool {
	return atomic.LoadUint64(&r.written[i/64])&(1<<(i%64)) != 0
}

// Dirty reports whether page i has been stored to since the last ClearDirty.
func (r *RAM) Dirty(i uint64) bool {
	return atomic.LoadUint64(&r.dirty[i/64])&(1<<(i%64)) != 0
}

// WrittenPages counts pages in the written bitmap.
func (r *RAM) WrittenPages() uint64 {
	var n int
	for i := range r.written {
		n += bits.OnesCount64(atomic.LoadUint64(&r.written[i]))
	}
	return uint64(n)
}

// ClearDirty empties the dirty bitmap (e.g. after a snapshot was saved).
func (r *RAM) ClearDirty() {
	for i := range r.dirty {
		atomic.StoreUint64(&r.dirty[i], 0)
	}
}

// Zero clears all of RAM and both bitmaps, as at power-on. The mapping is
// replaced so the host returns the old pages at once.
func (r *RAM) Zero() error {
	if err := unix.Madvise(r.Data, unix.MADV_DONTNEED); err != nil {
		clear(r.Data)
	}
	for i := range r.written {
		atomic.StoreUint64(&r.written[i], 0)
		atomic.StoreUint64(&r.dirty[i], 0)
	}
	return nil
}

// ResetBitmaps empties both bitmaps without touching RAM contents; a loader
// that rewrites RAM rebuilds the written bitmap with SetWritten.
func (r *RAM) ResetBitmaps() {
	for i := range r.written {
		atomic.StoreUint64(&r.written[i], 0)
		atomic.StoreUint64(&r.dirty[i], 0)
	}
}

// SetWritten marks page i as written without touching its contents (used
// when RAM is loaded from a snapshot).
func (r *RAM) SetWritten(i uint64) {
	atomic.OrUint64(&r.written[i/64], 1<<(i%64))
}

// TakeDirty atomically empties the dirty bitmap and returns what it held,
// one bit per page. Stores racing with it land in the returned bitmap or
// in the new one, never in neither — once Barrier has returned.
func (r *RAM) TakeDirty() []uint64 {
	out := make([]uint64, len(r.dirty))
	for i := range r.dirty {
		out[i] = atomic.SwapUint64(&r.dirty[i], 0)
	}
	return out
}

// WrittenBitmap returns a copy of the written bitmap.
func (r *RAM) WrittenBitmap() []uint64 {
	out := make([]uint64, len(r.written))
	for i := range r.written {
		out[i] = atomic.LoadUint64(&r.written[i])
	}
	return out
}

// Linux membarrier(2) commands.
const (
	membarrierPrivateExpedited         = 8
	membarrierRegisterPrivateExpedited = 16
)

var (
	barrierOnce sync.Once
	barrierErr  error
)

// Barrier makes every thread of the process execute a full memory barrier.
// A store path marks a page dirty after storing to it and skips the atomic
// when the bit is already set; a reader that empties the bitmap and then
// calls Barrier is sure that every store whose dirty bit it took is visible
// to it, even one still in another core's store buffer.
func Barrier() error {
	barrierOnce.Do(func() {
		if _, _, e := unix.Syscall(unix.SYS_MEMBARRIER, membarrierRegisterPrivateExpedited, 0, 0); e != 0 {
			barrierErr = fmt.Errorf("memory: membarrier: %w", e)
		}
	})
	if barrierErr != nil {
		return barrierErr
	}
	if _, _, e := unix.Syscall(unix.SYS_MEMBARRIER, membarrierPrivateExpedited, 0, 0); e != 0 {
		return fmt.Errorf("memory: membarrier: %w", e)
	}
	return nil
}
