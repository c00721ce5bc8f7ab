package riscv

import (
	"bytes"
	"encoding/binary"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/snapvm/snapvm/memory"
)

// The OpenSBI boot test runs QEMU's own OpenSBI 1.1 firmware
// (fw_dynamic.bin from Debian's qemu-system-data) on the hart with a
// minimal virt board, handing over to testdata/sbipayload.bin in S-mode.
// testdata/virt.dtb and virt_smp2.dtb are dtc's compilations of QEMU 7.2's
// virt device trees for one and two harts, as dumped with
// -M virt,dumpdtb= and decompiled (dtc -I dts -O dtb -o virt.dtb virt.dts).
const openSBIPath = "/usr/share/qemu/opensbi-riscv64-generic-fw_dynamic.bin"

// sbiBoard models the virt devices OpenSBI touches, for any number of
// harts each running on its own goroutine: UART0, CLINT (msip, mtimecmp,
// a virtual mtime advanced as the harts run), PLIC (accepting anything),
// sifive_test.
type sbiBoard struct {
	harts []*Hart
	mtime atomic.Uint64
	exit  atomic.Pointer[uint32]

	mu       sync.Mutex
	out      bytes.Buffer // guarded by mu
	mtimecmp []uint64     // guarded by mu
}

func (b *sbiBoard) MTime() uint64 { return b.mtime.Load() }

const (
	clintBase    = 0x2000000
	clintCmp     = clintBase + 0x4000
	clintMtime   = clintBase + 0xbff8
	uartBase     = 0x10000000
	testDevBase  = 0x100000
	plicBase     = 0xc000000
	plicEnd      = plicBase + 0x600000
	clintEnd     = clintBase + 0x10000
	fwDynamicMag = 0x4942534f // "OSBI"
)

func (b *sbiBoard) Load(addr uint64, size int) (uint64, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := uint64(len(b.harts))
	switch {
	case addr == uartBase+5:
		return 0x60, true
	case addr >= uartBase && addr < uartBase+8:
		return 0, true
	case addr == clintMtime:
		return b.mtime.Load(), true
	case addr == clintMtime+4:
		return b.mtime.Load() >> 32, true
	case addr >= clintCmp && addr < clintCmp+8*n:
		v := b.mtimecmp[(addr-clintCmp)/8]
		if addr%8 == 4 {
			v >>= 32
		}
		return v, true
	case addr >= clintBase && addr < clintEnd, addr >= plicBase && addr < plicEnd:
		return 0, true
	case addr >= testDevBase && addr < testDevBase+0x1000:
		return 0, true
	}
	return 0, false
}

func (b *sbiBoard) Store(addr uint64, size int, val uint64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := uint64(len(b.harts))
	switch {
	case addr == uartBase:
		b.out.WriteByte(byte(val))
	case addr >= uartBase && addr < uartBase+8:
	case addr >= clintBase && addr < clintBase+4*n:
		b.harts[(addr-clintBase)/4].SetInterrupt(IRQ_MSIP, val&1 != 0)
	case addr >= clintCmp && addr < clintCmp+8*n:
		i := (addr - clintCmp) / 8
		switch {
		case size == 8:
			b.mtimecmp[i] = val
		case addr%8 == 0:
			b.mtimecmp[i] = b.mtimecmp[i]&^0xffffffff | val&0xffffffff
		default:
			b.mtimecmp[i] = b.mtimecmp[i]&0xffffffff | val<<32
		}
		b.harts[i].SetInterrupt(IRQ_MTIP, b.mtime.Load() >= b.mtimecmp[i])
	case addr >= clintBase && addr < clintEnd, addr >= plicBase && addr < plicEnd:
	case addr == testDevBase:
		v := uint32(val)
		b.exit.Store(&v)
	default:
		return false
	}
	return true
}

// tick advances mtime and updates every hart's timer line.
func (b *sbiBoard) tick(d uint64) {
	t := b.mtime.Add(d)
	b.mu.Lock()
	defer b.mu.Unlock()
	for i, h := range b.harts {
		h.SetInterrupt(IRQ_MTIP, t >= b.mtimecmp[i])
	}
}

// bootOpenSBI runs OpenSBI plus the S-mode payload on n harts (one
// goroutine each, all starting at DRAM base as on the virt board) until
// the payload powers off, and returns the console output.
func bootOpenSBI(t *testing.T, n int, dtbName string) string {
	t.Helper()
	fw, err := os.ReadFile(openSBIPath)
	if err != nil {
		t.Fatalf("%v: install it with scripts/setup.sh (Debian package qemu-system-misc / qemu-system-data)", err)
	}
	payload, err := os.ReadFile("testdata/sbipayload.bin")
	if err != nil {
		t.Fatal(err)
	}
	dtb, err := os.ReadFile("testdata/" + dtbName)
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
	for i, v := range []uint64{fwDynamicMag, 2, payloadAt, 1, 0, 0} { // fw_dynamic_info
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
	b := &sbiBoard{mtimecmp: make([]uint64, n)}
	for i := 0; i < n; i++ {
		b.mtimecmp[i] = ^uint64(0)
		h := NewHart(uint64(i), ram, b, b)
		h.SetPC(ramBase)
		h.SetReg(a0, uint64(i))
		h.SetReg(a1, fdtAt)
		h.SetReg(a2, infoAt)
		b.harts = append(b.harts, h)
	}
	deadline := time.Now().Add(60 * time.Second)
	var wg sync.WaitGroup
	for _, h := range b.harts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b.exit.Load() == nil && time.Now().Before(deadline) {
				if h.Run(20000) == StopWFI {
					// Idle: let guest time pass quickly.
					b.tick(10000)
					h.WaitForInterrupt(100 * time.Microsecond)
				} else {
					b.tick(2000) // 10 instructions per 10 MHz tick
				}
			}
		}()
	}
	wg.Wait()
	b.mu.Lock()
	out := b.out.String()
	b.mu.Unlock()
	t.Logf("console:\n%s", out)
	if e := b.exit.Load(); e == nil || *e != 0x5555 {
		t.Fatalf("no clean power-off (exit %v)", e)
	}
	return out
}

func TestOpenSBIBoot(t *testing.T) {
	out := bootOpenSBI(t, 1, "virt.dtb")
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
	if strings.Contains(out, "second hart") {
		t.Error("a second hart ran on a one-hart board")
	}
}

// TestOpenSBIBootTwoHarts: both harts race through OpenSBI's boot lottery
// (AMOs across goroutines); the loser parks in WFI, the winner runs the
// payload, which starts the other hart through SBI HSM (an IPI through the
// CLINT wakes it from WFI on its goroutine) and waits for it.
func TestOpenSBIBootTwoHarts(t *testing.T) {
	out := bootOpenSBI(t, 2, "virt_smp2.dtb")
	for _, want := range []string{
		"Platform HART Count       : 2",
		"sbipayload: timer interrupt",
		"sbipayload: sv39 ok",
		"sbipayload: second hart ran",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("console lacks %q", want)
		}
	}
	if !strings.Contains(out, "S-mode on hart 0") && !strings.Contains(out, "S-mode on hart 1") {
		t.Error("payload did not start")
	}
}
