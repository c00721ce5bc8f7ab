package riscv

import (
	"encoding/binary"
	"testing"

	"github.com/snapvm/snapvm/memory"
)

// A small RV64 encoder for tests.

const (
	zero = 0
	ra   = 1
	sp   = 2
	gp   = 3
	tp   = 4
	t0   = 5
	t1   = 6
	t2   = 7
	s0   = 8
	s1   = 9
	a0   = 10
	a1   = 11
	a2   = 12
	a3   = 13
	a4   = 14
	a5   = 15
	a6   = 16
	a7   = 17
	s2   = 18
	t3   = 28
	t4   = 29
	t5   = 30
	t6   = 31
)

func encR(op, f3, f7, rd, rs1, rs2 uint32) uint32 {
	return f7<<25 | rs2<<20 | rs1<<15 | f3<<12 | rd<<7 | op
}
func encI(op, f3, rd, rs1 uint32, imm int32) uint32 {
	return uint32(imm)<<20 | rs1<<15 | f3<<12 | rd<<7 | op
}
func encS(op, f3, rs1, rs2 uint32, imm int32) uint32 {
	u := uint32(imm)
	return (u>>5&0x7f)<<25 | rs2<<20 | rs1<<15 | f3<<12 | (u&31)<<7 | op
}
func encB(f3, rs1, rs2 uint32, imm int32) uint32 {
	u := uint32(imm)
	return (u>>12&1)<<31 | (u>>5&0x3f)<<25 | rs2<<20 | rs1<<15 | f3<<12 | (u>>1&0xf)<<8 | (u>>11&1)<<7 | 0x63
}
func encU(op, rd uint32, imm int32) uint32 { return uint32(imm)&^0xfff | rd<<7 | op }
func encJ(rd uint32, imm int32) uint32 {
	u := uint32(imm)
	return (u>>20&1)<<31 | (u>>1&0x3ff)<<21 | (u>>11&1)<<20 | (u>>12&0xff)<<12 | rd<<7 | 0x6f
}

