package riscv

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/snapvm/snapvm/internal/x64"
)

const jitSupported = true

// jitEnter runs generated code at entry with the registers it expects
// (jit_amd64.s) and returns when a block exits.
//
//go:noescape
func jitEnter(entry uintptr, ctx *jitCtx)

// Host registers inside generated code. RAX, RCX and RDX are scratch for
// each instruction's template; cachePool holds guest registers within a
// block.
const (
	rRegs   = x64.RBX // &h.x[0]
	rCtx    = x64.R12 // *jitCtx
	rMem    = x64.R13 // &RAM[0]
	rDTLB   = x64.R14 // data TLB set
	rBudget = x64.R15 // instructions left (signed)
)

// cachePool is where a block keeps the guest registers it uses; they are
// written back to Hart.x before every exit from the block.
var cachePool = [...]x64.Reg{x64.RSI, x64.RDI, x64.R8, x64.R9, x64.R10, x64.R11}

const (
	// jitCodeSize is each hart's code buffer; when it fills up every block
	// is dropped and translation starts again.
	jitCodeSize = 32 << 20
	// jitMaxBlock bounds a block's length in instructions (and so the code
	// emitted for one block, which must fit in jitBlockRoom).
	jitMaxBlock  = 128
	jitBlockRoom = 64 << 10
)

// Generated code indexes the TLBs with the low byte of the page number.
var (
	_ [tlbSize - 256]struct{}
	_ [256 - tlbSize]struct{}
)

// Offsets of what generated code reads, from the Go layouts.
var (
	offCtxBudget   = int32(unsafe.Offsetof(jitCtx{}.budget))
	offCtxExitPC   = int32(unsafe.Offsetof(jitCtx{}.exitPC))
	offCtxExitKind = int32(unsafe.Offsetof(jitCtx{}.exitKind))
	offCtxITLB     = int32(unsafe.Offsetof(jitCtx{}.itlb))
	offCtxDirty    = int32(unsafe.Offsetof(jitCtx{}.dirty))
	offCtxWritten  = int32(unsafe.Offsetof(jitCtx{}.written))
	offSetR        = int32(unsafe.Offsetof(tlbSet{}.r))
	offSetW        = int32(unsafe.Offsetof(tlbSet{}.w))
	offSetX        = int32(unsafe.Offsetof(tlbSet{}.x))
	offEntryAdd    = int32(unsafe.Offsetof(tlbEntry{}.add))
	offEntryCode   = int32(unsafe.Offsetof(tlbEntry{}.code))
	offCodeTLBCP   = int32(unsafe.Offsetof(codeTLBEntry{}.cp))
	offPageJIT     = int32(unsafe.Offsetof(codePage{}.jit))
)

// jitHart is one hart's translator: its context, code buffer and the
// assembler reused between blocks.
type jitHart struct {
	ctx  jitCtx
	code []byte
	used int
	// refills counts how often the buffer filled up and was reused.
	refills int
	// loopBlocks counts blocks emitted in loop mode.
	loopBlocks int
	asm        x64.Asm
	// stubs are the out-of-line exits of the block being translated.
	stubs []jitStub
}

// jitStub is an exit emitted after the block body: the rel32 jumps at
// 'from' lead to code that accounts for 'done' instructions and leaves
// with kind at pc (or at the address in RAX when fromRAX).
type jitStub struct {
	from    []int
	pc      uint64
	done    int
	kind    uint64
	fromRAX bool
	// mark: set the dirty and written bits of the page in RAX, then jump
	// back to resume.
	mark   bool
	resume int
	// flush lists the cached guest registers to write back first.
	flush []cachedReg
}

// pendingChain is a jump at offset at to the block at halfword idx.
type pendingChain struct {
	idx uint64
	at  int
}

// cachedReg is a guest register held in a host register.
type cachedReg struct {
	host  x64.Reg
	guest uint8
}

