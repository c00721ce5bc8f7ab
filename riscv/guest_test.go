package riscv

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/snapvm/snapvm/guests"
	"github.com/snapvm/snapvm/memory"
)

// guestBus is the part of the virt board the bare-metal guests touch:
// UART0 (transmit only) and the sifive_test power-off register.
type guestBus struct {
	out  bytes.Buffer
	exit *uint32
}

func (b *guestBus) Load(addr uint64, size int) (uint64, bool) {
	switch {
	case addr == 0x10000005: // LSR: transmitter empty
		return 0x60, true
	case addr >= 0x10000000 && addr < 0x10000008, addr >= 0x2000000 && addr < 0x200c000:
		return 0, true
	}
	return 0, false
}

func (b *guestBus) Store(addr uint64, size int, val uint64) bool {
	switch {
	case addr == 0x10000000:
		b.out.WriteByte(byte(val))
		return true
	case addr >= 0x10000000 && addr < 0x10000008, addr >= 0x2000000 && addr < 0x200c000:
		return true
	case addr == 0x100000:
		v := uint32(val)
		b.exit = &v
		return true
	}
	return false
}

// minimalFDT builds a device tree with just /chosen/bootargs.
func minimalFDT(bootargs string) []byte {
	be := binary.BigEndian
	var st []byte
	u32 := func(v uint32) { st = be.AppendUint32(st, v) }
	name := func(s string) {
		st = append(st, s...)
		st = append(st, 0)
		for len(st)%4 != 0 {
			st = append(st, 0)
		}
	}
	u32(1) // FDT_BEGIN_NODE
	name("")
	u32(1)
	name("chosen")
	u32(3) // FDT_PROP
	val := append([]byte(bootargs), 0)
	u32(uint32(len(val)))
	u32(0) // name offset of "bootargs"
	st = append(st, val...)
	for len(st)%4 != 0 {
		st = append(st, 0)
	}
	u32(2) // FDT_END_NODE
	u32(2)
	u32(9) // FDT_END
	strs := []byte("bootargs\x00")
	const hdr = 40 + 16
	out := make([]byte, hdr)
	be.PutUint32(out[0:], 0xd00dfeed)
	be.PutUint32(out[4:], uint32(hdr+len(st)+len(strs)))
	be.PutUint32(out[8:], hdr)
	be.PutUint32(out[12:], uint32(hdr+len(st)))
	be.PutUint32(out[16:], 40)
	be.PutUint32(out[20:], 17)
	be.PutUint32(out[24:], 16)
	be.PutUint32(out[32:], uint32(len(strs)))
	be.PutUint32(out[36:], uint32(len(st)))
	out = append(out, st...)
	return append(out, strs...)
}

// runGuest boots a bundled guest ELF the way the virt board does (pc at
// DRAM base, a0 = hart id, a1 = FDT) and runs it to power-off.
func runGuest(t testing.TB, name, bootargs string, maxInsns uint64) (string, *Hart) {
	out, h, _ := runGuestTimed(t, name, bootargs, maxInsns)
	return out, h
}

func runGuestTimed(t testing.TB, name, bootargs string, maxInsns uint64) (string, *Hart, time.Duration) {
	t.Helper()
	img, err := guests.ELF(name)
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		t.Fatal(err)
	}
	ram, err := memory.New(ramBase, 128<<20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ram.Close() })
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Filesz == 0 {
			continue
		}
		b := make([]byte, p.Filesz)
		if _, err := p.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		if err := ram.WriteAt(b, p.Paddr); err != nil {
			t.Fatal(err)
		}
	}
	const fdtAddr = ramBase + 0x7e00000
	if err := ram.WriteAt(minimalFDT(bootargs), fdtAddr); err != nil {
		t.Fatal(err)
	}
	bus := &guestBus{}
	h := NewHart(0, ram, bus, &testClock{})
	h.SetPC(ramBase)
	h.SetReg(a1, fdtAddr)
	start := time.Now()
	cpu0 := threadCPU()
	for run := uint64(0); bus.exit == nil && run < maxInsns; run += 1 << 20 {
		h.Run(1 << 20)
	}
	elapsed := time.Since(start)
	if cpu := threadCPU() - cpu0; cpu > 0 {
		elapsed = cpu // on a shared machine, CPU time is the steadier measure
	}
	if bus.exit == nil {
		t.Fatalf("%s did not power off; output so far:\n%s", name, bus.out.String())
	}
	if *bus.exit != 0x5555 {
		t.Fatalf("%s powered off with %#x; output:\n%s", name, *bus.exit, bus.out.String())
	}
	return bus.out.String(), h, elapsed
}

func TestGuestHello(t *testing.T) {
	out, _ := runGuest(t, "hello", "x=1", 10_000_000)
	for _, want := range []string{"Hello from snapvm guest", "misa 0x8000000000141105", "bootargs \"x=1\"", "bye"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// TestGuestCPUBench compares the compute checksum with the one QEMU 7.2
// prints for the same guest (qemu-system-riscv64 -M virt -bios none
// -kernel cpubench.elf -append rounds=1).
func TestGuestCPUBench(t *testing.T) {
	out, _ := runGuest(t, "cpubench", "rounds=1", 200_000_000)
	for _, want := range []string{
		"cpubench: round 0 crc 0x15be9a78 sum 0xc7e5cb488f92e724",
		"cpubench: checksum 0xc7e5cb488f92e724",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	t.Logf("%s", out)
}

// BenchmarkCPUBench runs the compiled cpubench guest (gcc -O2, rv64imac)
// and reports guest instructions per second.
func BenchmarkCPUBench(b *testing.B) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var insns uint64
	var runTime time.Duration
	for i := 0; i < b.N; i++ {
		_, h, d := runGuestTimed(b, "cpubench", "rounds=3", 1<<30)
		insns += h.instret
		runTime += d
	}
	b.ReportMetric(float64(insns)/runTime.Seconds()/1e6, "Minstr/cpu-s")
}
