package riscv

import (
	"bytes"
	"encoding/binary"
	"sync"
	"sync/atomic"
)

// Access kinds for translation.
const (
	accR = iota
	accW
	accX
)

// Exception causes.
const (
	excInsnMisaligned  = 0
	excInsnAccess      = 1
	excIllegal         = 2
	excBreakpoint      = 3
	excLoadMisaligned  = 4
	excLoadAccess      = 5
	excStoreMisaligned = 6
	excStoreAccess     = 7
	excEcallU          = 8
	excEcallS          = 9
	excEcallM          = 11
	excInsnPage        = 12
	excLoadPage        = 13
	excStorePage       = 15
)

var (
	pageFaultCause   = [3]uint64{excLoadPage, excStorePage, excInsnPage}
	accessFaultCause = [3]uint64{excLoadAccess, excStoreAccess, excInsnAccess}
)

// PTE bits.
const (
	pteV = 1 << 0
	pteR = 1 << 1
	pteW = 1 << 2
	pteX = 1 << 3
	pteU = 1 << 4
	pteA = 1 << 6
	pteD = 1 << 7
)

const (
	tlbBits   = 8
	tlbSize   = 1 << tlbBits
	tlbMask   = tlbSize - 1
	tlbNoTag  = ^uint64(0)
	pageInsns = memory4K / 2 // decoded slots per page: one per halfword
	memory4K  = 4096

	// maxCodePages bounds the decoded-code cache (each page costs 20 KiB);
	// beyond it the whole cache is dropped and rebuilt lazily.
	maxCodePages = 4096
)

// tlbEntry maps one virtual page to RAM: the RAM offset of va is va+add.
// Only pages wholly inside RAM are entered; MMIO always takes the slow path.
type tlbEntry struct {
	tag  uint64 // va >> 12, or tlbNoTag
	add  uint64
	code bool // write TLB only: the page has decoded instructions
}

// codeTLBEntry maps a virtual page to its decoded-code page.
type codeTLBEntry struct {
	tag uint64
	cp  *codePage
}

// dinsn is one decoded instruction, 8 bytes. rd is 32 when the
// instruction writes x0 (the sink register), so no instruction has to
// special-case x0; bit 6 of rd (rdCompressed) marks a 16-bit instruction.
type dinsn struct {
	imm int32
	op  uint8
	rd  uint8
	rs1 uint8
	rs2 uint8
}

// size is the instruction's length in bytes.
func (d *dinsn) size() uint64 { return 4 - uint64(d.rd>>5&2) }

// hsize is the instruction's length in halfwords.
func (d *dinsn) hsize() uint64 { return 2 - uint64(d.rd>>6) }

// codePage is the decoded form of one 4 KiB page of RAM, indexed by
// halfword. Entries decode lazily (op == opDecode).
type codePage struct {
	insns [pageInsns]dinsn
	// raw is the page's bytes when it was last validated; FENCE.I
	// revalidates a page by comparing it with RAM instead of decoding it
	// again.
	raw     [memory4K]byte
	gen     uint64 // mmuState.codeGen at the last validation
	ramOff  uint64 // RAM offset of the page
	scratch bool   // a one-instruction page for fetches outside the cache
	// jit holds the translated blocks of the page; nil whenever insns
	// is reset.
	jit *jitPage
}

// tlbSet is the TLBs for one privilege level. Keeping a set per level
// means traps and xRET switch sets instead of flushing.
type tlbSet struct {
	r, w [tlbSize]tlbEntry
	x    [tlbSize]codeTLBEntry
}