func newJITHart(h *Hart) *jitHart {
	j := &jitHart{}
	code, err := unix.Mmap(-1, 0, jitCodeSize, unix.PROT_READ|unix.PROT_WRITE|unix.PROT_EXEC,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		// No executable memory: this hart interprets.
		h.jitOff = true
		return j
	}
	j.code = code
	runtime.AddCleanup(h, func(b []byte) { _ = unix.Munmap(b) }, code)
	dirty, written := h.ram.PageBitmaps()
	j.ctx.regs = unsafe.Pointer(&h.x[0])
	j.ctx.mem = uintptr(unsafe.Pointer(&h.mem[0]))
	j.ctx.dirty = uintptr(unsafe.Pointer(&dirty[0]))
	j.ctx.written = uintptr(unsafe.Pointer(&written[0]))
	return j
}

// translate emits the block starting at pc (in page cp, whose first
// instruction is jitable) and returns its host address, or 0 when this
// hart cannot translate.
func (j *jitHart) translate(h *Hart, cp *codePage, pc uint64) uintptr {
	if j.code == nil {
		return 0
	}
	if j.used+jitBlockRoom > len(j.code) {
		h.dropJIT()
		j.used = 0
		j.refills++
	}
	if cp.jit == nil {
		cp.jit = new(jitPage)
	}
	a := &j.asm
	base := uintptr(unsafe.Pointer(&j.code[j.used]))
	gen := func(loop *blockGen) *blockGen {
		a.Buf = a.Buf[:0]
		j.stubs = j.stubs[:0]
		b := &blockGen{j: j, a: a, h: h, cp: cp, startPC: pc, base: base}
		if loop != nil {
			b.loop, b.loopRegs, b.loopWritten = true, loop.touched, loop.written
		}
		b.emit()
		return b
	}
	b := gen(nil)
	// A block that branches back to its own start and uses few enough
	// registers is emitted again as a loop that keeps them in host
	// registers across iterations.
	if b.selfLoop && bits.OnesCount64(b.touched) <= len(cachePool) {
		if lb := gen(b); !lb.loopBroken {
			b = lb
			j.loopBlocks++
		} else {
			b = gen(nil)
		}
	}
	for _, c := range b.chains {
		cp.jit.chain(c.idx, base+uintptr(c.at))
	}
	for _, s := range j.stubs {
		at := a.Len()
		for _, f := range s.from {
			a.PatchRel32(f, at)
		}
		switch {
		case s.mark:
			a.Load64(x64.RDX, x64.M(rCtx, offCtxDirty))
			a.LockBts(x64.M(x64.RDX, 0), x64.RAX)
			a.Load64(x64.RDX, x64.M(rCtx, offCtxWritten))
			a.LockBts(x64.M(x64.RDX, 0), x64.RAX)
			a.PatchRel32(a.Jmp(), s.resume)
		default:
			for _, f := range s.flush {
				a.Store64(regMem(f.guest), f.host)
			}
			if s.done > 0 {
				a.ALUImm(true, x64.SUB, rBudget, int32(s.done))
			}
			if !s.fromRAX {
				a.MovImm(x64.RAX, s.pc)
			}
			a.Store64(x64.M(rCtx, offCtxExitPC), x64.RAX)
			a.StoreImm32(true, x64.M(rCtx, offCtxExitKind), int32(s.kind))
			a.Ret()
		}
	}
	if len(a.Buf) > jitBlockRoom {
		panic("riscv: translated block larger than its reserved room")
	}
	copy(j.code[j.used:], a.Buf)
	j.used += (len(a.Buf) + 15) &^ 15
	if perfMap != nil {
		fmt.Fprintf(perfMap, "%x %x riscv_%x_%d\n", base, len(a.Buf), pc, b.maxLen)
	}
	return base
}

// patchJump points the rel32 at host address site (in this hart's code
// buffer) to target.
func (j *jitHart) patchJump(site, target uintptr) {
	off := site - uintptr(unsafe.Pointer(&j.code[0]))
	binary.LittleEndian.PutUint32(j.code[off:], uint32(int32(int64(target)-int64(site+4))))
}

