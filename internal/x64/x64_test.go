package x64

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"testing"

	"golang.org/x/arch/x86/x86asm"
)

// The tests below emit one instruction at a time, decode the bytes with an
// independent disassembler and compare mnemonic, operands and length with
// what the caller asked for. They also pin the length to the shortest
// encoding (no needless REX, SIB or displacement bytes), which matters for
// the size of translated blocks.

var allRegs = []Reg{RAX, RCX, RDX, RBX, RSP, RBP, RSI, RDI, R8, R9, R10, R11, R12, R13, R14, R15}

var regNames = []string{"rax", "rcx", "rdx", "rbx", "rsp", "rbp", "rsi", "rdi", "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15"}

// pr and pm print registers and memory operands in failure messages.
type pr Reg
type pm Mem

func (r pr) String() string {
	if int(r) < len(regNames) {
		return regNames[r]
	}
	if Reg(r) == NoIndex {
		return "none"
	}
	return fmt.Sprintf("reg%d", uint8(r))
}

func (m pm) String() string {
	if m.Index == NoIndex {
		return fmt.Sprintf("[%v%+d]", pr(m.Base), m.Disp)
	}
	return fmt.Sprintf("[%v+%v*%d%+d]", pr(m.Base), pr(m.Index), m.Scale, m.Disp)
}

// Decoder register names for each operand width.
func r64(r Reg) x86asm.Reg { return x86asm.RAX + x86asm.Reg(r) }
func r32(r Reg) x86asm.Reg { return x86asm.EAX + x86asm.Reg(r) }
func r16(r Reg) x86asm.Reg { return x86asm.AX + x86asm.Reg(r) }

// r8 is the low byte of r: SPL..DIL for 4..7 (which need a REX prefix),
// never AH..BH.
func r8(r Reg) x86asm.Reg {
	switch {
	case r < 4:
		return x86asm.AL + x86asm.Reg(r)
	case r < 8:
		return x86asm.SPB + x86asm.Reg(r-4)
	default:
		return x86asm.R8B + x86asm.Reg(r-8)
	}
}

func rw(w bool, r Reg) x86asm.Reg {
	if w {
		return r64(r)
	}
	return r32(r)
}

func memArg(m Mem) x86asm.Mem {
	out := x86asm.Mem{Base: r64(m.Base), Disp: int64(m.Disp)}
	if m.Index != NoIndex {
		out.Index = r64(m.Index)
		out.Scale = m.Scale
	}
	return out
}

var disps = []int32{0, 1, -1, 8, 127, -128, 128, -129, 0x1234, -0x10000, math.MaxInt32, math.MinInt32}

var scales = []uint8{1, 2, 4, 8}

// allMems is every base with every displacement class, with and without
// every index register and scale.
func allMems() []Mem {
	var ms []Mem
	for _, b := range allRegs {
		for _, d := range disps {
			ms = append(ms, M(b, d))
			for _, x := range allRegs {
				if x == RSP {
					continue
				}
				for _, s := range scales {
					ms = append(ms, MI(b, x, s, d))
				}
			}
		}
	}
	return ms
}

// someMems covers each base with the three displacement sizes, plus a few
// indexed forms, for sweeps that also vary a register or an immediate.
func someMems() []Mem {
	var ms []Mem
	for _, b := range allRegs {
		for _, d := range []int32{0, -128, 127, 128, math.MinInt32} {
			ms = append(ms, M(b, d))
		}
		ms = append(ms, MI(b, R12, 8, 0), MI(b, R13, 2, -3), MI(b, RBP, 4, 0x1000), MI(b, RAX, 1, 0))
	}
	return ms
}

// addrLen is the length of ModRM, SIB and displacement for m.
func addrLen(m Mem) int {
	n := 1
	if m.Index != NoIndex || m.Base&7 == 4 {
		n++
	}
	switch {
	case m.Disp == 0 && m.Base&7 != 5:
	case m.Disp >= -128 && m.Disp <= 127:
		n++
	default:
		n += 4
	}
	return n
}

// rexLen is 1 when a REX prefix is required: 64-bit operand size, an
// extended register anywhere, or a byte register among SPL..DIL.
func rexLen(w bool, byteRegs []Reg, regs ...Reg) int {
	if w {
		return 1
	}
	for _, r := range regs {
		if r != NoIndex && r >= 8 {
			return 1
		}
	}
	for _, r := range byteRegs {
		if r >= 4 {
			return 1
		}
	}
	return 0
}

