package riscv

// Decoded operations. opDecode (0) marks a cache slot not decoded yet.
const (
	opDecode = iota
	opIllegal
	opStraddle // 32-bit instruction crossing a page: executed uncached
	opLUI
	opAUIPC
	opJAL
	opJALR
	opBEQ
	opBNE
	opBLT
	opBGE
	opBLTU
	opBGEU
	opLB
	opLH
	opLW
	opLD
	opLBU
	opLHU
	opLWU
	opSB
	opSH
	opSW
	opSD
	opADDI
	opSLTI
	opSLTIU
	opXORI
	opORI
	opANDI
	opSLLI
	opSRLI
	opSRAI
	opADD
	opSUB
	opSLL
	opSLT
	opSLTU
	opXOR
	opSRL
	opSRA
	opOR
	opAND
	opADDIW
	opSLLIW
	opSRLIW
	opSRAIW
	opADDW
	opSUBW
	opSLLW
	opSRLW
	opSRAW
	opMUL
	opMULH
	opMULHSU
	opMULHU
	opDIV
	opDIVU
	opREM
	opREMU
	opMULW
	opDIVW
	opDIVUW
	opREMW
	opREMUW
	opFENCE
	opFENCEI
	opECALL
	opEBREAK
	opMRET
	opSRET
	opWFI
	opSFENCEVMA
	opCSRRW
	opCSRRS
	opCSRRC
	opCSRRWI
	opCSRRSI
	opCSRRCI
	opLRW
	opSCW
	opLRD
	opSCD
	opAMOSWAPW
	opAMOADDW
	opAMOXORW
	opAMOANDW
	opAMOORW
	opAMOMINW
	opAMOMAXW
	opAMOMINUW
	opAMOMAXUW
	opAMOSWAPD
	opAMOADDD
	opAMOXORD
	opAMOANDD
	opAMOORD
	opAMOMIND
	opAMOMAXD
	opAMOMINUD
	opAMOMAXUD
	opNOP
)

// sinkReg receives writes to x0.
const sinkReg = 32

// rdCompressed is set in dinsn.rd for 16-bit instructions; register
// indexing masks rd with 63, so the flag costs nothing there.
const rdCompressed = 64

func rdOf(r uint32) uint8 {
	if r == 0 {
		return sinkReg
	}
	return uint8(r)
}

func illegal(raw uint32, n uint8) dinsn {
	d := dinsn{op: opIllegal, imm: int32(raw)}
	if n == 2 {
		d.rd = rdCompressed
	}
	return d
}

func immI(r uint32) int32 { return int32(r) >> 20 }
func immS(r uint32) int32 { return int32(r)>>25<<5 | int32(r>>7&31) }
func immB(r uint32) int32 {
	return int32(r)>>31<<12 | int32(r>>7&1)<<11 | int32(r>>25&63)<<5 | int32(r>>8&15)<<1
}
func immU(r uint32) int32 { return int32(r &^ 0xfff) }
func immJ(r uint32) int32 {
	return int32(r)>>31<<20 | int32(r>>12&0xff)<<12 | int32(r>>20&1)<<11 | int32(r>>21&0x3ff)<<1
}

