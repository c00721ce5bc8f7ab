package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sync"
)

// Backing is the read side of a backing image.
type Backing interface {
	ReadAt(p []byte, off int64) (int, error)
	Size() int64
}

// OpenOptions controls Open.
type OpenOptions struct {
	ReadOnly  bool
	NoBacking bool    // do not open the backing file named in the header (caller sets Backing or none)
	Backing   Backing // explicit backing; nil and !NoBacking = open the named file
}

// maxBackingDepth bounds backing chains opened by name (a loop would otherwise recurse forever).
const maxBackingDepth = 32

// storage is the image file: *os.File, or a write recorder in the crash-consistency tests.
type storage interface {
	io.ReaderAt
	io.WriterAt
	Sync() error
	Close() error
	Stat() (os.FileInfo, error)
}

// sizedFile tracks the size of the image file as this process extends it, so the write
// path knows which clusters have never been written (they read as zeros).
type sizedFile struct {
	storage
	size int64
}

func (f *sizedFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.storage.WriteAt(p, off)
	if end := off + int64(n); end > f.size {
		f.size = end
	}
	return n, err
}

// extend makes the file size at least size, the new bytes reading as zeros. A file is
// extended by its size alone when sparse is set and it can be (no page-cache page is
// dirtied, which a direct write over it would first have to write back); otherwise by
// writing its last byte.
func (f *sizedFile) extend(size int64, sparse bool) error {
	if t, ok := f.storage.(*os.File); ok && sparse {
		if err := t.Truncate(size); err != nil {
			return err
		}
		f.size = size
		return nil
	}
	_, err := f.WriteAt(zeroByte[:], size-1)
	return err
}

// Image is an open qcow2 image. It is safe for concurrent use: every method takes mu.
type Image struct {
	mu       sync.Mutex
	f        *sizedFile
	path     string
	readOnly bool
	closed   bool

	hdr         Header
	clusterBits uint
	cs          int64 // cluster size
	l2Bits      uint  // log2(entries per L2 table)
	refBits     uint  // bits per refcount entry
	rbBits      uint  // log2(entries per refcount block)

	l1                   []uint64 // active L1, host byte order, flags included
	l1Off                int64
	l1DirtyLo, l1DirtyHi int // dirty entry range [lo, hi); lo >= hi means clean

	reftable    []uint64
	reftableOff int64

	l2Cache *tableCache
	rbCache *tableCache
	// pendingFree holds refcount decrements that may reach the disk only after the metadata
	// that dropped the references has been written and synced (see flushMeta).
	pendingFree []hostRange
	freeHint    int64 // no free cluster below this index
	refSynced   bool  // false after a refcount block write that has not been fsynced yet

	snaps []snapshot

	// vmCopies counts WriteVMState and ReadVMState calls copying data outside mu; vmIdle
	// (on mu) is signalled when it drops to zero (see vmstate_io.go).
	vmCopies int
	vmIdle   *sync.Cond
	// direct is the image file opened with O_DIRECT for large vm-state copies (nil: none);
	// directTried says whether opening it was attempted.
	direct      *os.File
	directTried bool

	backing       Backing
	backingCloser io.Closer

	// Scratch buffers reused by the data paths (guarded by mu) so requests do not allocate.
	scratchA, scratchB []byte
	zbuf               []byte // decompressed cluster cache
	zbufOff            int64  // host offset+1 of the compressed cluster in zbuf (0 = empty)
	decomp             decompressor
}

// hostRange is a run of bytes in the image file whose clusters lose one reference.
type hostRange struct{ off, n int64 }

// Open opens an existing image.
func Open(path string, o OpenOptions) (*Image, error) {
	return openDepth(path, o, 0)
}

func openDepth(path string, o OpenOptions, depth int) (*Image, error) {
	flag := os.O_RDWR
	if o.ReadOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	img, err := openFile(f, path, o.ReadOnly)
	if err != nil {
		f.Close()
		return nil, err
	}
	switch {
	case o.Backing != nil:
		img.backing = o.Backing
	case !o.NoBacking && img.hdr.BackingFile != "":
		if err := img.openBacking(depth); err != nil {
			f.Close()
			return nil, err
		}
	}
	return img, nil
}

func openFile(f storage, path string, readOnly bool) (*Image, error) {
	return openFileMode(f, path, readOnly, false)
}

