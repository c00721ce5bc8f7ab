package vmstate

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/bits"
	"runtime"
	"sync"

	"github.com/snapvm/snapvm/memory"
	"golang.org/x/sys/unix"
)

// The stream layout, described in docs/vmstate.md:
//
//	[0, HeaderLen)               header block: magic, version, machine
//	                             configuration, every section, CRC-32C
//	[RAMOffset, +RAMSize)        guest RAM, page i at RAMOffset + i*4096;
//	                             pages never written are left as holes
//
// RAMOffset is the header length rounded up to RAMAlign, so RAM extents
// are cluster aligned for every qcow2 cluster size and page i's position
// depends only on the header, not on what else was saved.

// Magic starts every stream.
var Magic = [8]byte{'S', 'N', 'A', 'P', 'V', 'M', 'S', 'T'}

// Stream format version. A reader accepts the same major and any minor up
// to its own; a newer minor may only add optional sections.
const (
	FormatMajor = 1
	FormatMinor = 0
)

const (
	// RAMAlign is the alignment of the RAM region: the largest qcow2
	// cluster size, so RAM extents never share a cluster with the header.
	RAMAlign = 2 << 20
	// MaxHeaderLen bounds the header block a loader will read.
	MaxHeaderLen = 16 << 20
	// maxSections bounds the section count a loader accepts.
	maxSections = 4096
	// maxNameLen bounds section and board names.
	maxNameLen = 256
	// fixedLen is magic + major + minor + header length + CRC.
	fixedLen = 8 + 2 + 2 + 4 + 4
	// ExtentSize is the largest single write or read of RAM; runs of
	// written pages are coalesced up to it.
	ExtentSize = 4 << 20
)

// SectionOptional marks a section an older reader may skip.
const SectionOptional = 1

// Store is where a stream lives: a qcow2 image's vm-state area, addressed
// from 0.
type Store interface {
	WriteVMState(p []byte, pos int64) error
	ReadVMState(p []byte, pos int64) error
	// AllocatedRanges lists the parts of [pos, pos+n) holding data, in
	// order, as [start, end) pairs; everything else reads as zeros.
	AllocatedRanges(pos, n int64) ([][2]int64, error)
}

// Config is the machine configuration a stream was saved from. Load refuses
// a stream whose configuration differs from the machine's.
type Config struct {
	Board   string
	RAMBase uint64
	RAMSize uint64
}

// Header is the decoded header block.
type Header struct {
	Major, Minor uint16
	Config       Config
	VMClockNs    int64
	RAMOffset    int64
	Sections     []SectionData
	// Len is the header block's length in bytes.
	Len int64
}

// SectionData is one saved section.
type SectionData struct {
	Name    string
	Version uint32
	Flags   uint32
	Data    []byte
}

// Size is the full stream length: the header, alignment, and the RAM area.
func (h *Header) Size() int64 { return h.RAMOffset + int64(h.Config.RAMSize) }

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrFormat is wrapped by every error about a malformed stream.
var ErrFormat = errors.New("vmstate: invalid VM state")

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrFormat}, args...)...)
}

// EncodeHeader builds the header block for the given sections, saving each.
func EncodeHeader(cfg Config, vmClockNs int64, sections []Section) ([]byte, error) {
	var body Encoder
	body.String(cfg.Board)
	body.U64(cfg.RAMBase)
	body.U64(cfg.RAMSize)
	body.U32(memory.PageSize)
	body.I64(vmClockNs)
	body.U32(uint32(len(sections)))
	seen := make(map[string]bool, len(sections))
	for _, s := range sections {
		name := s.SectionName()
		if seen[name] {
			return nil, fmt.Errorf("vmstate: section %q registered twice", name)
		}
		seen[name] = true
		var e Encoder
		s.SaveSection(&e)
		body.String(name)
		body.U32(s.SectionVersion())
		body.U32(0)
		body.Blob(e.Bytes())
		body.U32(crc32.Checksum(e.Bytes(), castagnoli))
	}
	n := fixedLen + len(body.Bytes())
	if n > MaxHeaderLen {
		return nil, fmt.Errorf("vmstate: device state of %d bytes exceeds the limit of %d", n, MaxHeaderLen)
	}
	out := make([]byte, 0, n)
	out = append(out, Magic[:]...)
	out = binary.LittleEndian.AppendUint16(out, FormatMajor)
	out = binary.LittleEndian.AppendUint16(out, FormatMinor)
	out = binary.LittleEndian.AppendUint32(out, uint32(n))
	out = binary.LittleEndian.AppendUint32(out, 0) // CRC, filled below
	out = append(out, body.Bytes()...)
	binary.LittleEndian.PutUint32(out[16:], crc32.Checksum(out, castagnoli))
	return out, nil
}