func memRexLen(w bool, reg Reg, byteReg bool, m Mem) int {
	var b []Reg
	if byteReg {
		b = []Reg{reg}
	}
	return rexLen(w, b, reg, m.Base, m.Index)
}

// want is the instruction a call is meant to produce.
type want struct {
	op       x86asm.Op
	args     []x86asm.Arg
	n        int  // expected length in bytes; 0 leaves it unchecked
	memBytes int  // expected memory operand size; 0 leaves it unchecked
	lock     bool // a LOCK prefix is expected
	// slack is how many bytes beyond n are tolerated; they may only be a
	// REX prefix without effect.
	slack int
}

// verify decodes code as exactly one instruction and compares it with w.
func verify(code []byte, w want) error {
	inst, err := x86asm.Decode(code, 64)
	if err != nil {
		return fmt.Errorf("% x: decode: %v", code, err)
	}
	if inst.Len != len(code) {
		return fmt.Errorf("% x: decoded %v of %d bytes, emitted %d", code, inst, inst.Len, len(code))
	}
	if inst.Op != w.op {
		return fmt.Errorf("% x: decoded %v, want op %v", code, inst, w.op)
	}
	var got []x86asm.Arg
	for _, a := range inst.Args {
		if a == nil {
			break
		}
		if m, ok := a.(x86asm.Mem); ok && m.Index == 0 {
			m.Scale = 0 // a SIB byte without index still records a scale
			a = m
		}
		got = append(got, a)
	}
	if !sameArgs(got, w.args) {
		return fmt.Errorf("% x: decoded %v, args %v, want %v", code, inst, got, w.args)
	}
	if w.n != 0 && (len(code) < w.n || len(code) > w.n+w.slack) {
		return fmt.Errorf("% x: decoded %v: %d bytes, shortest encoding is %d", code, inst, len(code), w.n)
	}
	if w.memBytes != 0 && inst.MemBytes != w.memBytes {
		return fmt.Errorf("% x: decoded %v: memory operand of %d bytes, want %d", code, inst, inst.MemBytes, w.memBytes)
	}
	lock := false
	for _, p := range inst.Prefix {
		if p == 0 {
			break
		}
		if p&(x86asm.PrefixIgnored|x86asm.PrefixInvalid) != 0 {
			return fmt.Errorf("% x: decoded %v: prefix %#x ignored or invalid", code, inst, uint16(p))
		}
		if p&0xf0 == x86asm.PrefixREX && p&x86asm.PrefixImplicit == 0 && w.slack == 0 {
			return fmt.Errorf("% x: decoded %v: REX prefix %#x has unused bits", code, inst, uint8(p))
		}
		if p&0xff == x86asm.PrefixLOCK {
			lock = true
		}
	}
	if lock != w.lock {
		return fmt.Errorf("% x: decoded %v: LOCK prefix %v, want %v", code, inst, lock, w.lock)
	}
	return nil
}

func sameArgs(a, b []x86asm.Arg) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// checker emits into a buffer that already holds some bytes, so that
// each method is also seen to append rather than overwrite.
type checker struct {
	t     *testing.T
	a     Asm
	fails int
}

var junk = []byte{0x90, 0xcc, 0x90}

func newChecker(t *testing.T) *checker {
	return &checker{t: t, a: Asm{Buf: make([]byte, 0, 64)}}
}

// check runs emit and verifies what it appended; desc names the call.
func (c *checker) check(emit func(a *Asm), w want, desc string, args ...any) {
	c.t.Helper()
	c.a.Buf = append(c.a.Buf[:0], junk...)
	if err := emitSafely(emit, &c.a); err != nil {
		c.fail(desc, args, err)
		return
	}
	if string(c.a.Buf[:len(junk)]) != string(junk) {
		c.fail(desc, args, fmt.Errorf("earlier bytes overwritten: % x", c.a.Buf))
		return
	}
	if err := verify(c.a.Buf[len(junk):], w); err != nil {
		c.fail(desc, args, err)
	}
}

// emitSafely turns a panic of the encoder into an error, so that one bad
// case is reported with its operands instead of ending the run.
func emitSafely(emit func(a *Asm), a *Asm) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v", p)
		}
	}()
	emit(a)
	return nil
}

func (c *checker) fail(desc string, args []any, err error) {
	c.t.Helper()
	c.fails++
	c.t.Errorf("%s: %v", describe(desc, args...), err)
	if c.fails >= 20 {
		c.t.Fatalf("too many failures")
	}
}

