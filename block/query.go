package block

import (
	"math"

	"github.com/snapvm/snapvm/qcow2"
)

// The structs below are QEMU 7.2's QAPI types for query-block,
// query-named-block-nodes and qemu-img info, with their member names as
// json tags, in schema order. Optional members are omitempty pointers or
// slices.

// BlockInfo is one entry of query-block.
type BlockInfo struct {
	Device    string           `json:"device"`
	Qdev      string           `json:"qdev,omitempty"`
	Type      string           `json:"type"`
	Removable bool             `json:"removable"`
	Locked    bool             `json:"locked"`
	Inserted  *BlockDeviceInfo `json:"inserted,omitempty"`
	TrayOpen  *bool            `json:"tray_open,omitempty"`
	IOStatus  string           `json:"io-status,omitempty"`
}

// BlockDeviceInfo describes a node (query-named-block-nodes, and
// query-block's "inserted").
type BlockDeviceInfo struct {
	File             string     `json:"file"`
	NodeName         string     `json:"node-name,omitempty"`
	RO               bool       `json:"ro"`
	Drv              string     `json:"drv"`
	BackingFile      string     `json:"backing_file,omitempty"`
	BackingFileDepth int        `json:"backing_file_depth"`
	Encrypted        bool       `json:"encrypted"`
	DetectZeroes     string     `json:"detect_zeroes"`
	Bps              int64      `json:"bps"`
	BpsRd            int64      `json:"bps_rd"`
	BpsWr            int64      `json:"bps_wr"`
	Iops             int64      `json:"iops"`
	IopsRd           int64      `json:"iops_rd"`
	IopsWr           int64      `json:"iops_wr"`
	Image            ImageInfo  `json:"image"`
	Cache            BlockCache `json:"cache"`
	WriteThreshold   int64      `json:"write_threshold"`
}

// BlockCache is BlockdevCacheInfo.
type BlockCache struct {
	Writeback bool `json:"writeback"`
	Direct    bool `json:"direct"`
	NoFlush   bool `json:"no-flush"`
}

// ImageInfo describes an image (qemu-img info --output=json uses it too).
type ImageInfo struct {
	Filename              string             `json:"filename"`
	Format                string             `json:"format"`
	DirtyFlag             *bool              `json:"dirty-flag,omitempty"`
	ActualSize            *int64             `json:"actual-size,omitempty"`
	VirtualSize           int64              `json:"virtual-size"`
	ClusterSize           int64              `json:"cluster-size,omitempty"`
	Encrypted             *bool              `json:"encrypted,omitempty"`
	Compressed            *bool              `json:"compressed,omitempty"`
	BackingFilename       string             `json:"backing-filename,omitempty"`
	FullBackingFilename   string             `json:"full-backing-filename,omitempty"`
	BackingFilenameFormat string             `json:"backing-filename-format,omitempty"`
	Snapshots             []SnapshotInfo     `json:"snapshots,omitempty"`
	BackingImage          *ImageInfo         `json:"backing-image,omitempty"`
	FormatSpecific        *ImageInfoSpecific `json:"format-specific,omitempty"`
}

// SnapshotInfo is QAPI's SnapshotInfo.
type SnapshotInfo struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	VMStateSize uint64 `json:"vm-state-size"`
	DateSec     int64  `json:"date-sec"`
	DateNsec    int64  `json:"date-nsec"`
	VMClockSec  int64  `json:"vm-clock-sec"`
	VMClockNsec int64  `json:"vm-clock-nsec"`
	ICount      *int64 `json:"icount,omitempty"`
}

// ImageInfoSpecific is the format-specific union; only qcow2 is produced.
type ImageInfoSpecific struct {
	Type string                 `json:"type"`
	Data ImageInfoSpecificQcow2 `json:"data"`
}

// ImageInfoSpecificQcow2 is QAPI's ImageInfoSpecificQCow2 (the members
// QEMU reports for images without encryption or bitmaps).
type ImageInfoSpecificQcow2 struct {
	Compat          string `json:"compat"`
	CompressionType string `json:"compression-type"`
	LazyRefcounts   *bool  `json:"lazy-refcounts,omitempty"`
	RefcountBits    int    `json:"refcount-bits"`
	Corrupt         *bool  `json:"corrupt,omitempty"`
	ExtendedL2      *bool  `json:"extended-l2,omitempty"`
}

// QueryBlock returns query-block's answer: one entry per backend.
func (g *Graph) QueryBlock() []BlockInfo {
	out := []BlockInfo{}
	for _, b := range g.Backends() {
		info := BlockInfo{Device: b.name, Qdev: b.Qdev(), Type: "unknown"}
		if info.Qdev != "" {
			info.IOStatus = "ok" // devices with error policies report it
		}
		d := b.Root().DeviceInfo()
		d.Cache.Writeback = b.WriteCache()
		info.Inserted = &d
		out = append(out, info)
	}
	return out
}

