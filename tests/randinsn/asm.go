package randinsn

import (
	"encoding/binary"
	"fmt"
)

// Register numbers used by name.
const (
	zero = 0
	ra   = 1
	sp   = 2
	t0   = 5
	t1   = 6
	t2   = 7
	s0   = 8
	a0   = 10
	a1   = 11
	a2   = 12
	a3   = 13
	a4   = 14
	t3   = 28
	t4   = 29
	t5   = 30
	t6   = 31
)

// Base opcodes.
const (
	opLoad   = 0x03
	opMiscM  = 0x0f
	opImm    = 0x13
	opAuipc  = 0x17
	opImm32  = 0x1b
	opStore  = 0x23
	opAMO    = 0x2f
	opReg    = 0x33
	opLui    = 0x37
	opReg32  = 0x3b
	opBranch = 0x63
	opJalr   = 0x67
	opJal    = 0x6f
	opSystem = 0x73
)

func rType(op, rd, f3, rs1, rs2, f7 uint32) uint32 {
	return f7<<25 | rs2<<20 | rs1<<15 | f3<<12 | rd<<7 | op
}

func iType(op, rd, f3, rs1 uint32, imm int32) uint32 {
	return uint32(imm)&0xfff<<20 | rs1<<15 | f3<<12 | rd<<7 | op
}

func sType(f3, rs1, rs2 uint32, imm int32) uint32 {
	i := uint32(imm)
	return (i>>5&0x7f)<<25 | rs2<<20 | rs1<<15 | f3<<12 | (i&0x1f)<<7 | opStore
}

func bType(f3, rs1, rs2 uint32, off int32) uint32 {
	i := uint32(off)
	return (i>>12&1)<<31 | (i>>5&0x3f)<<25 | rs2<<20 | rs1<<15 | f3<<12 | (i>>1&0xf)<<8 | (i>>11&1)<<7 | opBranch
}

func uType(op, rd, imm20 uint32) uint32 { return imm20&0xfffff<<12 | rd<<7 | op }

func jType(rd uint32, off int32) uint32 {
	i := uint32(off)
	return (i>>20&1)<<31 | (i>>1&0x3ff)<<21 | (i>>11&1)<<20 | (i>>12&0xff)<<12 | rd<<7 | opJal
}

func csrType(f3, rd, rs1OrUimm, csr uint32) uint32 {
	return csr<<20 | rs1OrUimm<<15 | f3<<12 | rd<<7 | opSystem
}

// Compressed encodings (RV64C).

func cJ(off int32) uint16 {
	i := uint32(off)
	v := (i>>11&1)<<12 | (i>>4&1)<<11 | (i>>8&3)<<9 | (i>>10&1)<<8 | (i>>6&1)<<7 |
		(i>>7&1)<<6 | (i>>1&7)<<3 | (i>>5&1)<<2
	return uint16(0b101<<13 | v | 0b01)
}

func cBranch(bnez bool, rs1p uint32, off int32) uint16 {
	i := uint32(off)
	f3 := uint32(0b110)
	if bnez {
		f3 = 0b111
	}
	v := (i>>8&1)<<12 | (i>>3&3)<<10 | (i>>6&3)<<5 | (i>>1&3)<<3 | (i>>5&1)<<2
	return uint16(f3<<13 | v | (rs1p-8)<<7 | 0b01)
}

// cCI builds the CI format: funct3, imm bit 5 at 12, rd, imm[4:0] at 6:2.
func cCI(f3, rd uint32, imm int32, op uint32) uint16 {
	i := uint32(imm)
	return uint16(f3<<13 | (i>>5&1)<<12 | rd<<7 | (i&0x1f)<<2 | op)
}

// fixKind says how a label's address is patched into an instruction.
type fixKind int

const (
	fixB     fixKind = iota // B-type branch at `at`
	fixJ                    // jal at `at`
	fixCB                   // c.beqz/c.bnez at `at`
	fixCJ                   // c.j at `at`
	fixPCRel                // auipc at `at`, I-type (addi/jalr/ld) at at+4: label - address(at)
	fixAbs64                // 8-byte absolute address at `at`
	fixPTE                  // 8-byte page-table entry at `at`: PPN of the label ORed in
)

