package riscv

import (
	"math"
	"testing"
)

func evalRR(t *testing.T, insn uint32, a, b uint64) uint64 {
	t.Helper()
	r := newRig(t)
	r.runProg(prog(li(a1, a), li(a2, b), insn, HALT()))
	return r.reg(a0)
}

func TestLi(t *testing.T) {
	for _, v := range []uint64{0, 1, 2047, 0xfffffffffffff800, 0x12345678, 0x80000000, 0xffffffff, 0x123456789abcdef0, math.MaxUint64, 1 << 63} {
		r := newRig(t)
		r.runProg(prog(li(a0, v), HALT()))
		r.expectReg(a0, v)
	}
}

func TestALU(t *testing.T) {
	const m1 = math.MaxUint64
	cases := []struct {
		name string
		insn uint32
		a, b uint64
		want uint64
	}{
		{"add", ADD(a0, a1, a2), 5, 7, 12},
		{"add wrap", ADD(a0, a1, a2), m1, 2, 1},
		{"sub", SUB(a0, a1, a2), 5, 7, m1 - 1},
		{"sll", SLL(a0, a1, a2), 1, 63 + 64, 1 << 63},
		{"slt", SLT(a0, a1, a2), m1, 0, 1},
		{"sltu", SLTU(a0, a1, a2), m1, 0, 0},
		{"xor", XOR(a0, a1, a2), 0xff00, 0x0ff0, 0xf0f0},
		{"srl", SRL(a0, a1, a2), 1 << 63, 63, 1},
		{"sra", SRA(a0, a1, a2), 1 << 63, 63, m1},
		{"or", OR(a0, a1, a2), 0xf0, 0x0f, 0xff},
		{"and", AND(a0, a1, a2), 0xf0, 0x3c, 0x30},
		{"addw", ADDW(a0, a1, a2), 0x7fffffff, 1, 0xffffffff80000000},
		{"subw", SUBW(a0, a1, a2), 0, 1, m1},
		{"sllw", SLLW(a0, a1, a2), 1, 31 + 32, 0xffffffff80000000},
		{"srlw", SRLW(a0, a1, a2), 0xffffffff80000000, 31, 1},
		{"sraw", SRAW(a0, a1, a2), 0x80000000, 31, m1},
		{"addi", ADDI(a0, a1, -1), 0, 0, m1},
		{"slti", SLTI(a0, a1, -1), 0xfffffffffffffffe, 0, 1},
		{"sltiu", SLTIU(a0, a1, -1), 5, 0, 1},
		{"xori", XORI(a0, a1, -1), 0, 0, m1},
		{"ori", ORI(a0, a1, 0x70f), 0x80, 0, 0x78f},
		{"andi", ANDI(a0, a1, -16), 0xff, 0, 0xf0},
		{"slli", SLLI(a0, a1, 63), 1, 0, 1 << 63},
		{"srli", SRLI(a0, a1, 60), m1, 0, 0xf},
		{"srai", SRAI(a0, a1, 60), 1 << 63, 0, m1 - 7},
		{"addiw", ADDIW(a0, a1, 1), 0x7fffffff, 0, 0xffffffff80000000},
		{"slliw", SLLIW(a0, a1, 31), 1, 0, 0xffffffff80000000},
		{"srliw", SRLIW(a0, a1, 4), 0xffffffff, 0, 0x0fffffff},
		{"sraiw", SRAIW(a0, a1, 4), 0x80000000, 0, 0xfffffffff8000000},
		{"mul", MULop(0, a0, a1, a2), 0x100000001, 0x100000001, 0x200000001},
		{"mulh", MULop(1, a0, a1, a2), m1, m1, 0},
		{"mulh neg", MULop(1, a0, a1, a2), 1 << 63, 2, m1},
		{"mulhsu", MULop(2, a0, a1, a2), m1, m1, m1},
		{"mulhu", MULop(3, a0, a1, a2), m1, m1, m1 - 1},
		{"div", MULop(4, a0, a1, a2), uint64(1<<64 - 7), 2, uint64(1<<64 - 3)},
		{"div by zero", MULop(4, a0, a1, a2), 5, 0, m1},
		{"div overflow", MULop(4, a0, a1, a2), 1 << 63, m1, 1 << 63},
		{"divu", MULop(5, a0, a1, a2), m1, 2, m1 >> 1},
		{"divu by zero", MULop(5, a0, a1, a2), 5, 0, m1},
		{"rem", MULop(6, a0, a1, a2), uint64(1<<64 - 7), 2, m1},
		{"rem by zero", MULop(6, a0, a1, a2), 5, 0, 5},
		{"rem overflow", MULop(6, a0, a1, a2), 1 << 63, m1, 0},
		{"remu", MULop(7, a0, a1, a2), 7, 4, 3},
		{"remu by zero", MULop(7, a0, a1, a2), 7, 0, 7},
		{"mulw", MULWop(0, a0, a1, a2), 0x10000, 0x8000, 0xffffffff80000000},
		{"divw", MULWop(4, a0, a1, a2), 0xfffffff9, 2, m1 - 2},
		{"divw by zero", MULWop(4, a0, a1, a2), 5, 0, m1},
		{"divw overflow", MULWop(4, a0, a1, a2), 0x80000000, m1, 0xffffffff80000000},
		{"divuw", MULWop(5, a0, a1, a2), 0xffffffff, 1, m1},
		{"divuw by zero", MULWop(5, a0, a1, a2), 3, 0, m1},
		{"remw", MULWop(6, a0, a1, a2), 0xfffffff9, 2, m1},
		{"remw by zero", MULWop(6, a0, a1, a2), 0x80000001, 0, 0xffffffff80000001},
		{"remw overflow", MULWop(6, a0, a1, a2), 0x80000000, m1, 0},
		{"remuw", MULWop(7, a0, a1, a2), 0xffffffff, 0x10, 0xf},
		{"remuw by zero", MULWop(7, a0, a1, a2), 0x80000000, 0, 0xffffffff80000000},
		{"lui", LUI(a0, -4096), 0, 0, 0xfffffffffffff000},
		{"x0 stays zero", ADDI(zero, a1, 5), 1, 0, 0},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.name == "x0 stays zero" {
				r := newRig(t)
				r.runProg(prog(ADDI(zero, zero, 5), ADD(a0, zero, zero), HALT()))
				r.expectReg(a0, 0)
				return
			}
			if got := evalRR(t, c.insn, c.a, c.b); got != c.want {
				t.Errorf("got %#x, want %#x", got, c.want)
			}
		})
	}
}

