// Package machine is the RISC-V virt board: guest RAM, harts, the bus with
// QEMU 7.2's memory map and devices, the reset ROM and device tree, and the
// run state (prelaunch, running, paused, save-vm, shutdown, ...) with its
// STOP/RESUME/SHUTDOWN/RESET/POWERDOWN events.
//
// One goroutine per hart runs the interpreter in slices, polls the timers
// between slices and sleeps in WFI until the next timer deadline or an
// interrupt. Stop parks every hart at an instruction boundary, drains block
// I/O and stops the virtual clock before it returns.
//
// Differences from QEMU 7.2's virt board, all deliberate:
//   - The harts are RV64IMAC with Sv39: the device tree says
//     "rv64imac_zicsr_zifencei" and "riscv,sv39".
//   - PCIe, the CFI flash banks, fw_cfg, the platform bus and the PMU node
//     are not modelled and not in the device tree. The PCIe windows read
//     all-ones as an empty bus does (QEMU also has a host bridge at
//     00:00.0); flash and fw_cfg accesses fault.
//   - The goldfish RTC and the CLINT follow the VM's virtual clock, so both
//     stand still while the VM is paused and continue from a snapshot
//     (QEMU's RTC follows host time by default).
//   - virtio-blk's geometry is always guessed from the disk size (QEMU
//     first looks for an MBR partition table).
//   - A sifive_test pass or fail write makes QEMU 7.2 exit on the spot: no
//     SHUTDOWN event, -no-shutdown ignored, disk images not closed. snapvm
//     shuts down properly instead: SHUTDOWN {guest: true, reason:
//     "guest-shutdown"}, -no-shutdown honoured, images flushed and closed,
//     and the same exit status (the fail code, kept until the process ends).
package machine

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/snapvm/snapvm/block"
	"github.com/snapvm/snapvm/devices/clint"
	"github.com/snapvm/snapvm/devices/plic"
	"github.com/snapvm/snapvm/devices/rtc"
	"github.com/snapvm/snapvm/devices/sifivetest"
	"github.com/snapvm/snapvm/devices/uart"
	"github.com/snapvm/snapvm/devices/virtio"
	"github.com/snapvm/snapvm/memory"
	"github.com/snapvm/snapvm/riscv"
	"github.com/snapvm/snapvm/vclock"
	"github.com/snapvm/snapvm/vmstate"
)

// Config describes the board.
type Config struct {
	RAMSize uint64 // bytes; 0 = 128 MiB
	Harts   int    // 0 = 1
	// Firmware (-bios FILE) is an ELF or raw image (at 0x80000000), e.g.
	// OpenSBI's fw_dynamic; nil is -bios none.
	Firmware []byte
	// Kernel is an ELF (loaded at its physical addresses) or a raw image
	// (loaded at 0x80000000, or after the firmware at the next 2 MiB
	// boundary). It may be empty only with Firmware.
	Kernel []byte
	Append string // /chosen/bootargs
	// Initrd is loaded at kernel start + min(RAM/2, 128 MiB) and announced
	// in /chosen/linux,initrd-start/-end (needs a kernel).
	Initrd []byte
	// Serial receives UART0 output (nil discards); SerialIn, if set, is
	// read by a goroutine and fed to the UART.
	Serial   io.Writer
	SerialIn io.Reader
	// Blocks is the block graph (may be nil without disks); BlkDevices are
	// attached as virtio-blk in -device order: the first gets the highest
	// virtio-mmio slot, as on QEMU.
	Blocks     *block.Graph
	BlkDevices []*block.Backend
	// BlkSerials are the devices' serial numbers (GET_ID), by index of
	// BlkDevices; missing ones are empty, as QEMU's default.
	BlkSerials []string
	// NoShutdown: a guest poweroff leaves the VM in "shutdown" (paused)
	// instead of finishing. NoReboot: a reset request shuts down instead.
	NoShutdown, NoReboot bool
	// StartPaused leaves the VM in "prelaunch" (-S) until Start.
	StartPaused bool
	Name        string
	// RTCBase is the goldfish RTC's time at start (zero: host time).
	RTCBase time.Time
	// SliceBudget is how many instructions a hart runs between timer
	// polls (0 = default).
	SliceBudget uint64
}