// RAMOffsetFor is where RAM starts after a header of n bytes.
func RAMOffsetFor(n int64) int64 { return (n + RAMAlign - 1) / RAMAlign * RAMAlign }

// PeekHeaderLen validates the fixed prefix of a stream and returns the
// header block's length, so a loader knows how much to read.
func PeekHeaderLen(prefix []byte) (int64, error) {
	if len(prefix) < fixedLen {
		return 0, formatErr("stream shorter than its fixed header")
	}
	if !bytes.Equal(prefix[:8], Magic[:]) {
		return 0, formatErr("no snapvm VM state here (bad magic)")
	}
	major := binary.LittleEndian.Uint16(prefix[8:])
	minor := binary.LittleEndian.Uint16(prefix[10:])
	if major != FormatMajor || minor > FormatMinor {
		return 0, fmt.Errorf("%w: VM state format %d.%d is not supported (this snapvm reads %d.0 to %d.%d)",
			ErrFormat, major, minor, FormatMajor, FormatMajor, FormatMinor)
	}
	n := int64(binary.LittleEndian.Uint32(prefix[12:]))
	if n < fixedLen || n > MaxHeaderLen {
		return 0, formatErr("header length %d out of range", n)
	}
	return n, nil
}

// DecodeHeader parses and verifies a whole header block.
func DecodeHeader(block []byte) (*Header, error) {
	n, err := PeekHeaderLen(block)
	if err != nil {
		return nil, err
	}
	if int64(len(block)) < n {
		return nil, formatErr("header truncated: %d of %d bytes", len(block), n)
	}
	block = block[:n]
	want := binary.LittleEndian.Uint32(block[16:])
	tmp := make([]byte, len(block))
	copy(tmp, block)
	binary.LittleEndian.PutUint32(tmp[16:], 0)
	if got := crc32.Checksum(tmp, castagnoli); got != want {
		return nil, formatErr("header checksum mismatch (stored %#08x, computed %#08x)", want, got)
	}
	h := &Header{
		Major: binary.LittleEndian.Uint16(block[8:]),
		Minor: binary.LittleEndian.Uint16(block[10:]),
		Len:   n,
	}
	d := NewDecoder(block[fixedLen:])
	h.Config.Board = d.String(maxNameLen)
	h.Config.RAMBase = d.U64()
	h.Config.RAMSize = d.U64()
	pageSize := d.U32()
	h.VMClockNs = d.I64()
	count := d.U32()
	if d.Err() != nil {
		return nil, formatErr("%v", d.Err())
	}
	if pageSize != memory.PageSize {
		return nil, formatErr("page size %d, want %d", pageSize, memory.PageSize)
	}
	if h.Config.RAMSize%memory.PageSize != 0 || h.Config.RAMSize > memory.MaxSize {
		return nil, formatErr("RAM size %d invalid", h.Config.RAMSize)
	}
	if count > maxSections {
		return nil, formatErr("%d sections exceed the limit of %d", count, maxSections)
	}
	seen := make(map[string]bool)
	for i := uint32(0); i < count; i++ {
		var s SectionData
		s.Name = d.String(maxNameLen)
		s.Version = d.U32()
		s.Flags = d.U32()
		s.Data = d.Blob(MaxHeaderLen)
		sum := d.U32()
		if d.Err() != nil {
			return nil, formatErr("section %d: %v", i, d.Err())
		}
		if crc32.Checksum(s.Data, castagnoli) != sum {
			return nil, formatErr("section %q checksum mismatch", s.Name)
		}
		if seen[s.Name] {
			return nil, formatErr("section %q appears twice", s.Name)
		}
		seen[s.Name] = true
		h.Sections = append(h.Sections, s)
	}
	if d.Remaining() != 0 {
		return nil, formatErr("%d unexpected bytes after the sections", d.Remaining())
	}
	h.RAMOffset = RAMOffsetFor(n)
	return h, nil
}

