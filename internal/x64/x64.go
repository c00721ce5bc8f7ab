// Package x64 encodes the x86-64 instructions the RISC-V translator emits.
// It is an assembler for one caller, not a general one: it covers the
// register, memory (base + index*scale + disp32) and immediate forms that
// code needs, and nothing that would require a relocation besides the
// rel32 of jumps, which callers patch with PatchRel32.
package x64

import (
	"encoding/binary"
	"fmt"
)

// Reg is a general-purpose register number as the hardware encodes it.
type Reg uint8

// The sixteen 64-bit registers.
const (
	RAX Reg = iota
	RCX
	RDX
	RBX
	RSP
	RBP
	RSI
	RDI
	R8
	R9
	R10
	R11
	R12
	R13
	R14
	R15
)

// NoIndex marks a memory operand without an index register.
const NoIndex Reg = 0xff

// Mem is a memory operand [Base + Index*Scale + Disp]; Scale is 1, 2, 4 or 8.
type Mem struct {
	Base  Reg
	Index Reg
	Scale uint8
	Disp  int32
}

// M returns [base + disp].
func M(base Reg, disp int32) Mem { return Mem{Base: base, Index: NoIndex, Scale: 1, Disp: disp} }

// MI returns [base + index*scale + disp].
func MI(base, index Reg, scale uint8, disp int32) Mem {
	return Mem{Base: base, Index: index, Scale: scale, Disp: disp}
}

// Cond is a condition code as encoded in Jcc and SETcc.
type Cond uint8

// Condition codes.
const (
	CondO  Cond = 0x0
	CondNO Cond = 0x1
	CondB  Cond = 0x2 // unsigned <
	CondAE Cond = 0x3 // unsigned >=
	CondE  Cond = 0x4
	CondNE Cond = 0x5
	CondBE Cond = 0x6 // unsigned <=
	CondA  Cond = 0x7 // unsigned >
	CondS  Cond = 0x8
	CondNS Cond = 0x9
	CondL  Cond = 0xc // signed <
	CondGE Cond = 0xd // signed >=
	CondLE Cond = 0xe // signed <=
	CondG  Cond = 0xf // signed >
)

// ALU operations sharing the classic encoding (opcode base and /digit).
type ALU uint8

// The two-operand integer operations; the value is the /digit of the
// immediate forms, and 8*value+3 is the opcode of "reg, r/m".
const (
	ADD ALU = 0
	OR  ALU = 1
	AND ALU = 4
	SUB ALU = 5
	XOR ALU = 6
	CMP ALU = 7
)

// Shift operations (/digit of C1 and D3).
type Shift uint8

// Shift kinds.
const (
	SHL Shift = 4
	SHR Shift = 5
	SAR Shift = 7
)

// Asm accumulates machine code.
type Asm struct {
	Buf []byte
}

// Len is the number of bytes emitted so far.
func (a *Asm) Len() int { return len(a.Buf) }

func (a *Asm) byte1(b ...byte) { a.Buf = append(a.Buf, b...) }

func (a *Asm) imm32(v int32) { a.Buf = binary.LittleEndian.AppendUint32(a.Buf, uint32(v)) }

// rex emits a REX prefix when any bit is needed (or force, for byte
// registers SPL..DIL).
func (a *Asm) rex(w bool, reg, index, base Reg, force bool) {
	b := byte(0x40)
	if w {
		b |= 8
	}
	if reg&8 != 0 {
		b |= 4
	}
	if index != NoIndex && index&8 != 0 {
		b |= 2
	}
	if base&8 != 0 {
		b |= 1
	}
	if b != 0x40 || force {
		a.byte1(b)
	}
}

// modrmMem emits ModRM, SIB and displacement for reg and memory operand m.
func (a *Asm) modrmMem(reg Reg, m Mem) {
	r := byte(reg&7) << 3
	var mod byte
	switch {
	case m.Disp == 0 && m.Base&7 != 5:
		mod = 0
	case m.Disp >= -128 && m.Disp <= 127:
		mod = 1
	default:
		mod = 2
	}
	if m.Index == NoIndex && m.Base&7 != 4 {
		a.byte1(mod<<6 | r | byte(m.Base&7))
	} else {
		idx := byte(4) // none
		if m.Index != NoIndex {
			if m.Index == RSP {
				panic("x64: rsp cannot be an index")
			}
			idx = byte(m.Index & 7)
		}
		a.byte1(mod<<6|r|4, scaleBits(m.Scale)<<6|idx<<3|byte(m.Base&7))
	}
	switch mod {
	case 1:
		a.byte1(byte(int8(m.Disp)))
	case 2:
		a.imm32(m.Disp)
	}
}

func scaleBits(s uint8) byte {
	switch s {
	case 0, 1:
		return 0
	case 2:
		return 1
	case 4:
		return 2
	case 8:
		return 3
	}
	panic(fmt.Sprintf("x64: bad scale %d", s))
}

