package riscv

import (
	"encoding/binary"
	"math/bits"
)

// sliceLen is how many instructions run between checks for interrupts,
// Kick and cross-goroutine code invalidation.
const sliceLen = 4096

// Run executes up to about budget instructions on the calling goroutine and
// says why it stopped. Interrupts are taken between instructions.
func (h *Hart) Run(budget uint64) StopReason {
	defer func() { h.instretPub.Store(h.instret) }()
	if h.kicked.Load() {
		h.kicked.Store(false)
		return StopKicked
	}
	if h.wfi {
		if !h.wfiWakeable() {
			return StopWFI
		}
		h.wfi = false
	}
	for budget > 0 {
		if h.kicked.Load() {
			h.kicked.Store(false)
			return StopKicked
		}
		if h.mmu.staleCode.Load() {
			h.applyInvalidations()
		}
		h.checkInterrupts()
		n := budget
		if n > sliceLen {
			n = sliceLen
		}
		var done uint64
		if h.JITActive() {
			done = h.execJIT(n)
		} else {
			done = h.exec(n)
		}
		if done == 0 {
			done = 1 // a trap counts, so a fault loop still ends
		}
		if done >= budget {
			budget = 0
		} else {
			budget -= done
		}
		if h.wfi {
			return StopWFI
		}
	}
	return StopBudget
}

// trapAt takes the exception recorded in excCause/excTval for the
// instruction at pc and returns the handler's pc.
func (h *Hart) trapAt(pc, instret uint64) uint64 {
	h.pc = pc
	h.instret = instret
	h.trap(h.excCause, h.excTval, false)
	return h.pc
}

func (h *Hart) illegalAt(pc, instret uint64, d *dinsn) uint64 {
	h.excCause, h.excTval = excIllegal, uint64(uint32(d.imm))
	if d.rd&rdCompressed != 0 {
		h.excTval &= 0xffff
	}
	return h.trapAt(pc, instret)
}