type fixup struct {
	at    int
	kind  fixKind
	label int
}

// asm is a tiny assembler: a byte image starting at base, labels and
// fixups resolved by finish.
type asm struct {
	base   uint64
	buf    []byte
	labels map[int]int // label -> offset in buf
	fixups []fixup
	next   int
}

func newAsm(base uint64) *asm { return &asm{base: base, labels: map[int]int{}} }

func (a *asm) pc() uint64 { return a.base + uint64(len(a.buf)) }

func (a *asm) newLabel() int { a.next++; return a.next }

func (a *asm) bind(l int) { a.labels[l] = len(a.buf) }

func (a *asm) emit32(w uint32) { a.buf = binary.LittleEndian.AppendUint32(a.buf, w) }

func (a *asm) emit16(h uint16) { a.buf = binary.LittleEndian.AppendUint16(a.buf, h) }

func (a *asm) emit64(d uint64) { a.buf = binary.LittleEndian.AppendUint64(a.buf, d) }

func (a *asm) fix(kind fixKind, label int) {
	a.fixups = append(a.fixups, fixup{len(a.buf), kind, label})
}

func (a *asm) align(n int) {
	for len(a.buf)%n != 0 {
		a.buf = append(a.buf, 0)
	}
}

// alignCode pads with c.nop / nop so that execution may fall through.
func (a *asm) alignCode(n int) {
	for len(a.buf)%n != 0 {
		if len(a.buf)%4 == 2 {
			a.emit16(0x0001)
		} else {
			a.emit32(iType(opImm, 0, 0, 0, 0))
		}
	}
}

// la loads a label's address into rd (auipc + addi).
func (a *asm) la(rd uint32, label int) {
	a.fix(fixPCRel, label)
	a.emit32(uType(opAuipc, rd, 0))
	a.emit32(iType(opImm, rd, 0, rd, 0))
}

func (a *asm) li12(rd uint32, v int32) { a.emit32(iType(opImm, rd, 0, zero, v)) }

func (a *asm) csrw(csr, rs uint32) { a.emit32(csrType(1, zero, rs, csr)) }

func (a *asm) csrr(rd, csr uint32) { a.emit32(csrType(2, rd, zero, csr)) }

// putc writes the byte in ch to UART0, polling LSR.THRE; clobbers a2, a3.
func (a *asm) putc(ch uint32) {
	a.emit32(uType(opLui, a2, 0x10000))
	a.emit32(iType(opLoad, a3, 4, a2, 5)) // lbu a3, 5(a2)
	a.emit32(iType(opImm, a3, 7, a3, 0x20))
	a.emit32(bType(0, a3, zero, -8)) // beqz a3, back to the lbu
	a.emit32(sType(0, a2, ch, 0))    // sb ch, 0(a2)
}