func LUI(rd uint32, imm int32) uint32        { return encU(0x37, rd, imm) }
func AUIPC(rd uint32, imm int32) uint32      { return encU(0x17, rd, imm) }
func JAL(rd uint32, off int32) uint32        { return encJ(rd, off) }
func JALR(rd, rs1 uint32, off int32) uint32  { return encI(0x67, 0, rd, rs1, off) }
func BEQ(a, b uint32, off int32) uint32      { return encB(0, a, b, off) }
func BNE(a, b uint32, off int32) uint32      { return encB(1, a, b, off) }
func BLT(a, b uint32, off int32) uint32      { return encB(4, a, b, off) }
func BGE(a, b uint32, off int32) uint32      { return encB(5, a, b, off) }
func BLTU(a, b uint32, off int32) uint32     { return encB(6, a, b, off) }
func BGEU(a, b uint32, off int32) uint32     { return encB(7, a, b, off) }
func LB(rd, rs1 uint32, off int32) uint32    { return encI(0x03, 0, rd, rs1, off) }
func LH(rd, rs1 uint32, off int32) uint32    { return encI(0x03, 1, rd, rs1, off) }
func LW(rd, rs1 uint32, off int32) uint32    { return encI(0x03, 2, rd, rs1, off) }
func LD(rd, rs1 uint32, off int32) uint32    { return encI(0x03, 3, rd, rs1, off) }
func LBU(rd, rs1 uint32, off int32) uint32   { return encI(0x03, 4, rd, rs1, off) }
func LHU(rd, rs1 uint32, off int32) uint32   { return encI(0x03, 5, rd, rs1, off) }
func LWU(rd, rs1 uint32, off int32) uint32   { return encI(0x03, 6, rd, rs1, off) }
func SB(rs2, rs1 uint32, off int32) uint32   { return encS(0x23, 0, rs1, rs2, off) }
func SH(rs2, rs1 uint32, off int32) uint32   { return encS(0x23, 1, rs1, rs2, off) }
func SW(rs2, rs1 uint32, off int32) uint32   { return encS(0x23, 2, rs1, rs2, off) }
func SD(rs2, rs1 uint32, off int32) uint32   { return encS(0x23, 3, rs1, rs2, off) }
func ADDI(rd, rs1 uint32, imm int32) uint32  { return encI(0x13, 0, rd, rs1, imm) }
func SLTI(rd, rs1 uint32, imm int32) uint32  { return encI(0x13, 2, rd, rs1, imm) }
func SLTIU(rd, rs1 uint32, imm int32) uint32 { return encI(0x13, 3, rd, rs1, imm) }
func XORI(rd, rs1 uint32, imm int32) uint32  { return encI(0x13, 4, rd, rs1, imm) }
func ORI(rd, rs1 uint32, imm int32) uint32   { return encI(0x13, 6, rd, rs1, imm) }
func ANDI(rd, rs1 uint32, imm int32) uint32  { return encI(0x13, 7, rd, rs1, imm) }
func SLLI(rd, rs1 uint32, sh int32) uint32   { return encI(0x13, 1, rd, rs1, sh) }
func SRLI(rd, rs1 uint32, sh int32) uint32   { return encI(0x13, 5, rd, rs1, sh) }
func SRAI(rd, rs1 uint32, sh int32) uint32   { return encI(0x13, 5, rd, rs1, sh|0x400) }
func ADDIW(rd, rs1 uint32, imm int32) uint32 { return encI(0x1b, 0, rd, rs1, imm) }
func SLLIW(rd, rs1 uint32, sh int32) uint32  { return encI(0x1b, 1, rd, rs1, sh) }
func SRLIW(rd, rs1 uint32, sh int32) uint32  { return encI(0x1b, 5, rd, rs1, sh) }
func SRAIW(rd, rs1 uint32, sh int32) uint32  { return encI(0x1b, 5, rd, rs1, sh|0x400) }
func ADD(rd, a, b uint32) uint32             { return encR(0x33, 0, 0, rd, a, b) }
func SUB(rd, a, b uint32) uint32             { return encR(0x33, 0, 0x20, rd, a, b) }
func SLL(rd, a, b uint32) uint32             { return encR(0x33, 1, 0, rd, a, b) }
func SLT(rd, a, b uint32) uint32             { return encR(0x33, 2, 0, rd, a, b) }
func SLTU(rd, a, b uint32) uint32            { return encR(0x33, 3, 0, rd, a, b) }
func XOR(rd, a, b uint32) uint32             { return encR(0x33, 4, 0, rd, a, b) }
func SRL(rd, a, b uint32) uint32             { return encR(0x33, 5, 0, rd, a, b) }
func SRA(rd, a, b uint32) uint32             { return encR(0x33, 5, 0x20, rd, a, b) }
func OR(rd, a, b uint32) uint32              { return encR(0x33, 6, 0, rd, a, b) }
func AND(rd, a, b uint32) uint32             { return encR(0x33, 7, 0, rd, a, b) }
func ADDW(rd, a, b uint32) uint32            { return encR(0x3b, 0, 0, rd, a, b) }
func SUBW(rd, a, b uint32) uint32            { return encR(0x3b, 0, 0x20, rd, a, b) }
func SLLW(rd, a, b uint32) uint32            { return encR(0x3b, 1, 0, rd, a, b) }
func SRLW(rd, a, b uint32) uint32            { return encR(0x3b, 5, 0, rd, a, b) }
func SRAW(rd, a, b uint32) uint32            { return encR(0x3b, 5, 0x20, rd, a, b) }
func MULop(f3, rd, a, b uint32) uint32       { return encR(0x33, f3, 1, rd, a, b) }
func MULWop(f3, rd, a, b uint32) uint32      { return encR(0x3b, f3, 1, rd, a, b) }
func AMO(f5, f3, rd, rs1, rs2 uint32) uint32 { return encR(0x2f, f3, f5<<2, rd, rs1, rs2) }
func CSRRW(rd, csr, rs1 uint32) uint32       { return encI(0x73, 1, rd, rs1, int32(csr)) }
func CSRRS(rd, csr, rs1 uint32) uint32       { return encI(0x73, 2, rd, rs1, int32(csr)) }
func CSRRC(rd, csr, rs1 uint32) uint32       { return encI(0x73, 3, rd, rs1, int32(csr)) }
func CSRRWI(rd, csr, imm uint32) uint32      { return encI(0x73, 5, rd, imm, int32(csr)) }
func CSRRSI(rd, csr, imm uint32) uint32      { return encI(0x73, 6, rd, imm, int32(csr)) }
func CSRRCI(rd, csr, imm uint32) uint32      { return encI(0x73, 7, rd, imm, int32(csr)) }
func CSRR(rd, csr uint32) uint32             { return CSRRS(rd, csr, 0) }
func CSRW(csr, rs1 uint32) uint32            { return CSRRW(0, csr, rs1) }
func SFENCEVMA(rs1, rs2 uint32) uint32       { return encR(0x73, 0, 0x09, 0, rs1, rs2) }
func LI12(rd uint32, v int32) uint32         { return ADDI(rd, 0, v) }
func HALT() uint32                           { return JAL(0, 0) }

const (
	ECALL  = 0x00000073
	EBREAK = 0x00100073
	MRET   = 0x30200073
	SRET   = 0x10200073
	WFI    = 0x10500073
	FENCE  = 0x0ff0000f
	FENCEI = 0x0000100f
	NOP    = 0x00000013
)