// blockGen emits one block.
type blockGen struct {
	j       *jitHart
	a       *x64.Asm
	h       *Hart
	cp      *codePage
	startPC uint64
	base    uintptr // where the block will be copied
	done    int     // instructions emitted so far
	maxLen  int     // instructions on the block's longest path
	// lenSites are imm32 fields to patch with maxLen once known.
	lenSites []int
	// chains are jumps to other blocks of the page not translated yet.
	chains []pendingChain

	// touched and written are the guest registers (bit numbers) the block
	// reads or writes and writes; selfLoop is set when it jumps back to
	// its own start.
	touched, written uint64
	selfLoop         bool
	// In loop mode every register in loopRegs is loaded into the cache at
	// entry and stays there; the jump back to the start skips the loads
	// and the write-back. loopBroken reports a register outside the set.
	loop                  bool
	loopRegs, loopWritten uint64
	loopBroken            bool
	bodyStart             int

	// The register cache: which guest register each cachePool register
	// holds (-1: none), whether it differs from Hart.x, and when it was
	// last used.
	cached [len(cachePool)]int16
	dirty  [len(cachePool)]bool
	used   [len(cachePool)]int
	clock  int
}

func regMem(r uint8) x64.Mem { return x64.M(rRegs, int32(r&63)*8) }

// stub registers an out-of-line exit and returns its index for jumpTo.
func (b *blockGen) stub(s jitStub) int {
	if !s.mark && !s.fromRAX {
		s.flush = b.dirtyRegs()
	}
	b.j.stubs = append(b.j.stubs, s)
	return len(b.j.stubs) - 1
}

// jumpTo records the rel32 at 'at' as a jump to stub i.
func (b *blockGen) jumpTo(i, at int) { b.j.stubs[i].from = append(b.j.stubs[i].from, at) }

// exitIf leaves the block (through a stub) at pc with kind after done
// instructions when condition c holds.
func (b *blockGen) exitIf(c x64.Cond, pc uint64, kind uint64, done int) {
	b.jumpTo(b.stub(jitStub{pc: pc, done: done, kind: kind}), b.a.Jcc(c))
}

// exit leaves the block at pc with kind after done instructions.
func (b *blockGen) exit(pc uint64, kind uint64, done int) {
	b.jumpTo(b.stub(jitStub{pc: pc, done: done, kind: kind}), b.a.Jmp())
}

func (b *blockGen) emit() {
	a := b.a
	for i := range b.cached {
		b.cached[i] = -1
	}
	// Entry: run only when the budget covers the whole block, so Run's
	// budget stays exact (execJIT interprets the remainder). The block's
	// length is known only at its end: patch the immediate then.
	a.ALUImm(true, x64.CMP, rBudget, 0x7fffffff) // imm32 form, patched below
	b.lenSites = append(b.lenSites, a.Len()-4)
	b.exitIf(x64.CondL, b.startPC, exitDispatch, 0)
	defer func() {
		for _, at := range b.lenSites {
			binary.LittleEndian.PutUint32(a.Buf[at:], uint32(b.maxLen))
		}
	}()
	if b.loop {
		i := 0
		for r := range 64 {
			if b.loopRegs&(1<<r) != 0 {
				a.Load64(cachePool[i], regMem(uint8(r)))
				b.cached[i], b.dirty[i] = int16(r), b.loopWritten&(1<<r) != 0
				i++
			}
		}
		b.bodyStart = a.Len()
	}

	pc := b.startPC
	pageBase := pc &^ 4095
	for {
		idx := (pc - pageBase) >> 1
		if idx >= pageInsns {
			// Continue in the next page through the fetch TLB.
			b.endBlock()
			b.gotoPC(pc)
			return
		}
		d := &b.cp.insns[idx]
		if d.op == opDecode {
			b.h.decodeSlot(b.cp, idx)
		}
		switch {
		case !jitable(d.op):
			b.endBlock()
			b.exit(pc, exitInterpret, 0)
			return
		case b.done >= jitMaxBlock:
			b.endBlock()
			b.gotoPC(pc)
			return
		}
		next := pc + d.size()
		if b.insn(d, pc, next) {
			return
		}
		b.done++
		pc = next
	}
}

