package riscv

import (
	"fmt"

	"github.com/snapvm/snapvm/vmstate"
)

// Hart section layout, version 1 (all little-endian u64 unless noted):
// pc, x1..x31, priv (u8), wfi (bool), reservation (bool valid, addr, value),
// instret, then the CSRs in csrFile order (see saveCSRs), pmpcfg[8],
// pmpaddr[64]. Interrupt input lines are not saved: the devices that drive
// them (CLINT, PLIC) save their own state and re-assert the lines on load.
// TLBs and decoded code are caches and are rebuilt.
const hartSectionVersion = 1

// SectionName is "hart<id>".
func (h *Hart) SectionName() string { return fmt.Sprintf("hart%d", h.id) }

// SectionVersion is the layout version SaveSection writes.
func (h *Hart) SectionVersion() uint32 { return hartSectionVersion }

// SaveSection writes the architectural state. Call only while Run is not
// executing.
func (h *Hart) SaveSection(e *vmstate.Encoder) {
	e.U64(h.pc)
	for i := 1; i < 32; i++ {
		e.U64(h.x[i])
	}
	e.U8(h.priv)
	e.Bool(h.wfi)
	e.Bool(h.resValid)
	e.U64(h.resAddr)
	e.U64(h.resVal)
	e.U64(h.instret)
	for _, p := range h.csrFields() {
		e.U64(*p)
	}
	for _, v := range h.csr.pmpcfg {
		e.U64(v)
	}
	for _, v := range h.csr.pmpaddr {
		e.U64(v)
	}
}

// csrFields lists the scalar CSR fields in section order.
func (h *Hart) csrFields() []*uint64 {
	c := &h.csr
	return []*uint64{
		&c.mstatus, &c.medeleg, &c.mideleg, &c.mie, &c.mipSW, &c.mtvec, &c.stvec,
		&c.mepc, &c.sepc, &c.mcause, &c.scause, &c.mtval, &c.stval, &c.mscratch,
		&c.sscratch, &c.satp, &c.mcounteren, &c.scounteren, &c.mcountinh,
		&c.menvcfg, &c.senvcfg, &c.cycleOff, &c.instretOff, &c.cycleFrozen, &c.instretFrozen,
	}
}

// LoadSection replaces the architectural state with a saved one after
// checking every value is one the hart could have produced; on error the
// hart is unchanged. Caches are flushed.
func (h *Hart) LoadSection(d *vmstate.Decoder, version uint32) error {
	if version != hartSectionVersion {
		return fmt.Errorf("riscv: %s: unsupported section version %d", h.SectionName(), version)
	}
	var n Hart
	n.pc = d.U64()
	for i := 1; i < 32; i++ {
		n.x[i] = d.U64()
	}
	n.priv = d.U8()
	n.wfi = d.Bool()
	n.resValid = d.Bool()
	n.resAddr = d.U64()
	n.resVal = d.U64()
	n.instret = d.U64()
	for _, p := range n.csrFields() {
		*p = d.U64()
	}
	for i := range n.csr.pmpcfg {
		n.csr.pmpcfg[i] = d.U64()
	}
	for i := range n.csr.pmpaddr {
		n.csr.pmpaddr[i] = d.U64()
	}
	if err := d.Err(); err != nil {
		return fmt.Errorf("riscv: %s: %w", h.SectionName(), err)
	}
	if err := n.validate(); err != nil {
		return fmt.Errorf("riscv: %s: %w", h.SectionName(), err)
	}
	h.pc = n.pc
	h.x = n.x
	h.priv = n.priv
	h.wfi = n.wfi
	h.resValid, h.resAddr, h.resVal = n.resValid, n.resAddr, n.resVal
	h.instret = n.instret
	h.instretPub.Store(n.instret)
	h.csr = n.csr
	h.updatePMP()
	h.selectTLBs()
	h.flushAll()
	return nil
}

// validate checks a loaded state against the values the CSR write rules
// allow.
func (n *Hart) validate() error {
	c := &n.csr
	switch {
	case n.priv != privU && n.priv != privS && n.priv != privM:
		return fmt.Errorf("bad privilege level %d", n.priv)
	case n.pc&1 != 0:
		return fmt.Errorf("misaligned pc %#x", n.pc)
	case c.mstatus&^(mstatusWMask|msXL) != 0 || c.mstatus&msXL != msXL:
		return fmt.Errorf("bad mstatus %#x", c.mstatus)
	case c.mstatus&msMPP == 2<<msMPPShift:
		return fmt.Errorf("reserved mstatus.MPP in %#x", c.mstatus)
	case c.medeleg&^medelegMask != 0:
		return fmt.Errorf("bad medeleg %#x", c.medeleg)
	case c.mideleg&^midelegMask != 0:
		return fmt.Errorf("bad mideleg %#x", c.mideleg)
	case c.mie&^mieMask != 0:
		return fmt.Errorf("bad mie %#x", c.mie)
	case c.mipSW&^mipSWMask != 0:
		return fmt.Errorf("bad mip %#x", c.mipSW)
	case c.mtvec&3 >= 2 || c.stvec&3 >= 2:
		return fmt.Errorf("bad trap vector mode (mtvec %#x, stvec %#x)", c.mtvec, c.stvec)
	case c.mepc&1 != 0 || c.sepc&1 != 0:
		return fmt.Errorf("misaligned mepc/sepc")
	case c.satp>>satpModeShift != satpModeBare && c.satp>>satpModeShift != satpModeSv39,
		c.satp>>satpModeShift == satpModeBare && c.satp != 0,
		c.satp&^(0xf<<60|satpASIDMask|satpPPNMask) != 0:
		return fmt.Errorf("bad satp %#x", c.satp)
	case c.mcounteren>>32 != 0 || c.scounteren>>32 != 0:
		return fmt.Errorf("bad counter enables")
	case c.mcountinh&^(cntCY|cntIR) != 0:
		return fmt.Errorf("bad mcountinhibit %#x", c.mcountinh)
	case c.menvcfg&^envcfgMask != 0 || c.senvcfg&^envcfgMask != 0:
		return fmt.Errorf("bad menvcfg/senvcfg")
	case n.wfi && n.priv == privU:
		return fmt.Errorf("WFI state in U-mode")
	}
	for i, v := range c.pmpcfg {
		if i >= pmpEntries/8 && v != 0 {
			return fmt.Errorf("pmpcfg%d %#x: only %d PMP entries exist", 2*i, v, pmpEntries)
		}
		for b := 0; b < 8; b++ {
			if cb := v >> (8 * b) & 0xff; cb&0x60 != 0 || cb&3 == 2 {
				return fmt.Errorf("bad pmpcfg%d %#x", 2*i, v)
			}
		}
	}
	for i, v := range c.pmpaddr {
		if v>>54 != 0 || i >= pmpEntries && v != 0 {
			return fmt.Errorf("bad pmpaddr%d %#x", i, v)
		}
	}
	return nil
}
