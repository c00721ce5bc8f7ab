package machine

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapvm/snapvm/block"
)

// The register probe: a bare-metal program (assembled here) that performs a
// list of MMIO loads and stores, records every loaded value and the trap
// cause of every access (0 = none), and prints them as hex. Run on snapvm
// and on qemu-system-riscv64, the outputs must be identical: this pins the
// devices' register semantics, access sizes and holes to QEMU 7.2's.

const (
	s0 = 8
	s1 = 9
	t3 = 28
	t4 = 29
	t5 = 30
	t6 = 31
)

func srl(rd, rs1, rs2 uint32) uint32        { return rtype(0x33, rd, 5, rs1, rs2, 0) }
func andi(rd, rs1 uint32, imm int32) uint32 { return itype(0x13, rd, 7, rs1, imm) }
func bge(rs1, rs2 uint32, off int32) uint32 {
	u := uint32(off)
	return (u>>12&1)<<31 | (u>>5&0x3f)<<25 | rs2<<20 | rs1<<15 | 5<<12 | (u>>1&0xf)<<8 | (u>>11&1)<<7 | 0x63
}
func jalr(rd, rs1 uint32, imm int32) uint32 { return itype(0x67, rd, 0, rs1, imm) }
func sh(rs2, rs1 uint32, imm int32) uint32  { return stype(0x23, 1, rs1, rs2, imm) }

var loadF3 = map[int]uint32{1: 4, 2: 5, 4: 6, 8: 3} // lbu, lhu, lwu, ld
var storeF3 = map[int]uint32{1: 0, 2: 1, 4: 2, 8: 3}

type probe struct {
	addr  uint64
	size  int
	store bool
	val   int32
	csr   uint32 // nonzero: read this CSR instead of an access
}

func csrRead(n uint32) probe { return probe{csr: n} }

func ld8(addr uint64, size int) probe { return probe{addr: addr, size: size} }
func st8(addr uint64, size int, v int32) probe {
	return probe{addr: addr, size: size, store: true, val: v}
}

// probeProgram assembles the probe list into a raw image for 0x80000000.
func probeProgram(probes []probe) []byte {
	var code []uint32
	emit := func(w ...uint32) { code = append(code, w...) }
	// s0 = results at 0x80100000 (auipc at offset 0), t4 = UART.
	emit(auipc(s0, 0x100))
	emit(li32(t4, 0x10000000)...)
	mtvecAt := len(code)
	emit(0, 0) // auipc t3, 0; addi t3, t3, handler-offset (patched)
	emit(csrrw(zero, 0x305, t3))
	slot := int32(0)
	record := func(reg uint32) {
		if slot > 2040 {
			panic("probe list too long for 12-bit store offsets")
		}
		emit(sd(reg, s0, slot))
		slot += 8
	}
	for _, p := range probes {
		emit(li32(t0, int32(p.addr))...)
		emit(addi(s1, zero, 0), addi(t1, zero, 0))
		if p.csr != 0 {
			emit(csrrs(t1, p.csr, zero))
			record(t1)
		} else if p.store {
			emit(li32(t2, p.val)...)
			emit(stype(0x23, storeF3[p.size], t0, t2, 0))
		} else {
			emit(itype(0x03, t1, loadF3[p.size], t0, 0))
			record(t1)
		}
		record(s1)
	}
	// Print every slot.
	emit(li32(t4, 0x10000000)...)
	emit(sb(zero, t4, 3)) // LCR = 0: THR, not the divisor latch
	printCalls := []int{}
	for off := int32(0); off < slot; off += 8 {
		emit(ld(a0, s0, off))
		printCalls = append(printCalls, len(code))
		emit(0) // jal ra, print (patched)
	}
	emit(poweroff(0x5555)...)
	handler := len(code)
	// Trap: s1 = mcause, skip the 4-byte access instruction.
	emit(csrrs(s1, 0x342, zero), csrrs(t3, 0x341, zero), addi(t3, t3, 4), csrrw(zero, 0x341, t3), 0x30200073)
	print := len(code)
	emit(addi(t5, zero, 60))
	loop := len(code)
	emit(srl(t6, a0, t5), andi(t6, t6, 15), addi(t6, t6, '0'), addi(t3, zero, '9'+1))
	emit(blt(t6, t3, 8), addi(t6, t6, 'a'-'9'-1))
	emit(sb(t6, t4, 0), addi(t5, t5, -4))
	emit(bge(t5, zero, int32(4*(loop-len(code)))))
	emit(addi(t6, zero, '\n'), sb(t6, t4, 0), jalr(zero, ra, 0))

	off := int32(4 * (handler - mtvecAt))
	hi := (off + 0x800) >> 12
	code[mtvecAt] = auipc(t3, uint32(hi)&0xfffff)
	code[mtvecAt+1] = addi(t3, t3, off-hi<<12)
	for _, at := range printCalls {
		code[at] = jal(ra, int32(4*(print-at)))
	}
	return program(code)
}

