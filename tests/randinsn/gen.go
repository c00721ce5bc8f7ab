// Package randinsn generates random RV64IMAC instruction sequences as
// ready-to-boot ELF images (no cross compiler involved) and runs them on
// qemu-system-riscv64 and snapvm to compare the resulting machine state.
//
// One program holds many sequences so that a VM start-up is amortized. Each
// sequence loads every register from a seeded table, runs random
// instructions (ALU, M, loads/stores incl. misaligned ones into a 4 KiB data
// area, forward branches and jumps, compressed forms, CSR accesses,
// AMOs, LR/SC), then stores all registers and prints one line on the UART:
//
//	<hash of registers, data area and trap log> <trap count>
//
// (16 hex digits each). With Traps set, sequences also raise exceptions on
// purpose (illegal instructions, ecall/ebreak, misaligned AMOs, access
// faults) and switch to S or U mode via mret and back via ecall; an mtvec
// handler logs mcause/mtval/mepc into the hashed area and skips the
// faulting instruction. The program powers off through sifive_test.
//
// With Paging, the S and U stretches run under Sv39 with random leaf PTEs
// (page faults, hardware A/D updates, SUM, MXR), and M-mode stretches make
// window accesses with MPRV. With Delegate, exceptions from U and S go
// through medeleg to an S-mode handler that returns with sret.
//
// go test runs 200 sequences on QEMU alone (the generator must produce
// programs that terminate and, in plain mode, never trap) and compares the
// same 200 between QEMU and snapvm (programs rotate plain, traps, traps with
// paging, traps with delegation); `make randinsn RANDINSN_N=5000` runs more, and
// RANDINSN_FLAGS=-randinsn.window-amos adds AMOs on paged pages.
package randinsn

import "math/rand"

// Options selects what Generate produces.
type Options struct {
	Seed  int64
	Seqs  int  // sequences in the program (one output line each)
	Insns int  // random items per sequence (an item is one instruction or a short group)
	Traps bool // raise exceptions and change privilege on purpose
	// Paging (with Traps) turns on Sv39 for the S and U stretches: code and
	// the data area stay identity-mapped by a gigapage, and a window at
	// 0x40000000 maps 16 pages onto the data area with random PTE bits, so
	// loads and stores there (and AMOs, see WindowAMOs) take page faults or
	// set A/D bits (the leaf tables are hashed too).
	Paging bool
	// WindowAMOs (with Paging) adds AMOs to the window accesses. For an AMO
	// on an invalid PTE QEMU 7.2 reports a load page fault (13) where the
	// ISA says store/AMO page fault (15).
	WindowAMOs bool
	// Delegate (with Traps, without Paging) delegates illegal-instruction,
	// breakpoint, misaligned-load and load/store access-fault exceptions
	// (medeleg) to an S-mode handler that logs scause/stval/sepc in a second
	// hashed log and returns with sret; U and S stretches then trap to S,
	// M code still to M.
	Delegate bool
	// Dump makes each sequence print four more lines after its hash line:
	// x1..x31, the trap log (8 slots of mcause mtval mepc, then with
	// Delegate 8 slots of scause stval sepc), the hash of the
	// data area alone and the data area's 512 words; with Paging two more
	// with the 16 window PTEs of the S table and of the U table. Explain
	// reads them.
	Dump bool
}

const (
	loadBase  = 0x80000000
	dataSize  = 4096
	scratchSz = 512
	// Offsets in the scratch area (after the data area and, with Paging,
	// the leaf page tables; hashed too).
	scTrapCount = 24
	scTrapLog   = 32  // 8 entries of {mcause, mtval, mepc}
	scRegs      = 256 // x0..x31 at the end of each sequence

	csrMstatus  = 0x300
	csrMtvec    = 0x305
	csrMscratch = 0x340
	csrMepc     = 0x341
	csrMcause   = 0x342
	csrMtval    = 0x343
	csrMhartid  = 0xf14
	csrPmpcfg0  = 0x3a0
	csrPmpaddr0 = 0x3b0
	csrSscratch = 0x140
	csrStvec    = 0x105
	csrSepc     = 0x141
	csrScause   = 0x142
	csrStval    = 0x143
	csrMedeleg  = 0x302
)

// readableCSRs have values that depend only on the program, not on time.
var readableCSRs = []uint32{
	0xf14, 0x301, 0xf11, 0x340, 0x300, 0x304, 0x344, 0x305, 0x302, 0x303, 0x140, 0x343,
	0x341, 0x342, 0x100, 0x104, 0x144, 0x105, 0x180, 0x306, 0x3a0, 0x3b0,
}

type kind int

const (
	kALU kind = iota
	kALUImm
	kUpper
	kLoad
	kStore
	kBranch
	kJal
	kJalr
	kCALU
	kCMem
	kCBranch
	kCJump
	kCJr
	kCSR
	kAMO
	kLRSC
	kFence
	// trap mode only
	kIllegal
	kEcall
	kMisaligned
	kAccessFault
	kPriv
	kPaged // access through the paged window (S/U stretches with Paging only)
	kMPRV  // M-mode access through the window with MPRV set (Paging only)
)

var weights = []struct {
	k kind
	w int
}{
	{kALU, 20}, {kALUImm, 15}, {kUpper, 3}, {kLoad, 10}, {kStore, 10}, {kBranch, 6},
	{kJal, 2}, {kJalr, 2}, {kCALU, 12}, {kCMem, 8}, {kCBranch, 4}, {kCJump, 2}, {kCJr, 1},
	{kCSR, 4}, {kAMO, 4}, {kLRSC, 2}, {kFence, 1},
	{kIllegal, 3}, {kEcall, 3}, {kMisaligned, 2}, {kAccessFault, 2}, {kPriv, 2},
	{kPaged, 12}, {kMPRV, 3},
}