const defaultSlice = 1 << 16

// Machine is one virt board.
type Machine struct {
	cfg   Config
	ram   *memory.RAM
	clock *vclock.Clock
	harts []*riscv.Hart
	bus   *bus
	clint *clint.Device
	plic  *plic.Device
	uart  *uart.Device
	rtc   *rtc.Device
	test  *sifivetest.Device
	slots [VirtioSlots]*virtio.Transport

	segs    []segment
	fdt     []byte
	fdtAddr uint64

	// ctlMu serialises lifecycle operations (stop, resume, reset, shutdown).
	ctlMu sync.Mutex

	mu       sync.Mutex
	cond     *sync.Cond
	state    RunState // guarded by mu
	runnable bool     // guarded by mu: harts may run
	parked   []bool   // guarded by mu: hart goroutine i is parked
	quit     bool     // guarded by mu: hart goroutines must exit
	finished bool     // guarded by mu: Done has been closed
	exitCode int      // guarded by mu

	done    chan struct{}
	reqs    chan request
	workers sync.WaitGroup

	subsMu sync.Mutex
	subs   []func(Event) // guarded by subsMu
	evMu   sync.Mutex    // serialises event delivery
}

type requestKind int

const (
	reqShutdown requestKind = iota
	reqReset
)

type request struct {
	kind  requestKind
	cause Cause
	code  int
	force bool          // host quit: ignore -no-shutdown
	done  chan struct{} // closed once carried out (host requests)
}

// mtimeSource lets harts read the CLINT created after them.
type mtimeSource struct{ c *clint.Device }

func (s *mtimeSource) MTime() uint64 { return s.c.MTime() }