func uartProbes() []probe {
	const u = UARTBase
	return []probe{
		ld8(u+1, 1), ld8(u+2, 1), ld8(u+3, 1), ld8(u+4, 1), ld8(u+5, 1), ld8(u+6, 1), ld8(u+7, 1),
		st8(u+3, 1, 0x80), ld8(u+0, 1), ld8(u+1, 1), st8(u+0, 1, 0x03), st8(u+1, 1, 0), ld8(u+0, 1),
		st8(u+3, 1, 0x03), ld8(u+3, 1),
		st8(u+1, 1, 0x02), ld8(u+2, 1), ld8(u+2, 1), st8(u+1, 1, 0), st8(u+1, 1, 0x02), ld8(u+2, 1),
		st8(u+2, 1, 0xc7), ld8(u+2, 1), st8(u+2, 1, 0x81), ld8(u+2, 1),
		st8(u+4, 1, 0x1b), st8(u+0, 1, 'Z'), ld8(u+5, 1), ld8(u+0, 1), ld8(u+5, 1), ld8(u+6, 1), st8(u+4, 1, 0x08),
		st8(u+7, 1, 0x5a), ld8(u+7, 1), ld8(u+0, 4), ld8(u+4, 4), ld8(u+0, 8), ld8(u+5, 4), ld8(u+6, 2), ld8(u+8, 1),
		st8(u+1, 1, 0), st8(u+2, 1, 0),
	}
}

func otherProbes() []probe {
	const v = VirtioBase
	var ps []probe
	for _, off := range []uint64{0, 4, 8, 0xc, 0x10, 0x34, 0x40, 0x60, 0x70, 0x100} {
		ps = append(ps, ld8(v+off, 4))
	}
	ps = append(ps, ld8(v, 2), ld8(v, 8), ld8(v+0x1fc, 4), ld8(v+0x200, 4), ld8(VirtioSlotBase(7), 4))
	ps = append(ps,
		ld8(0, 4), ld8(MROMBase, 4), ld8(MROMBase+0x18, 8), ld8(MROMBase+0x28, 8), ld8(MROMBase+0x30, 8), ld8(0x10000, 4),
		ld8(TestBase, 4), ld8(TestBase, 2), ld8(TestBase, 1), ld8(TestBase, 8), ld8(TestBase+0xffc, 4),
		ld8(RTCBase+0x10, 4), ld8(RTCBase+0x18, 4), ld8(RTCBase+0x20, 4), ld8(RTCBase+0x24, 4), ld8(RTCBase, 2), ld8(RTCBase, 1),
		st8(CLINTBase, 4, -1), ld8(CLINTBase, 4), ld8(CLINTBase, 2), ld8(CLINTBase, 8), st8(CLINTBase, 4, 0), ld8(CLINTBase+4, 4),
		st8(CLINTBase+0x4000, 4, 0x1234), st8(CLINTBase+0x4004, 4, 0x77), ld8(CLINTBase+0x4000, 8), ld8(CLINTBase+0x4004, 4),
		ld8(CLINTBase+0x4000, 2), ld8(CLINTBase+0x4008, 8), ld8(CLINTBase+0xbffc, 2), ld8(CLINTBase+0xc000, 4), ld8(CLINTBase+0xfff8, 8),
		st8(PLICBase+4*10, 4, 9), ld8(PLICBase+4*10, 4), st8(PLICBase+4*10, 4, -1), ld8(PLICBase+4*10, 4), ld8(PLICBase+4*10, 1),
		ld8(PLICBase+4*10, 8), st8(PLICBase+0x2000, 4, -1), ld8(PLICBase+0x2000, 4), ld8(PLICBase+0x2008, 4), ld8(PLICBase+0x200c, 4),
		st8(PLICBase+0x2000, 4, 0), st8(PLICBase+0x200000, 4, 12), ld8(PLICBase+0x200000, 4), ld8(PLICBase+0x200004, 4),
		ld8(PLICBase+0x201000, 4), ld8(PLICBase+0x203000, 4), ld8(PLICBase+0x1000, 4), st8(PLICBase+0x1000, 4, -1), ld8(PLICBase+0x1000, 4),
		ld8(PLICBase+0x5ffffc, 4), ld8(PLICBase+0x600000, 4),
		ld8(0x2f00000, 4), ld8(0x3000000, 4), ld8(0x10000100, 1), ld8(0x80000000-8, 8),
	)
	return ps
}

