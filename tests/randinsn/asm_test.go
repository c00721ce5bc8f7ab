package randinsn

import "testing"

// Expected values come from GNU as (riscv64-unknown-elf-as -march=rv64imac).
func TestCompressedEncodings(t *testing.T) {
	const (
		a0, a2, a4, a5, s1 = 10, 12, 14, 15, 9
	)
	cases := []struct {
		name string
		got  uint16
		want uint16
	}{
		{"c.addi4spn a0,sp,1020", cAddi4spn(a0, 1020), 0x1fe8},
		{"c.addi4spn a5,sp,4", cAddi4spn(a5, 4), 0x005c},
		{"c.lw a1,124(s0)", cLS32(false, a1, s0, 124), 0x5c6c},
		{"c.lw s1,4(s0)", cLS32(false, s1, s0, 4), 0x4044},
		{"c.ld a2,248(s0)", cLS64(false, a2, s0, 248), 0x7c70},
		{"c.sw s0,64(s0)", cLS32(true, s0, s0, 64), 0xc020},
		{"c.sd a5,8(s0)", cLS64(true, a5, s0, 8), 0xe41c},
		{"c.lwsp ra,252(sp)", cLwsp(ra, 252), 0x50fe},
		{"c.ldsp t6,504(sp)", cLdsp(t6, 504), 0x7ffe},
		{"c.swsp t6,252(sp)", cSwsp(t6, 252), 0xdffe},
		{"c.sdsp ra,504(sp)", cSdsp(ra, 504), 0xff86},
		{"c.srli a0,63", cShiftAndi(0, a0, 63), 0x917d},
		{"c.srai s1,1", cShiftAndi(1, s1, 1), 0x8485},
		{"c.andi a5,-32", cShiftAndi(2, a5, -32), 0x9b81},
		{"c.subw a0,s0", cArith(1, 0, a0, s0), 0x9d01},
		{"c.addw a5,a4", cArith(1, 1, a5, a4), 0x9fb9},
		{"c.and s1,a5", cArith(0, 3, s1, a5), 0x8cfd},
		{"c.slli t6,33", cCI(0b000, t6, 33, 0b10), 0x1f86},
		{"c.lui a0,0xfffe0", cCI(0b011, a0, -32, 0b01), 0x7501},
		{"c.lui a0,0x1f", cCI(0b011, a0, 31, 0b01), 0x657d},
		{"c.addiw ra,-1", cCI(0b001, ra, -1, 0b01), 0x30fd},
		{"c.li t6,31", cCI(0b010, t6, 31, 0b01), 0x4ffd},
		{"c.beqz s1,.", cBranch(false, s1, 0), 0xc081},
	}
	for _, c := range cases {
		if c.got != c.want {
			t.Errorf("%s: %#04x, want %#04x", c.name, c.got, c.want)
		}
	}
}

// Branch and jump immediates round-trip through the encoders.
func TestBranchOffsets(t *testing.T) {
	decB := func(w uint32) int32 {
		v := (w>>31&1)<<12 | (w>>7&1)<<11 | (w>>25&0x3f)<<5 | (w>>8&0xf)<<1
		return int32(v<<19) >> 19
	}
	decJ := func(w uint32) int32 {
		v := (w>>31&1)<<20 | (w>>12&0xff)<<12 | (w>>20&1)<<11 | (w>>21&0x3ff)<<1
		return int32(v<<11) >> 11
	}
	decCJ := func(h uint16) int32 {
		w := uint32(h)
		v := (w>>12&1)<<11 | (w>>11&1)<<4 | (w>>9&3)<<8 | (w>>8&1)<<10 | (w>>7&1)<<6 |
			(w>>6&1)<<7 | (w>>3&7)<<1 | (w>>2&1)<<5
		return int32(v<<20) >> 20
	}
	decCB := func(h uint16) int32 {
		w := uint32(h)
		v := (w>>12&1)<<8 | (w>>10&3)<<3 | (w>>5&3)<<6 | (w>>3&3)<<1 | (w>>2&1)<<5
		return int32(v<<23) >> 23
	}
	for off := int32(-4096); off <= 4094; off += 2 {
		if got := decB(bType(0, 1, 2, off)); got != off {
			t.Fatalf("B %d -> %d", off, got)
		}
		if got := decJ(jType(1, off*200)); got != off*200 {
			t.Fatalf("J %d -> %d", off*200, got)
		}
		if off >= -2048 && off <= 2046 {
			if got := decCJ(cJ(off)); got != off {
				t.Fatalf("CJ %d -> %d", off, got)
			}
		}
		if off >= -256 && off <= 254 {
			if got := decCB(cBranch(true, 9, off)); got != off {
				t.Fatalf("CB %d -> %d", off, got)
			}
		}
	}
}