// describe formats a call, printing registers and memory operands by name.
func describe(format string, args ...any) string {
	for i, a := range args {
		switch v := a.(type) {
		case Reg:
			args[i] = pr(v)
		case Mem:
			args[i] = pm(v)
		}
	}
	return fmt.Sprintf(format, args...)
}

// memRegForm describes a method taking a register and a memory operand.
type memRegForm struct {
	name     string
	emit     func(a *Asm, r Reg, m Mem)
	op       x86asm.Op
	reg      func(Reg) x86asm.Reg
	memFirst bool // Intel operand order: memory operand first
	memBytes int
	w        bool
	byteReg  bool
	fixed    int // bytes besides REX and addressing: legacy prefixes, opcode
	lock     bool
}

func memRegForms() []memRegForm {
	fs := []memRegForm{
		{name: "Load64", emit: (*Asm).Load64, op: x86asm.MOV, reg: r64, memBytes: 8, w: true, fixed: 1},
		{name: "Load32", emit: (*Asm).Load32, op: x86asm.MOV, reg: r32, memBytes: 4, fixed: 1},
		{name: "Store64", emit: func(a *Asm, r Reg, m Mem) { a.Store64(m, r) }, op: x86asm.MOV, reg: r64, memFirst: true, memBytes: 8, w: true, fixed: 1},
		{name: "Store32", emit: func(a *Asm, r Reg, m Mem) { a.Store32(m, r) }, op: x86asm.MOV, reg: r32, memFirst: true, memBytes: 4, fixed: 1},
		{name: "Store16", emit: func(a *Asm, r Reg, m Mem) { a.Store16(m, r) }, op: x86asm.MOV, reg: r16, memFirst: true, memBytes: 2, fixed: 2},
		{name: "Store8", emit: func(a *Asm, r Reg, m Mem) { a.Store8(m, r) }, op: x86asm.MOV, reg: r8, memFirst: true, memBytes: 1, byteReg: true, fixed: 1},
		{name: "LoadSX8", emit: (*Asm).LoadSX8, op: x86asm.MOVSX, reg: r64, memBytes: 1, w: true, fixed: 2},
		{name: "LoadSX16", emit: (*Asm).LoadSX16, op: x86asm.MOVSX, reg: r64, memBytes: 2, w: true, fixed: 2},
		{name: "LoadSX32", emit: (*Asm).LoadSX32, op: x86asm.MOVSXD, reg: r64, memBytes: 4, w: true, fixed: 1},
		{name: "LoadZX8", emit: (*Asm).LoadZX8, op: x86asm.MOVZX, reg: r32, memBytes: 1, fixed: 2},
		{name: "LoadZX16", emit: (*Asm).LoadZX16, op: x86asm.MOVZX, reg: r32, memBytes: 2, fixed: 2},
		{name: "Lea", emit: (*Asm).Lea, op: x86asm.LEA, reg: r64, w: true, fixed: 1},
		{name: "LockBts", emit: func(a *Asm, r Reg, m Mem) { a.LockBts(m, r) }, op: x86asm.BTS, reg: r64, memFirst: true, memBytes: 8, w: true, fixed: 3, lock: true},
	}
	for _, o := range aluOps {
		for _, w := range []bool{false, true} {
			op, w := o, w
			fs = append(fs,
				memRegForm{name: fmt.Sprintf("ALURM(%v,%v)", w, o.name), emit: func(a *Asm, r Reg, m Mem) { a.ALURM(w, op.alu, r, m) },
					op: o.op, reg: wreg(w), memBytes: size(w), w: w, fixed: 1},
				memRegForm{name: fmt.Sprintf("ALUMR(%v,%v)", w, o.name), emit: func(a *Asm, r Reg, m Mem) { a.ALUMR(w, op.alu, m, r) },
					op: o.op, reg: wreg(w), memFirst: true, memBytes: size(w), w: w, fixed: 1})
		}
	}
	return fs
}

func wreg(w bool) func(Reg) x86asm.Reg {
	if w {
		return r64
	}
	return r32
}

func size(w bool) int {
	if w {
		return 8
	}
	return 4
}