const (
	pteV, pteR, pteW, pteX, pteU, pteG, pteA, pteD = 1, 2, 4, 8, 16, 32, 64, 128
	windowVPN                                      = 0x40000 // VA 0x40000000
	windowPages                                    = 16
)

type gen struct {
	a      *asm
	r      *rand.Rand
	traps  bool
	dump   bool
	paging bool
	paged  bool // generating an S/U stretch under Sv39

	windowAMOs bool
	delegate   bool
	sHandlerL  int
	sScratchL  int

	rootSL, rootUL, l1SL, l1UL, l0SL, l0UL int

	dataL, dataMidL, dataEndL, scratchL, scratchEndL, constL int
	handlerL, reportL, printHexL, poweroffL, seqsL, dumpL    int
}

// Generate builds one program as an ELF image.
func Generate(o Options) ([]byte, error) {
	_, elf, err := generate(o)
	return elf, err
}

// DataAddress is where o's program keeps its 4 KiB data area.
func DataAddress(o Options) (uint64, error) {
	g, _, err := generate(o)
	if err != nil {
		return 0, err
	}
	return g.a.base + uint64(g.a.labels[g.dataL]), nil
}

func generate(o Options) (*gen, []byte, error) {
	if o.Seqs <= 0 {
		o.Seqs = 1
	}
	if o.Insns <= 0 {
		o.Insns = 1
	}
	g := &gen{a: newAsm(loadBase), r: rand.New(rand.NewSource(o.Seed)), traps: o.Traps, dump: o.Dump,
		paging: o.Paging && o.Traps, windowAMOs: o.WindowAMOs,
		delegate: o.Delegate && o.Traps && !o.Paging}
	a := g.a
	for _, l := range []*int{&g.dataL, &g.dataMidL, &g.dataEndL, &g.scratchL, &g.scratchEndL, &g.constL,
		&g.handlerL, &g.reportL, &g.printHexL, &g.poweroffL, &g.seqsL, &g.dumpL,
		&g.rootSL, &g.rootUL, &g.l1SL, &g.l1UL, &g.l0SL, &g.l0UL, &g.sHandlerL, &g.sScratchL} {
		*l = a.newLabel()
	}
	g.prologue()
	g.handler()
	if g.delegate {
		g.sHandler()
	}
	g.report()
	g.printHex()
	a.bind(g.seqsL)
	tables := make([]int, o.Seqs)
	values := make([][32]uint64, o.Seqs)
	for i := range tables {
		tables[i] = a.newLabel()
		for r := 1; r < 32; r++ {
			values[i][r] = g.value()
		}
		g.sequence(tables[i], o.Insns)
	}
	a.bind(g.poweroffL)
	a.emit32(uType(opLui, a0, 0x100))
	a.emit32(uType(opLui, a1, 5))
	a.emit32(iType(opImm, a1, 0, a1, 0x555))
	a.emit32(sType(2, a0, a1, 0)) // sw a1, 0(a0): FINISHER_PASS
	a.emit32(jType(zero, 0))

	a.align(8)
	a.bind(g.constL)
	a.emit64(0xcbf29ce484222325) // FNV-1a offset basis
	a.emit64(0x100000001b3)      // FNV prime
	for i, l := range tables {
		a.bind(l)
		for r := 0; r < 32; r++ {
			if r == sp || r == s0 {
				a.fix(fixAbs64, g.dataMidL)
				a.emit64(0)
				continue
			}
			a.emit64(values[i][r])
		}
	}
	a.align(4096)
	a.bind(g.dataL)
	for i := 0; i < dataSize; i += 8 {
		if i == dataSize/2 {
			a.bind(g.dataMidL)
		}
		a.emit64(g.r.Uint64())
	}
	a.bind(g.dataEndL)
	if g.paging {
		// Leaf tables sit between the data area and the scratch area, inside
		// the hashed range, so hardware A/D updates are compared too.
		g.leafTable(g.l0SL, false)
		g.leafTable(g.l0UL, true)
	}
	a.bind(g.scratchL)
	a.buf = append(a.buf, make([]byte, scratchSz)...)
	if g.delegate {
		a.bind(g.sScratchL)
		a.buf = append(a.buf, make([]byte, scTrapLog+8*24)...)
	}
	a.bind(g.scratchEndL)
	if g.paging {
		a.align(4096)
		g.upperTables(g.rootSL, g.l1SL, g.l0SL, 0)
		g.upperTables(g.rootUL, g.l1UL, g.l0UL, pteU)
	}
	if g.dump {
		g.dumpState()
	}
	img, err := a.finish()
	if err != nil {
		return nil, nil, err
	}
	return g, wrapELF(img, loadBase), nil
}

// leafTable emits a 4 KiB table whose first entries map the window pages
// onto the data area with random permissions; user says which table (the U
// table mostly has U set, the S table mostly not).
func (g *gen) leafTable(l int, user bool) {
	a := g.a
	a.bind(l)
	for i := 0; i < 512; i++ {
		if i >= windowPages {
			a.emit64(0)
			continue
		}
		var f uint64
		for _, b := range []struct {
			bit uint64
			pct int
		}{{pteV, 90}, {pteR, 70}, {pteW, 50}, {pteX, 30}, {pteA, 50}, {pteD, 50}, {pteG, 20}} {
			if g.r.Intn(100) < b.pct {
				f |= b.bit
			}
		}
		if u := g.r.Intn(100); user && u < 85 || !user && u < 15 {
			f |= pteU
		}
		a.fix(fixPTE, g.dataL)
		a.emit64(f)
	}
}

