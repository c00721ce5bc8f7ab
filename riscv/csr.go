package riscv

// CSR numbers.
const (
	csrFflags   = 0x001
	csrFrm      = 0x002
	csrFcsr     = 0x003
	csrSstatus  = 0x100
	csrSie      = 0x104
	csrStvec    = 0x105
	csrScounten = 0x106
	csrSenvcfg  = 0x10a
	csrSscratch = 0x140
	csrSepc     = 0x141
	csrScause   = 0x142
	csrStval    = 0x143
	csrSip      = 0x144
	csrSatp     = 0x180

	csrMstatus  = 0x300
	csrMisa     = 0x301
	csrMedeleg  = 0x302
	csrMideleg  = 0x303
	csrMie      = 0x304
	csrMtvec    = 0x305
	csrMcounten = 0x306
	csrMenvcfg  = 0x30a
	csrMcountin = 0x320
	csrMhpmevt3 = 0x323 // ..0x33f
	csrMscratch = 0x340
	csrMepc     = 0x341
	csrMcause   = 0x342
	csrMtval    = 0x343
	csrMip      = 0x344
	csrPmpcfg0  = 0x3a0 // ..0x3af (even only on RV64)
	csrPmpaddr0 = 0x3b0 // ..0x3ef

	csrMcycle   = 0xb00
	csrMinstret = 0xb02
	csrMhpmctr3 = 0xb03 // ..0xb1f

	csrCycle   = 0xc00
	csrTime    = 0xc01
	csrInstret = 0xc02
	csrHpmctr3 = 0xc03 // ..0xc1f

	csrMvendorid = 0xf11
	csrMarchid   = 0xf12
	csrMimpid    = 0xf13
	csrMhartid   = 0xf14
	csrMconfig   = 0xf15
)

// mstatus bits.
const (
	msSIE  = 1 << 1
	msMIE  = 1 << 3
	msSPIE = 1 << 5
	msMPIE = 1 << 7
	msSPP  = 1 << 8
	msMPP  = 3 << 11
	msMPRV = 1 << 17
	msSUM  = 1 << 18
	msMXR  = 1 << 19
	msTVM  = 1 << 20
	msTW   = 1 << 21
	msTSR  = 1 << 22

	msMPPShift = 11
	// UXL = SXL = 2 (64-bit), read-only.
	msXL = 2<<32 | 2<<34

	// Bits M-mode may change. FS/VS/XS stay 0 (no F, D or V), so FP
	// instructions and CSRs trap as illegal.
	mstatusWMask = msSIE | msMIE | msSPIE | msMPIE | msSPP | msMPP | msMPRV | msSUM | msMXR | msTVM | msTW | msTSR
	// sstatus is a view of mstatus.
	sstatusRMask = 0x80000003000DE762
	sstatusWMask = msSIE | msSPIE | msSPP | msSUM | msMXR
)

// Interrupt bits.
const (
	mipSSIP = 1 << IRQ_SSIP
	mipMSIP = 1 << IRQ_MSIP
	mipSTIP = 1 << IRQ_STIP
	mipMTIP = 1 << IRQ_MTIP
	mipSEIP = 1 << IRQ_SEIP
	mipMEIP = 1 << IRQ_MEIP

	mieMask      = mipSSIP | mipMSIP | mipSTIP | mipMTIP | mipSEIP | mipMEIP
	midelegMask  = mipSSIP | mipSTIP | mipSEIP
	mipSWMask    = mipSSIP | mipSTIP | mipSEIP // bits M-mode software may write in mip
	medelegMask  = 0xb3ff                      // causes 0-9, 12, 13, 15 (not M-ecall)
	misaValue    = 2<<62 | 1<<0 | 1<<2 | 1<<8 | 1<<12 | 1<<18 | 1<<20
	qemuArchImpl = 0x070216 // marchid/mimpid of QEMU 7.2.22, which guests may print
)

// satp.
const (
	satpModeShift = 60
	satpModeBare  = 0
	satpModeSv39  = 8
	satpPPNMask   = 1<<44 - 1
	satpASIDMask  = 0xffff << 44
)

// Counter-enable bits.
const (
	cntCY = 1 << 0
	cntTM = 1 << 1
	cntIR = 1 << 2
)

// csrFile holds every architectural CSR value the hart keeps.
type csrFile struct {
	mstatus    uint64
	medeleg    uint64
	mideleg    uint64
	mie        uint64
	mipSW      uint64 // software-written mip bits (SSIP, STIP, SEIP)
	mtvec      uint64
	stvec      uint64
	mepc       uint64
	sepc       uint64
	mcause     uint64
	scause     uint64
	mtval      uint64
	stval      uint64
	mscratch   uint64
	sscratch   uint64
	satp       uint64
	mcounteren uint64
	scounteren uint64
	mcountinh  uint64
	menvcfg    uint64
	senvcfg    uint64
	// mcycle and minstret are instret plus these offsets (so writes work);
	// while inhibited, the frozen value is kept in the *Frozen field.
	cycleOff      uint64
	instretOff    uint64
	cycleFrozen   uint64
	instretFrozen uint64
	pmpcfg        [8]uint64 // pmpcfg0, 2, ..., 14
	pmpaddr       [64]uint64
}