// ConfigMismatchError says how a saved configuration differs from the
// machine's.
type ConfigMismatchError struct{ Msg string }

func (e *ConfigMismatchError) Error() string {
	return "VM state does not match this machine: " + e.Msg
}

// Check compares a saved header against the machine's configuration and
// sections: same board and RAM, and every saved section known (or optional)
// and every machine section present in the stream.
func (h *Header) Check(cfg Config, sections []Section) error {
	mismatch := func(format string, args ...any) error {
		return &ConfigMismatchError{Msg: fmt.Sprintf(format, args...)}
	}
	if h.Config.Board != cfg.Board {
		return mismatch("saved on board %q, this machine is %q", h.Config.Board, cfg.Board)
	}
	if h.Config.RAMBase != cfg.RAMBase || h.Config.RAMSize != cfg.RAMSize {
		return mismatch("saved with %d MiB of RAM at %#x, this machine has %d MiB at %#x",
			h.Config.RAMSize>>20, h.Config.RAMBase, cfg.RAMSize>>20, cfg.RAMBase)
	}
	byName := make(map[string]Section, len(sections))
	for _, s := range sections {
		byName[s.SectionName()] = s
	}
	saved := make(map[string]bool, len(h.Sections))
	for _, sd := range h.Sections {
		saved[sd.Name] = true
		s, ok := byName[sd.Name]
		if !ok {
			if sd.Flags&SectionOptional != 0 {
				continue
			}
			return mismatch("saved device %q does not exist on this machine", sd.Name)
		}
		if sd.Version > s.SectionVersion() {
			return mismatch("device %q was saved at version %d, this snapvm reads up to %d", sd.Name, sd.Version, s.SectionVersion())
		}
	}
	for _, s := range sections {
		if !saved[s.SectionName()] {
			return mismatch("device %q of this machine is missing from the saved state", s.SectionName())
		}
	}
	return nil
}

// LoadSections applies every saved section to the matching machine section,
// in the machine's order. Check must have passed.
func (h *Header) LoadSections(sections []Section) error {
	data := make(map[string]SectionData, len(h.Sections))
	for _, sd := range h.Sections {
		data[sd.Name] = sd
	}
	for _, s := range sections {
		sd := data[s.SectionName()]
		d := NewDecoder(sd.Data)
		if err := s.LoadSection(d, sd.Version); err != nil {
			return fmt.Errorf("vmstate: loading %q: %w", sd.Name, err)
		}
		if d.Err() != nil {
			return fmt.Errorf("vmstate: loading %q: %w", sd.Name, d.Err())
		}
		if d.Remaining() != 0 {
			return fmt.Errorf("vmstate: loading %q: %d bytes left over", sd.Name, d.Remaining())
		}
	}
	return nil
}

// Progress receives the number of bytes written or read so far out of total.
type Progress func(done, total int64)

// Capture is a VM's state taken at one instant: the header block (every
// section saved) and a copy of every RAM page ever written. Taking it costs
// one memory copy, so the guest can run again while it is written out.
type Capture struct {
	header  []byte
	extents [][2]int64 // RAM byte ranges, in order
	copy    []byte     // the extents' bytes, packed; a private mapping
	ramSize uint64
}

// Staging is memory for a capture's RAM copy, mapped and faulted in while
// the guest still runs, so that the pause itself is only a memory copy.
type Staging struct{ buf []byte }