// backEdge ends an iteration of a loop-mode block: it accounts for the
// instructions, and starts the next iteration with the registers still
// cached if the budget covers it, or leaves at the block's start.
func (b *blockGen) backEdge() {
	a := b.a
	b.maxLen = max(b.maxLen, b.done)
	a.ALUImm(true, x64.SUB, rBudget, int32(b.done))
	a.ALUImm(true, x64.CMP, rBudget, 0x7fffffff)
	b.lenSites = append(b.lenSites, a.Len()-4)
	b.exitIf(x64.CondL, b.startPC, exitDispatch, 0)
	a.PatchRel32(a.Jmp(), b.bodyStart)
}

// endBlock writes cached registers back and accounts for the
// instructions emitted so far.
func (b *blockGen) endBlock() {
	b.flushRegs()
	b.maxLen = max(b.maxLen, b.done)
	if b.done > 0 {
		b.a.ALUImm(true, x64.SUB, rBudget, int32(b.done))
	}
}

// gotoPC continues at the constant address pc. Within this block's page
// it jumps straight to the target block when one exists (or is this
// block), and otherwise through the page's entry table, with the jump left
// for jitEntry to point at the target once it is translated. Other pages
// go through the fetch TLB.
func (b *blockGen) gotoPC(pc uint64) {
	a := b.a
	if pc>>12 != b.startPC>>12 {
		a.MovImm(x64.RAX, pc)
		b.gotoRAX()
		return
	}
	idx := (pc & 4095) >> 1
	jp := b.cp.jit
	at := a.Jmp()
	switch {
	case pc == b.startPC:
		b.selfLoop = true
		a.PatchRel32(at, 0)
		return
	case jp.entry[idx] != 0:
		a.PatchRel32Abs(at, b.base, jp.entry[idx])
		return
	}
	// Until patched the jump falls through to the table lookup.
	b.chains = append(b.chains, pendingChain{idx: idx, at: at})
	slot := &jp.entry[idx]
	a.MovImm(x64.RCX, uint64(uintptr(unsafe.Pointer(slot))))
	a.Load64(x64.RCX, x64.M(x64.RCX, 0))
	a.TestRR(true, x64.RCX, x64.RCX)
	b.exitIf(x64.CondE, pc, exitDispatch, 0)
	a.JmpReg(x64.RCX)
}

// gotoRAX continues at the address in RAX through the fetch TLB, the
// page's decoded-code entry and its block table; any miss returns to Go.
func (b *blockGen) gotoRAX() {
	a := b.a
	miss := b.stub(jitStub{kind: exitDispatch, fromRAX: true})
	jmiss := func(c x64.Cond) { b.jumpTo(miss, a.Jcc(c)) }
	a.Mov(true, x64.RCX, x64.RAX)
	a.ShiftImm(true, x64.SHR, x64.RCX, 12)
	a.Movzx8(x64.RDX, x64.RCX)
	a.ShiftImm(false, x64.SHL, x64.RDX, 4)
	a.Load64(x64.RSI, x64.M(rCtx, offCtxITLB))
	a.ALURM(true, x64.CMP, x64.RCX, x64.MI(x64.RSI, x64.RDX, 1, offSetX))
	jmiss(x64.CondNE)
	a.Load64(x64.RSI, x64.MI(x64.RSI, x64.RDX, 1, offSetX+offCodeTLBCP))
	a.Load64(x64.RSI, x64.M(x64.RSI, offPageJIT))
	a.TestRR(true, x64.RSI, x64.RSI)
	jmiss(x64.CondE)
	a.Mov(false, x64.RCX, x64.RAX)
	a.ALUImm(false, x64.AND, x64.RCX, 4094)
	a.Load64(x64.RSI, x64.MI(x64.RSI, x64.RCX, 4, 0))
	a.TestRR(true, x64.RSI, x64.RSI)
	jmiss(x64.CondE)
	a.JmpReg(x64.RSI)
}