// openFileMode opens f; forCheck accepts dirty and corrupt images read-write (for repair).
func openFileMode(f storage, path string, readOnly, forCheck bool) (*Image, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var probe [hdrOffClusterBits + 4]byte
	if n, _ := f.ReadAt(probe[:], 0); n < len(probe) {
		if n >= 4 && binary.BigEndian.Uint32(probe[:]) == qcowMagic {
			return nil, formatErr(0, "qcow2 header too short")
		}
		return nil, ErrNotQcow2
	}
	if binary.BigEndian.Uint32(probe[:]) != qcowMagic {
		return nil, ErrNotQcow2
	}
	cb := binary.BigEndian.Uint32(probe[hdrOffClusterBits:])
	if cb < minClusterBits || cb > maxClusterBits {
		return nil, unsupported("Unsupported cluster size: 2^%d", cb)
	}
	first := int64(1) << cb
	if first > st.Size() {
		first = st.Size()
	}
	buf := make([]byte, first)
	if _, err := f.ReadAt(buf, 0); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	h, err := parseHeader(buf, readOnly || forCheck)
	if err != nil {
		return nil, err
	}
	img := &Image{f: &sizedFile{storage: f, size: st.Size()}, path: path, readOnly: readOnly, hdr: *h}
	img.clusterBits = uint(h.ClusterBits)
	img.cs = int64(1) << img.clusterBits
	img.l2Bits = img.clusterBits - 3
	img.refBits = 1 << h.RefcountOrder
	img.rbBits = img.clusterBits + 3 - uint(h.RefcountOrder)
	img.l1Off = int64(h.L1TableOffset)
	img.reftableOff = int64(h.RefcountTableOffset)
	fileSize := st.Size()
	if img.l1, err = readTable(f, img.l1Off, int64(h.L1Size), fileSize, "Active L1 table"); err != nil {
		return nil, err
	}
	n := int64(h.RefcountTableClusters) * img.cs / 8
	if img.reftable, err = readTable(f, img.reftableOff, n, fileSize, "Reference count table"); err != nil {
		return nil, err
	}
	if !readOnly {
		// A block named twice would make two cluster ranges share refcounts (and the
		// free-cluster search unbounded); allocation must not run on such an image.
		seen := make(map[uint64]bool)
		for i, e := range img.reftable {
			if off := e &^ reftableReservedMask; off != 0 {
				if seen[off] {
					return nil, formatErr(img.reftableOff+int64(i)*8, "refcount block %d is also used by another refcount table entry", i)
				}
				seen[off] = true
			}
		}
	}
	if err := img.readSnapshots(fileSize); err != nil {
		return nil, err
	}
	img.l2Cache = newTableCache(int(clamp(32<<20/img.cs, 8, 16384)))
	img.rbCache = newTableCache(int(clamp(8<<20/img.cs, 4, 4096)))
	img.scratchA = make([]byte, img.cs)
	img.scratchB = make([]byte, img.cs)
	img.refSynced = true
	img.l1DirtyLo, img.l1DirtyHi = math.MaxInt, 0
	if !readOnly && !forCheck && h.AutoclearFeatures != 0 {
		// Autoclear features name structures this package does not maintain (bitmaps):
		// a writer that does not understand them must clear the bits.
		var b [8]byte
		if err := img.writeHeaderField(hdrOffAutoclear, b[:]); err != nil {
			return nil, err
		}
		img.hdr.AutoclearFeatures = 0
	}
	return img, nil
}

func clamp(v, lo, hi int64) int64 { return max(lo, min(v, hi)) }

// readTable reads n big-endian u64 entries at off. The caller has validated n against the
// format's cap; this also refuses tables that extend beyond the end of the file.
func readTable(f io.ReaderAt, off, n, fileSize int64, name string) ([]uint64, error) {
	if n == 0 {
		return nil, nil
	}
	if off < 0 || off+n*8 > fileSize {
		return nil, formatErr(off, "%s extends beyond end of file", name)
	}
	raw := make([]byte, n*8)
	if _, err := f.ReadAt(raw, off); err != nil {
		return nil, fmt.Errorf("qcow2: reading %s: %w", name, err)
	}
	t := make([]uint64, n)
	for i := range t {
		t[i] = binary.BigEndian.Uint64(raw[i*8:])
	}
	return t, nil
}

// openBacking opens the backing file named in the header, relative to the image's directory.
func (img *Image) openBacking(depth int) error {
	if depth >= maxBackingDepth {
		return fmt.Errorf("qcow2: backing chain deeper than %d (loop?)", maxBackingDepth)
	}
	name := img.hdr.BackingFile
	if !filepath.IsAbs(name) {
		name = filepath.Join(filepath.Dir(img.path), name)
	}
	format := img.hdr.BackingFormat
	if format == "" {
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("qcow2: could not open backing file: %w", err)
		}
		format = "raw"
		if Probe(f) {
			format = "qcow2"
		}
		f.Close()
	}
	switch format {
	case "qcow2":
		b, err := openDepth(name, OpenOptions{ReadOnly: true}, depth+1)
		if err != nil {
			return fmt.Errorf("qcow2: could not open backing file %s: %w", name, err)
		}
		img.backing, img.backingCloser = b, b
	case "raw", "file":
		f, err := os.Open(name)
		if err != nil {
			return fmt.Errorf("qcow2: could not open backing file: %w", err)
		}
		st, err := f.Stat()
		if err != nil {
			f.Close()
			return err
		}
		img.backing, img.backingCloser = &rawBacking{f: f, size: st.Size()}, f
	default:
		return unsupported("backing format %q", format)
	}
	return nil
}