// exec runs at most limit instructions and returns how many retired.
func (h *Hart) exec(limit uint64) uint64 {
	x := &h.x
	mem := h.mem
	base := h.instret
	var cnt uint64
	pc := h.pc
	h.endSlice = false
	scratchNext := false
outer:
	for cnt < limit && !h.endSlice {
		var cp *codePage
		vpn := pc >> 12
		dt := h.mmu.d // changes only in code paths that continue outer
		if te := &h.mmu.i.x[vpn&tlbMask]; te.tag == vpn && !scratchNext {
			cp = te.cp
		} else {
			h.pc = pc
			if scratchNext {
				cp = h.fetchScratch(pc)
			} else {
				cp = h.fetchPage(pc)
			}
			scratchNext = false
			if cp == nil {
				pc = h.trapAt(pc, base+cnt)
				continue
			}
		}
		pageBase := pc &^ 4095
		// Inside a page the position is the halfword index; pc is
		// derived (pageBase + idx<<1) only where an instruction needs it,
		// which keeps it off the dispatch's dependency chain.
		idx := (pc - pageBase) >> 1
		stop := limit
		if cp.scratch {
			stop = cnt + 1
		}
		for cnt < stop {
			if idx >= pageInsns {
				pc = pageBase + idx<<1
				continue outer
			}
			d := &cp.insns[idx]
			switch d.op {
			case opDecode:
				h.decodeSlot(cp, idx)
				continue
			case opStraddle:
				pc = pageBase + idx<<1
				scratchNext = true
				continue outer
			case opIllegal:
				pc = h.illegalAt(pageBase+idx<<1, base+cnt, d)
				continue outer
			case opNOP, opFENCE:
			case opLUI:
				x[d.rd&63] = uint64(int64(d.imm))
			case opAUIPC:
				x[d.rd&63] = pageBase + idx<<1 + uint64(int64(d.imm))
			case opJAL:
				x[d.rd&63] = pageBase + (idx+d.hsize())<<1
				idx += uint64(int64(d.imm >> 1))
				cnt++
				continue
			case opJALR:
				t := (x[d.rs1&63] + uint64(int64(d.imm))) &^ 1
				x[d.rd&63] = pageBase + (idx+d.hsize())<<1
				idx = (t - pageBase) >> 1 // wraps consistently when t is below the page
				cnt++
				continue
			case opBEQ:
				if x[d.rs1&63] == x[d.rs2&63] {
					idx += uint64(int64(d.imm >> 1))
					cnt++
					continue
				}
			case opBNE:
				if x[d.rs1&63] != x[d.rs2&63] {
					idx += uint64(int64(d.imm >> 1))
					cnt++
					continue
				}
			case opBLT:
				if int64(x[d.rs1&63]) < int64(x[d.rs2&63]) {
					idx += uint64(int64(d.imm >> 1))
					cnt++
					continue
				}
			case opBGE:
				if int64(x[d.rs1&63]) >= int64(x[d.rs2&63]) {
					idx += uint64(int64(d.imm >> 1))
					cnt++
					continue
				}
			case opBLTU:
				if x[d.rs1&63] < x[d.rs2&63] {
					idx += uint64(int64(d.imm >> 1))
					cnt++
					continue
				}
			case opBGEU:
				if x[d.rs1&63] >= x[d.rs2&63] {
					idx += uint64(int64(d.imm >> 1))
					cnt++
					continue
				}

			case opLB:
				va := x[d.rs1&63] + uint64(int64(d.imm))
				if e := &dt.r[va>>12&tlbMask]; e.tag == va>>12 {
					o := va + e.add
					x[d.rd&63] = uint64(int8(mem[o]))
				} else if v, ok := h.loadSlow(va, 1); ok {
					x[d.rd&63] = uint64(int8(v))
				} else {
					pc = h.trapAt(pageBase+idx<<1, base+cnt)
					continue outer
				}
			case opLBU:
				va := x[d.rs1&63] + uint64(int64(d.imm))
				if e := &dt.r[va>>12&tlbMask]; e.tag == va>>12 {
					o := va + e.add
					x[d.rd&63] = uint64(mem[o])
				} else if v, ok := h.loadSlow(va, 1); ok {
					x[d.rd&63] = v
				} else {
					pc = h.trapAt(pageBase+idx<<1, base+cnt)
					continue outer
				}
			case opLH:
				va := x[d.rs1&63] + uint64(int64(d.imm))
				if e := &dt.r[va>>12&tlbMask]; e.tag == va>>12 && va&1 == 0 {
					o := va + e.add
					x[d.rd&63] = uint64(int16(binary.LittleEndian.Uint16(mem[o:])))
				} else if v, ok := h.loadSlow(va, 2); ok {
					x[d.rd&63] = uint64(int16(v))
				} else {
					pc = h.trapAt(pageBase+idx<<1, base+cnt)
					continue outer
				}
			case opLHU:
				va := x[d.rs1&63] + uint64(int64(d.imm))
				if e := &dt.r[va>>12&tlbMask]; e.tag == va>>12 && va&1 == 0 {
					o := va + e.add
					x[d.rd&63] = uint64(binary.LittleEndian.Uint16(mem[o:]))
				} else if v, ok := h.loadSlow(va, 2); ok {
					x[d.rd&63] = v
				} else {
					pc = h.trapAt(pageBase+idx<<1, base+cnt)
					continue outer
				}
			case opLW:
				va := x[d.rs1&63] + uint64(int64(d.imm))
				if e := &dt.r[va>>12&tlbMask]; e.tag == va>>12 && va&3 == 0 {
					o := va + e.add
					x[d.rd&63] = uint64(int32(binary.LittleEndian.Uint32(mem[o:])))
				} else if v, ok := h.loadSlow(va, 4); ok {
					x[d.rd&63] = uint64(int32(v))
				} else {
					pc = h.trapAt(pageBase+idx<<1, base+cnt)
					continue outer
				}
			case opLWU:
				va := x[d.rs1&63] + uint64(int64(d.imm))
				if e := &dt.r[va>>12&tlbMask]; e.tag == va>>12 && va&3 == 0 {
					o := va + e.add
					x[d.rd&63] = uint64(binary.LittleEndian.Uint32(mem[o:]))
				} else if v, ok := h.loadSlow(va, 4); ok {
					x[d.rd&63] = v
				} else {
					pc = h.trapAt(pageBase+idx<<1, base+cnt)
					continue outer
				}
			case opLD:
				va := x[d.rs1&63] + uint64(int64(d.imm))
				if e := &dt.r[va>>12&tlbMask]; e.tag == va>>12 && va&7 == 0 {
					o := va + e.add
					x[d.rd&63] = binary.LittleEndian.Uint64(mem[o:])
				} else if v, ok := h.loadSlow(va, 8); ok {
					x[d.rd&63] = v
				} else {
					pc = h.trapAt(pageBase+idx<<1, base+cnt)
					continue outer
				}
			case opSB:
				va := x[d.rs1&63] + uint64(int64(d.imm))
				v := x[d.rs2&63]
				if e := &dt.w[va>>12&tlbMask]; e.tag == va>>12 {
					off := va + e.add
					mem[off] = byte(v)
					h.ram.MarkDirty(off)
					if e.code {
						h.invalidateRAM(off, 1)
					}
				} else if !h.storeSlow(va, 1, v) {
					pc = h.trapAt(pageBase+idx<<1, base+cnt)
					continue outer
				} else if h.endSlice {
					pc = pageBase + (idx+d.hsize())<<1
					cnt++
					continue outer
				}
			case opSH:
				va := x[d.rs1&63] + uint64(int64(d.imm))
				v := x[d.rs2&63]
				if e := &dt.w[va>>12&tlbMask]; e.tag == va>>12 && va&1 == 0 {
					off := va + e.add
					binary.LittleEndian.PutUint16(mem[off:], uint16(v))
					h.ram.MarkDirty(off)
					if e.code {
						h.invalidateRAM(off, 2)
					}
				} else if !h.storeSlow(va, 2, v) {
					pc = h.trapAt(pageBase+idx<<1, base+cnt)
					continue outer
				} else if h.endSlice {
					pc = pageBase + (idx+d.hsize())<<1
					cnt++
					continue outer
				}
			case opSW:
				va := x[d.rs1&63] + uint64(int64(d.imm))
				v := x[d.rs2&63]
				if e := &dt.w[va>>12&tlbMask]; e.tag == va>>12 && va&3 == 0 {
					off := va + e.add
					binary.LittleEndian.PutUint32(mem[off:], uint32(v))
					h.ram.MarkDirty(off)
					if e.code {
						h.invalidateRAM(off, 4)
					}
				} else if !h.storeSlow(va, 4, v) {
					pc = h.trapAt(pageBase+idx<<1, base+cnt)
					continue outer
				} else if h.endSlice {
					pc = pageBase + (idx+d.hsize())<<1
					cnt++
					continue outer
				}
			case opSD:
				va := x[d.rs1&63] + uint64(int64(d.imm))
				v := x[d.rs2&63]
				if e := &dt.w[va>>12&tlbMask]; e.tag == va>>12 && va&7 == 0 {
					off := va + e.add
					binary.LittleEndian.PutUint64(mem[off:], v)
					h.ram.MarkDirty(off)
					if e.code {
						h.invalidateRAM(off, 8)
					}
				} else if !h.storeSlow(va, 8, v) {
					pc = h.trapAt(pageBase+idx<<1, base+cnt)
					continue outer
				} else if h.endSlice {
					pc = pageBase + (idx+d.hsize())<<1
					cnt++
					continue outer
				}

			case opADDI:
				x[d.rd&63] = x[d.rs1&63] + uint64(int64(d.imm))
			case opSLTI:
				x[d.rd&63] = b2u(int64(x[d.rs1&63]) < int64(d.imm))
			case opSLTIU:
				x[d.rd&63] = b2u(x[d.rs1&63] < uint64(int64(d.imm)))
			case opXORI:
				x[d.rd&63] = x[d.rs1&63] ^ uint64(int64(d.imm))
			case opORI:
				x[d.rd&63] = x[d.rs1&63] | uint64(int64(d.imm))
			case opANDI:
				x[d.rd&63] = x[d.rs1&63] & uint64(int64(d.imm))
			case opSLLI:
				x[d.rd&63] = x[d.rs1&63] << (d.imm & 63)
			case opSRLI:
				x[d.rd&63] = x[d.rs1&63] >> (d.imm & 63)
			case opSRAI:
				x[d.rd&63] = uint64(int64(x[d.rs1&63]) >> (d.imm & 63))
			case opADD:
				x[d.rd&63] = x[d.rs1&63] + x[d.rs2&63]
			case opSUB:
				x[d.rd&63] = x[d.rs1&63] - x[d.rs2&63]
			case opSLL:
				x[d.rd&63] = x[d.rs1&63] << (x[d.rs2&63] & 63)
			case opSLT:
				x[d.rd&63] = b2u(int64(x[d.rs1&63]) < int64(x[d.rs2&63]))
			case opSLTU:
				x[d.rd&63] = b2u(x[d.rs1&63] < x[d.rs2&63])
			case opXOR:
				x[d.rd&63] = x[d.rs1&63] ^ x[d.rs2&63]
			case opSRL:
				x[d.rd&63] = x[d.rs1&63] >> (x[d.rs2&63] & 63)
			case opSRA:
				x[d.rd&63] = uint64(int64(x[d.rs1&63]) >> (x[d.rs2&63] & 63))
			case opOR:
				x[d.rd&63] = x[d.rs1&63] | x[d.rs2&63]
			case opAND:
				x[d.rd&63] = x[d.rs1&63] & x[d.rs2&63]
			case opADDIW:
				x[d.rd&63] = sext32(uint32(x[d.rs1&63]) + uint32(d.imm))
			case opSLLIW:
				x[d.rd&63] = sext32(uint32(x[d.rs1&63]) << (d.imm & 31))
			case opSRLIW:
				x[d.rd&63] = sext32(uint32(x[d.rs1&63]) >> (d.imm & 31))
			case opSRAIW:
				x[d.rd&63] = uint64(int64(int32(x[d.rs1&63]) >> (d.imm & 31)))
			case opADDW:
				x[d.rd&63] = sext32(uint32(x[d.rs1&63]) + uint32(x[d.rs2&63]))
			case opSUBW:
				x[d.rd&63] = sext32(uint32(x[d.rs1&63]) - uint32(x[d.rs2&63]))
			case opSLLW:
				x[d.rd&63] = sext32(uint32(x[d.rs1&63]) << (x[d.rs2&63] & 31))
			case opSRLW:
				x[d.rd&63] = sext32(uint32(x[d.rs1&63]) >> (x[d.rs2&63] & 31))
			case opSRAW:
				x[d.rd&63] = uint64(int64(int32(x[d.rs1&63]) >> (x[d.rs2&63] & 31)))

			case opMUL:
				x[d.rd&63] = x[d.rs1&63] * x[d.rs2&63]
			case opMULH:
				x[d.rd&63] = mulh(int64(x[d.rs1&63]), int64(x[d.rs2&63]))
			case opMULHSU:
				x[d.rd&63] = mulhsu(int64(x[d.rs1&63]), x[d.rs2&63])
			case opMULHU:
				hi, _ := bits.Mul64(x[d.rs1&63], x[d.rs2&63])
				x[d.rd&63] = hi
			case opDIV:
				x[d.rd&63] = div(int64(x[d.rs1&63]), int64(x[d.rs2&63]))
			case opDIVU:
				a, b := x[d.rs1&63], x[d.rs2&63]
				if b == 0 {
					x[d.rd&63] = ^uint64(0)
				} else {
					x[d.rd&63] = a / b
				}
			case opREM:
				x[d.rd&63] = rem(int64(x[d.rs1&63]), int64(x[d.rs2&63]))
			case opREMU:
				a, b := x[d.rs1&63], x[d.rs2&63]
				if b == 0 {
					x[d.rd&63] = a
				} else {
					x[d.rd&63] = a % b
				}
			case opMULW:
				x[d.rd&63] = sext32(uint32(x[d.rs1&63]) * uint32(x[d.rs2&63]))
			case opDIVW:
				x[d.rd&63] = divw(int32(x[d.rs1&63]), int32(x[d.rs2&63]))
			case opDIVUW:
				a, b := uint32(x[d.rs1&63]), uint32(x[d.rs2&63])
				if b == 0 {
					x[d.rd&63] = ^uint64(0)
				} else {
					x[d.rd&63] = sext32(a / b)
				}
			case opREMW:
				x[d.rd&63] = remw(int32(x[d.rs1&63]), int32(x[d.rs2&63]))
			case opREMUW:
				a, b := uint32(x[d.rs1&63]), uint32(x[d.rs2&63])
				if b == 0 {
					x[d.rd&63] = sext32(a)
				} else {
					x[d.rd&63] = sext32(a % b)
				}

			case opLRW, opSCW, opLRD, opSCD, opAMOSWAPW, opAMOADDW, opAMOXORW, opAMOANDW, opAMOORW,
				opAMOMINW, opAMOMAXW, opAMOMINUW, opAMOMAXUW, opAMOSWAPD, opAMOADDD, opAMOXORD,
				opAMOANDD, opAMOORD, opAMOMIND, opAMOMAXD, opAMOMINUD, opAMOMAXUD:
				if !h.amo(d) {
					pc = h.trapAt(pageBase+idx<<1, base+cnt)
					continue outer
				}
				if h.endSlice {
					pc = pageBase + (idx+d.hsize())<<1
					cnt++
					continue outer
				}

			default: // system instructions: CSRs, traps, fences, xRET, WFI
				h.pc = pageBase + idx<<1
				h.instret = base + cnt
				if !h.system(d) {
					pc = h.trapAt(pageBase+idx<<1, base+cnt)
					continue outer
				}
				pc = h.pc
				cnt++
				continue outer
			}
			idx += d.hsize()
			cnt++
		}
		pc = pageBase + idx<<1
	}
	h.pc = pc
	h.instret = base + cnt
	return cnt
}

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

