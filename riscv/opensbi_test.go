package riscv

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"testing"

	"github.com/snapvm/snapvm/memory"
)

// The OpenSBI boot test runs QEMU's own OpenSBI 1.1 firmware
// (fw_dynamic.bin from Debian's qemu-system-data) on the hart with a
// minimal virt board, handing over to testdata/sbipayload.bin in S-mode.
// testdata/virt.dtb is dtc's compilation of QEMU 7.2's virt device tree
// (dtc -I dts -O dtb -o virt.dtb ../../shared/reference/virt-dts/virt.dts
// in the project's reference material).
const openSBIPath = "/usr/share/qemu/opensbi-riscv64-generic-fw_dynamic.bin"

// sbiBoard models the virt devices OpenSBI touches: UART0, CLINT, PLIC
// (accepting anything), sifive_test. mtime is virtual: the test advances
// it between Run slices.
type sbiBoard struct {
	h        *Hart
	out      bytes.Buffer
	mtime    uint64
	mtimecmp uint64
	exit     *uint32
}

func (b *sbiBoard) MTime() uint64 { return b.mtime }

func (b *sbiBoard) Load(addr uint64, size int) (uint64, bool) {
	switch {
	case addr == 0x10000005:
		return 0x60, true
	case addr >= 0x10000000 && addr < 0x10000008:
		return 0, true
	case addr == 0x2000000+0xbff8:
		return b.mtime, true
	case addr == 0x2000000+0xbffc:
		return b.mtime >> 32, true
	case addr == 0x2004000:
		return b.mtimecmp, true
	case addr == 0x2004004:
		return b.mtimecmp >> 32, true
	case addr >= 0x2000000 && addr < 0x2010000, addr >= 0xc000000 && addr < 0xc600000:
		return 0, true
	case addr >= 0x100000 && addr < 0x101000:
		return 0, true
	}
	return 0, false
}

func (b *sbiBoard) Store(addr uint64, size int, val uint64) bool {
	switch {
	case addr == 0x10000000:
		b.out.WriteByte(byte(val))
	case addr >= 0x10000000 && addr < 0x10000008:
	case addr == 0x2000000:
		b.h.SetInterrupt(IRQ_MSIP, val&1 != 0)
	case addr == 0x2004000 && size == 8:
		b.mtimecmp = val
	case addr == 0x2004000:
		b.mtimecmp = b.mtimecmp&^0xffffffff | val&0xffffffff
	case addr == 0x2004004:
		b.mtimecmp = b.mtimecmp&0xffffffff | val<<32
	case addr >= 0x2000000 && addr < 0x2010000, addr >= 0xc000000 && addr < 0xc600000:
	case addr == 0x100000:
		v := uint32(val)
		b.exit = &v
	default:
		return false
	}
	b.h.SetInterrupt(IRQ_MTIP, b.mtime >= b.mtimecmp)
	return true
}

func TestOpenSBIBoot(t *testing.T) {
	fw, err := os.ReadFile(openSBIPath)
	if err != nil {
		t.Fatalf("%v: install it with scripts/setup.sh (Debian package qemu-system-misc / qemu-system-data)", err)
	}
	payload, err := os.ReadFile("testdata/sbipayload.bin")
	if err != nil {
		t.Fatal(err)
	}
	dtb, err := os.ReadFile("testdata/virt.dtb")
	if err != nil {
		t.Fatal(err)
	}
	ram, err := memory.New(ramBase, 128<<20)
	if err != nil {
		t.Fatal(err)
	}
	defer ram.Close()
	const (
		payloadAt = 0x80200000
		fdtAt     = 0x87e00000
		infoAt    = 0x87f00000
	)
	info := make([]byte, 48)
	for i, v := range []uint64{0x4942534f, 2, payloadAt, 1, 0, 0} { // fw_dynamic_info
		binary.LittleEndian.PutUint64(info[8*i:], v)
	}
	for _, l := range []struct {
		b  []byte
		at uint64
	}{{fw, ramBase}, {payload, payloadAt}, {dtb, fdtAt}, {info, infoAt}} {
		if err := ram.WriteAt(l.b, l.at); err != nil {
			t.Fatal(err)
		}
	}
	b := &sbiBoard{mtimecmp: ^uint64(0)}
	h := NewHart(0, ram, b, b)
	b.h = h
	h.SetPC(ramBase)
	h.SetReg(a1, fdtAt)
	h.SetReg(a2, infoAt)
	for i := 0; i < 2000 && b.exit == nil; i++ {
		stop := h.Run(100000)
		b.mtime += 10000 // 10 instructions per 10 MHz tick
		if stop == StopWFI && b.mtimecmp > b.mtime && b.mtimecmp != ^uint64(0) {
			b.mtime = b.mtimecmp // idle: skip to the next timer event
		}
		h.SetInterrupt(IRQ_MTIP, b.mtime >= b.mtimecmp)
	}
	out := b.out.String()
	t.Logf("console:\n%s", out)
	if b.exit == nil || *b.exit != 0x5555 {
		t.Fatalf("no clean power-off (exit %v)", b.exit)
	}
	for _, want := range []string{
		"OpenSBI v1.1",
		"Boot HART Priv Version    : v1.12",
		"Boot HART Base ISA        : rv64imac",
		"Boot HART PMP Count       : 16",
		"Boot HART PMP Granularity : 4",
		"Boot HART PMP Address Bits: 54",
		"Domain0 Next Mode         : S-mode",
		"sbipayload: S-mode on hart 0",
		"sbipayload: timer interrupt",
		"sbipayload: sv39 ok",
		"sbipayload: misaligned ok",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q", want)
		}
	}
}
