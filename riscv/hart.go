package riscv

import (
	"fmt"
	"sync/atomic"
	"time"

	"github.com/snapvm/snapvm/memory"
)

// Bus carries physical accesses outside RAM (MMIO). ok=false raises an
// access fault (cause 1, 5 or 7).
type Bus interface {
	Load(addr uint64, size int) (val uint64, ok bool)
	Store(addr uint64, size int, val uint64) (ok bool)
}

// TimeSource provides the CLINT's mtime, which the time CSR reads.
type TimeSource interface{ MTime() uint64 }

// Interrupt bit numbers in mip/mie, for SetInterrupt.
const (
	IRQ_SSIP = 1
	IRQ_MSIP = 3
	IRQ_STIP = 5
	IRQ_MTIP = 7
	IRQ_SEIP = 9
	IRQ_MEIP = 11
)

// StopReason says why Run returned.
type StopReason int

const (
	// StopBudget: the instruction budget was used up.
	StopBudget StopReason = iota
	// StopWFI: the hart executed WFI (or is still waiting in it) and no
	// enabled interrupt is pending; call WaitForInterrupt, then Run again.
	StopWFI
	// StopKicked: Kick was called.
	StopKicked
)

func (s StopReason) String() string {
	switch s {
	case StopBudget:
		return "budget"
	case StopWFI:
		return "wfi"
	case StopKicked:
		return "kicked"
	}
	return fmt.Sprintf("StopReason(%d)", int(s))
}

// Privilege levels.
const (
	privU = 0
	privS = 1
	privM = 3
)

// Hart is one RV64 hardware thread. Fields are saved by SaveSection unless
// marked "derived" (caches rebuilt after a load).
type Hart struct {
	x  [64]uint64 // x0..x31; x[32] is the sink for writes to x0 (derived)
	pc uint64

	priv uint8
	wfi  bool // stopped in WFI, waiting for (mip & mie) != 0

	id   uint64
	ram  *memory.RAM
	mem  []byte // ram.Data (derived)
	bus  Bus
	time TimeSource

	csr csrFile

	// LR reservation: QEMU-style (address + value loaded).
	resValid bool
	resAddr  uint64
	resVal   uint64

	// instret counts retired instructions; minstret/mcycle derive from it.
	instret uint64
	// instretPub is instret published at Run exit for other goroutines.
	instretPub atomic.Uint64

	// irqLines holds the interrupt inputs driven by SetInterrupt.
	irqLines atomic.Uint64
	kicked   atomic.Bool
	wake     chan struct{} // buffered(1): SetInterrupt/Kick wake WaitForInterrupt
	waitT    *time.Timer

	// Exception being raised by a slow path (derived, transient).
	excCause uint64
	excTval  uint64

	// endSlice asks the interpreter to return to Run (after CSR writes
	// that may enable an interrupt, WFI, MMIO stores) (derived).
	endSlice bool

	mmu mmuState // TLBs and the decoded-code cache (derived)

	pmpActive bool // some PMP entry is on (derived from pmpcfg)
	pmpLocked bool // some active PMP entry is locked (derived)

	jit    *jitHart // translator state, created on first use (derived)
	jitOff bool     // SetJIT(false)
}

// NewHart creates hart id on the given RAM, bus and time source, and resets
// it with pc = 0x1000 (the virt board's reset vector).
func NewHart(id uint64, ram *memory.RAM, bus Bus, ts TimeSource) *Hart {
	h := &Hart{id: id, ram: ram, bus: bus, time: ts, wake: make(chan struct{}, 1)}
	if ram != nil {
		h.mem = ram.Data
	}
	h.mmu.init(h)
	h.Reset(0x1000)
	return h
}

// Reset puts the hart in its reset state: M-mode at pc, all GPRs zero, CSRs
// at QEMU 7.2's reset values (except misa, which reports what is
// implemented: RV64 ACIMSU), no reservation, not in WFI. Interrupt inputs
// (SetInterrupt lines) are left as the devices drive them.
func (h *Hart) Reset(pc uint64) {
	h.x = [64]uint64{}
	h.pc = pc
	h.priv = privM
	h.wfi = false
	h.csr.reset()
	h.updatePMP()
	h.selectTLBs()
	h.resValid = false
	h.instret = 0
	h.instretPub.Store(0)
	h.flushAll()
}

// Reg returns GPR x<i> (x0 reads as zero).
func (h *Hart) Reg(i int) uint64 {
	if i <= 0 || i >= 32 {
		return 0
	}
	return h.x[i]
}

// SetReg sets GPR x<i>; writes to x0 are ignored.
func (h *Hart) SetReg(i int, v uint64) {
	if i <= 0 || i >= 32 {
		return
	}
	h.x[i] = v
}

// PC returns the address of the next instruction.
func (h *Hart) PC() uint64 { return h.pc }

// SetPC sets the address of the next instruction.
func (h *Hart) SetPC(pc uint64) { h.pc = pc &^ 1 }

// Priv returns the current privilege level (0 U, 1 S, 3 M).
func (h *Hart) Priv() int { return int(h.priv) }

// ID returns the hart id (mhartid).
func (h *Hart) ID() uint64 { return h.id }

// Instret returns the number of instructions retired since reset, as of
// the last return from Run. Safe from any goroutine.
func (h *Hart) Instret() uint64 { return h.instretPub.Load() }

// SetInterrupt drives interrupt input bit (IRQ_*) to level. Safe from any
// goroutine. The effective mip is these lines ORed with the bits software
// wrote (SSIP, STIP, SEIP). Raising a line wakes WaitForInterrupt.
func (h *Hart) SetInterrupt(bit uint, level bool) {
	if bit >= 64 {
		return
	}
	m := uint64(1) << bit
	if level {
		if h.irqLines.Or(m)&m == 0 {
			h.signal()
		}
	} else {
		h.irqLines.And(^m)
	}
}

// Kick makes a running Run return StopKicked soon (at the next check,
// at most a few thousand instructions later) and wakes WaitForInterrupt.
// A Kick while not running makes the next Run return at once.
// Safe from any goroutine.
func (h *Hart) Kick() {
	h.kicked.Store(true)
	h.signal()
}

func (h *Hart) signal() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// WaitForInterrupt blocks the calling goroutine until an interrupt is
// pending and enabled in mie (the WFI wake rule, regardless of
// mstatus.MIE/SIE), Kick is called, or timeout passes (timeout <= 0 means
// no timeout). It costs no CPU while waiting. Call it from the goroutine
// that calls Run.
func (h *Hart) WaitForInterrupt(timeout time.Duration) {
	var deadline time.Time
	if timeout > 0 {
		deadline = time.Now().Add(timeout)
	}
	for {
		if h.wfiWakeable() || h.kicked.Load() {
			return
		}
		if timeout <= 0 {
			<-h.wake
			continue
		}
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		if h.waitT == nil {
			h.waitT = time.NewTimer(left)
		} else {
			h.waitT.Reset(left)
		}
		select {
		case <-h.wake:
			h.waitT.Stop()
		case <-h.waitT.C:
			return
		}
	}
}

// wfiWakeable reports whether (mip & mie) != 0.
func (h *Hart) wfiWakeable() bool { return h.mip()&h.csr.mie != 0 }

// InWFI reports whether the hart is stopped in WFI.
func (h *Hart) InWFI() bool { return h.wfi }