func sext32(v uint32) uint64 { return uint64(int64(int32(v))) }

func mulh(a, b int64) uint64 {
	hi, _ := bits.Mul64(uint64(a), uint64(b))
	// Correct the unsigned product's high word for the signs.
	if a < 0 {
		hi -= uint64(b)
	}
	if b < 0 {
		hi -= uint64(a)
	}
	return hi
}

func mulhsu(a int64, b uint64) uint64 {
	hi, _ := bits.Mul64(uint64(a), b)
	if a < 0 {
		hi -= b
	}
	return hi
}

func div(a, b int64) uint64 {
	switch {
	case b == 0:
		return ^uint64(0)
	case b == -1 && a == -1<<63:
		return uint64(a)
	}
	return uint64(a / b)
}

func rem(a, b int64) uint64 {
	switch {
	case b == 0:
		return uint64(a)
	case b == -1:
		return 0
	}
	return uint64(a % b)
}

func divw(a, b int32) uint64 {
	switch {
	case b == 0:
		return ^uint64(0)
	case b == -1 && a == -1<<31:
		return uint64(int64(a))
	}
	return uint64(int64(a / b))
}

func remw(a, b int32) uint64 {
	switch {
	case b == 0:
		return uint64(int64(a))
	case b == -1:
		return 0
	}
	return uint64(int64(a % b))
}

