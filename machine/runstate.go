package machine

import (
	"fmt"
	"time"

	"github.com/snapvm/snapvm/riscv"
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
	for _, t := range m.slots {
		t.Release()
	}
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
	if r.code != 0 {
		// A guest failure code stays the exit status even when the VM
		// is only paused now (-no-shutdown) and quit comes later.
		m.mu.Lock()
		m.exitCode = r.code
		m.mu.Unlock()
	}
	if m.cfg.NoShutdown && !r.force {
		m.stopLocked(RunStateShutdown, stopAlways)
		return
	}
	// Leaving: no STOP event, as QEMU stops the VM silently on exit.
	m.stopLocked(RunStateShutdown, stopSilently)
	m.mu.Lock()
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
	for _, r := range []int64{m.rtc.Poll(), m.uart.Poll()} {
		if r >= 0 && (next < 0 || r < next) {
			next = r
		}
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