var aluOps = []struct {
	name string
	alu  ALU
	op   x86asm.Op
}{
	{"ADD", ADD, x86asm.ADD}, {"OR", OR, x86asm.OR}, {"AND", AND, x86asm.AND},
	{"SUB", SUB, x86asm.SUB}, {"XOR", XOR, x86asm.XOR}, {"CMP", CMP, x86asm.CMP},
}

// TestMemRegForms checks every register/memory method with every memory
// operand shape, and every register with a smaller set of shapes.
func TestMemRegForms(t *testing.T) {
	all, some := allMems(), someMems()
	for _, f := range memRegForms() {
		t.Run(f.name, func(t *testing.T) {
			c := newChecker(t)
			try := func(r Reg, m Mem) {
				regArg := x86asm.Arg(f.reg(r))
				memA := x86asm.Arg(memArg(m))
				args := []x86asm.Arg{regArg, memA}
				if f.memFirst {
					args = []x86asm.Arg{memA, regArg}
				}
				n := f.fixed + memRexLen(f.w, r, f.byteReg, m) + addrLen(m)
				c.check(func(a *Asm) { f.emit(a, r, m) },
					want{op: f.op, args: args, n: n, memBytes: f.memBytes, lock: f.lock},
					"%s(%v, %v)", f.name, r, m)
			}
			for i, m := range all {
				try(allRegs[i%len(allRegs)], m)
			}
			for _, r := range allRegs {
				for _, m := range some {
					try(r, m)
				}
			}
		})
	}
}

var imm32s = []int32{0, 1, -1, 127, -128, 128, -129, 255, 0x7fff, -0x8000, 0x12345678, math.MaxInt32, math.MinInt32}

func immLen(imm int32) int {
	if imm >= -128 && imm <= 127 {
		return 1
	}
	return 4
}

func TestStoreImm32(t *testing.T) {
	c := newChecker(t)
	all, some := allMems(), someMems()
	for _, w := range []bool{false, true} {
		try := func(m Mem, imm int32) {
			n := memRexLen(w, 0, false, m) + 1 + addrLen(m) + 4
			c.check(func(a *Asm) { a.StoreImm32(w, m, imm) },
				want{op: x86asm.MOV, args: []x86asm.Arg{memArg(m), x86asm.Imm(imm)}, n: n, memBytes: size(w)},
				"StoreImm32(%v, %v, %#x)", w, m, imm)
		}
		for i, m := range all {
			try(m, imm32s[i%len(imm32s)])
		}
		for _, m := range some {
			for _, imm := range imm32s {
				try(m, imm)
			}
		}
	}
}

func TestALUMemImm(t *testing.T) {
	c := newChecker(t)
	all, some := allMems(), someMems()
	for _, o := range aluOps {
		for _, w := range []bool{false, true} {
			try := func(m Mem, imm int32) {
				n := memRexLen(w, 0, false, m) + 1 + addrLen(m) + immLen(imm)
				c.check(func(a *Asm) { a.ALUMemImm(w, o.alu, m, imm) },
					want{op: o.op, args: []x86asm.Arg{memArg(m), x86asm.Imm(imm)}, n: n, memBytes: size(w)},
					"ALUMemImm(%v, %s, %v, %#x)", w, o.name, m, imm)
			}
			for i, m := range all {
				if i%3 == 0 { // every shape is still seen across ops and widths
					try(m, imm32s[i%len(imm32s)])
				}
			}
			for _, m := range some {
				for _, imm := range imm32s {
					try(m, imm)
				}
			}
		}
	}
}

func TestCmpMem8Imm(t *testing.T) {
	c := newChecker(t)
	imms := []int8{0, 1, -1, 127, -128, 0x55}
	try := func(m Mem, imm int8) {
		n := memRexLen(false, 0, false, m) + 1 + addrLen(m) + 1
		c.check(func(a *Asm) { a.CmpMem8Imm(m, imm) },
			// The decoder shows a byte immediate unsigned; the bits are the same.
			want{op: x86asm.CMP, args: []x86asm.Arg{memArg(m), x86asm.Imm(uint8(imm))}, n: n, memBytes: 1},
			"CmpMem8Imm(%v, %d)", m, imm)
	}
	for i, m := range allMems() {
		try(m, imms[i%len(imms)])
	}
	for _, m := range someMems() {
		for _, imm := range imms {
			try(m, imm)
		}
	}
}