// rm emits [prefix] REX opcode ModRM(reg, m).
func (a *Asm) rm(w bool, reg Reg, m Mem, byteReg bool, op ...byte) {
	a.rex(w, reg, m.Index, m.Base, byteReg && reg >= 4)
	a.byte1(op...)
	a.modrmMem(reg, m)
}

// rr emits REX opcode ModRM(reg, rmReg) in register-direct form.
func (a *Asm) rr(w bool, reg, rmReg Reg, byteRegs bool, op ...byte) {
	a.rex(w, reg, NoIndex, rmReg, byteRegs && (reg >= 4 || rmReg >= 4))
	a.byte1(op...)
	a.byte1(0xc0 | byte(reg&7)<<3 | byte(rmReg&7))
}

// Load64 emits MOV dst, qword [m].
func (a *Asm) Load64(dst Reg, m Mem) { a.rm(true, dst, m, false, 0x8b) }

// Load32 emits MOV dst32, dword [m] (zero-extending).
func (a *Asm) Load32(dst Reg, m Mem) { a.rm(false, dst, m, false, 0x8b) }

// Store64 emits MOV qword [m], src.
func (a *Asm) Store64(m Mem, src Reg) { a.rm(true, src, m, false, 0x89) }

// Store32 emits MOV dword [m], src32.
func (a *Asm) Store32(m Mem, src Reg) { a.rm(false, src, m, false, 0x89) }

// Store16 emits MOV word [m], src16.
func (a *Asm) Store16(m Mem, src Reg) {
	a.byte1(0x66)
	a.rm(false, src, m, false, 0x89)
}

// Store8 emits MOV byte [m], src8.
func (a *Asm) Store8(m Mem, src Reg) { a.rm(false, src, m, true, 0x88) }

// StoreImm32 emits MOV dword [m], imm (w=false) or MOV qword [m],
// sign-extended imm (w=true).
func (a *Asm) StoreImm32(w bool, m Mem, imm int32) {
	a.rm(w, 0, m, false, 0xc7)
	a.imm32(imm)
}

// LoadSX8 emits MOVSX dst64, byte [m]; LoadSX16 and LoadSX32 likewise.
func (a *Asm) LoadSX8(dst Reg, m Mem)  { a.rm(true, dst, m, false, 0x0f, 0xbe) }
func (a *Asm) LoadSX16(dst Reg, m Mem) { a.rm(true, dst, m, false, 0x0f, 0xbf) }
func (a *Asm) LoadSX32(dst Reg, m Mem) { a.rm(true, dst, m, false, 0x63) }

// LoadZX8 emits MOVZX dst32, byte [m]; LoadZX16 likewise for a word.
func (a *Asm) LoadZX8(dst Reg, m Mem)  { a.rm(false, dst, m, false, 0x0f, 0xb6) }
func (a *Asm) LoadZX16(dst Reg, m Mem) { a.rm(false, dst, m, false, 0x0f, 0xb7) }

// Lea emits LEA dst, [m].
func (a *Asm) Lea(dst Reg, m Mem) { a.rm(true, dst, m, false, 0x8d) }

// Mov emits MOV dst, src (64-bit, or 32-bit zero-extending when w=false).
func (a *Asm) Mov(w bool, dst, src Reg) { a.rr(w, src, dst, false, 0x89) }

// MovImm loads a 64-bit constant with the shortest encoding.
func (a *Asm) MovImm(dst Reg, v uint64) {
	switch {
	case v == 0:
		a.ALURR(false, XOR, dst, dst)
	case v <= 0xffffffff:
		a.rex(false, 0, NoIndex, dst, false)
		a.byte1(0xb8 + byte(dst&7))
		a.imm32(int32(uint32(v)))
	case int64(v) >= -1<<31 && int64(v) < 1<<31:
		a.rr(true, 0, dst, false, 0xc7)
		a.imm32(int32(int64(v)))
	default:
		a.rex(true, 0, NoIndex, dst, false)
		a.byte1(0xb8 + byte(dst&7))
		a.Buf = binary.LittleEndian.AppendUint64(a.Buf, v)
	}
}

// ALURR emits op dst, src.
func (a *Asm) ALURR(w bool, op ALU, dst, src Reg) { a.rr(w, dst, src, false, byte(op)<<3|3) }

// ALURM emits op dst, [m].
func (a *Asm) ALURM(w bool, op ALU, dst Reg, m Mem) { a.rm(w, dst, m, false, byte(op)<<3|3) }

// ALUMR emits op [m], src.
func (a *Asm) ALUMR(w bool, op ALU, m Mem, src Reg) { a.rm(w, src, m, false, byte(op)<<3|1) }

// ALUImm emits op dst, imm (sign-extended to 64 bits when w).
func (a *Asm) ALUImm(w bool, op ALU, dst Reg, imm int32) {
	if imm >= -128 && imm <= 127 {
		a.rr(w, Reg(op), dst, false, 0x83)
		a.byte1(byte(int8(imm)))
		return
	}
	a.rr(w, Reg(op), dst, false, 0x81)
	a.imm32(imm)
}