// upperTables emits a root table (gigapage 2 identity-maps DRAM, entry 1
// leads to the window) and the level-1 table pointing at leaf table l0.
func (g *gen) upperTables(root, l1, l0 int, u uint64) {
	a := g.a
	a.bind(root)
	for i := 0; i < 512; i++ {
		switch i {
		case 1:
			a.fix(fixPTE, l1)
			a.emit64(pteV)
		case 2:
			a.emit64(loadBase>>12<<10 | pteV | pteR | pteW | pteX | pteA | pteD | u)
		default:
			a.emit64(0)
		}
	}
	a.bind(l1)
	a.fix(fixPTE, l0)
	a.emit64(pteV)
	a.buf = append(a.buf, make([]byte, 4096-8)...)
}

func (g *gen) value() uint64 {
	switch g.r.Intn(6) {
	case 0:
		return uint64(int64(g.r.Intn(33) - 16))
	case 1:
		special := []uint64{0, 1, ^uint64(0), 1<<63 - 1, 1 << 63, 0xffffffff, 0x80000000,
			0x7fffffff, 0xffffffff80000000, 0xffff, 0x8000}
		return special[g.r.Intn(len(special))]
	case 2:
		return uint64(int64(int32(g.r.Uint32())))
	default:
		return g.r.Uint64()
	}
}

func (g *gen) prologue() {
	a := g.a
	a.csrr(t0, csrMhartid)
	a.emit32(bType(0, t0, zero, 12)) // hart 0 goes on
	a.emit32(0x10500073)             // wfi
	a.emit32(jType(zero, -4))
	a.la(t0, g.handlerL)
	a.csrw(csrMtvec, t0)
	a.la(t0, g.scratchL)
	a.csrw(csrMscratch, t0)
	// One NAPOT PMP entry over everything: S and U may access all memory
	// (without any entry QEMU refuses mret to S/U). 54 one bits rather than
	// -1: QEMU 7.2 keeps all 64 bits written to pmpaddr, and reads of
	// pmpaddr0 should test instructions, not that quirk.
	a.li12(t0, -1)
	a.emit32(iType(opImm, t0, 5, t0, 10)) // srli t0, t0, 10
	a.csrw(csrPmpaddr0, t0)
	a.li12(t0, 0x1f)
	a.csrw(csrPmpcfg0, t0)
	if g.delegate {
		a.la(t0, g.sHandlerL)
		a.csrw(csrStvec, t0)
		a.la(t0, g.sScratchL)
		a.csrw(csrSscratch, t0)
		a.li12(t0, 1<<2|1<<3|1<<4|1<<5|1<<7)
		a.csrw(csrMedeleg, t0)
	}
	a.fix(fixJ, g.seqsL)
	a.emit32(jType(zero, 0))
}

// handler logs the trap and resumes after the trapping instruction. An ecall
// from U or S returns to M (that is how sequences leave S/U).
func (g *gen) handler() {
	g.a.alignCode(4) // mtvec needs a 4-byte aligned base
	g.a.bind(g.handlerL)
	g.trapHandler(csrMscratch, csrMcause, csrMtval, csrMepc, 0x30200073, true)
}

// sHandler is the S-mode counterpart for delegated exceptions.
func (g *gen) sHandler() {
	g.a.alignCode(4)
	g.a.bind(g.sHandlerL)
	g.trapHandler(csrSscratch, csrScause, csrStval, csrSepc, 0x10200073, false)
}

// trapHandler logs cause/tval/epc into the area the scratch CSR points at
// and resumes after the trapping instruction with ret (mret or sret). The M
// handler also turns an ecall from U or S into a return to M.
func (g *gen) trapHandler(scratch, cause, tval, epc, ret uint32, m bool) {
	a := g.a
	a.emit32(csrType(1, t6, t6, scratch)) // swap t6 <-> scratch CSR
	a.emit32(sType(3, t6, t5, 0))
	a.emit32(sType(3, t6, t4, 8))
	a.emit32(sType(3, t6, t3, 16))
	a.csrr(t5, cause)
	a.emit32(iType(opLoad, t4, 3, t6, scTrapCount))
	a.emit32(iType(opImm, t4, 0, t4, 1))
	a.emit32(sType(3, t6, t4, scTrapCount))
	a.emit32(iType(opImm, t4, 7, t4, 7))     // andi: slot index
	a.emit32(iType(opImm, t3, 1, t4, 4))     // slli t3, t4, 4
	a.emit32(iType(opImm, t4, 1, t4, 3))     // slli t4, t4, 3
	a.emit32(rType(opReg, t4, 0, t4, t3, 0)) // add: index*24
	a.emit32(rType(opReg, t4, 0, t4, t6, 0)) // + scratch
	a.emit32(sType(3, t4, t5, scTrapLog))    // cause
	a.csrr(t3, tval)
	a.emit32(sType(3, t4, t3, scTrapLog+8))
	a.csrr(t3, epc)
	a.emit32(sType(3, t4, t3, scTrapLog+16))
	if m {
		a.emit32(iType(opImm, t4, 0, t5, -8)) // mcause - 8
		a.emit32(iType(opImm, t4, 3, t4, 2))  // sltiu: ecall from U or S?
		a.emit32(bType(0, t4, zero, 16))      // no: skip the MPP update
		a.emit32(uType(opLui, t4, 2))
		a.emit32(iType(opImm, t4, 0, t4, -2048))   // 0x1800 = MPP
		a.emit32(csrType(2, zero, t4, csrMstatus)) // csrs mstatus: return to M
	}
	a.emit32(iType(opLoad, t4, 5, t3, 0)) // lhu t4, 0(epc)
	a.emit32(iType(opImm, t4, 7, t4, 3))
	a.emit32(iType(opImm, t4, 0, t4, -3)) // 0 if a 32-bit instruction
	a.emit32(iType(opImm, t3, 0, t3, 2))
	a.emit32(bType(1, t4, zero, 8))
	a.emit32(iType(opImm, t3, 0, t3, 2))
	a.csrw(epc, t3)
	a.emit32(iType(opLoad, t3, 3, t6, 16))
	a.emit32(iType(opLoad, t4, 3, t6, 8))
	a.emit32(iType(opLoad, t5, 3, t6, 0))
	a.emit32(csrType(1, t6, t6, scratch))
	a.emit32(ret)
}