// mmuState is derived state: TLBs and decoded code, flushed on restore.
type mmuState struct {
	sets      [4]tlbSet   // by privilege (index 2 unused)
	d         *tlbSet     // data accesses: sets[dataPriv]
	i         *tlbSet     // fetches: sets[priv]
	codePages []*codePage // by RAM page number
	live      []uint64    // RAM page numbers with a codePage
	nCode     int
	codeGen   uint64 // bumped by FENCE.I: pages revalidate on next use
	free      []*codePage
	scratch   codePage

	// staleCode is set by InvalidateCode (any goroutine) when pending
	// holds ranges to invalidate.
	staleCode     atomic.Bool
	pendingMu     sync.Mutex
	pending       [][2]uint64 // guarded by pendingMu
	pendingAll    bool        // guarded by pendingMu
	scratchRanges [][2]uint64
}

func (m *mmuState) init(h *Hart) {
	if h.ram != nil {
		m.codePages = make([]*codePage, h.ram.Pages())
	}
	m.scratch.scratch = true
	m.d, m.i = &m.sets[privM], &m.sets[privM]
}

// flushTLB empties the address-translation caches (not decoded code, which
// is indexed physically).
func (h *Hart) flushTLB() {
	h.flushTLBSet(privU)
	h.flushTLBSet(privS)
	h.flushTLBSet(privM)
}

func (h *Hart) flushTLBSet(p uint8) {
	t := &h.mmu.sets[p]
	for i := range t.r {
		t.r[i].tag = tlbNoTag
		t.w[i].tag = tlbNoTag
		t.x[i] = codeTLBEntry{tag: tlbNoTag}
	}
	h.endSlice = true
}

// selectTLBs points the data and fetch TLBs at the sets for the current
// privilege (and MPRV).
func (h *Hart) selectTLBs() {
	h.mmu.d = &h.mmu.sets[h.dataPriv(accR)]
	h.mmu.i = &h.mmu.sets[h.priv]
}

// flushCode drops all decoded instructions (FENCE.I, restore, DMA).
func (h *Hart) flushCode() {
	m := &h.mmu
	for _, rp := range m.live {
		if cp := m.codePages[rp]; cp != nil {
			m.codePages[rp] = nil
			cp.jit = nil
			m.free = append(m.free, cp)
		}
	}
	m.live = m.live[:0]
	m.nCode = 0
	for p := range m.sets {
		t := &m.sets[p]
		for i := range t.x {
			t.x[i] = codeTLBEntry{tag: tlbNoTag}
			t.w[i].code = false
		}
	}
	h.endSlice = true
}

// revalidateCode implements FENCE.I. The hart's own stores already keep
// decoded code coherent, so only writes by others (DMA, other harts) can
// have made it stale: each page is compared with RAM when next executed
// and decoded again only if it changed.
func (h *Hart) revalidateCode() {
	m := &h.mmu
	m.codeGen++
	for p := range m.sets {
		t := &m.sets[p]
		for i := range t.x {
			t.x[i] = codeTLBEntry{tag: tlbNoTag}
		}
	}
	h.endSlice = true
}

func (h *Hart) flushAll() {
	h.flushTLB()
	h.flushCode()
}

// InvalidateCode tells the hart that [physAddr, physAddr+n) of RAM was
// written by someone other than the hart itself, e.g. device DMA through
// memory.RAM.WriteAt. It is safe from any goroutine; the hart re-decodes the
// affected instructions before it next executes them (at the latest when
// Run next checks for interrupts, or at once if called during a Bus access
// made by the hart). Pages that hold no decoded code cost one lookup.
// Guests that load code by DMA execute FENCE.I as well, which revalidates
// all decoded code, so this matters only for guests relying on coherence.
func (h *Hart) InvalidateCode(physAddr, n uint64) {
	m := &h.mmu
	m.pendingMu.Lock()
	if len(m.pending) < maxPendingRanges {
		m.pending = append(m.pending, [2]uint64{physAddr, n})
	} else {
		m.pendingAll = true
	}
	m.pendingMu.Unlock()
	m.staleCode.Store(true)
}

// maxPendingRanges bounds the queue of InvalidateCode ranges; beyond it all
// decoded code is dropped instead.
const maxPendingRanges = 64