// loadReg copies guest register r into host register dst.
func (b *blockGen) loadReg(dst x64.Reg, r uint8) {
	if r&63 == 0 {
		b.a.ALURR(false, x64.XOR, dst, dst)
		return
	}
	b.a.Mov(true, dst, b.use(r))
}

// storeReg sets guest register r to host register src.
func (b *blockGen) storeReg(r uint8, src x64.Reg) { b.a.Mov(true, b.def(r), src) }

// use returns a host register holding guest register r, loading it into
// the cache if needed. The register stays valid until the next use or
// def, which may evict it.
func (b *blockGen) use(r uint8) x64.Reg {
	r &= 63
	b.touched |= 1 << r
	i := b.slot(r)
	if i < 0 {
		i = b.victim()
		b.a.Load64(cachePool[i], regMem(r))
		b.cached[i], b.dirty[i] = int16(r), false
	}
	b.clock++
	b.used[i] = b.clock
	return cachePool[i]
}

// def returns the host register that guest register r is to be written
// to; the value reaches Hart.x when the block writes its cache back.
func (b *blockGen) def(r uint8) x64.Reg {
	r &= 63
	b.touched |= 1 << r
	b.written |= 1 << r
	i := b.slot(r)
	if i < 0 {
		i = b.victim()
		b.cached[i] = int16(r)
	}
	b.dirty[i] = true
	b.clock++
	b.used[i] = b.clock
	return cachePool[i]
}

func (b *blockGen) slot(r uint8) int {
	for i, g := range b.cached {
		if g == int16(r) {
			return i
		}
	}
	return -1
}

// victim frees a cache slot (an empty one, else the least recently used,
// written back if dirty) and returns it.
func (b *blockGen) victim() int {
	if b.loop {
		b.loopBroken = true // the emission is discarded
	}
	best := 0
	for i := range b.cached {
		if b.cached[i] < 0 {
			return i
		}
		if b.used[i] < b.used[best] {
			best = i
		}
	}
	if b.dirty[best] {
		b.a.Store64(regMem(uint8(b.cached[best])), cachePool[best])
	}
	b.cached[best], b.dirty[best] = -1, false
	return best
}

// dirtyRegs lists the cached registers not yet written back.
func (b *blockGen) dirtyRegs() []cachedReg {
	var out []cachedReg
	for i, g := range b.cached {
		if g >= 0 && b.dirty[i] {
			out = append(out, cachedReg{host: cachePool[i], guest: uint8(g)})
		}
	}
	return out
}

// flushRegs writes every dirty cached register back (with MOVs, which
// leave the flags alone); they stay cached, now clean.
func (b *blockGen) flushRegs() {
	for i, g := range b.cached {
		if g >= 0 && b.dirty[i] {
			b.a.Store64(regMem(uint8(g)), cachePool[i])
			// In loop mode the registers stay dirty: another iteration
			// may follow this write-back.
			b.dirty[i] = b.loop
		}
	}
}

// address computes the RAM offset of x[rs1]+imm into RAX through the data
// TLB table at offTable, leaving to the interpreter (at pc) on a miss, a
// misaligned address or, for stores, a page holding decoded code.
func (b *blockGen) address(d *dinsn, pc uint64, size int, store bool) {
	a := b.a
	b.loadReg(x64.RAX, d.rs1)
	if d.imm != 0 {
		a.ALUImm(true, x64.ADD, x64.RAX, d.imm)
	}
	tbl := offSetR
	if store {
		tbl = offSetW
	}
	slow := b.stub(jitStub{pc: pc, done: b.done, kind: exitInterpret})
	jslow := func(c x64.Cond) { b.jumpTo(slow, a.Jcc(c)) }
	a.Mov(true, x64.RCX, x64.RAX)
	a.ShiftImm(true, x64.SHR, x64.RCX, 12)
	a.Movzx8(x64.RDX, x64.RCX)
	a.Lea(x64.RDX, x64.MI(x64.RDX, x64.RDX, 2, 0)) // *3: entries are 24 bytes
	a.ALURM(true, x64.CMP, x64.RCX, x64.MI(rDTLB, x64.RDX, 8, tbl))
	jslow(x64.CondNE)
	if size > 1 {
		a.TestImm8(x64.RAX, uint8(size-1))
		jslow(x64.CondNE)
	}
	if store {
		a.CmpMem8Imm(x64.MI(rDTLB, x64.RDX, 8, tbl+offEntryCode), 0)
		jslow(x64.CondNE)
	}
	a.ALURM(true, x64.ADD, x64.RAX, x64.MI(rDTLB, x64.RDX, 8, tbl+offEntryAdd))
}