// report hashes data + scratch (FNV-1a over 64-bit words) and prints the
// hash and the trap count; called with jal ra.
func (g *gen) report() {
	a := g.a
	a.bind(g.reportL)
	g.hash(g.dataL, g.scratchEndL)
	a.fix(fixJ, g.printHexL)
	a.emit32(jType(t0, 0))
	a.li12(a1, ' ')
	a.putc(a1)
	a.la(t2, g.scratchL)
	a.emit32(iType(opLoad, a0, 3, t2, scTrapCount))
	a.fix(fixJ, g.printHexL)
	a.emit32(jType(t0, 0))
	a.li12(a1, '\n')
	a.putc(a1)
	// The dump routine lives after the data area so that it shifts no
	// address a sequence can observe; without Dump its call is a nop.
	if g.dump {
		a.fix(fixJ, g.dumpL)
		a.emit32(jType(t6, 0))
	} else {
		a.li12(zero, 0)
	}
	a.emit32(iType(opJalr, zero, 0, ra, 0))
}

// dumpState prints registers, trap log and data hash; returns through t6.
func (g *gen) dumpState() {
	a := g.a
	a.bind(g.dumpL)
	g.dumpWords(g.scratchL, scRegs+8, 31, true)         // x1..x31
	g.dumpWords(g.scratchL, scTrapLog, 24, !g.delegate) // trap log
	if g.delegate {
		g.dumpWords(g.sScratchL, scTrapLog, 24, true) // S trap log, same line
	}
	g.hash(g.dataL, g.dataEndL)
	a.fix(fixJ, g.printHexL)
	a.emit32(jType(t0, 0))
	a.li12(a1, '\n')
	a.putc(a1)
	g.dumpWords(g.dataL, 0, dataSize/8, true) // the data area itself
	if g.paging {
		g.dumpWords(g.l0SL, 0, windowPages, true)
		g.dumpWords(g.l0UL, 0, windowPages, true)
	}
	a.emit32(iType(opJalr, zero, 0, t6, 0))
}

// hash leaves in a0 the FNV-1a hash of the 64-bit words in [from, to).
func (g *gen) hash(from, to int) {
	a := g.a
	a.la(t0, from)
	a.la(t1, to)
	a.la(t2, g.constL)
	a.emit32(iType(opLoad, t3, 3, t2, 8))
	a.emit32(iType(opLoad, t2, 3, t2, 0))
	loop := a.newLabel()
	a.bind(loop)
	a.emit32(iType(opLoad, t4, 3, t0, 0))
	a.emit32(rType(opReg, t2, 4, t2, t4, 0)) // xor
	a.emit32(rType(opReg, t2, 0, t2, t3, 1)) // mul
	a.emit32(iType(opImm, t0, 0, t0, 8))
	a.fix(fixB, loop)
	a.emit32(bType(6, t0, t1, 0)) // bltu
	a.emit32(iType(opImm, a0, 0, t2, 0))
}

// dumpWords prints n words from label+off, ending the line if nl.
func (g *gen) dumpWords(label, off, n int, nl bool) {
	a := g.a
	a.la(t1, label)
	a.emit32(iType(opImm, t1, 0, t1, int32(off)))
	a.emit32(uType(opLui, t2, uint32(8*n+0x800)>>12))
	a.emit32(iType(opImm, t2, 0, t2, int32(8*n)<<20>>20))
	a.emit32(rType(opReg, t2, 0, t2, t1, 0))
	loop := a.newLabel()
	a.bind(loop)
	a.emit32(iType(opLoad, a0, 3, t1, 0))
	a.fix(fixJ, g.printHexL)
	a.emit32(jType(t0, 0))
	a.li12(a1, ' ')
	a.putc(a1)
	a.emit32(iType(opImm, t1, 0, t1, 8))
	a.fix(fixB, loop)
	a.emit32(bType(6, t1, t2, 0)) // bltu
	if nl {
		a.li12(a1, '\n')
		a.putc(a1)
	}
}

// printHex prints a0 as 16 hex digits; returns through t0.
func (g *gen) printHex() {
	a := g.a
	a.bind(g.printHexL)
	a.li12(a4, 60)
	loop := a.newLabel()
	a.bind(loop)
	a.emit32(rType(opReg, a1, 5, a0, a4, 0)) // srl
	a.emit32(iType(opImm, a1, 7, a1, 15))
	a.emit32(iType(opImm, a3, 3, a1, 10)) // sltiu
	a.emit32(bType(1, a3, zero, 8))
	a.emit32(iType(opImm, a1, 0, a1, 'a'-'0'-10))
	a.emit32(iType(opImm, a1, 0, a1, '0'))
	a.putc(a1)
	a.emit32(iType(opImm, a4, 0, a4, -4))
	a.fix(fixB, loop)
	a.emit32(bType(5, a4, zero, 0)) // bge
	a.emit32(iType(opJalr, zero, 0, t0, 0))
}

