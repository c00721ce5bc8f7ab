// Package machine is the RISC-V virt board: guest RAM, harts, the bus with
// QEMU 7.2's memory map and devices, the reset ROM and device tree, and the
// run state (prelaunch, running, paused, save-vm, shutdown, ...) with its
// STOP/RESUME/SHUTDOWN/RESET/POWERDOWN events.
//
// One goroutine per hart runs the interpreter in slices, polls the timers
// between slices and sleeps in WFI until the next timer deadline or an
// interrupt. Stop parks every hart at an instruction boundary, drains block
// I/O and stops the virtual clock before it returns.
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

// RunState is QEMU's RunState, spelled as query-status reports it.
type RunState string

// QEMU's run states.
const (
	RunStateDebug         RunState = "debug"
	RunStateInMigrate     RunState = "inmigrate"
	RunStateInternalError RunState = "internal-error"
	RunStateIOError       RunState = "io-error"
	RunStatePaused        RunState = "paused"
	RunStatePostMigrate   RunState = "postmigrate"
	RunStatePrelaunch     RunState = "prelaunch"
	RunStateFinishMigrate RunState = "finish-migrate"
	RunStateRestoreVM     RunState = "restore-vm"
	RunStateRunning       RunState = "running"
	RunStateSaveVM        RunState = "save-vm"
	RunStateShutdown      RunState = "shutdown"
	RunStateSuspended     RunState = "suspended"
	RunStateWatchdog      RunState = "watchdog"
	RunStateGuestPanicked RunState = "guest-panicked"
	RunStateColo          RunState = "colo"
)

// Event kinds.
const (
	EventStop      = "STOP"
	EventResume    = "RESUME"
	EventShutdown  = "SHUTDOWN"
	EventReset     = "RESET"
	EventPowerdown = "POWERDOWN"
)

// Event is a run-state event; Data is the QMP event's data (nil for none).
type Event struct {
	Kind string
	Data any
}

// Cause is the data of SHUTDOWN and RESET events.
type Cause struct {
	Guest  bool   `json:"guest"`
	Reason string `json:"reason"`
}

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
		m.slots[i] = virtio.NewTransport(dev, virtio.Deps{
			Name: fmt.Sprintf("virtio-mmio@%#x", VirtioSlotBase(i)),
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

// RunState is the current run state.
func (m *Machine) RunState() RunState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state
}

// Running reports whether the state is "running" (query-status).
func (m *Machine) Running() bool { return m.RunState() == RunStateRunning }

// setState changes the state and emits STOP/RESUME for real changes into
// or out of "running". Preconditions: ctlMu held.
func (m *Machine) setState(s RunState) {
	m.mu.Lock()
	old := m.state
	m.state = s
	m.mu.Unlock()
	switch {
	case old == RunStateRunning && s != RunStateRunning:
		m.emit(EventStop, nil)
	case old != RunStateRunning && s == RunStateRunning:
		m.emit(EventResume, nil)
	}
}

// Done is closed when the VM has shut down and the process should exit.
func (m *Machine) Done() <-chan struct{} { return m.done }

// ExitCode is the status the process should exit with after Done (the
// sifive_test fail code, 0 otherwise).
func (m *Machine) ExitCode() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.exitCode
}

// park stops the harts at an instruction boundary and returns whether they
// were allowed to run. Preconditions: ctlMu held.
func (m *Machine) park() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	was := m.runnable
	m.runnable = false
	for _, h := range m.harts {
		h.Kick()
	}
	for !m.allParkedLocked() {
		m.cond.Wait()
	}
	return was
}

func (m *Machine) allParkedLocked() bool {
	for _, p := range m.parked {
		if !p {
			return false
		}
	}
	return true
}

func (m *Machine) unpark() {
	m.mu.Lock()
	m.runnable = true
	m.cond.Broadcast()
	m.mu.Unlock()
}

// quiesce waits for every virtio request to complete and for the block
// layer to have nothing in flight.
func (m *Machine) quiesce() {
	for _, t := range m.slots {
		t.Quiesce()
	}
	if m.cfg.Blocks != nil {
		release := m.cfg.Blocks.Drain()
		release()
	}
}

