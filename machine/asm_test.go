package machine

import "encoding/binary"

// A few RV64 encoders for the test guests below.
const (
	zero = 0
	ra   = 1
	t0   = 5
	t1   = 6
	t2   = 7
	a0   = 10
	a1   = 11
)

func rtype(op, rd, f3, rs1, rs2, f7 uint32) uint32 {
	return f7<<25 | rs2<<20 | rs1<<15 | f3<<12 | rd<<7 | op
}
func itype(op, rd, f3, rs1 uint32, imm int32) uint32 {
	return uint32(imm)<<20 | rs1<<15 | f3<<12 | rd<<7 | op
}
func stype(op, f3, rs1, rs2 uint32, imm int32) uint32 {
	u := uint32(imm)
	return (u>>5)<<25 | rs2<<20 | rs1<<15 | f3<<12 | (u&31)<<7 | op
}

func lui(rd uint32, imm20 uint32) uint32    { return imm20<<12 | rd<<7 | 0x37 }
func auipc(rd uint32, imm20 uint32) uint32  { return imm20<<12 | rd<<7 | 0x17 }
func addi(rd, rs1 uint32, imm int32) uint32 { return itype(0x13, rd, 0, rs1, imm) }
func sb(rs2, rs1 uint32, imm int32) uint32  { return stype(0x23, 0, rs1, rs2, imm) }
func sw(rs2, rs1 uint32, imm int32) uint32  { return stype(0x23, 2, rs1, rs2, imm) }
func sd(rs2, rs1 uint32, imm int32) uint32  { return stype(0x23, 3, rs1, rs2, imm) }
func ld(rd, rs1 uint32, imm int32) uint32   { return itype(0x03, rd, 3, rs1, imm) }
func lw(rd, rs1 uint32, imm int32) uint32   { return itype(0x03, rd, 2, rs1, imm) }
func add(rd, rs1, rs2 uint32) uint32        { return rtype(0x33, rd, 0, rs1, rs2, 0) }
func csrrs(rd, csr, rs1 uint32) uint32      { return itype(0x73, rd, 2, rs1, int32(csr)) }
func csrrw(rd, csr, rs1 uint32) uint32      { return itype(0x73, rd, 1, rs1, int32(csr)) }
func wfi() uint32                           { return 0x10500073 }
func slli(rd, rs1 uint32, sh int32) uint32  { return itype(0x13, rd, 1, rs1, sh) }

// jal rd, off (off in bytes, relative).
func jal(rd uint32, off int32) uint32 {
	u := uint32(off)
	return (u>>20&1)<<31 | (u>>1&0x3ff)<<21 | (u>>11&1)<<20 | (u>>12&0xff)<<12 | rd<<7 | 0x6f
}

// blt rs1, rs2, off.
func blt(rs1, rs2 uint32, off int32) uint32 {
	u := uint32(off)
	return (u>>12&1)<<31 | (u>>5&0x3f)<<25 | rs2<<20 | rs1<<15 | 4<<12 | (u>>1&0xf)<<8 | (u>>11&1)<<7 | 0x63
}

// li32 loads a 32-bit constant (sign-extended) into rd.
func li32(rd uint32, v int32) []uint32 {
	hi := (v + 0x800) >> 12
	lo := v - hi<<12
	return []uint32{lui(rd, uint32(hi)&0xfffff), addi(rd, rd, lo)}
}

func program(parts ...any) []byte {
	var out []byte
	for _, p := range parts {
		switch w := p.(type) {
		case uint32:
			out = binary.LittleEndian.AppendUint32(out, w)
		case []uint32:
			for _, x := range w {
				out = binary.LittleEndian.AppendUint32(out, x)
			}
		}
	}
	return out
}

// putc writes the byte c to the UART (t0 must hold the UART base).
func putc(c byte) []uint32 { return []uint32{addi(t1, zero, int32(c)), sb(t1, t0, 0)} }

// poweroff writes v to sifive_test.
func poweroff(v int32) []uint32 {
	return append(append(li32(t0, 0x100000), li32(t1, v)...), sw(t1, t0, 0), jal(zero, 0))
}
