package riscv

// amo executes LR, SC and AMO instructions. On RAM they are host atomic
// operations, so harts running on different goroutines see each other's
// atomics as the ISA requires; on MMIO they are a load and a store.
func (h *Hart) amo(d *dinsn) bool {
	va := h.x[d.rs1&63]
	n := 4
	if d.op == opLRD || d.op == opSCD || d.op >= opAMOSWAPD {
		n = 8
	}
	switch d.op {
	case opLRW, opLRD:
		pa, ok := h.amoAddr(va, n, accR)
		if !ok {
			return false
		}
		var v uint64
		if off, ram := h.ramOffset(pa, uint64(n)); ram {
			v = atomicLoad(h.mem, off, n)
		} else if v, ok = h.physLoad(pa, n, accR); !ok {
			h.excTval = va
			return false
		}
		if n == 4 {
			v = sext32(uint32(v))
		}
		h.resValid, h.resAddr, h.resVal = true, va, v
		h.x[d.rd&63] = v
		return true
	case opSCW, opSCD:
		// QEMU-style: succeeds if the reservation is for this address and
		// memory still holds the value LR loaded (compare-and-swap).
		valid := h.resValid && h.resAddr == va
		h.resValid = false
		if !valid {
			h.x[d.rd&63] = 1
			return true
		}
		pa, ok := h.amoAddr(va, n, accW)
		if !ok {
			return false
		}
		off, ram := h.ramOffset(pa, uint64(n))
		if !ram {
			// MMIO: no atomicity to offer; compare and store.
			cur, ok := h.physLoad(pa, n, accW)
			if !ok {
				h.excTval = va
				return false
			}
			if n == 4 {
				cur = sext32(uint32(cur))
			}
			if cur != h.resVal {
				h.x[d.rd&63] = 1
				return true
			}
			if !h.physStore(pa, n, h.x[d.rs2&63]) {
				h.excTval = va
				return false
			}
			h.x[d.rd&63] = 0
			return true
		}
		if !atomicCAS(h.mem, off, n, h.resVal, h.x[d.rs2&63]) {
			h.x[d.rd&63] = 1
			return true
		}
		h.ram.MarkDirty(off)
		h.invalidateRAM(off, uint64(n))
		h.x[d.rd&63] = 0
		return true
	}
	pa, ok := h.amoAddr(va, n, accW)
	if !ok {
		return false
	}
	src := h.x[d.rs2&63]
	if off, ram := h.ramOffset(pa, uint64(n)); ram {
		old := atomicRMW(h.mem, off, n, d.op, src)
		h.ram.MarkDirty(off)
		h.invalidateRAM(off, uint64(n))
		h.x[d.rd&63] = old
		return true
	}
	old, ok := h.physLoad(pa, n, accW)
	if !ok {
		h.excTval = va
		return false
	}
	if n == 4 {
		old = sext32(uint32(old))
	}
	if !h.physStore(pa, n, amoResult(d.op, old, src)) {
		h.excTval = va
		return false
	}
	h.x[d.rd&63] = old
	return true
}

// amoResult computes an AMO's new memory value from the old one (both
// sign-extended for W forms) and the source register.
func amoResult(op uint8, old, src uint64) uint64 {
	switch op {
	case opAMOSWAPW, opAMOSWAPD:
		return src
	case opAMOADDW, opAMOADDD:
		return old + src
	case opAMOXORW, opAMOXORD:
		return old ^ src
	case opAMOANDW, opAMOANDD:
		return old & src
	case opAMOORW, opAMOORD:
		return old | src
	case opAMOMINW:
		return uint64(min(int32(old), int32(src)))
	case opAMOMAXW:
		return uint64(max(int32(old), int32(src)))
	case opAMOMINUW:
		return uint64(min(uint32(old), uint32(src)))
	case opAMOMAXUW:
		return uint64(max(uint32(old), uint32(src)))
	case opAMOMIND:
		return uint64(min(int64(old), int64(src)))
	case opAMOMAXD:
		return uint64(max(int64(old), int64(src)))
	case opAMOMINUD:
		return min(old, src)
	case opAMOMAXUD:
		return max(old, src)
	}
	return old
}