func (g *gen) sequence(table, n int) {
	a := g.a
	a.la(t6, table)
	for r := uint32(1); r < 32; r++ {
		a.emit32(iType(opLoad, r, 3, t6, int32(8*r)))
	}
	g.block(n, true)
	// Save every register into the scratch area, then report.
	a.emit32(csrType(1, t6, t6, csrMscratch))
	for r := uint32(1); r < 31; r++ {
		a.emit32(sType(3, t6, r, int32(scRegs+8*r)))
	}
	a.csrr(t5, csrMscratch)
	a.emit32(sType(3, t6, t5, scRegs+8*31))
	a.csrw(csrMscratch, t6)
	a.fix(fixJ, g.reportL)
	a.emit32(jType(ra, 0))
}

// block emits n items; branches land on item starts inside the block or on
// its end.
func (g *gen) block(n int, top bool) {
	kinds := make([]kind, n)
	for i := range kinds {
		kinds[i] = g.pickKind(top)
	}
	labels := make([]int, n+1)
	for i := range labels {
		labels[i] = g.a.newLabel()
	}
	for i, k := range kinds {
		g.a.bind(labels[i])
		g.item(k, func(compressed bool) int { return labels[g.target(kinds, i, compressed)] })
	}
	g.a.bind(labels[n])
}

func (g *gen) pickKind(top bool) kind {
	total := 0
	for _, w := range weights {
		if g.allowed(w.k, top) {
			total += w.w
		}
	}
	x := g.r.Intn(total)
	for _, w := range weights {
		if !g.allowed(w.k, top) {
			continue
		}
		if x < w.w {
			return w.k
		}
		x -= w.w
	}
	panic("unreachable")
}

func (g *gen) allowed(k kind, top bool) bool {
	switch {
	case k >= kIllegal && !g.traps:
		return false
	case k == kPaged:
		return g.paged
	case k == kMPRV:
		return g.paging && top
	case k == kEcall && g.paged:
		// An early return to M would run the window accesses that follow
		// on physical addresses (PCIe space at 0x40000000).
		return false
	}
	return k != kPriv || top
}

// target picks a forward item index for a branch at item i: at most six
// items ahead, three for the short compressed forms, which also never jump
// over a privilege-change group (too long for their range).
func (g *gen) target(kinds []kind, i int, compressed bool) int {
	limit := 6
	if compressed {
		limit = 3
	}
	maxJ := i + limit
	if maxJ > len(kinds) {
		maxJ = len(kinds)
	}
	for j := i + 1; j < maxJ; j++ {
		if (kinds[j] == kPriv || kinds[j] == kMPRV) && compressed {
			maxJ = j
			break
		}
	}
	return i + 1 + g.r.Intn(maxJ-i)
}

// Register pickers: x2 (sp) and x8 (s0) hold the data-area pointer and are
// never written.
func (g *gen) rd() uint32 {
	for {
		r := uint32(g.r.Intn(32))
		if r != sp && r != s0 {
			return r
		}
	}
}

func (g *gen) rdNZ() uint32 {
	for {
		if r := g.rd(); r != 0 {
			return r
		}
	}
}

func (g *gen) rs() uint32 { return uint32(g.r.Intn(32)) }

func (g *gen) rsNZ() uint32 { return uint32(1 + g.r.Intn(31)) }

func (g *gen) rdC() uint32 { return uint32(9 + g.r.Intn(7)) } // x9..x15

func (g *gen) rsC() uint32 { return uint32(8 + g.r.Intn(8)) } // x8..x15

func (g *gen) base() uint32 {
	if g.r.Intn(2) == 0 {
		return sp
	}
	return s0
}

func (g *gen) imm(lo, hi int) int32 { return int32(lo + g.r.Intn(hi-lo+1)) }

func (g *gen) nzimm6() int32 {
	for {
		if v := g.imm(-32, 31); v != 0 {
			return v
		}
	}
}

// memOff is an offset from the data-area middle that keeps width bytes
// inside the area; aligned when align is set.
func (g *gen) memOff(width int, align bool) int32 {
	off := g.imm(-2048, 2048-width)
	if align {
		off &^= int32(width - 1)
	}
	return off
}

var (
	aluOps = []struct{ f3, f7, op uint32 }{
		{0, 0, opReg}, {0, 0x20, opReg}, {1, 0, opReg}, {2, 0, opReg}, {3, 0, opReg},
		{4, 0, opReg}, {5, 0, opReg}, {5, 0x20, opReg}, {6, 0, opReg}, {7, 0, opReg},
		{0, 0, opReg32}, {0, 0x20, opReg32}, {1, 0, opReg32}, {5, 0, opReg32}, {5, 0x20, opReg32},
		// M extension
		{0, 1, opReg}, {1, 1, opReg}, {2, 1, opReg}, {3, 1, opReg}, {4, 1, opReg}, {5, 1, opReg},
		{6, 1, opReg}, {7, 1, opReg}, {0, 1, opReg32}, {4, 1, opReg32}, {5, 1, opReg32},
		{6, 1, opReg32}, {7, 1, opReg32},
	}
	amoFunct5 = []uint32{0x01, 0x00, 0x04, 0x0c, 0x08, 0x10, 0x14, 0x18, 0x1c}
)