// decode32 decodes a 32-bit instruction.
func decode32(r uint32) dinsn {
	rd := r >> 7 & 31
	rs1 := uint8(r >> 15 & 31)
	rs2 := uint8(r >> 20 & 31)
	f3 := r >> 12 & 7
	f7 := r >> 25
	d := dinsn{rd: rdOf(rd), rs1: rs1, rs2: rs2}
	bad := illegal(r, 4)
	switch r & 0x7f {
	case 0x37:
		d.op, d.imm = opLUI, immU(r)
	case 0x17:
		d.op, d.imm = opAUIPC, immU(r)
	case 0x6f:
		d.op, d.imm = opJAL, immJ(r)
	case 0x67:
		if f3 != 0 {
			return bad
		}
		d.op, d.imm = opJALR, immI(r)
	case 0x63:
		ops := [8]uint8{opBEQ, opBNE, 0, 0, opBLT, opBGE, opBLTU, opBGEU}
		if ops[f3] == 0 {
			return bad
		}
		d.op, d.imm = ops[f3], immB(r)
	case 0x03:
		ops := [8]uint8{opLB, opLH, opLW, opLD, opLBU, opLHU, opLWU, 0}
		if ops[f3] == 0 {
			return bad
		}
		d.op, d.imm = ops[f3], immI(r)
	case 0x23:
		ops := [8]uint8{opSB, opSH, opSW, opSD}
		if f3 > 3 {
			return bad
		}
		d.op, d.imm = ops[f3], immS(r)
	case 0x13:
		d.imm = immI(r)
		switch f3 {
		case 0:
			d.op = opADDI
		case 2:
			d.op = opSLTI
		case 3:
			d.op = opSLTIU
		case 4:
			d.op = opXORI
		case 6:
			d.op = opORI
		case 7:
			d.op = opANDI
		case 1:
			if r>>26 != 0 {
				return bad
			}
			d.op, d.imm = opSLLI, int32(r>>20&63)
		case 5:
			switch r >> 26 {
			case 0:
				d.op = opSRLI
			case 0x10:
				d.op = opSRAI
			default:
				return bad
			}
			d.imm = int32(r >> 20 & 63)
		}
	case 0x1b:
		d.imm = immI(r)
		switch {
		case f3 == 0:
			d.op = opADDIW
		case f3 == 1 && f7 == 0:
			d.op, d.imm = opSLLIW, int32(rs2)
		case f3 == 5 && f7 == 0:
			d.op, d.imm = opSRLIW, int32(rs2)
		case f3 == 5 && f7 == 0x20:
			d.op, d.imm = opSRAIW, int32(rs2)
		default:
			return bad
		}
	case 0x33:
		switch f7 {
		case 0:
			d.op = [8]uint8{opADD, opSLL, opSLT, opSLTU, opXOR, opSRL, opOR, opAND}[f3]
		case 0x20:
			switch f3 {
			case 0:
				d.op = opSUB
			case 5:
				d.op = opSRA
			default:
				return bad
			}
		case 1:
			d.op = [8]uint8{opMUL, opMULH, opMULHSU, opMULHU, opDIV, opDIVU, opREM, opREMU}[f3]
		default:
			return bad
		}
	case 0x3b:
		switch {
		case f7 == 0 && f3 == 0:
			d.op = opADDW
		case f7 == 0x20 && f3 == 0:
			d.op = opSUBW
		case f7 == 0 && f3 == 1:
			d.op = opSLLW
		case f7 == 0 && f3 == 5:
			d.op = opSRLW
		case f7 == 0x20 && f3 == 5:
			d.op = opSRAW
		case f7 == 1 && f3 == 0:
			d.op = opMULW
		case f7 == 1 && f3 == 4:
			d.op = opDIVW
		case f7 == 1 && f3 == 5:
			d.op = opDIVUW
		case f7 == 1 && f3 == 6:
			d.op = opREMW
		case f7 == 1 && f3 == 7:
			d.op = opREMUW
		default:
			return bad
		}
	case 0x0f:
		switch f3 {
		case 0:
			d.op = opFENCE
		case 1:
			d.op = opFENCEI
		default:
			return bad
		}
	case 0x73:
		if f3 == 0 {
			switch {
			case r == 0x00000073:
				d.op = opECALL
			case r == 0x00100073:
				d.op = opEBREAK
			case r == 0x30200073:
				d.op = opMRET
			case r == 0x10200073:
				d.op = opSRET
			case r == 0x10500073:
				d.op = opWFI
			case f7 == 0x09 && rd == 0:
				d.op = opSFENCEVMA
			default:
				return bad
			}
			d.imm = int32(r) // raw bits for illegal-instruction tval
			return d
		}
		if f3 == 4 {
			return bad
		}
		d.op = [8]uint8{0, opCSRRW, opCSRRS, opCSRRC, 0, opCSRRWI, opCSRRSI, opCSRRCI}[f3]
		// imm packs the CSR number (low 12 bits) and the raw bits above it
		// are recovered from rd/rs1; keep the raw instruction for tval.
		d.imm = int32(r)
	case 0x2f:
		f5 := r >> 27
		var op uint8
		switch f3 {
		case 2:
			op = [32]uint8{0: opAMOADDW, 1: opAMOSWAPW, 2: opLRW, 3: opSCW, 4: opAMOXORW, 8: opAMOORW,
				12: opAMOANDW, 16: opAMOMINW, 20: opAMOMAXW, 24: opAMOMINUW, 28: opAMOMAXUW}[f5]
		case 3:
			op = [32]uint8{0: opAMOADDD, 1: opAMOSWAPD, 2: opLRD, 3: opSCD, 4: opAMOXORD, 8: opAMOORD,
				12: opAMOANDD, 16: opAMOMIND, 20: opAMOMAXD, 24: opAMOMINUD, 28: opAMOMAXUD}[f5]
		}
		if op == 0 || ((op == opLRW || op == opLRD) && rs2 != 0) {
			return bad
		}
		d.op = op
	default:
		return bad
	}
	return d
}

