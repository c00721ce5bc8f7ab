// Package sifivetest is the SiFive test finisher at 0x100000 on the virt
// board: a write to offset 0 powers the machine off (0x5555), fails it with
// an exit code (0x3333 | code<<16) or resets it (0x7777).
package sifivetest

// Size is the decoded region size.
const Size = 0x1000

// Finisher status values (low 16 bits of the written word).
const (
	Fail  = 0x3333
	Pass  = 0x5555
	Reset = 0x7777
)

// Actions receives what the guest asked for. The callbacks run on the hart's
// goroutine in the middle of an instruction, so they must only record the
// request (and kick the hart), never wait for the hart.
type Actions struct {
	Shutdown func(exitCode int) // Pass (code 0) or Fail (code = value>>16)
	Reset    func()
}

// Device is the finisher. It has no state of its own.
type Device struct {
	act Actions
}

// New returns a finisher that reports to act.
func New(act Actions) *Device { return &Device{act: act} }

// Load reads 0 everywhere; only 2- and 4-byte accesses are decoded.
func (d *Device) Load(off uint64, size int) (uint64, bool) {
	if (size != 2 && size != 4) || off+uint64(size) > Size {
		return 0, false
	}
	return 0, true
}

// Store acts on writes to offset 0 and ignores everything else.
func (d *Device) Store(off uint64, size int, val uint64) bool {
	if (size != 2 && size != 4) || off+uint64(size) > Size {
		return false
	}
	if off != 0 {
		return true
	}
	status := val & 0xffff
	code := int((val >> 16) & 0xffff)
	switch status {
	case Pass:
		if d.act.Shutdown != nil {
			d.act.Shutdown(0)
		}
	case Fail:
		if d.act.Shutdown != nil {
			d.act.Shutdown(code)
		}
	case Reset:
		if d.act.Reset != nil {
			d.act.Reset()
		}
	}
	return true
}