// ALUMemImm emits op [m], imm.
func (a *Asm) ALUMemImm(w bool, op ALU, m Mem, imm int32) {
	if imm >= -128 && imm <= 127 {
		a.rm(w, Reg(op), m, false, 0x83)
		a.byte1(byte(int8(imm)))
		return
	}
	a.rm(w, Reg(op), m, false, 0x81)
	a.imm32(imm)
}

// CmpMem8Imm emits CMP byte [m], imm.
func (a *Asm) CmpMem8Imm(m Mem, imm int8) {
	a.rm(false, 7, m, false, 0x80)
	a.byte1(byte(imm))
}

// TestRR emits TEST a, b.
func (a *Asm) TestRR(w bool, x, y Reg) { a.rr(w, y, x, false, 0x85) }

// TestImm8 emits TEST r8, imm (the low byte of r).
func (a *Asm) TestImm8(r Reg, imm uint8) {
	a.rr(false, 0, r, true, 0xf6)
	a.byte1(imm)
}

// ShiftImm emits op dst, n.
func (a *Asm) ShiftImm(w bool, op Shift, dst Reg, n uint8) {
	a.rr(w, Reg(op), dst, false, 0xc1)
	a.byte1(n)
}

// ShiftCL emits op dst, CL.
func (a *Asm) ShiftCL(w bool, op Shift, dst Reg) { a.rr(w, Reg(op), dst, false, 0xd3) }

// Imul emits IMUL dst, src (low half of the product).
func (a *Asm) Imul(w bool, dst, src Reg) { a.rr(w, dst, src, false, 0x0f, 0xaf) }

// Unary F7-group operations on one register: MUL (RDX:RAX = RAX*r),
// IMUL1, DIV, IDIV, NEG, NOT.
func (a *Asm) f7(w bool, digit Reg, r Reg) { a.rr(w, digit, r, false, 0xf7) }

func (a *Asm) Not(w bool, r Reg)   { a.f7(w, 2, r) }
func (a *Asm) Neg(w bool, r Reg)   { a.f7(w, 3, r) }
func (a *Asm) Mul(w bool, r Reg)   { a.f7(w, 4, r) }
func (a *Asm) Imul1(w bool, r Reg) { a.f7(w, 5, r) }
func (a *Asm) Div(w bool, r Reg)   { a.f7(w, 6, r) }
func (a *Asm) Idiv(w bool, r Reg)  { a.f7(w, 7, r) }

// Cqo sign-extends RAX into RDX (CDQ for 32 bits when w=false).
func (a *Asm) Cqo(w bool) {
	if w {
		a.byte1(0x48)
	}
	a.byte1(0x99)
}

// Movsxd emits MOVSXD dst, src32.
func (a *Asm) Movsxd(dst, src Reg) { a.rr(true, dst, src, false, 0x63) }

// Setcc emits SETcc r8.
func (a *Asm) Setcc(c Cond, r Reg) { a.rr(false, 0, r, true, 0x0f, 0x90+byte(c)) }

// Movzx8 emits MOVZX dst32, src8. Only the byte source needs a REX prefix
// to mean SPL..DIL rather than AH..BH.
func (a *Asm) Movzx8(dst, src Reg) {
	a.rex(false, dst, NoIndex, src, src >= 4)
	a.byte1(0x0f, 0xb6, 0xc0|byte(dst&7)<<3|byte(src&7))
}

// Bt emits BT r, bit (bit taken modulo 64).
func (a *Asm) Bt(r, bit Reg) { a.rr(true, bit, r, false, 0x0f, 0xa3) }

// LockBts emits LOCK BTS qword [m], bit: sets bit number 'bit' of the bit
// string starting at m, atomically.
func (a *Asm) LockBts(m Mem, bit Reg) {
	a.byte1(0xf0)
	a.rm(true, bit, m, false, 0x0f, 0xab)
}

// Jcc emits a conditional jump with a rel32 to be patched and returns the
// offset of that rel32.
func (a *Asm) Jcc(c Cond) int {
	a.byte1(0x0f, 0x80+byte(c))
	a.imm32(0)
	return len(a.Buf) - 4
}

// Jmp emits JMP rel32 to be patched and returns the offset of the rel32.
func (a *Asm) Jmp() int {
	a.byte1(0xe9)
	a.imm32(0)
	return len(a.Buf) - 4
}

// JmpReg emits JMP r.
func (a *Asm) JmpReg(r Reg) { a.rr(false, 4, r, false, 0xff) }

// Ret emits RET.
func (a *Asm) Ret() { a.byte1(0xc3) }

// PatchRel32 makes the rel32 at offset at jump to offset target (both in
// this buffer).
func (a *Asm) PatchRel32(at, target int) {
	binary.LittleEndian.PutUint32(a.Buf[at:], uint32(int32(target-(at+4))))
}

// PatchRel32Abs makes the rel32 at offset at, in code that will live at
// address base, jump to absolute address target.
func (a *Asm) PatchRel32Abs(at int, base, target uintptr) {
	binary.LittleEndian.PutUint32(a.Buf[at:], uint32(int32(int64(target)-int64(base+uintptr(at)+4))))
}