// decodeSlot decodes the instruction at halfword idx of cp from RAM.
func (h *Hart) decodeSlot(cp *codePage, idx uint64) {
	off := cp.ramOff + idx*2
	lo := uint32(binary.LittleEndian.Uint16(h.mem[off:]))
	switch {
	case lo&3 != 3:
		cp.insns[idx] = decode16(lo)
	case idx == pageInsns-1:
		cp.insns[idx] = dinsn{op: opStraddle}
	default:
		cp.insns[idx] = decode32(binary.LittleEndian.Uint32(h.mem[off:]))
	}
}

// fetchPage translates pc for execution and returns its decoded page, or a
// scratch page holding just this instruction when the code is not in RAM.
// nil means an exception was recorded.
func (h *Hart) fetchPage(pc uint64) *codePage {
	pa, cache, ok := h.access(pc, 2, accX)
	if !ok {
		return nil
	}
	off, ok := h.ramOffset(pa&^4095, 4096)
	if !ok || !cache {
		return h.fetchScratch(pc)
	}
	cp := h.codePageFor(off >> 12)
	e := &h.mmu.i.x[pc>>12&tlbMask]
	e.tag, e.cp = pc>>12, cp
	return cp
}

// fetchScratch fetches and decodes one instruction without caching it
// (code outside RAM, or a 32-bit instruction crossing a page).
func (h *Hart) fetchScratch(pc uint64) *codePage {
	lo, ok := h.fetch16(pc)
	if !ok {
		return nil
	}
	var d dinsn
	if lo&3 != 3 {
		d = decode16(lo)
	} else {
		hi, ok := h.fetch16(pc + 2)
		if !ok {
			return nil
		}
		d = decode32(lo | hi<<16)
	}
	cp := &h.mmu.scratch
	cp.insns[pc&4095>>1] = d
	return cp
}

func (h *Hart) fetch16(va uint64) (uint32, bool) {
	pa, _, ok := h.access(va, 2, accX)
	if !ok {
		return 0, false
	}
	v, ok := h.physLoad(pa, 2, accX)
	if !ok {
		h.excTval = va
		return 0, false
	}
	return uint32(v), true
}