// applyInvalidations processes InvalidateCode calls (hart goroutine).
func (h *Hart) applyInvalidations() {
	m := &h.mmu
	m.staleCode.Store(false)
	m.pendingMu.Lock()
	all := m.pendingAll
	ranges := append(m.scratchRanges[:0], m.pending...)
	m.pending = m.pending[:0]
	m.pendingAll = false
	m.pendingMu.Unlock()
	m.scratchRanges = ranges
	if all {
		h.flushCode()
		return
	}
	for _, r := range ranges {
		pa, n := r[0], r[1]
		if n == 0 || pa+n < pa {
			continue
		}
		// Clip to RAM.
		lo, hi := max(pa, h.ram.Base), min(pa+n, h.ram.Base+h.ram.Size())
		if lo < hi {
			h.invalidateRAM(lo-h.ram.Base, hi-lo)
		}
	}
}

// codePageFor returns the decoded page for RAM page rp, creating it.
func (h *Hart) codePageFor(rp uint64) *codePage {
	m := &h.mmu
	page := h.mem[rp<<12 : rp<<12+memory4K]
	if cp := m.codePages[rp]; cp != nil {
		if cp.gen != m.codeGen {
			if !bytes.Equal(cp.raw[:], page) {
				cp.insns = [pageInsns]dinsn{}
				cp.jit = nil
				copy(cp.raw[:], page)
			}
			cp.gen = m.codeGen
		}
		return cp
	}
	if m.nCode >= maxCodePages {
		h.flushCode()
	}
	var cp *codePage
	if n := len(m.free); n > 0 {
		cp = m.free[n-1]
		m.free = m.free[:n-1]
		cp.insns = [pageInsns]dinsn{}
		cp.jit = nil
	} else {
		cp = new(codePage)
	}
	cp.ramOff = rp << 12
	cp.gen = m.codeGen
	copy(cp.raw[:], page)
	m.codePages[rp] = cp
	m.live = append(m.live, rp)
	m.nCode++
	// Stores through the write TLB to this page must now invalidate.
	for p := range m.sets {
		t := &m.sets[p]
		for i := range t.w {
			e := &t.w[i]
			if e.tag != tlbNoTag && (e.tag<<12+e.add)>>12 == rp {
				e.code = true
			}
		}
	}
	return cp
}

// invalidateRAM resets decoded entries overlapping RAM offsets [off, off+n)
// after a store. A 32-bit instruction starting 2 bytes before off is
// affected too.
func (h *Hart) invalidateRAM(off, n uint64) {
	if n == 0 {
		return
	}
	for p := off >> 12; p <= (off+n-1)>>12; p++ {
		if p >= uint64(len(h.mmu.codePages)) {
			return
		}
		cp := h.mmu.codePages[p]
		if cp == nil {
			continue
		}
		lo, hi := uint64(0), uint64(4095)
		if p == off>>12 {
			lo = off & 4095
		}
		if p == (off+n-1)>>12 {
			hi = (off + n - 1) & 4095
		}
		first := lo >> 1
		if first > 0 {
			first--
		}
		for i := first; i <= hi>>1; i++ {
			cp.insns[i].op = opDecode
		}
		cp.jit = nil
		// An instruction straddling into this page from the previous one
		// is never cached, so nothing else to do.
	}
}