// New builds the board, loads the kernel, writes the device tree and ROM,
// and starts the VM unless cfg.StartPaused.
func New(cfg Config) (*Machine, error) {
	if cfg.RAMSize == 0 {
		cfg.RAMSize = DefaultRAMSize
	}
	if cfg.Harts == 0 {
		cfg.Harts = 1
	}
	if cfg.Harts < 0 || cfg.Harts > 8 {
		return nil, fmt.Errorf("machine: %d harts not supported (1..8)", cfg.Harts)
	}
	if cfg.RAMSize%memory.PageSize != 0 {
		return nil, fmt.Errorf("machine: RAM size %d is not a multiple of %d", cfg.RAMSize, memory.PageSize)
	}
	if len(cfg.BlkDevices) > VirtioSlots {
		return nil, fmt.Errorf("machine: %d virtio devices, the board has %d slots", len(cfg.BlkDevices), VirtioSlots)
	}
	if cfg.SliceBudget == 0 {
		cfg.SliceBudget = defaultSlice
	}
	ram, err := memory.New(DRAMBase, cfg.RAMSize)
	if err != nil {
		return nil, err
	}
	m := &Machine{cfg: cfg, ram: ram, clock: &vclock.Clock{}, done: make(chan struct{}), reqs: make(chan request, 16)}
	m.cond = sync.NewCond(&m.mu)
	m.state = RunStatePrelaunch

	// The start address is always DRAM base; fw_dynamic_info tells
	// firmware where the kernel is (0 without one, as QEMU).
	var kernelLow uint64
	kernelAt := uint64(DRAMBase)
	if cfg.Firmware != nil {
		fw, err := loadImage(cfg.Firmware, DRAMBase, ram)
		if err != nil {
			ram.Close()
			return nil, fmt.Errorf("machine: firmware: %w", err)
		}
		m.segs = fw
		kernelAt = (endAddr(fw) + kernelAlign - 1) &^ (kernelAlign - 1)
	}
	if cfg.Kernel != nil || cfg.Firmware == nil {
		k, err := loadImage(cfg.Kernel, kernelAt, ram)
		if err != nil {
			ram.Close()
			return nil, fmt.Errorf("machine: %w", err)
		}
		if overlap(m.segs, k) {
			ram.Close()
			return nil, errors.New("machine: the kernel overlaps the firmware")
		}
		m.segs = append(m.segs, k...)
		kernelLow = lowestAddr(k)
	}

	var initrdStart, initrdEnd uint64
	if cfg.Initrd != nil {
		if cfg.Kernel == nil {
			ram.Close()
			return nil, errors.New("machine: an initrd needs a kernel")
		}
		initrdStart = kernelLow + min(cfg.RAMSize/2, 128<<20)
		if !ram.Contains(initrdStart, uint64(len(cfg.Initrd))) {
			ram.Close()
			return nil, fmt.Errorf("machine: initrd of %d bytes at %#x does not fit in RAM", len(cfg.Initrd), initrdStart)
		}
		seg := []segment{{addr: initrdStart, data: cfg.Initrd, size: uint64(len(cfg.Initrd))}}
		if overlap(m.segs, seg) {
			ram.Close()
			return nil, errors.New("machine: the initrd overlaps the kernel")
		}
		m.segs = append(m.segs, seg...)
		initrdEnd = initrdStart + uint64(len(cfg.Initrd))
	}

	m.bus = &bus{}
	ts := &mtimeSource{}
	clintHarts := make([]clint.Hart, cfg.Harts)
	plicHarts := make([]plic.Hart, cfg.Harts)
	for i := 0; i < cfg.Harts; i++ {
		h := riscv.NewHart(uint64(i), ram, m.bus, ts)
		m.harts = append(m.harts, h)
		clintHarts[i], plicHarts[i] = h, h
	}
	m.parked = make([]bool, cfg.Harts)
	m.clint = clint.New(m.clock, clintHarts)
	ts.c = m.clint
	m.plic = plic.New(plicHarts)
	m.uart = uart.New(cfg.Serial, m.plic.Line(UARTIRQ))
	m.uart.SetClock(m.clock, func() {
		// A new FIFO timeout: harts sleeping in WFI recompute their
		// deadline.
		for _, h := range m.harts {
			h.Kick()
		}
	})
	m.uart.HoldInput(true)
	base := cfg.RTCBase
	if base.IsZero() {
		base = time.Now()
	}
	m.rtc = rtc.New(m.clock, base.UnixNano(), m.plic.Line(RTCIRQ))
	m.test = sifivetest.New(sifivetest.Actions{
		Shutdown: func(code int) {
			m.request(request{kind: reqShutdown, cause: Cause{Guest: true, Reason: "guest-shutdown"}, code: code})
		},
		Reset: func() {
			m.request(request{kind: reqReset, cause: Cause{Guest: true, Reason: "guest-reset"}})
		},
	})
	dma := func(addr, n uint64) {
		for _, h := range m.harts {
			h.InvalidateCode(addr, n)
		}
	}
	for i := range m.slots {
		var dev virtio.Device
		// The first device goes to the highest slot.
		if j := VirtioSlots - 1 - i; j < len(cfg.BlkDevices) {
			serial := ""
			if j < len(cfg.BlkSerials) {
				serial = cfg.BlkSerials[j]
			}
			dev = virtio.NewBlk(cfg.BlkDevices[j], serial)
		}
		// The section name says what is plugged into the slot, so a
		// snapshot taken with other devices is refused before a load
		// touches anything.
		kind := "empty"
		if dev != nil {
			kind = "blk"
		}
		m.slots[i] = virtio.NewTransport(dev, virtio.Deps{
			Name: fmt.Sprintf("virtio-mmio@%#x/%s", VirtioSlotBase(i), kind),
			RAM:  ram, IRQ: m.plic.Line(VirtioFirstIRQ + i), DMAWritten: dma,
		})
	}
	m.bus.test, m.bus.rtc, m.bus.clint, m.bus.plic, m.bus.uart = m.test, m.rtc, m.clint, m.plic, m.uart
	m.bus.virtio = m.slots

	seed := make([]byte, 32)
	rand.Read(seed) //nolint:errcheck // crypto/rand does not fail on Linux
	m.fdt, err = buildDeviceTree(dtParams{harts: cfg.Harts, ramSize: cfg.RAMSize, bootargs: cfg.Append, rngSeed: seed,
		initrdStart: initrdStart, initrdEnd: initrdEnd})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("machine: %w", err)
	}
	m.fdtAddr = fdtAddress(cfg.RAMSize, len(m.fdt))
	if overlap(m.segs, []segment{{addr: m.fdtAddr, size: uint64(len(m.fdt))}}) {
		m.Close()
		return nil, fmt.Errorf("machine: the images overlap the device tree at %#x", m.fdtAddr)
	}
	m.bus.rom = resetROM(m.fdtAddr, kernelLow)
	if err := m.loadImages(); err != nil {
		m.Close()
		return nil, fmt.Errorf("machine: %w", err)
	}
	if cfg.SerialIn != nil {
		m.uart.AttachInput(cfg.SerialIn)
	}

	for i := range m.harts {
		m.workers.Add(1)
		go m.runHart(i)
	}
	m.workers.Add(1)
	go m.controller()
	if !cfg.StartPaused {
		m.Start()
	}
	return m, nil
}

