package qcow2

import "errors"

var errNotImplemented = errors.New("qcow2: not implemented yet")

// CreateOptions describes a new image, like the -o options of qemu-img create.
type CreateOptions struct {
	Size          int64  // virtual size, bytes
	ClusterSize   int    // 0 = 65536; 512..2 MiB, a power of two
	Compat        string // "" or "1.1" = version 3, "0.10" = version 2
	BackingFile   string
	BackingFormat string // "qcow2", "raw", "" (unknown)
	RefcountBits  int    // 0 = 16
}

// Create writes a fresh image like qemu-img create.
func Create(path string, o CreateOptions) error { return errNotImplemented }

// Backing is the read side of a backing image.
type Backing interface {
	ReadAt(p []byte, off int64) (int, error)
	Size() int64
}

// OpenOptions controls Open.
type OpenOptions struct {
	ReadOnly  bool
	NoBacking bool    // do not open the backing file named in the header
	Backing   Backing // explicit backing; nil and !NoBacking = open the named file
}

// Header is a decoded copy of the image header.
type Header struct {
	Version               uint32
	BackingFileOffset     uint64
	BackingFileSize       uint32
	ClusterBits           uint32
	Size                  uint64
	CryptMethod           uint32
	L1Size                uint32
	L1TableOffset         uint64
	RefcountTableOffset   uint64
	RefcountTableClusters uint32
	NbSnapshots           uint32
	SnapshotsOffset       uint64
	IncompatibleFeatures  uint64
	CompatibleFeatures    uint64
	AutoclearFeatures     uint64
	RefcountOrder         uint32
	HeaderLength          uint32
	CompressionType       uint8
	Extensions            []HeaderExtension
}

// HeaderExtension is one header extension as stored (type and raw data).
type HeaderExtension struct {
	Type uint32
	Data []byte
}

// Image is an open qcow2 image. It is safe for concurrent use.
type Image struct{}

// Open opens an existing image.
func Open(path string, o OpenOptions) (*Image, error) { return nil, errNotImplemented }

func (*Image) Size() int64                                       { return 0 }
func (*Image) ClusterSize() int                                  { return 0 }
func (*Image) Header() Header                                    { return Header{} }
func (*Image) BackingFile() string                               { return "" }
func (*Image) BackingFormat() string                             { return "" }
func (*Image) SetBacking(b Backing)                              {}
func (*Image) ReadAt(p []byte, off int64) (int, error)           { return 0, errNotImplemented }
func (*Image) WriteAt(p []byte, off int64) (int, error)          { return 0, errNotImplemented }
func (*Image) WriteZeroes(off, n int64, unmap bool) error        { return errNotImplemented }
func (*Image) Discard(off, n int64) error                        { return errNotImplemented }
func (*Image) Flush() error                                      { return errNotImplemented }
func (*Image) Close() error                                      { return errNotImplemented }
func (*Image) Resize(newSize int64) error                        { return errNotImplemented }
func (*Image) Map(off, n int64) ([]Extent, error)                { return nil, errNotImplemented }
func (*Image) VMStateOffset() int64                              { return 0 }
func (*Image) WriteVMState(p []byte, pos int64) error            { return errNotImplemented }
func (*Image) ReadVMState(p []byte, pos int64) error             { return errNotImplemented }
func (*Image) MapVMState(pos, n int64) ([]Extent, error)         { return nil, errNotImplemented }
func (*Image) Snapshots() []SnapshotInfo                         { return nil }
func (*Image) FindSnapshot(idOrName string) (SnapshotInfo, bool) { return SnapshotInfo{}, false }
func (*Image) CreateSnapshot(s SnapshotInfo) (SnapshotInfo, error) {
	return SnapshotInfo{}, errNotImplemented
}
func (*Image) ReplaceSnapshot(oldID string, s SnapshotInfo) (SnapshotInfo, error) {
	return SnapshotInfo{}, errNotImplemented
}
func (*Image) ApplySnapshot(idOrName string) error  { return errNotImplemented }
func (*Image) DeleteSnapshot(id, name string) error { return errNotImplemented }

// Extent describes the allocation status of a guest range.
type Extent struct {
	Off, Len  int64
	Allocated bool // data lives in this image (not in the backing chain)
	Zero      bool // reads as zeros
}

// SnapshotInfo is one internal snapshot entry.
type SnapshotInfo struct {
	ID, Name    string
	VMStateSize uint64
	DateSec     uint32
	DateNsec    uint32
	VMClockNsec uint64
	ICount      uint64 // math.MaxUint64 = none (QEMU's -1)
	DiskSize    uint64 // set by CreateSnapshot to the current size
}

// RepairMode selects what Check fixes.
type RepairMode int

const (
	RepairNone RepairMode = iota
	RepairLeaks
	RepairAll
)

// CheckResult mirrors qemu-img check --output=json.
type CheckResult struct {
	Filename           string   `json:"filename"`
	Format             string   `json:"format"`
	CheckErrors        int      `json:"check-errors"`
	Corruptions        int      `json:"corruptions,omitempty"`
	Leaks              int      `json:"leaks,omitempty"`
	CorruptionsFixed   int      `json:"corruptions-fixed,omitempty"`
	LeaksFixed         int      `json:"leaks-fixed,omitempty"`
	ImageEndOffset     int64    `json:"image-end-offset,omitempty"`
	TotalClusters      int64    `json:"total-clusters,omitempty"`
	AllocatedClusters  int64    `json:"allocated-clusters,omitempty"`
	FragmentedClusters int64    `json:"fragmented-clusters,omitempty"`
	CompressedClusters int64    `json:"compressed-clusters,omitempty"`
	Messages           []string `json:"-"`
}

// Check verifies the image at path like qemu-img check, optionally repairing it.
func Check(path string, repair RepairMode) (*CheckResult, error) { return nil, errNotImplemented }