type rawBacking struct {
	f    *os.File
	size int64
}

func (r *rawBacking) ReadAt(p []byte, off int64) (int, error) { return r.f.ReadAt(p, off) }
func (r *rawBacking) Size() int64                             { return r.size }

// Size returns the virtual disk size in bytes.
func (img *Image) Size() int64 {
	img.mu.Lock()
	defer img.mu.Unlock()
	return int64(img.hdr.Size)
}

// ClusterSize returns the cluster size in bytes.
func (img *Image) ClusterSize() int { return int(img.cs) }

// Header returns a copy of the decoded header as currently on disk.
func (img *Image) Header() Header {
	img.mu.Lock()
	defer img.mu.Unlock()
	h := img.hdr
	h.Extensions = append([]HeaderExtension(nil), h.Extensions...)
	h.L1Size = uint32(len(img.l1))
	h.L1TableOffset = uint64(img.l1Off)
	h.NbSnapshots = uint32(len(img.snaps))
	return h
}

// BackingFile returns the backing file name as stored in the header.
func (img *Image) BackingFile() string { return img.hdr.BackingFile }

// BackingFormat returns the backing format from the header extension ("" if absent).
func (img *Image) BackingFormat() string { return img.hdr.BackingFormat }

// SetBacking replaces the backing image used for unallocated clusters (nil: read zeros).
func (img *Image) SetBacking(b Backing) {
	img.mu.Lock()
	defer img.mu.Unlock()
	img.backing = b
}

// Flush makes all data and metadata written so far durable.
func (img *Image) Flush() error {
	img.mu.Lock()
	defer img.mu.Unlock()
	if err := img.usable(); err != nil {
		return err
	}
	if img.readOnly {
		return nil
	}
	if err := img.flushMeta(); err != nil {
		return err
	}
	return img.f.Sync()
}

// Close flushes and closes the image (and a backing file it opened itself).
func (img *Image) Close() error {
	img.mu.Lock()
	defer img.mu.Unlock()
	img.waitVMCopies()
	if img.closed {
		return nil
	}
	var err error
	if !img.readOnly {
		err = img.flushMeta()
		if err == nil {
			err = img.f.Sync()
		}
	}
	img.closed = true
	if img.direct != nil {
		err = errors.Join(err, img.direct.Close())
	}
	err = errors.Join(err, img.f.Close())
	if img.backingCloser != nil {
		err = errors.Join(err, img.backingCloser.Close())
	}
	return err
}

func (img *Image) usable() error {
	if img.closed {
		return errors.New("qcow2: image is closed")
	}
	return nil
}

func (img *Image) writable() error {
	if err := img.usable(); err != nil {
		return err
	}
	if img.readOnly {
		return errors.New("qcow2: image is opened read-only")
	}
	return nil
}

// writeHeaderField writes b at header offset off (small in-place header updates: QEMU
// relies on these being atomic sector writes too).
func (img *Image) writeHeaderField(off int64, b []byte) error {
	if _, err := img.f.WriteAt(b, off); err != nil {
		return err
	}
	return img.f.Sync()
}

// Resize grows the virtual disk to newSize bytes (rounded up to a multiple of 512, as QEMU
// counts sizes in sectors). Shrinking is not supported.
func (img *Image) Resize(newSize int64) error {
	if newSize < 0 || newSize > math.MaxInt64-511 {
		return fmt.Errorf("qcow2: invalid size %d", newSize)
	}
	newSize = (newSize + 511) &^ 511
	img.mu.Lock()
	defer img.mu.Unlock()
	img.waitVMCopies()
	if err := img.writable(); err != nil {
		return err
	}
	if newSize < int64(img.hdr.Size) {
		return unsupported("shrinking an image")
	}
	if newSize == int64(img.hdr.Size) {
		return nil
	}
	return img.setSize(uint64(newSize))
}

// setSize updates the virtual size, growing the active L1 first if it must cover more.
func (img *Image) setSize(size uint64) error {
	h := img.hdr
	h.Size = size
	need := h.l1VMStateIndex()
	if need > maxL1Size/8 {
		return unsupported("image size too large for the L1 table")
	}
	if int(need) > len(img.l1) {
		if err := img.growL1(int(need), true); err != nil {
			return err
		}
	}
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], size)
	if err := img.writeHeaderField(hdrOffSize, b[:]); err != nil {
		return err
	}
	img.hdr.Size = size
	return nil
}