// What each translated operation maps to, by op.
var (
	jitCond = map[uint8]x64.Cond{
		opBEQ: x64.CondE, opBNE: x64.CondNE, opBLT: x64.CondL, opBGE: x64.CondGE,
		opBLTU: x64.CondB, opBGEU: x64.CondAE,
		opSLT: x64.CondL, opSLTI: x64.CondL, opSLTU: x64.CondB, opSLTIU: x64.CondB,
	}
	jitALU = map[uint8]x64.ALU{
		opADD: x64.ADD, opADDI: x64.ADD, opADDW: x64.ADD, opSUB: x64.SUB, opSUBW: x64.SUB,
		opXOR: x64.XOR, opXORI: x64.XOR, opOR: x64.OR, opORI: x64.OR, opAND: x64.AND, opANDI: x64.AND,
	}
	jitShift = map[uint8]x64.Shift{
		opSLL: x64.SHL, opSLLI: x64.SHL, opSLLW: x64.SHL, opSLLIW: x64.SHL,
		opSRL: x64.SHR, opSRLI: x64.SHR, opSRLW: x64.SHR, opSRLIW: x64.SHR,
		opSRA: x64.SAR, opSRAI: x64.SAR, opSRAW: x64.SAR, opSRAIW: x64.SAR,
	}
	jitAccessSize = map[uint8]int{
		opLB: 1, opLBU: 1, opLH: 2, opLHU: 2, opLW: 4, opLWU: 4, opLD: 8,
		opSB: 1, opSH: 2, opSW: 4, opSD: 8,
	}
)