// TestMemPanics checks the operands the hardware cannot encode.
func TestMemPanics(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    Mem
	}{
		{"rsp index", MI(RAX, RSP, 1, 0)},
		{"scale 3", MI(RAX, RCX, 3, 0)},
		{"scale 16", MI(RAX, RCX, 16, 0)},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: Load64 did not panic", tc.name)
				}
			}()
			var a Asm
			a.Load64(RAX, tc.m)
		}()
	}
	// R12 shares RSP's low bits but is a valid index (REX.X distinguishes).
	var a Asm
	a.Load64(RAX, MI(RAX, R12, 2, 0))
	if err := verify(a.Buf, want{op: x86asm.MOV, args: []x86asm.Arg{x86asm.RAX, x86asm.Mem{Base: x86asm.RAX, Index: x86asm.R12, Scale: 2}}}); err != nil {
		t.Error(err)
	}
}

// TestRegReg covers the two-register methods with all 256 register pairs.
func TestRegReg(t *testing.T) {
	c := newChecker(t)
	for _, w := range []bool{false, true} {
		for _, d := range allRegs {
			for _, s := range allRegs {
				n := 2 + rexLen(w, nil, d, s)
				c.check(func(a *Asm) { a.Mov(w, d, s) },
					want{op: x86asm.MOV, args: []x86asm.Arg{rw(w, d), rw(w, s)}, n: n}, "Mov(%v, %v, %v)", w, d, s)
				for _, o := range aluOps {
					c.check(func(a *Asm) { a.ALURR(w, o.alu, d, s) },
						want{op: o.op, args: []x86asm.Arg{rw(w, d), rw(w, s)}, n: n}, "ALURR(%v, %s, %v, %v)", w, o.name, d, s)
				}
				c.check(func(a *Asm) { a.TestRR(w, d, s) },
					want{op: x86asm.TEST, args: []x86asm.Arg{rw(w, d), rw(w, s)}, n: n}, "TestRR(%v, %v, %v)", w, d, s)
				c.check(func(a *Asm) { a.Imul(w, d, s) },
					want{op: x86asm.IMUL, args: []x86asm.Arg{rw(w, d), rw(w, s)}, n: n + 1}, "Imul(%v, %v, %v)", w, d, s)
			}
		}
	}
	for _, d := range allRegs {
		for _, s := range allRegs {
			c.check(func(a *Asm) { a.Movsxd(d, s) },
				want{op: x86asm.MOVSXD, args: []x86asm.Arg{r64(d), r32(s)}, n: 3}, "Movsxd(%v, %v)", d, s)
			c.check(func(a *Asm) { a.Bt(d, s) },
				want{op: x86asm.BT, args: []x86asm.Arg{r64(d), r64(s)}, n: 4}, "Bt(%v, %v)", d, s)
			c.check(func(a *Asm) { a.Movzx8(d, s) },
				want{op: x86asm.MOVZX, args: []x86asm.Arg{r32(d), r8(s)}, n: 3 + rexLen(false, []Reg{s}, d, s)}, "Movzx8(%v, %v)", d, s)
		}
	}
}

func TestALUImm(t *testing.T) {
	c := newChecker(t)
	for _, w := range []bool{false, true} {
		for _, o := range aluOps {
			for _, r := range allRegs {
				for _, imm := range imm32s {
					n := rexLen(w, nil, r) + 2 + immLen(imm)
					c.check(func(a *Asm) { a.ALUImm(w, o.alu, r, imm) },
						want{op: o.op, args: []x86asm.Arg{rw(w, r), x86asm.Imm(imm)}, n: n},
						"ALUImm(%v, %s, %v, %#x)", w, o.name, r, imm)
				}
			}
		}
	}
}