func (g *gen) aluReg(rd uint32) {
	o := aluOps[g.r.Intn(len(aluOps))]
	g.a.emit32(rType(o.op, rd, o.f3, g.rs(), g.rs(), o.f7))
}

func (g *gen) aluImm(rd uint32) {
	a := g.a
	switch f3 := uint32(g.r.Intn(10)); f3 {
	case 0, 2, 3, 4, 6, 7: // addi slti sltiu xori ori andi
		a.emit32(iType(opImm, rd, f3, g.rs(), g.imm(-2048, 2047)))
	case 1: // slli
		a.emit32(iType(opImm, rd, 1, g.rs(), g.imm(0, 63)))
	case 5: // srli / srai
		a.emit32(iType(opImm, rd, 5, g.rs(), g.imm(0, 63)|int32(g.r.Intn(2))<<10))
	case 8: // addiw
		a.emit32(iType(opImm32, rd, 0, g.rs(), g.imm(-2048, 2047)))
	case 9: // slliw / srliw / sraiw
		switch g.r.Intn(3) {
		case 0:
			a.emit32(iType(opImm32, rd, 1, g.rs(), g.imm(0, 31)))
		case 1:
			a.emit32(iType(opImm32, rd, 5, g.rs(), g.imm(0, 31)))
		default:
			a.emit32(iType(opImm32, rd, 5, g.rs(), g.imm(0, 31)|0x400))
		}
	}
}

// item emits one random item; target gives the label of a forward landing
// point.
func (g *gen) item(k kind, target func(compressed bool) int) {
	a := g.a
	switch k {
	case kALU:
		g.aluReg(g.rd())
	case kALUImm:
		g.aluImm(g.rd())
	case kUpper:
		op := uint32(opLui)
		if g.r.Intn(2) == 0 {
			op = opAuipc
		}
		a.emit32(uType(op, g.rd(), g.r.Uint32()))
	case kLoad:
		f3 := []uint32{0, 1, 2, 3, 4, 5, 6}[g.r.Intn(7)]
		width := 1 << (f3 & 3)
		a.emit32(iType(opLoad, g.rd(), f3, g.base(), g.memOff(width, g.r.Intn(3) != 0)))
	case kStore:
		f3 := uint32(g.r.Intn(4))
		a.emit32(sType(f3, g.base(), g.rs(), g.memOff(1<<f3, g.r.Intn(3) != 0)))
	case kBranch:
		f3 := []uint32{0, 1, 4, 5, 6, 7}[g.r.Intn(6)]
		a.fix(fixB, target(false))
		a.emit32(bType(f3, g.rs(), g.rs(), 0))
	case kJal:
		a.fix(fixJ, target(false))
		a.emit32(jType(g.rd(), 0))
	case kJalr:
		t := g.rdNZ()
		a.fix(fixPCRel, target(false))
		a.emit32(uType(opAuipc, t, 0))
		a.emit32(iType(opJalr, g.rd(), 0, t, 0))
	case kCALU:
		g.compressedALU()
	case kCMem:
		g.compressedMem()
	case kCBranch:
		a.fix(fixCB, target(true))
		a.emit16(cBranch(g.r.Intn(2) == 0, g.rsC(), 0))
	case kCJump:
		a.fix(fixCJ, target(true))
		a.emit16(cJ(0))
	case kCJr:
		t := g.rdNZ()
		a.la(t, target(true))
		if g.r.Intn(2) == 0 {
			a.emit16(uint16(0b1000<<12 | t<<7 | 0b10)) // c.jr
		} else {
			a.emit16(uint16(0b1001<<12 | t<<7 | 0b10)) // c.jalr
		}
	case kCSR:
		g.csr()
	case kAMO:
		f3 := uint32(2 + g.r.Intn(2))
		t := g.rdNZ()
		a.emit32(iType(opImm, t, 0, s0, g.memOff(1<<f3, true)))
		f5 := amoFunct5[g.r.Intn(len(amoFunct5))]
		a.emit32(rType(opAMO, g.rd(), f3, t, g.rs(), f5<<2|uint32(g.r.Intn(4))))
	case kLRSC:
		f3 := uint32(2 + g.r.Intn(2))
		t := g.rdNZ()
		a.emit32(iType(opImm, t, 0, s0, g.memOff(1<<f3, true)))
		if g.r.Intn(4) != 0 { // else: a lone SC, which must fail
			lrd := g.rd()
			for lrd == t {
				lrd = g.rd()
			}
			a.emit32(rType(opAMO, lrd, f3, t, 0, 0x02<<2|uint32(g.r.Intn(4))))
			for n := g.r.Intn(4); n > 0; n-- {
				rd := g.rd()
				for rd == t {
					rd = g.rd()
				}
				g.aluReg(rd)
			}
		}
		a.emit32(rType(opAMO, g.rd(), f3, t, g.rs(), 0x03<<2|uint32(g.r.Intn(4))))
	case kFence:
		if g.r.Intn(2) == 0 {
			a.emit32(0x0ff0000f) // fence iorw, iorw
		} else {
			a.emit32(0x0000100f) // fence.i
		}
	case kIllegal:
		switch g.r.Intn(6) {
		case 0:
			a.emit16(0x0000) // all-zero parcel
		case 1:
			a.emit32(csrType(1, g.rd(), g.rs(), csrMhartid)) // write to a read-only CSR
		case 2:
			a.emit32(rType(0x53, 1, 0, 2, 3, 0)) // fadd.s: no F extension
		case 3:
			a.emit32(csrType(2, g.rd(), zero, 0x7c0)) // CSR that does not exist
		case 4:
			a.emit16(uint16(0b010<<13 | 0b10)) // c.lwsp x0: reserved
		default:
			a.emit32(0xc0001073) // unimp (csrrw x0, cycle, x0)
		}
	case kEcall:
		switch g.r.Intn(3) {
		case 0:
			a.emit32(0x00000073) // ecall
		case 1:
			a.emit32(0x00100073) // ebreak
		default:
			a.emit16(0x9002) // c.ebreak
		}
	case kMisaligned:
		f3 := uint32(2 + g.r.Intn(2))
		t := g.rdNZ()
		off := g.memOff(1<<f3, true) + g.imm(1, 1<<f3-1)
		a.emit32(iType(opImm, t, 0, s0, off))
		switch g.r.Intn(3) {
		case 0:
			a.emit32(rType(opAMO, g.rd(), f3, t, g.rs(), amoFunct5[g.r.Intn(len(amoFunct5))]<<2))
		case 1:
			a.emit32(rType(opAMO, g.rd(), f3, t, 0, 0x02<<2)) // lr
		default:
			a.emit32(rType(opAMO, g.rd(), f3, t, g.rs(), 0x03<<2)) // sc without reservation
		}
	case kAccessFault:
		// Addresses below 0x800 are not decoded on the virt board.
		if g.r.Intn(2) == 0 {
			f3 := []uint32{0, 1, 2, 3, 4, 5, 6}[g.r.Intn(7)]
			w := 1 << (f3 & 3)
			a.emit32(iType(opLoad, g.rd(), f3, zero, g.imm(0, 0x7ff-w)&^int32(w-1)))
		} else {
			f3 := uint32(g.r.Intn(4))
			w := 1 << f3
			a.emit32(sType(f3, zero, g.rs(), g.imm(0, 0x7ff-w)&^int32(w-1)))
		}
	case kPriv:
		g.privGroup()
	case kMPRV:
		g.mprvGroup()
	case kPaged:
		t := g.rdNZ()
		a.emit32(uType(opLui, t, uint32(windowVPN+g.r.Intn(windowPages+2)))) // +2: unmapped pages
		choices := 4
		if g.windowAMOs {
			choices = 5
		}
		switch g.r.Intn(choices) {
		case 0, 1:
			f3 := []uint32{0, 1, 2, 3, 4, 5, 6}[g.r.Intn(7)]
			w := 1 << (f3 & 3)
			a.emit32(iType(opLoad, g.rd(), f3, t, g.imm(0, 2047-w)))
		case 2, 3:
			f3 := uint32(g.r.Intn(4))
			a.emit32(sType(f3, t, g.rs(), g.imm(0, 2047-(1<<f3))))
		default:
			f3 := uint32(2 + g.r.Intn(2))
			a.emit32(iType(opImm, t, 0, t, g.imm(0, 2047)&^(1<<f3-1)))
			a.emit32(rType(opAMO, g.rd(), f3, t, g.rs(), amoFunct5[g.r.Intn(len(amoFunct5))]<<2))
		}
	}
}