// Stop parks the harts, drains block I/O, stops the virtual clock and sets
// the run state to reason, emitting STOP if the VM was running. It reports
// whether the VM was running.
func (m *Machine) Stop(reason RunState) (wasRunning bool) {
	m.ctlMu.Lock()
	defer m.ctlMu.Unlock()
	return m.stopLocked(reason, stopAlways)
}

// Pause is QEMU's vm_stop, the snapshot code's view of the machine: like
// Stop, but a VM that was not running keeps its state (a savevm of a
// paused VM leaves it "paused", one in prelaunch stays in prelaunch).
func (m *Machine) Pause(state string) (wasRunning bool) {
	m.ctlMu.Lock()
	defer m.ctlMu.Unlock()
	return m.stopLocked(RunState(state), stopIfRunning)
}

type stopMode int

const (
	stopAlways    stopMode = iota // set the state, STOP if it was running
	stopIfRunning                 // change the state only if running
	stopSilently                  // set the state without STOP (finishing)
)

// stopLocked parks and quiesces the VM and updates the state per mode.
// Preconditions: ctlMu held.
func (m *Machine) stopLocked(reason RunState, mode stopMode) bool {
	m.mu.Lock()
	finished := m.finished
	running := m.state == RunStateRunning
	m.mu.Unlock()
	if finished {
		return false
	}
	m.park()
	m.quiesce()
	m.clock.Stop()
	m.uart.HoldInput(true)
	switch {
	case mode == stopSilently:
		m.mu.Lock()
		m.state = reason
		m.mu.Unlock()
	case running || mode == stopAlways:
		m.setState(reason)
	}
	return running
}

// Start moves the VM from prelaunch (or any stopped state) to running.
func (m *Machine) Start() { m.Resume() }

// Resume lets the harts run and the clock advance, emitting RESUME.
func (m *Machine) Resume() {
	m.ctlMu.Lock()
	defer m.ctlMu.Unlock()
	m.mu.Lock()
	finished, old := m.finished, m.state
	m.mu.Unlock()
	if finished || old == RunStateRunning {
		return
	}
	// RAM may have been replaced while stopped (snapshot load): the harts
	// drop decoded code before they run again.
	for _, h := range m.harts {
		h.InvalidateCode(DRAMBase, m.cfg.RAMSize)
	}
	m.setState(RunStateRunning)
	m.uart.HoldInput(false)
	m.clock.Start()
	m.unpark()
}

// Reset is a system reset (QMP system_reset): machine reset and RESET
// event, or a shutdown with -no-reboot. It returns once the reset is done,
// so the event precedes the command's answer as on QEMU.
func (m *Machine) Reset() {
	r := request{kind: reqReset, cause: Cause{Reason: "host-qmp-system-reset"}, done: make(chan struct{})}
	m.request(r)
	select {
	case <-r.done:
	case <-m.done:
	}
}

// Powerdown is QMP system_powerdown. The virt board has no ACPI power
// button, so as on QEMU the guest sees nothing; only POWERDOWN is emitted.
func (m *Machine) Powerdown() {
	m.emit(EventPowerdown, nil)
}

// Shutdown is a host-requested shutdown (QMP quit: reason
// "host-qmp-quit"; a signal: "host-signal"): SHUTDOWN event, then the
// machine finishes even with -no-shutdown.
func (m *Machine) Shutdown(reason string) {
	m.request(request{kind: reqShutdown, cause: Cause{Reason: reason}, force: true})
}

func (m *Machine) request(r request) {
	if !r.cause.Guest {
		// Host requests are never dropped.
		select {
		case m.reqs <- r:
		case <-m.done:
		}
		return
	}
	select {
	case m.reqs <- r:
	default:
		// A guest hammering the finisher: requests already queued will
		// end or reset the machine anyway.
	}
	if r.cause.Guest {
		for _, h := range m.harts {
			h.Kick()
		}
	}
}