// TestMovImm checks the value each encoding leaves in the register, which
// is what matters: MOV r32 zero-extends, MOV r/m64, imm32 sign-extends.
func TestMovImm(t *testing.T) {
	for _, tc := range []struct {
		v uint64
		n int // length for RAX..RDI
	}{
		{0, 2},
		{1, 5},
		{0x7f, 5},
		{0x80000000, 5},
		{0xffffffff, 5},
		{0x100000000, 10},
		{math.MaxUint64, 7},             // -1
		{uint64(1<<64 - 1<<31), 7},      // MinInt32
		{uint64(1<<64 - 1<<31 - 1), 10}, // just below MinInt32
		{0xffffffff80000001, 7},
		{0x123456789abcdef0, 10},
		{1 << 63, 10},
		{math.MaxInt64, 10},
	} {
		for _, r := range allRegs {
			var a Asm
			a.MovImm(r, tc.v)
			inst, err := x86asm.Decode(a.Buf, 64)
			if err != nil || inst.Len != len(a.Buf) {
				t.Errorf("MovImm(%v, %#x): % x: decoded %v (%v)", pr(r), tc.v, a.Buf, inst, err)
				continue
			}
			n := tc.n
			if n < 7 { // the 7- and 10-byte forms carry a REX.W prefix anyway
				n += rexLen(false, nil, r)
			}
			if len(a.Buf) != n {
				t.Errorf("MovImm(%v, %#x): % x (%v): %d bytes, want %d", pr(r), tc.v, a.Buf, inst, len(a.Buf), n)
			}
			dst, val, ok := movResult(inst)
			if !ok || dst != r || val != tc.v {
				t.Errorf("MovImm(%v, %#x): % x (%v) sets %v to %#x (ok=%v)", pr(r), tc.v, a.Buf, inst, pr(dst), val, ok)
			}
		}
	}
}

// movResult evaluates a constant load: XOR r32, r32; MOV r32, imm32;
// MOV r64, imm (sign-extended imm32 or imm64).
func movResult(inst x86asm.Inst) (Reg, uint64, bool) {
	dst, ok := inst.Args[0].(x86asm.Reg)
	if !ok {
		return 0, 0, false
	}
	switch inst.Op {
	case x86asm.XOR:
		if inst.Args[1] != dst || dst < x86asm.EAX || dst > x86asm.R15L {
			return 0, 0, false
		}
		return Reg(dst - x86asm.EAX), 0, true
	case x86asm.MOV:
		imm, ok := inst.Args[1].(x86asm.Imm)
		if !ok {
			return 0, 0, false
		}
		switch {
		case dst >= x86asm.EAX && dst <= x86asm.R15L:
			return Reg(dst - x86asm.EAX), uint64(uint32(imm)), true
		case dst >= x86asm.RAX && dst <= x86asm.R15:
			return Reg(dst - x86asm.RAX), uint64(imm), true
		}
	}
	return 0, 0, false
}

func TestTestImm8(t *testing.T) {
	c := newChecker(t)
	for _, r := range allRegs {
		for _, imm := range []uint8{0, 1, 0x7f, 0x80, 0xff} {
			c.check(func(a *Asm) { a.TestImm8(r, imm) },
				want{op: x86asm.TEST, args: []x86asm.Arg{r8(r), x86asm.Imm(imm)}, n: 3 + rexLen(false, []Reg{r}, r)},
				"TestImm8(%v, %#x)", r, imm)
		}
	}
}

var shifts = []struct {
	name string
	s    Shift
	op   x86asm.Op
}{{"SHL", SHL, x86asm.SHL}, {"SHR", SHR, x86asm.SHR}, {"SAR", SAR, x86asm.SAR}}

func TestShifts(t *testing.T) {
	c := newChecker(t)
	for _, w := range []bool{false, true} {
		for _, sh := range shifts {
			for _, r := range allRegs {
				for _, k := range []uint8{0, 1, 2, 31, 32, 63} {
					c.check(func(a *Asm) { a.ShiftImm(w, sh.s, r, k) },
						want{op: sh.op, args: []x86asm.Arg{rw(w, r), x86asm.Imm(k)}, n: 3 + rexLen(w, nil, r)},
						"ShiftImm(%v, %s, %v, %d)", w, sh.name, r, k)
				}
				c.check(func(a *Asm) { a.ShiftCL(w, sh.s, r) },
					want{op: sh.op, args: []x86asm.Arg{rw(w, r), x86asm.CL}, n: 2 + rexLen(w, nil, r)},
					"ShiftCL(%v, %s, %v)", w, sh.name, r)
			}
		}
	}
}

