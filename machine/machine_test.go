package machine

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/snapvm/snapvm/block"
	"github.com/snapvm/snapvm/fdt"
	"github.com/snapvm/snapvm/guests"
)

// syncBuffer is a goroutine-safe output sink.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type eventLog struct {
	mu  sync.Mutex
	evs []Event
}

func (l *eventLog) add(e Event) { l.mu.Lock(); l.evs = append(l.evs, e); l.mu.Unlock() }

func (l *eventLog) kinds() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var k []string
	for _, e := range l.evs {
		k = append(k, e.Kind)
	}
	return strings.Join(k, ",")
}

func (l *eventLog) find(kind string) (Event, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.evs {
		if e.Kind == kind {
			return e, true
		}
	}
	return Event{}, false
}

func boot(t *testing.T, cfg Config) (*Machine, *syncBuffer, *eventLog) {
	t.Helper()
	out := &syncBuffer{}
	cfg.Serial = out
	start := !cfg.StartPaused
	cfg.StartPaused = true
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	log := &eventLog{}
	m.Subscribe(log.add)
	if start {
		m.Start()
	}
	return m, out, log
}

func waitDone(t *testing.T, m *Machine) {
	t.Helper()
	select {
	case <-m.Done():
	case <-time.After(20 * time.Second):
		t.Fatalf("machine did not finish; state %s", m.RunState())
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// hiGuest prints "Hi", stores a0/a1 at 0x80001000 and powers off.
func hiGuest(code int32) []byte {
	return program(
		auipc(t2, 0x1), // first instruction: t2 = 0x80001000
		sd(a0, t2, 0), sd(a1, t2, 8),
		lui(t0, 0x10000), putc('H'), putc('i'),
		poweroff(code),
	)
}

func TestBootRawImage(t *testing.T) {
	m, out, log := boot(t, Config{Kernel: hiGuest(0x5555)})
	waitDone(t, m)
	if out.String() != "Hi" {
		t.Fatalf("serial output %q", out.String())
	}
	if m.ExitCode() != 0 || m.RunState() != RunStateShutdown {
		t.Fatalf("exit code %d state %s", m.ExitCode(), m.RunState())
	}
	if log.kinds() != "RESUME,SHUTDOWN" {
		t.Fatalf("events %s", log.kinds())
	}
	if e, _ := log.find(EventShutdown); e.Data != (Cause{Guest: true, Reason: "guest-shutdown"}) {
		t.Fatalf("shutdown data %+v", e.Data)
	}
	var regs [16]byte
	m.RAM().ReadAt(regs[:], 0x80001000)
	_, fdtAddr := m.FDT()
	if a0 := binary.LittleEndian.Uint64(regs[0:]); a0 != 0 {
		t.Errorf("a0 = %#x, want hart id 0", a0)
	}
	if a1 := binary.LittleEndian.Uint64(regs[8:]); a1 != fdtAddr || fdtAddr != 0x87e00000 {
		t.Errorf("a1 = %#x, FDT at %#x, want 0x87e00000", a1, fdtAddr)
	}
}

func TestFailExitCode(t *testing.T) {
	m, _, _ := boot(t, Config{Kernel: hiGuest(0x00073333)})
	waitDone(t, m)
	if m.ExitCode() != 7 {
		t.Fatalf("exit code %d, want 7", m.ExitCode())
	}
}

func TestNoShutdown(t *testing.T) {
	m, _, log := boot(t, Config{Kernel: hiGuest(0x5555), NoShutdown: true})
	waitFor(t, "shutdown state", func() bool { return m.RunState() == RunStateShutdown })
	if log.kinds() != "RESUME,SHUTDOWN,STOP" {
		t.Fatalf("events %s", log.kinds())
	}
	select {
	case <-m.Done():
		t.Fatal("Done closed with -no-shutdown")
	default:
	}
}

// counterGuest increments the word at 0x80002000 forever.
func counterGuest() []byte {
	return program(
		auipc(t2, 0x2), // t2 = 0x80002000
		ld(t1, t2, 0), addi(t1, t1, 1), sd(t1, t2, 0), jal(zero, -12),
	)
}

func counter(m *Machine) uint64 {
	var b [8]byte
	m.RAM().ReadAt(b[:], 0x80002000)
	return binary.LittleEndian.Uint64(b[:])
}

func TestStopResume(t *testing.T) {
	for _, harts := range []int{1, 2} {
		t.Run(fmt.Sprintf("harts=%d", harts), func(t *testing.T) { testStopResume(t, harts) })
	}
}

func testStopResume(t *testing.T, harts int) {
	m, _, log := boot(t, Config{Kernel: counterGuest(), StartPaused: true, Harts: harts})
	if m.RunState() != RunStatePrelaunch || counter(m) != 0 {
		t.Fatal("prelaunch must not run the guest")
	}
	m.Start()
	waitFor(t, "counter", func() bool { return counter(m) > 1000 })
	if !m.Stop(RunStatePaused) {
		t.Fatal("Stop did not report a running VM")
	}
	c := counter(m)
	clk := m.Clock().Nanoseconds()
	time.Sleep(20 * time.Millisecond)
	if counter(m) != c || m.Clock().Nanoseconds() != clk {
		t.Fatal("guest or clock advanced while paused")
	}
	if m.Pause(string(RunStateSaveVM)) {
		t.Fatal("Pause reported running")
	}
	if m.RunState() != RunStatePaused {
		t.Fatalf("Pause keeps a stopped VM's state (QEMU's vm_stop): %s", m.RunState())
	}
	if m.Stop(RunStateSaveVM) || m.RunState() != RunStateSaveVM {
		t.Fatalf("Stop sets the state: %s", m.RunState())
	}
	m.Resume()
	waitFor(t, "counter after resume", func() bool { return counter(m) > c+1000 })
	if log.kinds() != "RESUME,STOP,RESUME" {
		t.Fatalf("events %s", log.kinds())
	}
}

// resetGuest counts boots at 0x80100000 and resets until the third boot,
// then powers off.
func resetGuest() []byte {
	return program(
		auipc(t2, 0x100), // t2 = 0x80100000
		ld(t1, t2, 0), addi(t1, t1, 1), sd(t1, t2, 0),
		addi(t0, zero, 3),
		blt(t1, t0, 8), // boots < 3: skip the poweroff jump
		jal(zero, 4+int32(4*len(poweroff(0x7777)))),
		poweroff(0x7777),
		poweroff(0x5555),
	)
}

func TestGuestReset(t *testing.T) {
	m, _, log := boot(t, Config{Kernel: resetGuest()})
	waitDone(t, m)
	if log.kinds() != "RESUME,RESET,RESET,SHUTDOWN" {
		t.Fatalf("events %s", log.kinds())
	}
	if e, _ := log.find(EventReset); e.Data != (Cause{Guest: true, Reason: "guest-reset"}) {
		t.Fatalf("reset data %+v", e.Data)
	}
}

func TestNoReboot(t *testing.T) {
	m, _, log := boot(t, Config{Kernel: resetGuest(), NoReboot: true})
	waitDone(t, m)
	if e, _ := log.find(EventShutdown); e.Data != (Cause{Guest: true, Reason: "guest-reset"}) || log.kinds() != "RESUME,SHUTDOWN" {
		t.Fatalf("events %s, shutdown %+v", log.kinds(), e.Data)
	}
}

func TestHostResetAndPowerdown(t *testing.T) {
	m, _, log := boot(t, Config{Kernel: counterGuest()})
	waitFor(t, "counter", func() bool { return counter(m) > 100 })
	m.Powerdown()
	m.Reset()
	waitFor(t, "reset", func() bool { _, ok := log.find(EventReset); return ok })
	if e, _ := log.find(EventReset); e.Data != (Cause{Reason: "host-qmp-system-reset"}) {
		t.Fatalf("reset data %+v", e.Data)
	}
	if m.RunState() != RunStateRunning {
		t.Fatal("reset while running keeps running")
	}
	m.Shutdown("host-qmp-quit")
	waitDone(t, m)
	if log.kinds() != "RESUME,POWERDOWN,RESET,SHUTDOWN" {
		t.Fatalf("events %s", log.kinds())
	}
}

// timerGuest arms mtimecmp 2 ms ahead, enables MTIE, waits in WFI, then
// prints "T" and powers off.
func timerGuest() []byte {
	return program(
		li32(t0, 0x200bff8), ld(t1, t0, 0), // mtime
		li32(t2, 20000), add(t1, t1, t2),
		li32(t0, 0x2004000), sd(t1, t0, 0), // mtimecmp
		addi(t1, zero, 0x80), csrrs(zero, 0x304, t1), // mie.MTIE
		wfi(),
		lui(t0, 0x10000), putc('T'),
		poweroff(0x5555),
	)
}

func TestTimerWakesWFI(t *testing.T) {
	m, out, _ := boot(t, Config{Kernel: timerGuest()})
	waitDone(t, m)
	if out.String() != "T" {
		t.Fatalf("output %q", out.String())
	}
	if ns := m.Clock().Nanoseconds(); ns < 2_000_000 {
		t.Fatalf("virtual clock at %d ns, the timer was 2 ms ahead", ns)
	}
}

func TestBusFaults(t *testing.T) {
	m, _, _ := boot(t, Config{Kernel: counterGuest(), StartPaused: true})
	b := m.bus
	for _, c := range []struct {
		addr uint64
		size int
		ok   bool
	}{
		{0, 4, false},
		{0x1000, 4, true}, {0x1000, 2, true}, {0xfffc, 4, true}, {0x10000, 4, false},
		{0x100000, 4, true}, {0x100000, 1, false},
		{0x101000, 4, true}, {0x101024, 4, false},
		{0x2000000, 4, true}, {0x200bff8, 8, true}, {0x200c000, 4, false},
		{0x2f00000, 4, false},
		{0xc000000, 4, true}, {0xc000000, 8, false},
		{0x10000000, 1, true}, {0x10000008, 1, false},
		{0x10001000, 4, true}, {0x10001200, 4, false}, {0x10008000, 4, true},
		{0x10100000, 4, false}, {0x30000000, 4, true}, {0x3000000, 4, true}, {0x7ffffff8, 8, true}, {0x20000000, 4, false},
	} {
		if _, ok := b.Load(c.addr, c.size); ok != c.ok {
			t.Errorf("load %#x/%d: ok=%v, want %v", c.addr, c.size, ok, c.ok)
		}
	}
	if v, _ := b.Load(0x1000, 4); v != 0x00000297 {
		t.Errorf("reset vector %#x", v)
	}
	if v, _ := b.Load(0x1018, 8); v != 0x80000000 {
		t.Errorf("start address %#x", v)
	}
	if !b.Store(0x1000, 4, 0) {
		t.Error("ROM writes are ignored, not faulted")
	}
	if v, _ := b.Load(0x1000, 4); v != 0x00000297 {
		t.Error("ROM changed by a write")
	}
	if v, _ := b.Load(0x10008000, 4); v != 0x74726976 {
		t.Errorf("virtio magic %#x", v)
	}
}

func TestDeviceTree(t *testing.T) {
	m, _, _ := boot(t, Config{Kernel: counterGuest(), StartPaused: true, Append: "console=ttyS0", RAMSize: 256 << 20})
	blob, addr := m.FDT()
	if addr != 0x8fe00000 {
		t.Fatalf("FDT at %#x, want 0x8fe00000 for 256 MiB", addr)
	}
	var inRAM = make([]byte, len(blob))
	m.RAM().ReadAt(inRAM, addr)
	if !bytes.Equal(inRAM, blob) {
		t.Fatal("FDT not in RAM")
	}
	root, err := fdt.Parse(blob)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, c := range root.Children {
		names = append(names, c.Name)
	}
	if got := strings.Join(names, " "); got != "chosen poweroff reboot memory@80000000 cpus soc" {
		t.Fatalf("root nodes %q", got)
	}
	names = names[:0]
	for _, c := range root.Lookup("/soc").Children {
		names = append(names, c.Name)
	}
	want := "rtc@101000 serial@10000000 test@100000 virtio_mmio@10008000 virtio_mmio@10007000 virtio_mmio@10006000 " +
		"virtio_mmio@10005000 virtio_mmio@10004000 virtio_mmio@10003000 virtio_mmio@10002000 virtio_mmio@10001000 plic@c000000 clint@2000000"
	if got := strings.Join(names, " "); got != want {
		t.Fatalf("soc nodes %q", got)
	}
	checks := []struct {
		path, prop string
		cells      []uint32
	}{
		{"/memory@80000000", "reg", []uint32{0, 0x80000000, 0, 256 << 20}},
		{"/cpus", "timebase-frequency", []uint32{10000000}},
		{"/soc/serial@10000000", "clock-frequency", []uint32{0x384000}},
		{"/soc/serial@10000000", "interrupts", []uint32{10}},
		{"/soc/virtio_mmio@10008000", "interrupts", []uint32{8}},
		{"/soc/plic@c000000", "riscv,ndev", []uint32{96}},
		{"/soc/plic@c000000", "interrupts-extended", []uint32{2, 11, 2, 9}},
		{"/soc/clint@2000000", "interrupts-extended", []uint32{2, 3, 2, 7}},
		{"/poweroff", "regmap", []uint32{4}},
		{"/poweroff", "value", []uint32{0x5555}},
		{"/reboot", "value", []uint32{0x7777}},
	}
	for _, c := range checks {
		n := root.Lookup(c.path)
		if n == nil {
			t.Errorf("%s missing", c.path)
			continue
		}
		if got := n.U32s(c.prop); !equalU32(got, c.cells) {
			t.Errorf("%s %s = %#x, want %#x", c.path, c.prop, got, c.cells)
		}
	}
	if s := root.Lookup("/chosen").String("bootargs"); s != "console=ttyS0" {
		t.Errorf("bootargs %q", s)
	}
	if s := root.Lookup("/cpus/cpu@0").String("riscv,isa"); s != "rv64imac_zicsr_zifencei" {
		t.Errorf("isa %q", s)
	}
	if len(root.Lookup("/chosen").Props["rng-seed"]) != 32 {
		t.Error("rng-seed")
	}
}

func equalU32(a, b []uint32) bool {
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

func TestHelloGuest(t *testing.T) {
	elf, err := guests.ELF("hello")
	if err != nil {
		t.Fatal(err)
	}
	m, out, _ := boot(t, Config{Kernel: elf, Append: "x=1"})
	waitDone(t, m)
	if !strings.Contains(out.String(), "x=1") || m.ExitCode() != 0 {
		t.Fatalf("exit %d output:\n%s", m.ExitCode(), out.String())
	}
}

func TestInitrd(t *testing.T) {
	elf, _ := guests.ELF("hello")
	m, _, _ := boot(t, Config{Kernel: elf, Initrd: []byte("initrd contents"), StartPaused: true})
	got := make([]byte, 15)
	m.RAM().ReadAt(got, 0x84000000)
	if string(got) != "initrd contents" {
		t.Fatalf("initrd at 0x84000000: %q", got)
	}
	blob, _ := m.FDT()
	root, err := fdt.Parse(blob)
	if err != nil {
		t.Fatal(err)
	}
	ch := root.Lookup("/chosen")
	if s, e := ch.U32s("linux,initrd-start"), ch.U32s("linux,initrd-end"); len(s) != 1 || s[0] != 0x84000000 || e[0] != 0x84000000+15 {
		t.Fatalf("initrd props %#x %#x", s, e)
	}
	if ch.Order[0] != "linux,initrd-end" || ch.Order[1] != "linux,initrd-start" {
		t.Fatalf("chosen property order %v", ch.Order)
	}
}

func TestKernelErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("empty kernel accepted")
	}
	bad := append([]byte("\x7fELF"), make([]byte, 60)...)
	if _, err := New(Config{Kernel: bad}); err == nil {
		t.Fatal("broken ELF accepted")
	}
	if _, err := New(Config{Kernel: make([]byte, 2<<20), RAMSize: 1 << 20}); err == nil {
		t.Fatal("image larger than RAM accepted")
	}
	if _, err := New(Config{Kernel: make([]byte, 4<<20), RAMSize: 4 << 20}); err == nil {
		t.Fatal("image covering the device tree accepted")
	}
}

func TestFirmwareAndKernelPlacement(t *testing.T) {
	fw := hiGuest(0x5555)
	kernel := []byte("KERNEL!!")
	m, _, _ := boot(t, Config{Firmware: fw, Kernel: kernel, StartPaused: true})
	got := make([]byte, len(kernel))
	m.RAM().ReadAt(got, 0x80200000)
	if string(got) != "KERNEL!!" {
		t.Fatalf("raw kernel not at 0x80200000: %q", got)
	}
	if next, _ := m.bus.Load(0x1028+16, 8); next != 0x80200000 {
		t.Fatalf("fw_dynamic_info next_addr %#x", next)
	}
	if start, _ := m.bus.Load(0x1018, 8); start != DRAMBase {
		t.Fatalf("start %#x", start)
	}
	m2, _, _ := boot(t, Config{Firmware: fw, StartPaused: true})
	if next, _ := m2.bus.Load(0x1028+16, 8); next != 0 {
		t.Fatalf("next_addr without a kernel %#x, want 0", next)
	}
	elf, _ := guests.ELF("hello") // linked at 0x80000000
	if _, err := New(Config{Firmware: fw, Kernel: elf}); err == nil {
		t.Fatal("kernel overlapping the firmware accepted")
	}
}

// echoGuest polls the UART and echoes every byte until it reads 'q'.
func echoGuest() []byte {
	beq := func(rs1, rs2 uint32, off int32) uint32 {
		u := uint32(off)
		return (u>>12&1)<<31 | (u>>5&0x3f)<<25 | rs2<<20 | rs1<<15 | (u>>1&0xf)<<8 | (u>>11&1)<<7 | 0x63
	}
	return program(
		lui(t0, 0x10000),                                     // 0: UART
		itype(0x03, t1, 4, t0, 5), itype(0x13, t1, 7, t1, 1), // 4, 8: t1 = LSR & DR
		beq(t1, zero, -8),         // 12
		itype(0x03, t2, 4, t0, 0), // 16: t2 = RBR
		sb(t2, t0, 0),             // 20: echo
		addi(t1, zero, 'q'),       // 24
		beq(t2, t1, 8),            // 28
		jal(zero, -28),            // 32: back to 4
		poweroff(0x5555),
	)
}

func TestSerialInput(t *testing.T) {
	m, out, _ := boot(t, Config{Kernel: echoGuest(), SerialIn: strings.NewReader("typed text, then q and more")})
	waitDone(t, m)
	if out.String() != "typed text, then q" {
		t.Fatalf("echo %q", out.String())
	}
}

func TestVirtioSlotOrder(t *testing.T) {
	g := block.NewGraph()
	defer g.Close()
	var bes []*block.Backend
	for i, size := range []int64{1 << 20, 2 << 20} {
		path := filepath.Join(t.TempDir(), "d.raw")
		if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
		n, err := g.Add(block.Options{Driver: "raw", NodeName: fmt.Sprintf("d%d", i),
			File: &block.Ref{Options: &block.Options{Driver: "file", Filename: path}}})
		if err != nil {
			t.Fatal(err)
		}
		be, err := g.NewBackend("", n)
		if err != nil {
			t.Fatal(err)
		}
		bes = append(bes, be)
	}
	m, _, _ := boot(t, Config{Kernel: counterGuest(), StartPaused: true, Blocks: g, BlkDevices: bes})
	for slot, want := range map[uint64]uint64{8: 2048, 7: 4096, 6: 0} {
		base := VirtioBase + (slot-1)*VirtioStride
		id, _ := m.bus.Load(base+8, 4)
		capacity, _ := m.bus.Load(base+0x100, 4)
		if (want == 0 && id != 0) || (want != 0 && (id != 2 || capacity != want)) {
			t.Errorf("slot at %#x: device %d capacity %d, want capacity %d", base, id, capacity, want)
		}
	}
}

func TestFailCodeSurvivesNoShutdown(t *testing.T) {
	m, _, _ := boot(t, Config{Kernel: hiGuest(0x00073333), NoShutdown: true})
	waitFor(t, "shutdown state", func() bool { return m.RunState() == RunStateShutdown })
	m.Shutdown("host-qmp-quit")
	waitDone(t, m)
	if m.ExitCode() != 7 {
		t.Fatalf("exit code %d, want the guest's 7", m.ExitCode())
	}
}