// li returns instructions loading any 64-bit constant into rd (using t6
// as scratch is not needed: built with shifts).
func li(rd uint32, v uint64) []uint32 {
	if int64(v) >= -2048 && int64(v) < 2048 {
		return []uint32{ADDI(rd, 0, int32(v))}
	}
	if int64(v) == int64(int32(v)) {
		lo := int32(v) << 20 >> 20
		hi := int32(v) - lo
		out := []uint32{LUI(rd, hi)}
		if lo != 0 {
			out = append(out, ADDIW(rd, rd, lo))
		}
		return out
	}
	// Recursive: upper part, shift, add low 12 bits.
	lo := int64(v) << 52 >> 52
	upper := (int64(v) - lo) >> 12
	out := li(rd, uint64(upper))
	out = append(out, SLLI(rd, rd, 12))
	if lo != 0 {
		out = append(out, ADDI(rd, rd, int32(lo)))
	}
	return out
}

// prog concatenates instruction words and slices of them.
func prog(parts ...any) []uint32 {
	var out []uint32
	for _, p := range parts {
		switch v := p.(type) {
		case uint32:
			out = append(out, v)
		case int:
			out = append(out, uint32(v))
		case []uint32:
			out = append(out, v...)
		default:
			panic("prog: bad part")
		}
	}
	return out
}

const (
	ramBase  = 0x80000000
	ramSize  = 4 << 20
	mmioBase = 0x10000000
)

// testBus is an MMIO region of 0x1000 bytes at mmioBase backed by a map.
type testBus struct {
	regs   map[uint64]uint64
	stores []uint64
}

func (b *testBus) Load(addr uint64, size int) (uint64, bool) {
	if addr < mmioBase || addr >= mmioBase+0x1000 {
		return 0, false
	}
	return b.regs[addr], true
}

func (b *testBus) Store(addr uint64, size int, val uint64) bool {
	if addr < mmioBase || addr >= mmioBase+0x1000 {
		return false
	}
	if b.regs == nil {
		b.regs = map[uint64]uint64{}
	}
	b.regs[addr] = val
	b.stores = append(b.stores, addr)
	return true
}

type testClock struct{ t uint64 }

func (c *testClock) MTime() uint64 { return c.t }

type rig struct {
	t   testing.TB
	h   *Hart
	ram *memory.RAM
	bus *testBus
	clk *testClock
}

func newRig(t testing.TB) *rig {
	t.Helper()
	ram, err := memory.New(ramBase, ramSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ram.Close() })
	r := &rig{t: t, ram: ram, bus: &testBus{}, clk: &testClock{}}
	r.h = NewHart(0, ram, r.bus, r.clk)
	r.h.SetPC(ramBase)
	return r
}

// load writes words at physical address pa.
func (r *rig) load(pa uint64, words []uint32) {
	b := make([]byte, 4*len(words))
	for i, w := range words {
		binary.LittleEndian.PutUint32(b[4*i:], w)
	}
	if err := r.ram.WriteAt(b, pa); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) load16(pa uint64, hw ...uint16) {
	b := make([]byte, 2*len(hw))
	for i, w := range hw {
		binary.LittleEndian.PutUint16(b[2*i:], w)
	}
	if err := r.ram.WriteAt(b, pa); err != nil {
		r.t.Fatal(err)
	}
}

func (r *rig) rd64(pa uint64) uint64 {
	b := make([]byte, 8)
	if err := r.ram.ReadAt(b, pa); err != nil {
		r.t.Fatal(err)
	}
	return binary.LittleEndian.Uint64(b)
}

func (r *rig) wr64(pa, v uint64) {
	b := binary.LittleEndian.AppendUint64(nil, v)
	if err := r.ram.WriteAt(b, pa); err != nil {
		r.t.Fatal(err)
	}
}

// runProg loads words at ramBase, runs until the hart reaches a HALT
// (self-jump) or max instructions, and fails if it did not halt.
func (r *rig) runProg(words []uint32) {
	r.t.Helper()
	r.load(ramBase, words)
	r.h.SetPC(ramBase)
	r.runToHalt(100000)
}

func (r *rig) runToHalt(max int) {
	r.t.Helper()
	for i := 0; i < max; i += 64 {
		r.h.Run(64)
		if r.atHalt() {
			return
		}
	}
	r.t.Fatalf("did not halt; pc=%#x priv=%d mcause=%#x mepc=%#x mtval=%#x", r.h.pc, r.h.priv, r.h.csr.mcause, r.h.csr.mepc, r.h.csr.mtval)
}

func (r *rig) atHalt() bool {
	pa := r.h.pc
	if r.h.priv != privM && r.h.csr.satp != 0 {
		p, ok := r.h.translate(pa, accX)
		if !ok {
			return false
		}
		pa = p
	}
	if !r.ram.Contains(pa, 4) {
		return false
	}
	b := make([]byte, 4)
	r.ram.ReadAt(b, pa)
	return binary.LittleEndian.Uint32(b) == HALT()
}

func (r *rig) reg(i int) uint64 { return r.h.Reg(i) }

func (r *rig) expectReg(i int, want uint64) {
	r.t.Helper()
	if got := r.h.Reg(i); got != want {
		r.t.Errorf("x%d = %#x, want %#x", i, got, want)
	}
}

func newFuzzRAM() (*memory.RAM, error) { return memory.New(ramBase, 1<<20) }