func blkProbes() []probe {
	const v = VirtioBase + 7*VirtioStride // the first -device
	c := uint64(v + 0x100)
	ps := []probe{ld8(v, 4), ld8(v+4, 4), ld8(v+8, 4), ld8(v+0xc, 4), ld8(v, 2), ld8(v, 8),
		ld8(v+0x10, 4), st8(v+0x14, 4, 1), ld8(v+0x10, 4), st8(v+0x14, 4, 0),
		ld8(v+0x34, 4), st8(v+0x30, 4, 1), ld8(v+0x34, 4), st8(v+0x30, 4, 0), ld8(v+0x40, 4),
		ld8(v+0x60, 4), ld8(v+0x70, 4), st8(v+0x70, 4, 3), ld8(v+0x70, 4), ld8(v+0x70, 2)}
	for off := uint64(0); off < 0x3c; off += 4 {
		ps = append(ps, ld8(c+off, 4))
	}
	ps = append(ps, ld8(c+0x12, 1), ld8(c+0x13, 1), ld8(c+0x22, 2), ld8(c+0x38, 1), ld8(c+0x39, 1), ld8(c+0x38, 2), ld8(c, 8),
		st8(v+0x20, 4, 0), ld8(c+0x20, 1), // no FLUSH, no CONFIG_WCE: write-through
		st8(v+0x20, 4, 0x800), st8(c+0x20, 1, 1), ld8(c+0x20, 1), st8(c+0x20, 1, 0), ld8(c+0x20, 1),
		st8(v+0x70, 4, 0), ld8(v+0x70, 4), ld8(v+0x200, 4),
		st8(v+0x70, 4, 3), st8(v+0x20, 4, 0), st8(v+0x70, 4, 7), ld8(c+0x20, 1), // applied at DRIVER_OK
		st8(v+0x70, 4, 0), ld8(c+0x20, 1))
	return ps
}

// irqProbes follow interrupt lines from the UART and the RTC through the
// PLIC to mip, including QEMU 7.2's claim/complete behaviour.
func irqProbes() []probe {
	const (
		p    = PLICBase
		u    = UARTBase
		mip  = 0x344
		pend = p + 0x1000
		en0  = p + 0x2000
		clm0 = p + 0x200004
	)
	return []probe{
		csrRead(mip), // MTIP set at reset: mtimecmp 0
		st8(CLINTBase+0x4000, 4, -1), st8(CLINTBase+0x4004, 4, -1), csrRead(mip),
		st8(CLINTBase, 4, 1), csrRead(mip), st8(CLINTBase, 4, 0), csrRead(mip),
		st8(CLINTBase+0x4004, 4, 0), csrRead(mip), st8(CLINTBase+0x4000, 4, 0), csrRead(mip),
		st8(CLINTBase+0x4000, 4, -1), st8(CLINTBase+0x4004, 4, -1),
		ld8(pend, 4),
		st8(u+1, 1, 0x02), ld8(pend, 4), csrRead(mip), // THRI: line 10 high, not enabled
		st8(p+4*10, 4, 1), st8(en0, 4, 1<<10), csrRead(mip), ld8(pend, 4),
		ld8(clm0, 4), ld8(pend, 4), csrRead(mip), ld8(clm0, 4),
		ld8(u+2, 1), // IIR read clears THRI: line low
		st8(clm0, 4, 10), ld8(pend, 4), csrRead(mip),
		st8(u+0, 1, 'x'), ld8(pend, 4), csrRead(mip), // a byte re-raises THRI
		ld8(clm0, 4), st8(clm0, 4, 10), ld8(pend, 4), csrRead(mip), // complete with the line still high
		st8(u+1, 1, 0x00), st8(u+1, 1, 0x02), ld8(pend, 4), // re-signal
		st8(p+0x200000, 4, 1), csrRead(mip), st8(p+0x200000, 4, 0), csrRead(mip),
		st8(en0+0x80, 4, 1<<10), csrRead(mip), ld8(p+0x201004, 4), csrRead(mip), // S context claims
		st8(u+1, 1, 0x00), ld8(pend, 4),
		st8(p+4*11, 4, 2), st8(en0, 4, 1<<11|1<<10), st8(RTCBase+0x10, 4, 1), st8(RTCBase+0x0c, 4, 0),
		st8(RTCBase+0x08, 4, 0), ld8(RTCBase+0x18, 4), ld8(pend, 4), csrRead(mip), ld8(clm0, 4),
		st8(RTCBase+0x1c, 4, 1), st8(clm0, 4, 11), ld8(pend, 4), csrRead(mip),
		st8(p+4*10, 4, 0), st8(p+4*11, 4, 0), st8(en0, 4, 0), st8(en0+0x80, 4, 0),
	}
}