// translate maps va for an access of kind acc, applying MPRV for data.
// On failure it records the exception and returns ok=false.
func (h *Hart) translate(va uint64, acc int) (uint64, bool) {
	priv := h.priv
	ms := h.csr.mstatus
	if acc != accX && priv == privM && ms&msMPRV != 0 {
		priv = uint8(ms >> msMPPShift & 3)
	}
	satp := h.csr.satp
	if priv == privM || satp>>satpModeShift == satpModeBare {
		return va, true
	}
	if uint64(int64(va<<25)>>25) != va {
		return h.fault(pageFaultCause[acc], va)
	}
	a := (satp & satpPPNMask) << 12
	for level := 2; level >= 0; level-- {
		pteAddr := a + (va>>(12+9*uint(level))&511)*8
		off := pteAddr - h.ram.Base
		if pteAddr < h.ram.Base || off >= h.ram.Size() || off+8 > h.ram.Size() {
			return h.fault(accessFaultCause[acc], va)
		}
		if !h.pmpCheck(pteAddr, 8, accR, privS) {
			return h.fault(accessFaultCause[acc], va)
		}
		pte := binary.LittleEndian.Uint64(h.mem[off:])
		if pte&pteV == 0 || pte&(pteR|pteW) == pteW || pte>>54 != 0 {
			return h.fault(pageFaultCause[acc], va)
		}
		ppn := pte >> 10 & (1<<44 - 1)
		if pte&(pteR|pteX) == 0 {
			if level == 0 {
				return h.fault(pageFaultCause[acc], va)
			}
			a = ppn << 12
			continue
		}
		// Leaf.
		if pte&pteU != 0 {
			if priv == privS && (acc == accX || ms&msSUM == 0) {
				return h.fault(pageFaultCause[acc], va)
			}
		} else if priv == privU {
			return h.fault(pageFaultCause[acc], va)
		}
		switch acc {
		case accR:
			if pte&pteR == 0 && (ms&msMXR == 0 || pte&pteX == 0) {
				return h.fault(pageFaultCause[acc], va)
			}
		case accW:
			if pte&pteW == 0 {
				return h.fault(pageFaultCause[acc], va)
			}
		case accX:
			if pte&pteX == 0 {
				return h.fault(pageFaultCause[acc], va)
			}
		}
		lowMask := uint64(1)<<(9*uint(level)) - 1
		if ppn&lowMask != 0 { // misaligned superpage
			return h.fault(pageFaultCause[acc], va)
		}
		// Hardware A/D update, as QEMU 7.2 does.
		npte := pte | pteA
		if acc == accW {
			npte |= pteD
		}
		if npte != pte {
			// Atomic, so another hart's concurrent PTE update is not
			// lost; if the PTE changed meanwhile, walk again.
			if !atomicCAS(h.mem, off, 8, pte, npte) {
				return h.translate(va, acc)
			}
			h.ram.MarkDirty(off)
			h.invalidateRAM(off, 8)
		}
		pageMask := uint64(1)<<(12+9*uint(level)) - 1
		return (ppn<<12)&^pageMask | va&pageMask, true
	}
	return h.fault(pageFaultCause[acc], va) // not reached
}

func (h *Hart) fault(cause, tval uint64) (uint64, bool) {
	h.excCause, h.excTval = cause, tval
	return 0, false
}

// ramOffset returns the RAM offset of physical page-contained [pa, pa+n).
func (h *Hart) ramOffset(pa, n uint64) (uint64, bool) {
	off := pa - h.ram.Base
	if pa < h.ram.Base || off >= h.ram.Size() || n > h.ram.Size()-off {
		return 0, false
	}
	return off, true
}

// fillTLB enters va's page in t if pa's page is RAM.
func (h *Hart) fillTLB(t *[tlbSize]tlbEntry, va, pa uint64, write bool) {
	off, ok := h.ramOffset(pa&^4095, 4096)
	if !ok {
		return
	}
	e := &t[va>>12&tlbMask]
	e.tag = va >> 12
	e.add = off - va&^4095
	e.code = write && h.mmu.codePages[off>>12] != nil
}

// physLoad reads n bytes (1, 2, 4, 8; not crossing a page) at physical pa.
func (h *Hart) physLoad(pa uint64, n int, acc int) (uint64, bool) {
	if off, ok := h.ramOffset(pa, uint64(n)); ok {
		return loadLE(h.mem[off:], n), true
	}
	if h.bus != nil {
		if v, ok := h.bus.Load(pa, n); ok {
			return v, true
		}
	}
	h.excCause, h.excTval = accessFaultCause[acc], pa
	return 0, false
}