func (g *gen) compressedALU() {
	a := g.a
	switch g.r.Intn(14) {
	case 0: // c.addi
		a.emit16(cCI(0b000, g.rdNZ(), g.nzimm6(), 0b01))
	case 1: // c.addiw
		a.emit16(cCI(0b001, g.rdNZ(), g.imm(-32, 31), 0b01))
	case 2: // c.li
		a.emit16(cCI(0b010, g.rdNZ(), g.imm(-32, 31), 0b01))
	case 3: // c.lui (rd != 0, 2)
		a.emit16(cCI(0b011, g.rdNZ(), g.nzimm6(), 0b01))
	case 4, 5: // c.srli / c.srai
		a.emit16(cShiftAndi(uint32(g.r.Intn(2)), g.rdC(), g.imm(1, 63)))
	case 6: // c.andi
		a.emit16(cShiftAndi(2, g.rdC(), g.imm(-32, 31)))
	case 7: // c.sub c.xor c.or c.and c.subw c.addw
		b12, f2 := uint32(0), uint32(g.r.Intn(4))
		if g.r.Intn(3) == 0 {
			b12, f2 = 1, uint32(g.r.Intn(2))
		}
		a.emit16(cArith(b12, f2, g.rdC(), g.rsC()))
	case 8: // c.slli
		a.emit16(cCI(0b000, g.rdNZ(), g.imm(1, 63), 0b10))
	case 9: // c.mv
		a.emit16(uint16(0b1000<<12 | g.rdNZ()<<7 | g.rsNZ()<<2 | 0b10))
	case 10: // c.add
		a.emit16(uint16(0b1001<<12 | g.rdNZ()<<7 | g.rsNZ()<<2 | 0b10))
	case 11: // c.nop
		a.emit16(0x0001)
	default: // c.addi4spn
		a.emit16(cAddi4spn(g.rdC(), uint32(g.imm(1, 255))*4))
	}
}