// insn emits one instruction and reports whether it ended the block.
func (b *blockGen) insn(d *dinsn, pc, next uint64) bool {
	a := b.a
	const (
		rax = x64.RAX
		rcx = x64.RCX
		rdx = x64.RDX
	)
	ram := x64.MI(rMem, rax, 1, 0)
	switch d.op {
	case opNOP, opFENCE:
	case opLUI:
		a.MovImm(rax, uint64(int64(d.imm)))
		b.storeReg(d.rd, rax)
	case opAUIPC:
		a.MovImm(rax, pc+uint64(int64(d.imm)))
		b.storeReg(d.rd, rax)

	case opJAL:
		a.MovImm(rax, next)
		b.storeReg(d.rd, rax)
		b.done++
		target := pc + uint64(int64(d.imm))
		if b.loop && target == b.startPC {
			b.backEdge()
			return true
		}
		b.endBlock()
		b.gotoPC(target)
		return true
	case opJALR:
		b.loadReg(rax, d.rs1)
		if d.imm != 0 {
			a.ALUImm(true, x64.ADD, rax, d.imm)
		}
		a.ALUImm(true, x64.AND, rax, -2)
		a.MovImm(rcx, next)
		b.storeReg(d.rd, rcx)
		b.done++
		b.endBlock()
		b.gotoRAX()
		return true
	case opBEQ, opBNE, opBLT, opBGE, opBLTU, opBGEU:
		b.loadReg(rax, d.rs1)
		a.ALURR(true, x64.CMP, rax, b.use(d.rs2))
		target := pc + uint64(int64(d.imm))
		loopBack := b.loop && target == b.startPC
		if !loopBack {
			b.flushRegs() // MOVs only: the flags survive for the Jcc
		}
		taken := a.Jcc(jitCond[d.op])
		b.done++
		b.endBlock()
		b.gotoPC(next)
		a.PatchRel32(taken, a.Len())
		if loopBack {
			b.backEdge()
		} else {
			b.endBlock()
			b.gotoPC(target)
		}
		return true

	case opLB, opLBU, opLH, opLHU, opLW, opLWU, opLD:
		b.address(d, pc, jitAccessSize[d.op], false)
		switch d.op {
		case opLB:
			a.LoadSX8(rax, ram)
		case opLBU:
			a.LoadZX8(rax, ram)
		case opLH:
			a.LoadSX16(rax, ram)
		case opLHU:
			a.LoadZX16(rax, ram)
		case opLW:
			a.LoadSX32(rax, ram)
		case opLWU:
			a.Load32(rax, ram)
		case opLD:
			a.Load64(rax, ram)
		}
		b.storeReg(d.rd, rax)
	case opSB, opSH, opSW, opSD:
		b.address(d, pc, jitAccessSize[d.op], true)
		v := b.use(d.rs2)
		switch jitAccessSize[d.op] {
		case 1:
			a.Store8(ram, v)
		case 2:
			a.Store16(ram, v)
		case 4:
			a.Store32(ram, v)
		case 8:
			a.Store64(ram, v)
		}
		b.markDirty()

	case opADDI, opXORI, opORI, opANDI:
		op := jitALU[d.op]
		b.loadReg(rax, d.rs1)
		if d.imm != 0 || op == x64.AND {
			a.ALUImm(true, op, rax, d.imm)
		}
		b.storeReg(d.rd, rax)
	case opSLTI, opSLTIU:
		b.loadReg(rcx, d.rs1)
		a.ALURR(false, x64.XOR, rax, rax)
		a.ALUImm(true, x64.CMP, rcx, d.imm)
		a.Setcc(jitCond[d.op], rax)
		b.storeReg(d.rd, rax)
	case opSLLI, opSRLI, opSRAI:
		b.loadReg(rax, d.rs1)
		a.ShiftImm(true, jitShift[d.op], rax, uint8(d.imm&63))
		b.storeReg(d.rd, rax)
	case opADD, opSUB, opXOR, opOR, opAND:
		op := jitALU[d.op]
		b.loadReg(rax, d.rs1)
		a.ALURR(true, op, rax, b.use(d.rs2))
		b.storeReg(d.rd, rax)
	case opSLT, opSLTU:
		b.loadReg(rcx, d.rs1)
		a.ALURR(false, x64.XOR, rax, rax)
		a.ALURR(true, x64.CMP, rcx, b.use(d.rs2))
		a.Setcc(jitCond[d.op], rax)
		b.storeReg(d.rd, rax)
	case opSLL, opSRL, opSRA, opSLLW, opSRLW, opSRAW:
		w := d.op == opSLL || d.op == opSRL || d.op == opSRA
		sh := jitShift[d.op]
		b.loadReg(rax, d.rs1)
		b.loadReg(rcx, d.rs2)
		a.ShiftCL(w, sh, rax)
		if !w {
			a.Movsxd(rax, rax)
		}
		b.storeReg(d.rd, rax)
	case opADDIW:
		b.loadReg(rax, d.rs1)
		if d.imm != 0 {
			a.ALUImm(false, x64.ADD, rax, d.imm)
		}
		a.Movsxd(rax, rax)
		b.storeReg(d.rd, rax)
	case opSLLIW, opSRLIW, opSRAIW:
		b.loadReg(rax, d.rs1)
		a.ShiftImm(false, jitShift[d.op], rax, uint8(d.imm&31))
		a.Movsxd(rax, rax)
		b.storeReg(d.rd, rax)
	case opADDW, opSUBW:
		b.loadReg(rax, d.rs1)
		a.ALURR(false, jitALU[d.op], rax, b.use(d.rs2))
		a.Movsxd(rax, rax)
		b.storeReg(d.rd, rax)

	case opMUL, opMULW:
		w := d.op == opMUL
		b.loadReg(rax, d.rs1)
		b.loadReg(rcx, d.rs2)
		a.Imul(w, rax, rcx)
		if !w {
			a.Movsxd(rax, rax)
		}
		b.storeReg(d.rd, rax)
	case opMULH, opMULHU, opMULHSU:
		b.loadReg(rax, d.rs1)
		b.loadReg(rcx, d.rs2)
		if d.op == opMULH {
			a.Imul1(true, rcx)
		} else {
			a.Mul(true, rcx)
		}
		if d.op == opMULHSU {
			// Signed rs1: subtract rs2 from the unsigned high word when rs1 < 0.
			b.loadReg(rax, d.rs1)
			a.ShiftImm(true, x64.SAR, rax, 63)
			a.ALURR(true, x64.AND, rax, rcx)
			a.ALURR(true, x64.SUB, rdx, rax)
		}
		b.storeReg(d.rd, rdx)
	case opDIV, opDIVU, opREM, opREMU, opDIVW, opDIVUW, opREMW, opREMUW:
		b.divide(d)

	default:
		panic("riscv: translator given an instruction it does not handle")
	}
	return false
}

