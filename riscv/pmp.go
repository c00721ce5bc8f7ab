package riscv

import "math/bits"

// Physical memory protection: 16 entries, as QEMU 7.2 has (pmpcfg0 and
// pmpcfg2; pmpaddr0..15). pmpcfg4..14 and pmpaddr16..63 read as zero and
// ignore writes, so OpenSBI's probe counts 16. Granularity is 4 bytes.
const pmpEntries = 16

// PMP configuration bits.
const (
	pmpR     = 1 << 0
	pmpW     = 1 << 1
	pmpX     = 1 << 2
	pmpAMask = 3 << 3
	pmpL     = 1 << 7

	pmpOff   = 0
	pmpTOR   = 1
	pmpNA4   = 2
	pmpNAPOT = 3
)

var pmpPerm = [3]uint8{accR: pmpR, accW: pmpW, accX: pmpX}

func (c *csrFile) pmpCfg(i int) uint8 { return uint8(c.pmpcfg[i/8] >> (8 * (i % 8))) }

// pmpRange returns the byte range [lo, hi) entry i covers (hi == lo when
// it is off or empty).
func (c *csrFile) pmpRange(i int) (lo, hi uint64) {
	addr := c.pmpaddr[i]
	switch c.pmpCfg(i) >> 3 & 3 {
	case pmpTOR:
		if i > 0 {
			lo = c.pmpaddr[i-1] << 2
		}
		hi = addr << 2
		if hi < lo {
			hi = lo
		}
	case pmpNA4:
		lo, hi = addr<<2, addr<<2+4
	case pmpNAPOT:
		ones := uint(bits.TrailingZeros64(^addr)) // pmpaddr is 54 bits, so ones <= 54
		lo = (addr &^ (1<<ones - 1)) << 2
		hi = lo + 1<<(ones+3)
	}
	return lo, hi
}

// updatePMP recomputes the derived PMP flags after a change.
func (h *Hart) updatePMP() {
	h.pmpActive, h.pmpLocked = false, false
	for i := 0; i < pmpEntries; i++ {
		cfg := h.csr.pmpCfg(i)
		if cfg&pmpAMask != 0 {
			h.pmpActive = true
			if cfg&pmpL != 0 {
				h.pmpLocked = true
			}
		}
	}
}

// pmpCheck reports whether an access of n bytes at pa of kind acc is
// allowed at privilege priv. The lowest-numbered entry matching any byte
// decides; an entry matching only part of the access fails it. With no
// match, M-mode is allowed and S/U are denied.
func (h *Hart) pmpCheck(pa, n uint64, acc int, priv uint8) bool {
	if !h.pmpActive {
		return priv == privM
	}
	c := &h.csr
	for i := 0; i < pmpEntries; i++ {
		cfg := c.pmpCfg(i)
		if cfg&pmpAMask == 0 {
			continue
		}
		lo, hi := c.pmpRange(i)
		if pa+n <= lo || pa >= hi {
			continue
		}
		if pa < lo || pa+n > hi {
			return false
		}
		if priv == privM && cfg&pmpL == 0 {
			return true
		}
		return cfg&pmpPerm[acc] != 0
	}
	return priv == privM
}

// dataPriv is the privilege a data access (or fetch) is made with.
func (h *Hart) dataPriv(acc int) uint8 {
	if acc != accX && h.priv == privM && h.csr.mstatus&msMPRV != 0 {
		return uint8(h.csr.mstatus >> msMPPShift & 3)
	}
	return h.priv
}

// access translates va for an n-byte access of kind acc and applies PMP.
// cache reports whether va's whole page may be entered in a TLB (PMP
// treats the page uniformly). On failure the exception is recorded.
func (h *Hart) access(va uint64, n int, acc int) (pa uint64, cache bool, ok bool) {
	pa, ok = h.translate(va, acc)
	if !ok {
		return 0, false, false
	}
	priv := h.dataPriv(acc)
	if priv == privM && !h.pmpLocked {
		return pa, true, true
	}
	if h.pmpCheck(pa&^4095, 4096, acc, priv) {
		return pa, true, true
	}
	if h.pmpCheck(pa, uint64(n), acc, priv) {
		return pa, false, true
	}
	h.excCause, h.excTval = accessFaultCause[acc], va
	return 0, false, false
}