// decode16 expands a compressed instruction (RV64C) into its 32-bit
// equivalent's decoded form.
func decode16(c uint32) dinsn {
	bad := illegal(c, 2)
	if c == 0 {
		return dinsn{op: opIllegal, imm: 0, rd: rdCompressed}
	}
	rdp := uint8(c>>2&7) + 8  // rd' / rs2'
	rs1p := uint8(c>>7&7) + 8 // rs1' / rd'
	rd := uint8(c >> 7 & 31)
	rs2 := uint8(c >> 2 & 31)
	f3 := c >> 13
	var d dinsn
	switch c & 3 {
	case 0:
		switch f3 {
		case 0: // c.addi4spn
			imm := c>>7&0x30 | c>>1&0x3c0 | c>>4&4 | c>>2&8
			if imm == 0 {
				return bad
			}
			d = dinsn{op: opADDI, rd: rdp, rs1: 2, imm: int32(imm)}
		case 2: // c.lw
			imm := c>>7&0x38 | c>>4&4 | c<<1&0x40
			d = dinsn{op: opLW, rd: rdp, rs1: rs1p, imm: int32(imm)}
		case 3: // c.ld
			imm := c>>7&0x38 | c<<1&0xc0
			d = dinsn{op: opLD, rd: rdp, rs1: rs1p, imm: int32(imm)}
		case 6: // c.sw
			imm := c>>7&0x38 | c>>4&4 | c<<1&0x40
			d = dinsn{op: opSW, rs1: rs1p, rs2: rdp, imm: int32(imm)}
		case 7: // c.sd
			imm := c>>7&0x38 | c<<1&0xc0
			d = dinsn{op: opSD, rs1: rs1p, rs2: rdp, imm: int32(imm)}
		default: // c.fld, c.fsd (no F/D), reserved
			return bad
		}
	case 1:
		imm6 := int32(c>>2&31) | int32(c<<19)>>31<<5 // sign-extended imm[5:0]
		switch f3 {
		case 0: // c.addi (c.nop when rd = 0)
			d = dinsn{op: opADDI, rd: rdOf(uint32(rd)), rs1: rd, imm: imm6}
		case 1: // c.addiw
			if rd == 0 {
				return bad
			}
			d = dinsn{op: opADDIW, rd: rd, rs1: rd, imm: imm6}
		case 2: // c.li
			d = dinsn{op: opADDI, rd: rdOf(uint32(rd)), rs1: 0, imm: imm6}
		case 3:
			if rd == 2 { // c.addi16sp
				imm := int32(c<<19)>>31<<9 | int32(c>>2&0x10) | int32(c<<3&0x20) | int32(c<<1&0x40) | int32(c<<4&0x180)
				if imm == 0 {
					return bad
				}
				d = dinsn{op: opADDI, rd: 2, rs1: 2, imm: imm}
			} else { // c.lui
				if imm6 == 0 {
					return bad
				}
				d = dinsn{op: opLUI, rd: rdOf(uint32(rd)), imm: imm6 << 12}
			}
		case 4:
			switch c >> 10 & 3 {
			case 0: // c.srli
				d = dinsn{op: opSRLI, rd: rs1p, rs1: rs1p, imm: imm6 & 63}
			case 1: // c.srai
				d = dinsn{op: opSRAI, rd: rs1p, rs1: rs1p, imm: imm6 & 63}
			case 2: // c.andi
				d = dinsn{op: opANDI, rd: rs1p, rs1: rs1p, imm: imm6}
			case 3:
				ops := [8]uint8{opSUB, opXOR, opOR, opAND, opSUBW, opADDW, 0, 0}
				op := ops[c>>12&1<<2|c>>5&3]
				if op == 0 {
					return bad
				}
				d = dinsn{op: op, rd: rs1p, rs1: rs1p, rs2: rdp}
			}
		case 5: // c.j
			d = dinsn{op: opJAL, rd: sinkReg, imm: cjImm(c)}
		case 6, 7: // c.beqz, c.bnez
			imm := int32(c<<19)>>31<<8 | int32(c>>7&0x18) | int32(c<<1&0xc0) | int32(c>>2&6) | int32(c<<3&0x20)
			op := uint8(opBEQ)
			if f3 == 7 {
				op = opBNE
			}
			d = dinsn{op: op, rs1: rs1p, rs2: 0, imm: imm}
		}
	case 2:
		switch f3 {
		case 0: // c.slli
			d = dinsn{op: opSLLI, rd: rdOf(uint32(rd)), rs1: rd, imm: int32(c>>2&31 | c>>7&32)}
		case 2: // c.lwsp
			if rd == 0 {
				return bad
			}
			imm := c>>2&0x1c | c>>7&0x20 | c<<4&0xc0
			d = dinsn{op: opLW, rd: rd, rs1: 2, imm: int32(imm)}
		case 3: // c.ldsp
			if rd == 0 {
				return bad
			}
			imm := c>>2&0x18 | c>>7&0x20 | c<<4&0x1c0
			d = dinsn{op: opLD, rd: rd, rs1: 2, imm: int32(imm)}
		case 4:
			switch {
			case c>>12&1 == 0 && rs2 == 0: // c.jr
				if rd == 0 {
					return bad
				}
				d = dinsn{op: opJALR, rd: sinkReg, rs1: rd}
			case c>>12&1 == 0: // c.mv
				d = dinsn{op: opADD, rd: rdOf(uint32(rd)), rs1: 0, rs2: rs2}
			case rd == 0 && rs2 == 0: // c.ebreak
				d = dinsn{op: opEBREAK}
			case rs2 == 0: // c.jalr
				d = dinsn{op: opJALR, rd: 1, rs1: rd}
			default: // c.add
				d = dinsn{op: opADD, rd: rdOf(uint32(rd)), rs1: rd, rs2: rs2}
			}
		case 6: // c.swsp
			imm := c>>7&0x3c | c>>1&0xc0
			d = dinsn{op: opSW, rs1: 2, rs2: rs2, imm: int32(imm)}
		case 7: // c.sdsp
			imm := c>>7&0x38 | c>>1&0x1c0
			d = dinsn{op: opSD, rs1: 2, rs2: rs2, imm: int32(imm)}
		default: // c.fldsp, c.fsdsp
			return bad
		}
	}
	d.rd |= rdCompressed
	return d
}

func cjImm(c uint32) int32 {
	return int32(c<<19)>>31<<11 | int32(c>>7&0x10) | int32(c>>1&0x300) | int32(c<<2&0x400) |
		int32(c>>1&0x40) | int32(c<<1&0x80) | int32(c>>2&0xe) | int32(c<<3&0x20)
}
