package riscv

import (
	"fmt"
	"os"
	"unsafe"
)

// The translator turns runs of decoded instructions into host code (on
// hosts where jitSupported is true). Its blocks share everything with the
// interpreter: they read and write h.x, look addresses up in the same TLB
// entries (a miss, a misaligned access or a store to a page holding code
// leaves the block and the interpreter executes that one instruction), and
// mark stores in RAM's dirty and written bitmaps the way MarkDirty does.
// Every instruction the translator does not handle (CSR, AMO, xRET, traps,
// FENCE.I, instructions crossing a page...) is executed by the interpreter
// too, so both paths keep one definition of the architecture.
//
// Blocks are indexed per decoded page (codePage.jit), so every event that
// drops or re-decodes a page's instructions drops its blocks as well. A
// block jumps straight to another block of its own page through that
// page's entry table, and to any other address through the fetch TLB, as
// the interpreter's own fetch does; blocks never cross a page.

// jitCtx is what generated code sees, at fixed offsets (jit_amd64.s and
// the translator depend on this layout; TestJITContextLayout checks it).
type jitCtx struct {
	regs     unsafe.Pointer // &h.x[0]
	mem      uintptr        // &h.mem[0]
	dtlb     unsafe.Pointer // h.mmu.d
	itlb     unsafe.Pointer // h.mmu.i
	dirty    uintptr        // &dirty bitmap[0]
	written  uintptr        // &written bitmap[0]
	budget   int64          // instructions left; blocks run while > 0
	exitPC   uint64         // where execution continues after a return
	exitKind uint64         // exitDispatch or exitInterpret
}

const (
	// exitDispatch: continue at exitPC, through another block if one exists.
	exitDispatch = 0
	// exitInterpret: the interpreter executes the instruction at exitPC.
	exitInterpret = 1
)

// jitPage holds the host entry points of the blocks starting in one decoded
// page, by halfword index; 0 means none yet.
type jitPage struct {
	entry [pageInsns]uintptr
	// waiting holds, by halfword index, the rel32 fields of jumps from this
	// page's blocks to blocks not translated yet; setEntry points them at
	// the block once it exists.
	waiting map[uint16][]uintptr
}

// chain records the jump whose rel32 is at site as waiting for idx.
func (p *jitPage) chain(idx uint64, site uintptr) {
	if p.waiting == nil {
		p.waiting = make(map[uint16][]uintptr)
	}
	p.waiting[uint16(idx)] = append(p.waiting[uint16(idx)], site)
}

// setEntry records the block at idx and links the jumps waiting for it.
func (p *jitPage) setEntry(j *jitHart, idx uint64, e uintptr) {
	p.entry[idx] = e
	if sites, ok := p.waiting[uint16(idx)]; ok {
		for _, s := range sites {
			j.patchJump(s, e)
		}
		delete(p.waiting, uint16(idx))
	}
}

// perfMap, with SNAPVM_PERFMAP=1 in the environment, receives one line
// per translated block in the format perf(1) reads from
// /tmp/perf-PID.map, so profiles name blocks by guest address
// ("riscv_<pc>_<instructions>").
var perfMap = openPerfMap()

func openPerfMap() *os.File {
	if os.Getenv("SNAPVM_PERFMAP") != "1" {
		return nil
	}
	f, err := os.OpenFile(fmt.Sprintf("/tmp/perf-%d.map", os.Getpid()), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil
	}
	return f
}

// jitDisabled turns translation off for the whole process (SNAPVM_JIT=0),
// to compare against the interpreter or to isolate a translator bug.
var jitDisabled = os.Getenv("SNAPVM_JIT") == "0"

// SetJIT turns host-code translation on or off for this hart (it is on by
// default where the host supports it). Both modes execute the same
// architecture; tests run guests both ways.
func (h *Hart) SetJIT(on bool) { h.jitOff = !on }

// JITActive reports whether Run translates code on this hart.
func (h *Hart) JITActive() bool {
	return jitSupported && !jitDisabled && !h.jitOff && h.mem != nil
}

// jitable reports whether the translator handles op. Everything else ends
// a block and runs in the interpreter.
func jitable(op uint8) bool {
	switch {
	case op >= opLUI && op <= opREMUW:
		return true
	case op == opNOP || op == opFENCE:
		return true
	}
	return false
}

// execJIT is exec for translated code: it runs blocks while they last and
// hands every other instruction to the interpreter, up to about limit
// instructions. It returns how many steps were taken (a trap counts as
// one, like a retired instruction, so a fault loop still ends).
func (h *Hart) execJIT(limit uint64) uint64 {
	j := h.jitState()
	var steps uint64
	h.endSlice = false
	for steps < limit && !h.endSlice {
		pc := h.pc
		entry := h.jitEntry(pc)
		if entry == 0 {
			n := h.exec(1)
			steps += max(n, 1)
			continue
		}
		left := int64(limit - steps)
		c := &j.ctx
		c.budget = left
		c.dtlb = unsafe.Pointer(h.mmu.d)
		c.itlb = unsafe.Pointer(h.mmu.i)
		jitEnter(entry, c)
		done := uint64(left - c.budget)
		steps += done
		h.instret += done
		h.pc = c.exitPC
		switch {
		case c.exitKind == exitInterpret:
			n := h.exec(1)
			steps += max(n, 1)
		case done == 0 && h.pc == pc:
			// The next block is longer than what is left of the budget.
			steps += max(h.exec(limit-steps), 1)
		}
	}
	return steps
}

// jitEntry returns the host entry of the block at pc, translating it if
// needed, or 0 when the interpreter must execute the instruction at pc.
func (h *Hart) jitEntry(pc uint64) uintptr {
	var cp *codePage
	vpn := pc >> 12
	if te := &h.mmu.i.x[vpn&tlbMask]; te.tag == vpn {
		cp = te.cp
	} else {
		cp = h.fetchPage(pc)
		if cp == nil || cp.scratch {
			return 0 // the interpreter raises the fault or runs it uncached
		}
	}
	idx := (pc & 4095) >> 1
	if cp.insns[idx].op == opDecode {
		h.decodeSlot(cp, idx)
	}
	if !jitable(cp.insns[idx].op) {
		return 0
	}
	if cp.jit == nil {
		cp.jit = new(jitPage)
	}
	if e := cp.jit.entry[idx]; e != 0 {
		return e
	}
	j := h.jitState()
	e := j.translate(h, cp, pc)
	if e != 0 {
		cp.jit.setEntry(j, idx, e)
	}
	return e
}

// jitState returns the hart's translator state, creating it on first use.
func (h *Hart) jitState() *jitHart {
	if h.jit == nil {
		h.jit = newJITHart(h)
	}
	return h.jit
}

// dropJIT forgets every translated block (the code buffer is reused).
func (h *Hart) dropJIT() {
	for _, rp := range h.mmu.live {
		if cp := h.mmu.codePages[rp]; cp != nil {
			cp.jit = nil
		}
	}
}