// controller carries out shutdown and reset requests.
func (m *Machine) controller() {
	defer m.workers.Done()
	for {
		select {
		case r := <-m.reqs:
			switch r.kind {
			case reqShutdown:
				m.shutdown(r)
			case reqReset:
				if m.cfg.NoReboot {
					m.shutdown(r)
				} else {
					m.reset(r.cause)
				}
			}
			if r.done != nil {
				close(r.done)
			}
		case <-m.done:
			return
		}
	}
}

func (m *Machine) shutdown(r request) {
	m.ctlMu.Lock()
	defer m.ctlMu.Unlock()
	m.mu.Lock()
	finished := m.finished
	m.mu.Unlock()
	if finished {
		return
	}
	m.emit(EventShutdown, r.cause)
	if m.cfg.NoShutdown && !r.force {
		m.stopLocked(RunStateShutdown, stopAlways)
		return
	}
	// Leaving: no STOP event, as QEMU stops the VM silently on exit.
	m.stopLocked(RunStateShutdown, stopSilently)
	m.mu.Lock()
	m.exitCode = r.code
	m.finished = true
	m.mu.Unlock()
	close(m.done)
}

func (m *Machine) reset(c Cause) {
	m.ctlMu.Lock()
	defer m.ctlMu.Unlock()
	m.mu.Lock()
	finished := m.finished
	m.mu.Unlock()
	if finished {
		return
	}
	was := m.park()
	m.resetDevices()
	m.emit(EventReset, c)
	if m.RunState() != RunStateRunning {
		// As QEMU: a reset while stopped leaves the VM ready to start.
		m.setState(RunStatePrelaunch)
	}
	if was {
		m.unpark()
	}
}

// resetDevices puts the board in its power-on state except RAM outside the
// kernel and device tree, which QEMU also keeps. Preconditions: harts parked.
func (m *Machine) resetDevices() {
	for _, t := range m.slots {
		t.Reset()
	}
	m.clint.Reset()
	m.plic.Reset()
	m.uart.Reset()
	m.rtc.Reset()
	if err := m.loadImages(); err != nil {
		// The images fitted at New; RAM does not shrink.
		panic(fmt.Sprintf("machine: reloading images: %v", err))
	}
	for _, h := range m.harts {
		h.Reset(MROMBase)
	}
}

// runHart is hart i's goroutine.
func (m *Machine) runHart(i int) {
	defer m.workers.Done()
	h := m.harts[i]
	for {
		m.mu.Lock()
		for !m.runnable && !m.quit {
			if !m.parked[i] {
				m.parked[i] = true
				m.cond.Broadcast()
			}
			m.cond.Wait()
		}
		if m.quit {
			m.parked[i] = true
			m.cond.Broadcast()
			m.mu.Unlock()
			return
		}
		m.parked[i] = false
		m.mu.Unlock()

		r := h.Run(m.cfg.SliceBudget)
		next := m.pollTimers()
		if r != riscv.StopWFI {
			continue
		}
		var timeout time.Duration // 0: no timer armed, wait for an interrupt
		if next >= 0 {
			if timeout = m.clock.HostDeadline(next); timeout <= 0 {
				continue
			}
		}
		h.WaitForInterrupt(timeout)
	}
}

// pollTimers updates timer interrupts and returns the earliest armed
// deadline in clock nanoseconds, or -1.
func (m *Machine) pollTimers() int64 {
	next := m.clint.Poll()
	if r := m.rtc.Poll(); r >= 0 && (next < 0 || r < next) {
		next = r
	}
	return next
}

// Close stops the VM and releases everything. The block graph is the
// caller's.
func (m *Machine) Close() error {
	m.mu.Lock()
	m.quit = true
	m.cond.Broadcast()
	m.mu.Unlock()
	for _, h := range m.harts {
		h.Kick()
	}
	m.mu.Lock()
	if !m.finished {
		m.finished = true
		close(m.done)
	}
	m.mu.Unlock()
	m.workers.Wait()
	for _, t := range m.slots {
		if t != nil {
			t.Close()
		}
	}
	if m.uart != nil {
		m.uart.Close()
	}
	m.clock.Stop()
	return m.ram.Close()
}

// ErrNoKernel is returned when Config.Kernel is empty.
var ErrNoKernel = errors.New("machine: no kernel image")