func (c *csrFile) reset() {
	*c = csrFile{mstatus: msXL}
}

// menvcfg: keep only FIOM (bit 0); CBIE/CBCFE/CBZE/PBMTE/STCE are WARL 0
// because Zicbom/Zicboz/Svpbmt/Sstc are not implemented.
const envcfgMask = 1

// mip returns the effective mip: device lines ORed with software bits.
func (h *Hart) mip() uint64 { return h.irqLines.Load() | h.csr.mipSW }

func (h *Hart) mcycle() uint64 {
	if h.csr.mcountinh&cntCY != 0 {
		return h.csr.cycleFrozen
	}
	return h.instret + h.csr.cycleOff
}

func (h *Hart) minstret() uint64 {
	if h.csr.mcountinh&cntIR != 0 {
		return h.csr.instretFrozen
	}
	return h.instret + h.csr.instretOff
}

// counterAllowed applies mcounteren/scounteren to a U/S read of a counter.
func (h *Hart) counterAllowed(bit uint64) bool {
	switch h.priv {
	case privM:
		return true
	case privS:
		return h.csr.mcounteren&bit != 0
	default:
		return h.csr.mcounteren&bit != 0 && h.csr.scounteren&bit != 0
	}
}

// csrRead reads CSR n for an instruction at the current privilege. ok=false
// means the access is illegal.
func (h *Hart) csrRead(n uint32) (uint64, bool) {
	if uint8(n>>8&3) > h.priv {
		return 0, false
	}
	c := &h.csr
	switch {
	case n >= csrHpmctr3 && n <= csrHpmctr3+28:
		return 0, h.counterAllowed(1 << (n - csrCycle))
	case n >= csrMhpmctr3 && n <= csrMhpmctr3+28, n >= csrMhpmevt3 && n <= csrMhpmevt3+28:
		return 0, true
	case n >= csrPmpcfg0 && n < csrPmpcfg0+16:
		if n&1 != 0 {
			return 0, false
		}
		return c.pmpcfg[(n-csrPmpcfg0)/2], true
	case n >= csrPmpaddr0 && n < csrPmpaddr0+64:
		return c.pmpaddr[n-csrPmpaddr0], true
	}
	switch n {
	case csrSstatus:
		return sstatusView(c.mstatus), true
	case csrSie:
		return c.mie & c.mideleg, true
	case csrStvec:
		return c.stvec, true
	case csrScounten:
		return c.scounteren, true
	case csrSenvcfg:
		return c.senvcfg, true
	case csrSscratch:
		return c.sscratch, true
	case csrSepc:
		return c.sepc, true
	case csrScause:
		return c.scause, true
	case csrStval:
		return c.stval, true
	case csrSip:
		return h.mip() & c.mideleg, true
	case csrSatp:
		if h.priv == privS && c.mstatus&msTVM != 0 {
			return 0, false
		}
		return c.satp, true
	case csrMstatus:
		return mstatusView(c.mstatus), true
	case csrMisa:
		return misaValue, true
	case csrMedeleg:
		return c.medeleg, true
	case csrMideleg:
		return c.mideleg, true
	case csrMie:
		return c.mie, true
	case csrMtvec:
		return c.mtvec, true
	case csrMcounten:
		return c.mcounteren, true
	case csrMenvcfg:
		return c.menvcfg, true
	case csrMcountin:
		return c.mcountinh, true
	case csrMscratch:
		return c.mscratch, true
	case csrMepc:
		return c.mepc, true
	case csrMcause:
		return c.mcause, true
	case csrMtval:
		return c.mtval, true
	case csrMip:
		return h.mip(), true
	case csrMcycle:
		return h.mcycle(), true
	case csrMinstret:
		return h.minstret(), true
	case csrCycle:
		return h.mcycle(), h.counterAllowed(cntCY)
	case csrInstret:
		return h.minstret(), h.counterAllowed(cntIR)
	case csrTime:
		if !h.counterAllowed(cntTM) {
			return 0, false
		}
		if h.time == nil {
			return 0, true
		}
		return h.time.MTime(), true
	case csrMvendorid, csrMconfig:
		return 0, true
	case csrMarchid, csrMimpid:
		return qemuArchImpl, true
	case csrMhartid:
		return h.id, true
	}
	return 0, false
}

func mstatusView(ms uint64) uint64 {
	ms |= msXL
	// SD summarises FS/VS/XS == dirty; they are always 0 here.
	return ms
}

func sstatusView(ms uint64) uint64 { return mstatusView(ms) & sstatusRMask }