// PrepareStaging maps room for every page of ram and faults in as much as
// the guest has written so far (page faults are slow under a hypervisor).
func PrepareStaging(ram *memory.RAM) (*Staging, error) {
	pages := ram.WrittenPages()
	buf, err := unix.Mmap(-1, 0, int(ram.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, fmt.Errorf("vmstate: no memory to stage %d bytes of RAM: %w", ram.Size(), err)
	}
	_ = unix.Madvise(buf, unix.MADV_HUGEPAGE)
	n := min(int(pages*memory.PageSize)*9/8+1<<20, len(buf))
	if n > 0 && unix.Madvise(buf[:n], unix.MADV_POPULATE_WRITE) != nil {
		for i := 0; i < n; i += memory.PageSize {
			buf[i] = 0
		}
	}
	return &Staging{buf: buf}, nil
}

// Release unmaps staging memory that was not handed to a capture.
func (s *Staging) Release() {
	if s != nil && s.buf != nil {
		_ = unix.Munmap(s.buf)
		s.buf = nil
	}
}

// CaptureState saves every section and copies the written RAM. The VM must
// be paused. staging, if not nil, is used for the copy and belongs to the
// capture afterwards. Release the capture when done with it.
func CaptureState(cfg Config, vmClockNs int64, sections []Section, ram *memory.RAM, staging *Staging) (*Capture, error) {
	hdr, err := EncodeHeader(cfg, vmClockNs, sections)
	if err != nil {
		staging.Release()
		return nil, err
	}
	return capture(hdr, ram, staging, ram.WrittenBitmap())
}

// capture builds a Capture of header hdr and a copy of the given pages (one
// bit per page), into staging if it is large enough.
func capture(hdr []byte, ram *memory.RAM, staging *Staging, pages []uint64) (*Capture, error) {
	c := &Capture{header: hdr, extents: extentsOf(pages, ram.Pages()), ramSize: ram.Size()}
	var n int64
	for _, e := range c.extents {
		n += e[1] - e[0]
	}
	if staging != nil && int64(len(staging.buf)) >= n {
		c.copy, staging.buf = staging.buf, nil
	} else {
		staging.Release()
		if n > 0 {
			buf, err := unix.Mmap(-1, 0, int(n), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
			if err != nil {
				return nil, fmt.Errorf("vmstate: no memory to copy %d bytes of RAM: %w", n, err)
			}
			_ = unix.Madvise(buf, unix.MADV_HUGEPAGE)
			c.copy = buf
		}
	}
	if n > 0 {
		buf := c.copy
		// Copy in parallel: the copy is the whole of the guest's pause.
		offs := make([]int64, len(c.extents))
		var at int64
		for i, e := range c.extents {
			offs[i] = at
			at += e[1] - e[0]
		}
		idx := make([][2]int64, len(c.extents))
		for i := range idx {
			idx[i] = [2]int64{int64(i), int64(i) + 1}
		}
		_ = forEachExtent(idx, func(r [2]int64) error {
			e := c.extents[r[0]]
			copy(buf[offs[r[0]]:], ram.Data[e[0]:e[1]])
			return nil
		}, func(int64) {})
	}
	return c, nil
}

// Release frees the RAM copy.
func (c *Capture) Release() {
	if c.copy != nil {
		_ = unix.Munmap(c.copy)
		c.copy = nil
	}
}

// Size is the stream's length once written: what a snapshot records as its
// vm state size.
func (c *Capture) Size() int64 { return RAMOffsetFor(int64(len(c.header))) + int64(c.ramSize) }

// WriteTo writes the stream to st.
func (c *Capture) WriteTo(st Store, progress Progress) error {
	ramOff := RAMOffsetFor(int64(len(c.header)))
	total := int64(len(c.header)) + int64(len(c.copy))
	if err := st.WriteVMState(c.header, 0); err != nil {
		return fmt.Errorf("vmstate: writing the header: %w", err)
	}
	done := int64(len(c.header))
	if progress != nil {
		progress(done, total)
	}
	// Split long runs so several requests are in flight.
	type piece struct{ ram, buf, n int64 }
	var pieces []piece
	var at int64
	for _, e := range c.extents {
		for s := e[0]; s < e[1]; s += ExtentSize {
			n := min(ExtentSize, e[1]-s)
			pieces = append(pieces, piece{s, at, n})
			at += n
		}
	}
	// forEachExtent reports each item's length as its end minus start, so
	// an item is {index, index+bytes}.
	idx := make([][2]int64, len(pieces))
	for i, p := range pieces {
		idx[i] = [2]int64{int64(i), int64(i) + p.n}
	}
	err := forEachExtent(idx, func(r [2]int64) error {
		p := pieces[r[0]]
		return st.WriteVMState(c.copy[p.buf:p.buf+p.n], ramOff+p.ram)
	}, func(n int64) {
		done += n
		if progress != nil {
			progress(done, total)
		}
	})
	if err != nil {
		return fmt.Errorf("vmstate: writing RAM: %w", err)
	}
	return nil
}

// Save captures the state and writes it to st in one go. It returns the
// stream size.
func Save(st Store, cfg Config, vmClockNs int64, sections []Section, ram *memory.RAM, progress Progress) (int64, error) {
	c, err := CaptureState(cfg, vmClockNs, sections, ram, nil)
	if err != nil {
		return 0, err
	}
	defer c.Release()
	if err := c.WriteTo(st, progress); err != nil {
		return 0, err
	}
	return c.Size(), nil
}

// ReadHeader reads and decodes the header block of the stream in st.
func ReadHeader(st Store) (*Header, error) {
	prefix := make([]byte, fixedLen)
	if err := st.ReadVMState(prefix, 0); err != nil {
		return nil, fmt.Errorf("vmstate: reading the header: %w", err)
	}
	n, err := PeekHeaderLen(prefix)
	if err != nil {
		return nil, err
	}
	block := make([]byte, n)
	if err := st.ReadVMState(block, 0); err != nil {
		return nil, fmt.Errorf("vmstate: reading the header: %w", err)
	}
	return DecodeHeader(block)
}

// LoadRAM replaces guest RAM with the stream's: every allocated range of the
// RAM area is read straight into guest memory, and every other page the
// guest had written is cleared. Pages already resident stay mapped, so the
// load costs no page faults for them. Pages read are marked written.
func LoadRAM(st Store, h *Header, ram *memory.RAM, progress Progress) error {
	if h.Config.RAMSize != ram.Size() {
		return fmt.Errorf("vmstate: RAM size mismatch")
	}
	ranges, err := st.AllocatedRanges(h.RAMOffset, int64(ram.Size()))
	if err != nil {
		return fmt.Errorf("vmstate: mapping the RAM area: %w", err)
	}
	var extents [][2]int64
	var total int64
	loaded := make([]bool, ram.Pages())
	for _, r := range ranges {
		start, end := r[0]-h.RAMOffset, r[1]-h.RAMOffset
		if start < 0 || end > int64(ram.Size()) || start >= end || start%memory.PageSize != 0 || end%memory.PageSize != 0 {
			return formatErr("RAM range [%d, %d) outside the RAM area or not page aligned", r[0], r[1])
		}
		for s := start; s < end; s += ExtentSize {
			extents = append(extents, [2]int64{s, min(s+ExtentSize, end)})
		}
		for p := start / memory.PageSize; p < end/memory.PageSize; p++ {
			loaded[p] = true
		}
		total += end - start
	}
	for p := uint64(0); p < ram.Pages(); p++ {
		if !loaded[p] && ram.Written(p) {
			clear(ram.Data[p*memory.PageSize : (p+1)*memory.PageSize])
		}
	}
	ram.ResetBitmaps()
	var done int64
	err = forEachExtent(extents, func(e [2]int64) error {
		return st.ReadVMState(ram.Data[e[0]:e[1]], h.RAMOffset+e[0])
	}, func(n int64) {
		if progress != nil {
			done += n
			progress(done, total)
		}
	})
	if err != nil {
		return fmt.Errorf("vmstate: reading RAM: %w", err)
	}
	for p := range loaded {
		if loaded[p] {
			ram.SetWritten(uint64(p))
		}
	}
	return nil
}

// extentsOf coalesces runs of set bits (pages) into byte ranges of at most
// ExtentSize, so the store sees few large requests.
func extentsOf(bitmap []uint64, pages uint64) [][2]int64 {
	var out [][2]int64
	maxPages := uint64(ExtentSize / memory.PageSize)
	set := func(p uint64) bool { return bitmap[p/64]&(1<<(p%64)) != 0 }
	for p := uint64(0); p < pages; {
		if bitmap[p/64] == 0 && p%64 == 0 {
			p += 64
			continue
		}
		if !set(p) {
			p++
			continue
		}
		start := p
		for p < pages && set(p) && p-start < maxPages {
			p++
		}
		out = append(out, [2]int64{int64(start * memory.PageSize), int64(p * memory.PageSize)})
	}
	return out
}

// Pre-copy stops after precopyMaxPasses passes, or once at most
// precopyDonePages pages (8 MiB) are left to write while the guest is
// paused.
const (
	precopyMaxPasses = 8
	precopyDonePages = 2048
)

// PrecopyRAM writes the guest's RAM into the stream's RAM area (at
// RAMAlign, where a capture with a small header puts it) while the guest
// runs: first every written page, then, pass after pass, the pages dirtied
// during the previous pass, until few remain. It returns those remaining
// pages (one bit per page); the caller pauses the guest and passes them,
// with whatever the guest dirtied since, to FinishPrecopy. It fails without
// writing anything where the host cannot guarantee a consistent view of
// concurrent stores (no membarrier), and the caller copies everything while
// paused instead.
//
// The passes also stop when they no longer converge: when the next pass
// would have at least half the work of the one just made, the guest
// dirties pages about as fast as they are written, and more passes would
// only lengthen the save, not shorten the pause. The work of a pass counts
// its bytes and, for each write, as many bytes as a bridged gap may hold
// (see planExtents): a guest that dirties pages all over RAM makes every
// pass rewrite nearly all of it. The first pass also allocates the image's
// clusters and is slower per byte than the passes that overwrite them, so
// the second pass is skipped only when it would have at least three
// quarters of the first one's work.
func PrecopyRAM(st Store, ram *memory.RAM, progress func(bytes int64)) ([]uint64, error) {
	if err := memory.Barrier(); err != nil {
		return nil, err
	}
	ram.TakeDirty()
	if err := memory.Barrier(); err != nil {
		return nil, err
	}
	extents := planExtents(ram, ram.WrittenBitmap())
	for pass := 1; ; pass++ {
		if err := writeExtents(st, ram, extents, progress); err != nil {
			return nil, err
		}
		set := ram.TakeDirty()
		if err := memory.Barrier(); err != nil {
			return nil, err
		}
		next := planExtents(ram, set)
		w, wNext := passWork(extents), passWork(next)
		if countPages(set) <= precopyDonePages || pass >= precopyMaxPasses ||
			(pass == 1 && 4*wNext >= 3*w) || (pass > 1 && 2*wNext >= w) {
			return set, nil
		}
		extents = next
	}
}

// planExtents turns pages (one bit per page) into the extents writeExtents
// writes.
//
// Pages the guest dirties between passes are scattered, and each write has
// a fixed cost (a system call, the image's bookkeeping, the file system)
// many times that of copying a page: so a short gap between two runs, made
// of pages already in the stream (written before, not dirtied since), is
// written again with them as one extent. Rewriting such a page stores what
// the stream already holds; a page the guest changes meanwhile is dirty
// again and written later. Pages never written are not filled in, so they
// stay holes.
func planExtents(ram *memory.RAM, pages []uint64) [][2]int64 {
	return bridgeGaps(extentsOf(pages, ram.Pages()), ram.WrittenBitmap(), maxBridgePages)
}

// writeExtents writes extents of guest RAM (byte ranges) to their places
// in the RAM area at RAMAlign.
func writeExtents(st Store, ram *memory.RAM, extents [][2]int64, progress func(bytes int64)) error {
	err := forEachExtent(extents, func(e [2]int64) error {
		return st.WriteVMState(ram.Data[e[0]:e[1]], RAMAlign+e[0])
	}, func(n int64) {
		if progress != nil {
			progress(n)
		}
	})
	if err != nil {
		return fmt.Errorf("vmstate: writing RAM: %w", err)
	}
	return nil
}

// passWork is the cost of writing extents, in bytes: their length, plus
// for each write as much as maxBridgePages pages, which cost about as much.
func passWork(extents [][2]int64) int64 {
	var n int64
	for _, e := range extents {
		n += e[1] - e[0] + maxBridgePages*memory.PageSize
	}
	return n
}

// maxBridgePages is the longest gap between two extents that planExtents
// fills. On Linux a small buffered write into a file costs from a few to
// tens of microseconds (ext4 walks the whole large page-cache folio it
// lands in), a page copied within a large write well under one: rewriting
// up to 64 pages costs about as much as one more write.
const maxBridgePages = 64

// bridgeGaps joins neighbouring extents (byte ranges, in order) whose gap is
// at most maxGap pages, all of them set in written, as long as the joined
// extent stays within ExtentSize.
func bridgeGaps(extents [][2]int64, written []uint64, maxGap int64) [][2]int64 {
	if len(extents) < 2 {
		return extents
	}
	out := extents[:1]
	for _, e := range extents[1:] {
		last := &out[len(out)-1]
		gap := (e[0] - last[1]) / memory.PageSize
		if gap <= maxGap && e[1]-last[0] <= ExtentSize && allSet(written, uint64(last[1]/memory.PageSize), uint64(e[0]/memory.PageSize)) {
			last[1] = e[1]
			continue
		}
		out = append(out, e)
	}
	return out
}

// allSet reports whether bits [from, to) of bitmap are all set.
func allSet(bitmap []uint64, from, to uint64) bool {
	for p := from; p < to; p++ {
		if bitmap[p/64]&(1<<(p%64)) == 0 {
			return false
		}
	}
	return true
}

// FinishPrecopy completes a save begun by PrecopyRAM. The VM must be
// paused: it saves every section and writes pages, the pages dirtied since
// the last pass (PrecopyRAM's result merged with the dirty bitmap), straight
// from guest RAM into the stream, where earlier passes already allocated
// most of them; the guest may run again as soon as it returns. The returned
// capture holds the header, which WriteTo then writes.
//
// Copying the pages to memory set aside instead, to write them after the
// guest resumes, makes the pause no shorter where fresh memory is slow to
// fault in (under a hypervisor), and the save longer.
//
// When the header outgrows the precopied layout (a RAM area further than
// RAMAlign), every page is copied into the capture instead.
func FinishPrecopy(st Store, cfg Config, vmClockNs int64, sections []Section, ram *memory.RAM, pages []uint64, progress func(bytes int64)) (*Capture, error) {
	hdr, err := EncodeHeader(cfg, vmClockNs, sections)
	if err != nil {
		return nil, err
	}
	if RAMOffsetFor(int64(len(hdr))) != RAMAlign {
		// The RAM area starts further than the passes wrote it: copy
		// every page, written or not, so that no byte of theirs is left
		// in what would otherwise be a hole of the new area.
		all := make([]uint64, (ram.Pages()+63)/64)
		for i := range all {
			all[i] = ^uint64(0)
		}
		return capture(hdr, ram, nil, all)
	}
	if err := writeExtents(st, ram, planExtents(ram, pages), progress); err != nil {
		return nil, err
	}
	return &Capture{header: hdr, ramSize: ram.Size()}, nil
}

// countPages counts the pages set in a bitmap (one bit per page).
func countPages(bitmap []uint64) uint64 {
	var n int
	for _, w := range bitmap {
		n += bits.OnesCount64(w)
	}
	return uint64(n)
}

// MergePages ORs b into a (one bit per page each) and returns a.
func MergePages(a, b []uint64) []uint64 {
	for i := range a {
		a[i] |= b[i]
	}
	return a
}

// forEachExtent runs fn over the extents with a few workers, so storage
// latency overlaps; done is called (serially) with each extent's length.
func forEachExtent(extents [][2]int64, fn func([2]int64) error, done func(int64)) error {
	workers := min(4, runtime.GOMAXPROCS(0)+1)
	if len(extents) < 2 {
		workers = 1
	}
	var (
		mu       sync.Mutex
		firstErr error
		next     int
		wg       sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				mu.Lock()
				if firstErr != nil || next >= len(extents) {
					mu.Unlock()
					return
				}
				e := extents[next]
				next++
				mu.Unlock()
				err := fn(e)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if err == nil {
					done(e[1] - e[0])
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return firstErr
}