func runProbeQEMU(t *testing.T, img []byte, extra ...string) string {
	t.Helper()
	qemu, err := exec.LookPath("qemu-system-riscv64")
	if err != nil {
		t.Fatal("qemu-system-riscv64 not found: install it with scripts/setup.sh (Debian package qemu-system-misc)")
	}
	path := filepath.Join(t.TempDir(), "probe.bin")
	if err := os.WriteFile(path, img, 0o644); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"-M", "virt", "-bios", "none", "-nographic", "-monitor", "none", "-serial", "stdio", "-kernel", path,
		"-cpu", "rv64,h=false,f=false,d=false,zba=false,zbb=false,zbc=false,zbs=false,sstc=false,Zihintpause=false"}, extra...)
	cmd := exec.Command(qemu, args...)
	cmd.WaitDelay = time.Second
	done := make(chan struct{})
	var out []byte
	go func() { out, err = cmd.Output(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("qemu did not finish the probe")
	}
	if err != nil {
		t.Fatalf("qemu: %v", err)
	}
	return string(out)
}

func TestRegistersMatchQEMU(t *testing.T) {
	disk := filepath.Join(t.TempDir(), "disk.raw")
	if err := os.WriteFile(disk, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(disk, 64<<20); err != nil {
		t.Fatal(err)
	}
	g := block.NewGraph()
	defer g.Close()
	ro := false
	n, err := g.Add(block.Options{Driver: "raw", NodeName: "d0", ReadOnly: &ro,
		File: &block.Ref{Options: &block.Options{Driver: "file", Filename: disk}}})
	if err != nil {
		t.Fatal(err)
	}
	be, err := g.NewBackend("", n)
	if err != nil {
		t.Fatal(err)
	}
	for name, probes := range map[string][]probe{"uart": uartProbes(), "devices": otherProbes(), "virtio-blk": blkProbes(), "irq": irqProbes()} {
		img := probeProgram(probes)
		cfg := Config{Kernel: img}
		var extra []string
		if name == "virtio-blk" {
			extra = []string{"-drive", "file=" + disk + ",format=raw,if=none,id=d0", "-device", "virtio-blk-device,drive=d0"}
			cfg.Blocks, cfg.BlkDevices = g, []*block.Backend{be}
		}
		want := runProbeQEMU(t, img, extra...)
		m, out, _ := boot(t, cfg)
		waitDone(t, m)
		got := out.String()
		if got == want {
			continue
		}
		wl, gl := strings.Split(want, "\n"), strings.Split(got, "\n")
		for i := range wl {
			if i >= len(gl) || wl[i] != gl[i] {
				g := "<missing>"
				if i < len(gl) {
					g = gl[i]
				}
				t.Errorf("%s: line %d (probe %d %s): qemu %q, snapvm %q", name, i+1, i/2, describe(probes, i), wl[i], g)
			}
		}
	}
}

// describe names the probe that produced output line i.
func describe(probes []probe, line int) string {
	n := 0
	for _, p := range probes {
		lines := 1
		if !p.store {
			lines = 2
		}
		if line < n+lines {
			kind := "load"
			if p.store {
				kind = "store"
			}
			if p.csr != 0 {
				return "csr " + hex(uint64(p.csr))
			}
			what := "value"
			if p.store || line == n+1 {
				what = "trap cause"
			}
			return kind + " " + hex(p.addr) + "/" + string(rune('0'+p.size)) + " " + what
		}
		n += lines
	}
	return "?"
}

func hex(v uint64) string {
	return "0x" + strings.TrimLeft(strings.ToLower(strings.TrimSpace(formatHex(v))), "0")
}

func formatHex(v uint64) string {
	const digits = "0123456789abcdef"
	b := make([]byte, 16)
	for i := 15; i >= 0; i-- {
		b[i] = digits[v&15]
		v >>= 4
	}
	return string(b)
}