func (g *gen) compressedMem() {
	a := g.a
	switch g.r.Intn(8) {
	case 0, 2: // c.lw / c.sw: x8-relative, 0..124
		u := uint32(g.imm(0, 31)) * 4
		if g.r.Intn(2) == 0 {
			a.emit16(cLS32(true, g.rsC(), s0, u))
		} else {
			a.emit16(cLS32(false, g.rdC(), s0, u))
		}
	case 1, 3: // c.ld / c.sd: 0..248
		u := uint32(g.imm(0, 31)) * 8
		if g.r.Intn(2) == 0 {
			a.emit16(cLS64(true, g.rsC(), s0, u))
		} else {
			a.emit16(cLS64(false, g.rdC(), s0, u))
		}
	case 4: // c.lwsp
		a.emit16(cLwsp(g.rdNZ(), uint32(g.imm(0, 63))*4))
	case 5: // c.ldsp
		a.emit16(cLdsp(g.rdNZ(), uint32(g.imm(0, 63))*8))
	case 6: // c.swsp
		a.emit16(cSwsp(g.rs(), uint32(g.imm(0, 63))*4))
	default: // c.sdsp
		a.emit16(cSdsp(g.rs(), uint32(g.imm(0, 63))*8))
	}
}

func (g *gen) csr() {
	a := g.a
	if g.r.Intn(2) == 0 {
		a.csrr(g.rd(), readableCSRs[g.r.Intn(len(readableCSRs))])
		return
	}
	csr := uint32(csrSscratch)
	if g.delegate {
		csr = csrStval // sscratch belongs to the S handler
	}
	if g.r.Intn(3) == 0 {
		csr = csrMtval
	}
	f3 := []uint32{1, 2, 3, 5, 6, 7}[g.r.Intn(6)]
	src := g.rs()
	if f3 >= 5 {
		src = uint32(g.r.Intn(32)) // immediate
	}
	a.emit32(csrType(f3, g.rd(), src, csr))
}

// privGroup drops to U or S with mret, runs a short random block there and
// returns to M with ecall (the handler sets MPP to M for ecalls from U/S).
func (g *gen) privGroup() {
	a := g.a
	t := g.rdNZ()
	a.emit32(uType(opLui, t, 2))
	a.emit32(iType(opImm, t, 0, t, -2048))
	a.emit32(csrType(3, zero, t, csrMstatus)) // clear MPP: U
	super := g.r.Intn(2) == 0
	if super {
		a.emit32(uType(opLui, t, 1))
		a.emit32(iType(opImm, t, 0, t, -2048))
		a.emit32(csrType(2, zero, t, csrMstatus)) // MPP = S
	}
	if g.paging {
		_ = g.enablePaging(t, super)
	}
	body := a.newLabel()
	a.la(t, body)
	a.csrw(csrMepc, t)
	a.emit32(0x30200073) // mret
	a.bind(body)
	g.paged = g.paging
	g.block(1+g.r.Intn(12), false)
	g.paged = false
	a.emit32(0x00000073) // ecall back to M
}

// mprvGroup makes one or two M-mode accesses through the window with
// MPRV set, translated with MPP's privilege (S or U) and the S or U tables
// (OpenSBI reads S-mode memory this way). A page fault in between leaves
// MPRV set with MPP = U after the handler's mret, as the ISA has it.
func (g *gen) mprvGroup() {
	a := g.a
	t := g.rdNZ()
	u := g.enablePaging(t, g.r.Intn(2) == 0)
	a.emit32(uType(opLui, u, 2))
	a.emit32(iType(opImm, u, 0, u, -2048))
	a.emit32(csrType(3, zero, u, csrMstatus)) // MPP = U
	if g.r.Intn(2) == 0 {
		a.emit32(uType(opLui, u, 1))
		a.emit32(iType(opImm, u, 0, u, -2048))
		a.emit32(csrType(2, zero, u, csrMstatus)) // MPP = S
	}
	a.emit32(uType(opLui, u, 0x20))
	a.emit32(csrType(2, zero, u, csrMstatus)) // MPRV
	for n := 1 + g.r.Intn(2); n > 0; n-- {
		a.emit32(uType(opLui, t, uint32(windowVPN+g.r.Intn(windowPages+2))))
		if g.r.Intn(2) == 0 {
			f3 := []uint32{0, 1, 2, 3, 4, 5, 6}[g.r.Intn(7)]
			w := 1 << (f3 & 3)
			a.emit32(iType(opLoad, g.rd(), f3, t, g.imm(0, 2047-w)))
		} else {
			f3 := uint32(g.r.Intn(4))
			a.emit32(sType(f3, t, g.rs(), g.imm(0, 2047-(1<<f3))))
		}
	}
	a.emit32(uType(opLui, u, 0x20))
	a.emit32(csrType(3, zero, u, csrMstatus)) // MPRV off
}

// enablePaging points satp at the S or U tables (Sv39), flushes the TLB
// and sets or clears SUM and MXR at random; clobbers t and one more
// register, which it returns.
func (g *gen) enablePaging(t uint32, super bool) uint32 {
	a := g.a
	u := g.rdNZ()
	for u == t {
		u = g.rdNZ()
	}
	root := g.rootUL
	if super {
		root = g.rootSL
	}
	a.la(t, root)
	a.emit32(iType(opImm, t, 5, t, 12)) // srli: PPN
	a.li12(u, 1)
	a.emit32(iType(opImm, u, 1, u, 63))        // slli: MODE 8 = Sv39
	a.emit32(rType(opReg, t, 6, t, u, 0))      // or
	a.emit32(csrType(1, zero, t, 0x180))       // csrw satp
	a.emit32(0x12000073)                       // sfence.vma
	for _, bit := range []uint32{0x40, 0x80} { // SUM (1<<18), MXR (1<<19)
		a.emit32(uType(opLui, u, bit))
		f3 := uint32(2) // csrs
		if g.r.Intn(2) == 0 {
			f3 = 3 // csrc
		}
		a.emit32(csrType(f3, zero, u, csrMstatus))
	}
	return u
}