// csrWrite writes CSR n (the caller has checked it is readable at this
// privilege). ok=false means illegal (read-only CSR or bad access).
func (h *Hart) csrWrite(n uint32, v uint64) bool {
	if n>>10 == 3 { // read-only space
		return false
	}
	if uint8(n>>8&3) > h.priv {
		return false
	}
	c := &h.csr
	switch {
	case n >= csrMhpmctr3 && n <= csrMhpmctr3+28, n >= csrMhpmevt3 && n <= csrMhpmevt3+28:
		return true // hardwired to zero
	case n >= csrPmpcfg0 && n < csrPmpcfg0+16:
		if n&1 != 0 {
			return false
		}
		i := (n - csrPmpcfg0) / 2
		if i >= pmpEntries/8 {
			return true // no such entries: WARL zero
		}
		var out uint64
		for b := 0; b < 8; b++ { // a locked entry ignores writes; W without R is reserved
			old := c.pmpcfg[i] >> (8 * b) & 0xff
			nb := v >> (8 * b) & 0x9f
			if old&pmpL != 0 {
				nb = old
			} else if nb&(pmpR|pmpW) == pmpW {
				nb &^= pmpR | pmpW
			}
			out |= nb << (8 * b)
		}
		c.pmpcfg[i] = out
		h.updatePMP()
		h.flushTLB()
		return true
	case n >= csrPmpaddr0 && n < csrPmpaddr0+64:
		i := int(n - csrPmpaddr0)
		if i >= pmpEntries {
			return true // WARL zero
		}
		// A locked entry, or a locked TOR entry above it, freezes the address.
		locked := c.pmpCfg(i)&pmpL != 0 ||
			i+1 < pmpEntries && c.pmpCfg(i+1)&pmpL != 0 && c.pmpCfg(i+1)>>3&3 == pmpTOR
		if !locked {
			c.pmpaddr[i] = v & (1<<54 - 1)
			h.flushTLB()
		}
		return true
	}
	switch n {
	case csrSstatus:
		h.setMstatus(c.mstatus&^sstatusWMask | v&sstatusWMask)
	case csrSie:
		c.mie = c.mie&^c.mideleg | v&c.mideleg&mieMask
		h.endSlice = true
	case csrStvec:
		if v&3 < 2 {
			c.stvec = v
		}
	case csrScounten:
		c.scounteren = v & 0xffffffff
	case csrSenvcfg:
		c.senvcfg = v & envcfgMask
	case csrSscratch:
		c.sscratch = v
	case csrSepc:
		c.sepc = v &^ 1
	case csrScause:
		c.scause = v
	case csrStval:
		c.stval = v
	case csrSip:
		m := c.mideleg & mipSSIP
		c.mipSW = c.mipSW&^m | v&m
		h.endSlice = true
	case csrSatp:
		if h.priv == privS && c.mstatus&msTVM != 0 {
			return false
		}
		mode := v >> satpModeShift
		if mode != satpModeBare && mode != satpModeSv39 {
			return true // unsupported modes are ignored entirely
		}
		if mode == satpModeBare {
			v = 0
		}
		c.satp = v & (0xf<<60 | satpASIDMask | satpPPNMask)
		h.flushTLB()
	case csrMstatus:
		h.setMstatus(c.mstatus&^mstatusWMask | v&mstatusWMask)
	case csrMisa:
		// WARL: the extension set is fixed.
	case csrMedeleg:
		c.medeleg = v & medelegMask
	case csrMideleg:
		c.mideleg = v & midelegMask
		h.endSlice = true
	case csrMie:
		c.mie = v & mieMask
		h.endSlice = true
	case csrMtvec:
		if v&3 < 2 {
			c.mtvec = v
		}
	case csrMcounten:
		c.mcounteren = v & 0xffffffff
	case csrMenvcfg:
		c.menvcfg = v & envcfgMask
	case csrMcountin:
		cy, ir := h.mcycle(), h.minstret()
		c.mcountinh = v & (cntCY | cntIR) // bit 1 (TM) is read-only zero; hpm counters are zero
		h.setMcycle(cy)
		h.setMinstret(ir)
	case csrMscratch:
		c.mscratch = v
	case csrMepc:
		c.mepc = v &^ 1
	case csrMcause:
		c.mcause = v
	case csrMtval:
		c.mtval = v
	case csrMip:
		c.mipSW = c.mipSW&^mipSWMask | v&mipSWMask
		h.endSlice = true
	case csrMcycle:
		h.setMcycle(v)
	case csrMinstret:
		h.setMinstret(v)
	default:
		return false
	}
	return true
}

func (h *Hart) setMcycle(v uint64) {
	h.csr.cycleFrozen = v
	h.csr.cycleOff = v - h.instret
}

func (h *Hart) setMinstret(v uint64) {
	h.csr.instretFrozen = v
	h.csr.instretOff = v - h.instret
}

// setMstatus stores a new mstatus written by a CSR instruction, keeping
// MPP legal.
func (h *Hart) setMstatus(v uint64) {
	if v&msMPP == 2<<msMPPShift { // reserved: keep the old MPP
		v = v&^msMPP | h.csr.mstatus&msMPP
	}
	h.writeMstatus(v | msXL)
	h.endSlice = true
}