func TestUnary(t *testing.T) {
	c := newChecker(t)
	ops := []struct {
		name string
		emit func(a *Asm, w bool, r Reg)
		op   x86asm.Op
	}{
		{"Not", (*Asm).Not, x86asm.NOT},
		{"Neg", (*Asm).Neg, x86asm.NEG},
		{"Mul", (*Asm).Mul, x86asm.MUL},
		{"Imul1", (*Asm).Imul1, x86asm.IMUL},
		{"Div", (*Asm).Div, x86asm.DIV},
		{"Idiv", (*Asm).Idiv, x86asm.IDIV},
	}
	for _, w := range []bool{false, true} {
		for _, o := range ops {
			for _, r := range allRegs {
				c.check(func(a *Asm) { o.emit(a, w, r) },
					want{op: o.op, args: []x86asm.Arg{rw(w, r)}, n: 2 + rexLen(w, nil, r)},
					"%s(%v, %v)", o.name, w, r)
			}
		}
	}
	c.check(func(a *Asm) { a.Cqo(true) }, want{op: x86asm.CQO, n: 2}, "Cqo(true)")
	c.check(func(a *Asm) { a.Cqo(false) }, want{op: x86asm.CDQ, n: 1}, "Cqo(false)")
	c.check(func(a *Asm) { a.Ret() }, want{op: x86asm.RET, n: 1}, "Ret()")
	for _, r := range allRegs {
		c.check(func(a *Asm) { a.JmpReg(r) },
			want{op: x86asm.JMP, args: []x86asm.Arg{r64(r)}, n: 2 + rexLen(false, nil, r)}, "JmpReg(%v)", r)
	}
}

var conds = []struct {
	c    Cond
	set  x86asm.Op
	jump x86asm.Op
}{
	{CondO, x86asm.SETO, x86asm.JO}, {CondNO, x86asm.SETNO, x86asm.JNO},
	{CondB, x86asm.SETB, x86asm.JB}, {CondAE, x86asm.SETAE, x86asm.JAE},
	{CondE, x86asm.SETE, x86asm.JE}, {CondNE, x86asm.SETNE, x86asm.JNE},
	{CondBE, x86asm.SETBE, x86asm.JBE}, {CondA, x86asm.SETA, x86asm.JA},
	{CondS, x86asm.SETS, x86asm.JS}, {CondNS, x86asm.SETNS, x86asm.JNS},
	{CondL, x86asm.SETL, x86asm.JL}, {CondGE, x86asm.SETGE, x86asm.JGE},
	{CondLE, x86asm.SETLE, x86asm.JLE}, {CondG, x86asm.SETG, x86asm.JG},
}

func TestSetcc(t *testing.T) {
	c := newChecker(t)
	for _, cc := range conds {
		for _, r := range allRegs {
			c.check(func(a *Asm) { a.Setcc(cc.c, r) },
				want{op: cc.set, args: []x86asm.Arg{r8(r)}, n: 3 + rexLen(false, []Reg{r}, r)},
				"Setcc(%v, %v)", cc.set, r)
		}
	}
}

// TestJumps checks the unpatched jumps and the offsets they return.
func TestJumps(t *testing.T) {
	c := newChecker(t)
	for _, cc := range conds {
		var at int
		c.check(func(a *Asm) { at = a.Jcc(cc.c) }, want{op: cc.jump, args: []x86asm.Arg{x86asm.Rel(0)}, n: 6}, "Jcc(%v)", cc.jump)
		if want := len(junk) + 2; at != want {
			t.Errorf("Jcc(%v) returned %d, want %d", cc.jump, at, want)
		}
	}
	var at int
	c.check(func(a *Asm) { at = a.Jmp() }, want{op: x86asm.JMP, args: []x86asm.Arg{x86asm.Rel(0)}, n: 5}, "Jmp()")
	if want := len(junk) + 1; at != want {
		t.Errorf("Jmp returned %d, want %d", at, want)
	}
}

// jumpTarget decodes the jump starting at off and returns where it goes,
// as an offset in the same buffer.
func jumpTarget(t *testing.T, code []byte, off int) int {
	t.Helper()
	inst, err := x86asm.Decode(code[off:], 64)
	if err != nil {
		t.Fatalf("decode at %d: %v", off, err)
	}
	rel, ok := inst.Args[0].(x86asm.Rel)
	if !ok {
		t.Fatalf("at %d: %v is not a relative jump", off, inst)
	}
	return off + inst.Len + int(rel)
}

