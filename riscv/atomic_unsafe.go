package riscv

import (
	"sync/atomic"
	"unsafe"
)

// Host-atomic accesses to guest RAM for the A extension and page-table
// A/D updates. off is n-aligned (the callers trap on misalignment) and
// inside mem, which is an mmap'ed region outside the Go heap.

func ptr32(mem []byte, off uint64) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
func ptr64(mem []byte, off uint64) *uint64 { return (*uint64)(unsafe.Pointer(&mem[off])) }

func atomicLoad(mem []byte, off uint64, n int) uint64 {
	if n == 4 {
		return uint64(atomic.LoadUint32(ptr32(mem, off)))
	}
	return atomic.LoadUint64(ptr64(mem, off))
}

// atomicCAS stores nv if memory still equals old (compared at width n).
func atomicCAS(mem []byte, off uint64, n int, old, nv uint64) bool {
	if n == 4 {
		return atomic.CompareAndSwapUint32(ptr32(mem, off), uint32(old), uint32(nv))
	}
	return atomic.CompareAndSwapUint64(ptr64(mem, off), old, nv)
}

// atomicRMW performs AMO op with src and returns the old value
// (sign-extended for W forms).
func atomicRMW(mem []byte, off uint64, n int, op uint8, src uint64) uint64 {
	if n == 4 {
		p := ptr32(mem, off)
		switch op {
		case opAMOSWAPW:
			return sext32(atomic.SwapUint32(p, uint32(src)))
		case opAMOADDW:
			return sext32(atomic.AddUint32(p, uint32(src)) - uint32(src))
		case opAMOANDW:
			return sext32(atomic.AndUint32(p, uint32(src)))
		case opAMOORW:
			return sext32(atomic.OrUint32(p, uint32(src)))
		}
		for {
			old := atomic.LoadUint32(p)
			nv := uint32(amoResult(op, sext32(old), sext32(uint32(src))))
			if atomic.CompareAndSwapUint32(p, old, nv) {
				return sext32(old)
			}
		}
	}
	p := ptr64(mem, off)
	switch op {
	case opAMOSWAPD:
		return atomic.SwapUint64(p, src)
	case opAMOADDD:
		return atomic.AddUint64(p, src) - src
	case opAMOANDD:
		return atomic.AndUint64(p, src)
	case opAMOORD:
		return atomic.OrUint64(p, src)
	}
	for {
		old := atomic.LoadUint64(p)
		if atomic.CompareAndSwapUint64(p, old, amoResult(op, old, src)) {
			return old
		}
	}
}