func TestAUIPC(t *testing.T) {
	r := newRig(t)
	r.runProg(prog(NOP, AUIPC(a0, 0x1000), AUIPC(a1, -4096), HALT()))
	r.expectReg(a0, ramBase+4+0x1000)
	r.expectReg(a1, ramBase+8-4096)
}

func TestBranches(t *testing.T) {
	type bc struct {
		name  string
		enc   func(a, b uint32, off int32) uint32
		a, b  uint64
		taken bool
	}
	cases := []bc{
		{"beq", BEQ, 3, 3, true}, {"beq", BEQ, 3, 4, false},
		{"bne", BNE, 3, 4, true}, {"bne", BNE, 3, 3, false},
		{"blt", BLT, math.MaxUint64, 0, true}, {"blt", BLT, 0, math.MaxUint64, false},
		{"bge", BGE, 0, math.MaxUint64, true}, {"bge", BGE, 5, 5, true}, {"bge", BGE, math.MaxUint64, 0, false},
		{"bltu", BLTU, 0, math.MaxUint64, true}, {"bltu", BLTU, math.MaxUint64, 0, false},
		{"bgeu", BGEU, math.MaxUint64, 0, true}, {"bgeu", BGEU, 0, 1, false},
	}
	for _, c := range cases {
		r := newRig(t)
		// Taken: skip the "li a0,1" and land on "li a0,2".
		r.runProg(prog(li(a1, c.a), li(a2, c.b), c.enc(a1, a2, 12), LI12(a0, 1), HALT(), LI12(a0, 2), HALT()))
		want := uint64(1)
		if c.taken {
			want = 2
		}
		if r.reg(a0) != want {
			t.Errorf("%s %#x,%#x: taken=%v, want %v", c.name, c.a, c.b, r.reg(a0) == 2, c.taken)
		}
	}
	// Backward branch loop: sum 1..10.
	r := newRig(t)
	r.runProg(prog(LI12(a0, 0), LI12(a1, 10), ADD(a0, a0, a1), ADDI(a1, a1, -1), BNE(a1, zero, -8), HALT()))
	r.expectReg(a0, 55)
}

func TestJumps(t *testing.T) {
	r := newRig(t)
	r.runProg(prog(
		JAL(ra, 12),     // 0: call 12
		LI12(a1, 7),     // 4: after return
		HALT(),          // 8
		ADDI(a0, ra, 0), // 12: a0 = return address
		JALR(t0, ra, 0), // 16: return, t0 = link
		HALT(),          // 20
	))
	r.expectReg(a0, ramBase+4)
	r.expectReg(a1, 7)
	r.expectReg(t0, ramBase+20)
	// JALR clears bit 0 of the target and rd == rs1 uses the old value.
	r = newRig(t)
	r.runProg(prog(AUIPC(a0, 0), ADDI(a0, a0, 17), JALR(a0, a0, 0), HALT(), LI12(a2, 1), HALT()))
	r.expectReg(a0, ramBase+12)
	r.expectReg(a2, 1)
}

// TestLongJumpsAcrossPages exercises page crossings in the decoded cache.
func TestLongJumpsAcrossPages(t *testing.T) {
	r := newRig(t)
	// Straight-line code spanning three pages, then a jump back.
	var p []uint32
	for i := 0; i < 3000; i++ {
		p = append(p, ADDI(a0, a0, 1))
	}
	p = append(p, HALT())
	r.runProg(p)
	r.expectReg(a0, 3000)
}