// loadImages copies the kernel and the device tree into RAM.
func (m *Machine) loadImages() error {
	if err := installSegments(m.segs, m.ram); err != nil {
		return err
	}
	return m.ram.WriteAt(m.fdt, m.fdtAddr)
}

// FDT returns the device tree blob and its guest-physical address.
func (m *Machine) FDT() ([]byte, uint64) { return m.fdt, m.fdtAddr }

// RAM is guest memory.
func (m *Machine) RAM() *memory.RAM { return m.ram }

// Clock is the virtual clock (mtime, RTC), stopped while the VM is not
// running.
func (m *Machine) Clock() *vclock.Clock { return m.clock }

// Blocks is the block graph given in Config.
func (m *Machine) Blocks() *block.Graph { return m.cfg.Blocks }

// Harts returns the harts, by id.
func (m *Machine) Harts() []*riscv.Hart { return m.harts }

// Name is the -name given in Config.
func (m *Machine) Name() string { return m.cfg.Name }

// StateConfig is the configuration snapshots record and check on load.
func (m *Machine) StateConfig() vmstate.Config {
	return vmstate.Config{Board: fmt.Sprintf("riscv-virt/%d-hart", m.cfg.Harts), RAMBase: DRAMBase, RAMSize: m.cfg.RAMSize}
}

// Sections lists the state sections in the fixed save/load order: the CLINT
// first (it carries the virtual clock the RTC is relative to), the other
// devices, then the harts, whose interrupt inputs the devices drive.
func (m *Machine) Sections() []vmstate.Section {
	s := []vmstate.Section{m.clint, m.plic, m.uart, m.rtc}
	for i := VirtioSlots - 1; i >= 0; i-- {
		s = append(s, m.slots[i])
	}
	for _, h := range m.harts {
		s = append(s, h)
	}
	return s
}

// Subscribe registers fn for every event. fn runs synchronously, in event
// order, and must not call back into the Machine's lifecycle methods.
func (m *Machine) Subscribe(fn func(Event)) {
	m.subsMu.Lock()
	defer m.subsMu.Unlock()
	m.subs = append(m.subs, fn)
}

func (m *Machine) emit(kind string, data any) {
	m.evMu.Lock()
	defer m.evMu.Unlock()
	m.subsMu.Lock()
	subs := slices.Clone(m.subs)
	m.subsMu.Unlock()
	for _, fn := range subs {
		fn(Event{Kind: kind, Data: data})
	}
}