func (a *asm) finish() ([]byte, error) {
	for _, f := range a.fixups {
		off, ok := a.labels[f.label]
		if !ok {
			return nil, fmt.Errorf("randinsn: label %d never bound", f.label)
		}
		target := a.base + uint64(off)
		at := a.base + uint64(f.at)
		rel := int64(target - at)
		switch f.kind {
		case fixB:
			if rel < -4096 || rel > 4094 || rel%2 != 0 {
				return nil, fmt.Errorf("randinsn: branch offset %d out of range", rel)
			}
			w := binary.LittleEndian.Uint32(a.buf[f.at:])
			w |= bType(0, 0, 0, int32(rel)) &^ opBranch
			binary.LittleEndian.PutUint32(a.buf[f.at:], w)
		case fixJ:
			if rel < -(1<<20) || rel >= 1<<20 {
				return nil, fmt.Errorf("randinsn: jal offset %d out of range", rel)
			}
			w := binary.LittleEndian.Uint32(a.buf[f.at:])
			w |= jType(0, int32(rel)) &^ opJal
			binary.LittleEndian.PutUint32(a.buf[f.at:], w)
		case fixCB:
			if rel < -256 || rel > 254 {
				return nil, fmt.Errorf("randinsn: c.b offset %d out of range", rel)
			}
			h := binary.LittleEndian.Uint16(a.buf[f.at:])
			h |= cBranch(false, 8, int32(rel)) &^ (0b111<<13 | 0b11)
			binary.LittleEndian.PutUint16(a.buf[f.at:], h)
		case fixCJ:
			if rel < -2048 || rel > 2046 {
				return nil, fmt.Errorf("randinsn: c.j offset %d out of range", rel)
			}
			h := binary.LittleEndian.Uint16(a.buf[f.at:])
			h |= cJ(int32(rel)) &^ (0b111<<13 | 0b11)
			binary.LittleEndian.PutUint16(a.buf[f.at:], h)
		case fixPCRel:
			if rel < -(1<<31) || rel >= 1<<31-1<<11 {
				return nil, fmt.Errorf("randinsn: pc-relative offset %d out of range", rel)
			}
			hi := (rel + 0x800) >> 12
			lo := rel - hi<<12
			w := binary.LittleEndian.Uint32(a.buf[f.at:])
			binary.LittleEndian.PutUint32(a.buf[f.at:], w|uint32(hi)<<12)
			w = binary.LittleEndian.Uint32(a.buf[f.at+4:])
			binary.LittleEndian.PutUint32(a.buf[f.at+4:], w|uint32(lo)<<20)
		case fixAbs64:
			binary.LittleEndian.PutUint64(a.buf[f.at:], target)
		case fixPTE:
			v := binary.LittleEndian.Uint64(a.buf[f.at:])
			binary.LittleEndian.PutUint64(a.buf[f.at:], v|target>>12<<10)
		}
	}
	return a.buf, nil
}

func cAddi4spn(rdp, u uint32) uint16 {
	return uint16((u>>4&3)<<11 | (u>>6&0xf)<<7 | (u>>2&1)<<6 | (u>>3&1)<<5 | (rdp-8)<<2)
}

// cLS32 is c.lw (store=false) or c.sw with base x8..x15.
func cLS32(store bool, r, base, u uint32) uint16 {
	f3 := uint32(0b010)
	if store {
		f3 = 0b110
	}
	return uint16(f3<<13 | (u>>3&7)<<10 | (base-8)<<7 | (u>>2&1)<<6 | (u>>6&1)<<5 | (r-8)<<2)
}

// cLS64 is c.ld or c.sd.
func cLS64(store bool, r, base, u uint32) uint16 {
	f3 := uint32(0b011)
	if store {
		f3 = 0b111
	}
	return uint16(f3<<13 | (u>>3&7)<<10 | (base-8)<<7 | (u>>6&3)<<5 | (r-8)<<2)
}

func cLwsp(rd, u uint32) uint16 {
	return uint16(0b010<<13 | (u>>5&1)<<12 | rd<<7 | (u>>2&7)<<4 | (u>>6&3)<<2 | 0b10)
}

func cLdsp(rd, u uint32) uint16 {
	return uint16(0b011<<13 | (u>>5&1)<<12 | rd<<7 | (u>>3&3)<<5 | (u>>6&7)<<2 | 0b10)
}

func cSwsp(rs2, u uint32) uint16 {
	return uint16(0b110<<13 | (u>>2&0xf)<<9 | (u>>6&3)<<7 | rs2<<2 | 0b10)
}

func cSdsp(rs2, u uint32) uint16 {
	return uint16(0b111<<13 | (u>>3&7)<<10 | (u>>6&7)<<7 | rs2<<2 | 0b10)
}

// cShiftAndi is c.srli (f2 0), c.srai (1) or c.andi (2) on x8..x15.
func cShiftAndi(f2, rdp uint32, imm int32) uint16 {
	i := uint32(imm)
	return uint16(0b100<<13 | (i>>5&1)<<12 | f2<<10 | (rdp-8)<<7 | (i&0x1f)<<2 | 0b01)
}

// cArith is c.sub/xor/or/and (b12 0, f2 0..3) or c.subw/addw (b12 1, f2 0..1).
func cArith(b12, f2, rdp, rs2p uint32) uint16 {
	return uint16(0b100<<13 | b12<<12 | 0b11<<10 | (rdp-8)<<7 | f2<<5 | (rs2p-8)<<2 | 0b01)
}
