package riscv

// trap enters the handler for an exception (intr=false) or interrupt
// (intr=true) with the given cause, taken at h.pc.
func (h *Hart) trap(cause, tval uint64, intr bool) {
	c := &h.csr
	h.resValid = false
	deleg := c.medeleg
	mcause := cause
	if intr {
		deleg = c.mideleg
		mcause |= 1 << 63
	}
	ms := c.mstatus
	if h.priv <= privS && deleg>>cause&1 != 0 {
		c.sepc, c.scause, c.stval = h.pc, mcause, tval
		ms = ms&^(msSPIE|msSPP|msSIE) | (ms&msSIE)<<4 | uint64(h.priv)<<8
		h.writeMstatus(ms)
		h.setPriv(privS)
		h.pc = vector(c.stvec, cause, intr)
	} else {
		c.mepc, c.mcause, c.mtval = h.pc, mcause, tval
		ms = ms&^(msMPIE|msMPP|msMIE) | (ms&msMIE)<<4 | uint64(h.priv)<<msMPPShift
		h.writeMstatus(ms)
		h.setPriv(privM)
		h.pc = vector(c.mtvec, cause, intr)
	}
	h.wfi = false
	h.endSlice = true
}

func vector(tvec, cause uint64, intr bool) uint64 {
	base := tvec &^ 3
	if intr && tvec&1 != 0 {
		return base + 4*cause
	}
	return base
}

// setPriv changes the privilege level; each level has its own TLBs.
func (h *Hart) setPriv(p uint8) {
	if p == h.priv {
		return
	}
	h.priv = p
	h.selectTLBs()
	h.endSlice = true
}

// writeMstatus stores mstatus from trap/xRET logic and keeps the TLBs
// consistent with it: MPRV/MPP select the data TLB set; SUM and MXR change
// S and U permissions.
func (h *Hart) writeMstatus(v uint64) {
	old := h.csr.mstatus
	h.csr.mstatus = v
	ch := old ^ v
	if ch&(msSUM|msMXR) != 0 {
		h.flushTLBSet(privS)
		h.flushTLBSet(privU)
	}
	if ch&(msMPRV|msMPP) != 0 {
		h.selectTLBs()
		h.endSlice = true
	}
}

// Interrupts in decreasing priority (MEI > MSI > MTI > SEI > SSI > STI).
var irqPriority = [...]uint64{IRQ_MEIP, IRQ_MSIP, IRQ_MTIP, IRQ_SEIP, IRQ_SSIP, IRQ_STIP}

// checkInterrupts takes the highest-priority pending, enabled interrupt.
func (h *Hart) checkInterrupts() bool {
	pend := h.mip() & h.csr.mie
	if pend == 0 {
		return false
	}
	c := &h.csr
	var take uint64
	if m := pend &^ c.mideleg; m != 0 && (h.priv < privM || c.mstatus&msMIE != 0) {
		take = m
	} else if s := pend & c.mideleg; s != 0 && (h.priv < privS || h.priv == privS && c.mstatus&msSIE != 0) {
		take = s
	} else {
		return false
	}
	for _, irq := range irqPriority {
		if take>>irq&1 != 0 {
			h.trap(irq, 0, true)
			return true
		}
	}
	return false
}

// system executes CSR, trap-return, fence and WFI instructions. h.pc is
// the instruction's address; on success h.pc is the next pc. false means
// an exception was recorded.
func (h *Hart) system(d *dinsn) bool {
	raw := uint32(d.imm)
	next := h.pc + d.size()
	c := &h.csr
	switch d.op {
	case opCSRRW, opCSRRS, opCSRRC, opCSRRWI, opCSRRSI, opCSRRCI:
		n := raw >> 20
		src := uint64(d.rs1)
		if d.op <= opCSRRC {
			src = h.x[d.rs1&63]
		}
		old, ok := h.csrRead(n)
		if !ok {
			return h.illegal(raw)
		}
		write := true
		nv := src
		switch d.op {
		case opCSRRS, opCSRRSI:
			write, nv = d.rs1 != 0, old|src
		case opCSRRC, opCSRRCI:
			write, nv = d.rs1 != 0, old&^src
		}
		if write && !h.csrWrite(n, nv) {
			return h.illegal(raw)
		}
		h.x[d.rd&63] = old
	case opECALL:
		return h.exception(excEcallU+uint64(h.priv), 0)
	case opEBREAK:
		return h.exception(excBreakpoint, 0)
	case opMRET:
		if h.priv != privM {
			return h.illegal(raw)
		}
		ms := c.mstatus
		np := uint8(ms >> msMPPShift & 3)
		if np != privM && !h.pmpActive {
			// QEMU 7.2: with no PMP entry set, S/U could not access
			// anything, and MRET to them raises illegal instruction.
			return h.illegal(raw)
		}
		ms = ms&^(msMIE|msMPP) | (ms&msMPIE)>>4 | msMPIE
		if np != privM {
			ms &^= msMPRV
		}
		h.writeMstatus(ms)
		h.setPriv(np)
		next = c.mepc
	case opSRET:
		if h.priv == privU || h.priv == privS && c.mstatus&msTSR != 0 {
			return h.illegal(raw)
		}
		ms := c.mstatus
		np := uint8(ms >> 8 & 1)
		ms = ms&^(msSIE|msSPP|msMPRV) | (ms&msSPIE)>>4 | msSPIE
		h.writeMstatus(ms)
		h.setPriv(np)
		next = c.sepc
	case opWFI:
		if h.priv == privU || h.priv == privS && c.mstatus&msTW != 0 {
			return h.illegal(raw)
		}
		if !h.wfiWakeable() {
			h.wfi = true
		}
	case opSFENCEVMA:
		if h.priv == privU || h.priv == privS && c.mstatus&msTVM != 0 {
			return h.illegal(raw)
		}
		h.flushTLB()
	case opFENCEI:
		h.revalidateCode()
	default:
		return h.illegal(raw)
	}
	h.pc = next
	h.endSlice = true
	return true
}

func (h *Hart) illegal(raw uint32) bool {
	h.excCause, h.excTval = excIllegal, uint64(raw)
	return false
}

func (h *Hart) exception(cause, tval uint64) bool {
	h.excCause, h.excTval = cause, tval
	return false
}