// physStore writes n bytes (not crossing a page) at physical pa.
func (h *Hart) physStore(pa uint64, n int, v uint64) bool {
	if off, ok := h.ramOffset(pa, uint64(n)); ok {
		storeLE(h.mem[off:], n, v)
		h.ram.MarkDirty(off)
		h.invalidateRAM(off, uint64(n))
		return true
	}
	// A device may DMA into RAM (even into code) while handling the store,
	// and may raise interrupts: return to Run after this instruction.
	h.endSlice = true
	if h.bus != nil && h.bus.Store(pa, n, v) {
		return true
	}
	h.excCause, h.excTval = excStoreAccess, pa
	return false
}

func loadLE(b []byte, n int) uint64 {
	switch n {
	case 1:
		return uint64(b[0])
	case 2:
		return uint64(binary.LittleEndian.Uint16(b))
	case 4:
		return uint64(binary.LittleEndian.Uint32(b))
	default:
		return binary.LittleEndian.Uint64(b)
	}
}

func storeLE(b []byte, n int, v uint64) {
	switch n {
	case 1:
		b[0] = byte(v)
	case 2:
		binary.LittleEndian.PutUint16(b, uint16(v))
	case 4:
		binary.LittleEndian.PutUint32(b, uint32(v))
	default:
		binary.LittleEndian.PutUint64(b, v)
	}
}

// loadSlow is the load path when the read TLB misses or the access is
// misaligned. The exception's tval is the virtual address.
func (h *Hart) loadSlow(va uint64, n int) (uint64, bool) {
	if va&4095+uint64(n) > 4096 { // crosses a page: byte by byte
		var v uint64
		for i := 0; i < n; i++ {
			b, ok := h.loadSlow(va+uint64(i), 1)
			if !ok {
				return 0, false
			}
			v |= b << (8 * i)
		}
		return v, true
	}
	pa, cache, ok := h.access(va, n, accR)
	if !ok {
		return 0, false
	}
	if cache {
		h.fillTLB(&h.mmu.d.r, va, pa, false)
	}
	v, ok := h.physLoad(pa, n, accR)
	if !ok {
		h.excTval = va
		return 0, false
	}
	return v, true
}

// storeSlow is the store path when the write TLB misses, the access is
// misaligned, or the page holds decoded code.
func (h *Hart) storeSlow(va uint64, n int, v uint64) bool {
	if va&4095+uint64(n) > 4096 {
		// Check both pages before writing anything.
		if _, _, ok := h.access(va, 1, accW); !ok {
			return false
		}
		// A fault on the second page reports that page's first byte.
		if _, _, ok := h.access((va|4095)+1, 1, accW); !ok {
			return false
		}
		for i := 0; i < n; i++ {
			if !h.storeSlow(va+uint64(i), 1, v>>(8*i)) {
				return false
			}
		}
		return true
	}
	pa, cache, ok := h.access(va, n, accW)
	if !ok {
		return false
	}
	if cache {
		h.fillTLB(&h.mmu.d.w, va, pa, true)
	}
	if !h.physStore(pa, n, v) {
		h.excTval = va
		return false
	}
	return true
}

// amoAddr translates va for an atomic access (store permission, so faults
// report store causes) and checks alignment (QEMU 7.2 reports cause 4,
// load address misaligned, for misaligned AMOs and LR).
func (h *Hart) amoAddr(va uint64, n int, acc int) (uint64, bool) {
	if va&uint64(n-1) != 0 {
		return h.fault(excLoadMisaligned, va)
	}
	t := &h.mmu.d.r
	if acc == accW {
		t = &h.mmu.d.w
	}
	if e := &t[va>>12&tlbMask]; e.tag == va>>12 {
		return h.ram.Base + va + e.add, true
	}
	pa, cache, ok := h.access(va, n, acc)
	if ok && cache {
		h.fillTLB(t, va, pa, acc == accW)
	}
	return pa, ok
}