// divide emits the division family with RISC-V's results for a zero
// divisor and for overflow, which x86 would trap on.
func (b *blockGen) divide(d *dinsn) {
	a := b.a
	const (
		rax = x64.RAX
		rcx = x64.RCX
		rdx = x64.RDX
	)
	w := d.op == opDIV || d.op == opDIVU || d.op == opREM || d.op == opREMU
	signed := d.op == opDIV || d.op == opREM || d.op == opDIVW || d.op == opREMW
	isRem := d.op == opREM || d.op == opREMU || d.op == opREMW || d.op == opREMUW
	b.loadReg(rax, d.rs1)
	b.loadReg(rcx, d.rs2)
	var ends []int
	a.TestRR(w, rcx, rcx)
	zero := a.Jcc(x64.CondE)
	var minus1 int
	if signed {
		a.ALUImm(w, x64.CMP, rcx, -1)
		minus1 = a.Jcc(x64.CondE)
	}
	// The ordinary case.
	if signed {
		a.Cqo(w)
		a.Idiv(w, rcx)
	} else {
		a.ALURR(false, x64.XOR, rdx, rdx)
		a.Div(w, rcx)
	}
	if isRem {
		a.Mov(true, rax, rdx)
	}
	ends = append(ends, a.Jmp())
	// Divisor zero: quotient all ones, remainder the dividend.
	a.PatchRel32(zero, a.Len())
	if !isRem {
		a.MovImm(rax, ^uint64(0))
	}
	ends = append(ends, a.Jmp())
	if signed {
		// Divisor -1: quotient -dividend (wrapping), remainder 0.
		a.PatchRel32(minus1, a.Len())
		if isRem {
			a.ALURR(false, x64.XOR, rax, rax)
		} else {
			a.Neg(w, rax)
		}
	}
	for _, e := range ends {
		a.PatchRel32(e, a.Len())
	}
	if !w {
		a.Movsxd(rax, rax)
	}
	b.storeReg(d.rd, rax)
}

// markDirty sets the dirty and written bits of the page just stored to
// (RAM offset in RAX), after the store as MarkDirty orders it.
func (b *blockGen) markDirty() {
	a := b.a
	const (
		rax = x64.RAX
		rcx = x64.RCX
		rdx = x64.RDX
	)
	a.ShiftImm(true, x64.SHR, rax, 12)
	a.Mov(true, rcx, rax)
	a.ShiftImm(true, x64.SHR, rcx, 6)
	mark := b.stub(jitStub{mark: true})
	a.Load64(rdx, x64.M(rCtx, offCtxDirty))
	a.Load64(rdx, x64.MI(rdx, rcx, 8, 0))
	a.Bt(rdx, rax)
	b.jumpTo(mark, a.Jcc(x64.CondAE)) // CF clear: bit not set
	a.Load64(rdx, x64.M(rCtx, offCtxWritten))
	a.Load64(rdx, x64.MI(rdx, rcx, 8, 0))
	a.Bt(rdx, rax)
	b.jumpTo(mark, a.Jcc(x64.CondAE))
	b.j.stubs[mark].resume = a.Len()
}