// QueryNamedBlockNodes returns query-named-block-nodes' answer: every node,
// newest first as QEMU lists them.
func (g *Graph) QueryNamedBlockNodes() []BlockDeviceInfo {
	return g.QueryNamedBlockNodesFlat(false)
}

// QueryNamedBlockNodesFlat is query-named-block-nodes with its "flat"
// argument: when set, images do not nest their backing image's description.
func (g *Graph) QueryNamedBlockNodesFlat(flat bool) []BlockDeviceInfo {
	nodes := g.Nodes()
	out := make([]BlockDeviceInfo, 0, len(nodes))
	for i := len(nodes) - 1; i >= 0; i-- {
		d := nodes[i].DeviceInfo()
		if flat {
			d.Image.BackingImage = nil
		}
		out = append(out, d)
	}
	return out
}

// DeviceInfo describes the node as QMP's BlockDeviceInfo.
func (n *Node) DeviceInfo() BlockDeviceInfo {
	d := BlockDeviceInfo{
		File:             n.filename,
		NodeName:         n.name,
		RO:               n.ReadOnly(),
		Drv:              n.drvName,
		BackingFileDepth: n.depth(),
		DetectZeroes:     "off",
		Image:            n.ImageInfo(true),
		Cache:            BlockCache{Writeback: true},
	}
	if n.opts.DetectZeroes != "" {
		d.DetectZeroes = n.opts.DetectZeroes
	}
	if n.opts.CacheDirect != nil {
		d.Cache.Direct = *n.opts.CacheDirect
	}
	if n.opts.CacheNoFlush != nil {
		d.Cache.NoFlush = *n.opts.CacheNoFlush
	}
	if n.img != nil {
		d.BackingFile = n.img.BackingFile()
	}
	return d
}

func ptr[T any](v T) *T { return &v }

// ImageInfo describes the node's image; withBacking nests the backing
// node's description as "backing-image" (query commands do, qemu-img info
// does not).
func (n *Node) ImageInfo(withBacking bool) ImageInfo {
	info := ImageInfo{
		Filename:    n.filename,
		Format:      n.drvName,
		DirtyFlag:   ptr(false),
		VirtualSize: n.Size(),
	}
	proto := n
	if n.file != nil {
		proto = n.file
	}
	if fd, ok := proto.drv.(*fileDriver); ok {
		info.ActualSize = ptr(fd.actualSize())
	}
	if n.img == nil {
		return info
	}
	h := n.img.Header()
	info.ClusterSize = int64(n.img.ClusterSize())
	if bf := n.img.BackingFile(); bf != "" {
		info.BackingFilename = bf
		info.FullBackingFilename = BackingPath(n.filename, bf)
		info.BackingFilenameFormat = n.img.BackingFormat()
	}
	info.Snapshots = SnapshotInfos(n.img.Snapshots())
	info.FormatSpecific = Qcow2Specific(h)
	if b := n.Backing(); withBacking && b != nil {
		bi := b.ImageInfo(true)
		info.BackingImage = &bi
	}
	return info
}

// Qcow2Specific renders the format-specific part of a qcow2 image's
// ImageInfo from its header (version 2 images have fewer members).
func Qcow2Specific(h qcow2.Header) *ImageInfoSpecific {
	s := &ImageInfoSpecific{Type: "qcow2"}
	s.Data.RefcountBits = 1 << h.RefcountOrder
	if h.Version < 3 {
		s.Data.Compat = "0.10"
		s.Data.CompressionType = "zlib"
		return s
	}
	s.Data.Compat = "1.1"
	s.Data.CompressionType = "zlib"
	if h.CompressionType == 1 {
		s.Data.CompressionType = "zstd"
	}
	s.Data.LazyRefcounts = ptr(h.CompatibleFeatures&1 != 0)
	s.Data.Corrupt = ptr(h.IncompatibleFeatures&2 != 0)
	s.Data.ExtendedL2 = ptr(h.IncompatibleFeatures&16 != 0)
	return s
}

// SnapshotInfos converts qcow2 snapshot entries to QAPI's SnapshotInfo;
// nil for none (the member is then absent).
func SnapshotInfos(list []qcow2.SnapshotInfo) []SnapshotInfo {
	if len(list) == 0 {
		return nil
	}
	out := make([]SnapshotInfo, len(list))
	for i, s := range list {
		out[i] = SnapshotInfo{
			ID:          s.ID,
			Name:        s.Name,
			VMStateSize: s.VMStateSize,
			DateSec:     int64(s.DateSec),
			DateNsec:    int64(s.DateNsec),
			VMClockSec:  int64(s.VMClockNsec / 1e9),
			VMClockNsec: int64(s.VMClockNsec % 1e9),
		}
		if s.ICount != math.MaxUint64 {
			out[i].ICount = ptr(int64(s.ICount))
		}
	}
	return out
}