// TestPatchRel32 patches forward, backward and self jumps, including the
// far forward case that needs all 32 bits, and checks where each lands.
func TestPatchRel32(t *testing.T) {
	var a Asm
	a.Ret()
	start := a.Len()
	var jumps []struct{ insn, rel int }
	for _, cc := range conds {
		insn := a.Len()
		jumps = append(jumps, struct{ insn, rel int }{insn, a.Jcc(cc.c)})
		a.Mov(true, RAX, R9)
	}
	insn := a.Len()
	jumps = append(jumps, struct{ insn, rel int }{insn, a.Jmp()})
	a.Buf = append(a.Buf, make([]byte, 70000)...) // far target
	a.Ret()
	end := a.Len() - 1
	targets := []int{0, start, end, insn, insn + 5, end - 70000}
	for _, j := range jumps {
		for _, target := range targets {
			a.PatchRel32(j.rel, target)
			if got := jumpTarget(t, a.Buf, j.insn); got != target {
				t.Errorf("jump at %d patched to %d lands at %d", j.insn, target, got)
			}
		}
	}
	// Patching leaves the surrounding code alone.
	var b Asm
	b.Mov(true, R8, RBX)
	rel := b.Jmp()
	b.Mov(true, R15, RAX)
	before := append([]byte(nil), b.Buf...)
	b.PatchRel32(rel, 0)
	if string(b.Buf[:rel]) != string(before[:rel]) || string(b.Buf[rel+4:]) != string(before[rel+4:]) {
		t.Errorf("PatchRel32 changed bytes outside the rel32: % x -> % x", before, b.Buf)
	}
	if got := int32(binary.LittleEndian.Uint32(b.Buf[rel:])); got != int32(-(rel + 4)) {
		t.Errorf("rel32 = %d, want %d", got, -(rel + 4))
	}
}

// TestPatchRel32Abs places code at an address and jumps to absolute
// targets within ±2 GiB of it, both directions.
func TestPatchRel32Abs(t *testing.T) {
	const base = uintptr(0x7f12_3456_7000)
	var a Asm
	a.Lea(RAX, M(RSP, 8))
	jcc := a.Len()
	relJ := a.Jcc(CondNE)
	jmp := a.Len()
	relM := a.Jmp()
	for _, target := range []uintptr{
		base, base + uintptr(jcc), base + 0x1000, base - 0x1000,
		base + uintptr(jmp) + 5 + math.MaxInt32, base + uintptr(jmp) + 5 - 1<<31,
		base + uintptr(jcc) + 6 + math.MaxInt32, base + uintptr(jcc) + 6 - 1<<31,
	} {
		for _, j := range []struct{ insn, rel int }{{jcc, relJ}, {jmp, relM}} {
			if d := int64(target) - int64(base+uintptr(j.insn)); d > math.MaxInt32 || d < math.MinInt32+8 {
				continue // not reachable from this jump
			}
			a.PatchRel32Abs(j.rel, base, target)
			got := int(base) + jumpTarget(t, a.Buf, j.insn)
			if uintptr(got) != target {
				t.Errorf("jump at %#x patched to %#x lands at %#x", base+uintptr(j.insn), target, got)
			}
		}
	}
}

// TestSequence emits a mixed block and walks it with the decoder, so that
// every instruction boundary is where the lengths say.
func TestSequence(t *testing.T) {
	var a Asm
	var wantOps []x86asm.Op
	emit := func(op x86asm.Op, f func()) { f(); wantOps = append(wantOps, op) }
	emit(x86asm.MOV, func() { a.Load64(R12, M(R12, 0)) })
	emit(x86asm.MOV, func() { a.Store8(M(RBP, 0), RSI) })
	emit(x86asm.ADD, func() { a.ALUImm(true, ADD, RSP, 128) })
	emit(x86asm.MOV, func() { a.MovImm(R11, 0x1122334455667788) })
	emit(x86asm.BTS, func() { a.LockBts(MI(R13, R12, 8, -1), R15) })
	emit(x86asm.SETL, func() { a.Setcc(CondL, RDI) })
	emit(x86asm.MOVZX, func() { a.Movzx8(RAX, RDI) })
	emit(x86asm.CQO, func() { a.Cqo(true) })
	emit(x86asm.IDIV, func() { a.Idiv(true, R10) })
	emit(x86asm.JNE, func() { a.Jcc(CondNE) })
	emit(x86asm.JMP, func() { a.JmpReg(R14) })
	emit(x86asm.RET, func() { a.Ret() })
	var got []x86asm.Op
	var text []string
	for off := 0; off < len(a.Buf); {
		inst, err := x86asm.Decode(a.Buf[off:], 64)
		if err != nil {
			t.Fatalf("at %d: %v", off, err)
		}
		got = append(got, inst.Op)
		text = append(text, inst.String())
		off += inst.Len
	}
	if fmt.Sprint(got) != fmt.Sprint(wantOps) {
		t.Errorf("decoded %v\nwant %v\n%s", got, wantOps, strings.Join(text, "\n"))
	}
}
