package qcow2

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
)

// Header is a decoded copy of the image header (docs/interop/qcow2.txt "== Header ==").
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
	// Extensions in file order, unknown ones included (they are never dropped on rewrite).
	Extensions []HeaderExtension
	// BackingFile and BackingFormat are decoded from the name area and the 0xe2792aca extension.
	BackingFile   string
	BackingFormat string
}

// HeaderExtension is one header extension as stored.
type HeaderExtension struct {
	Type uint32
	Data []byte
}

func (h *Header) clusterSize() int64 { return int64(1) << h.ClusterBits }

// l2Bits is log2 of the number of entries in an L2 table (8-byte entries).
func (h *Header) l2Bits() uint32 { return h.ClusterBits - 3 }

// l1VMStateIndex is the first L1 index lying entirely beyond the virtual disk.
func (h *Header) l1VMStateIndex() uint64 {
	shift := h.ClusterBits + h.l2Bits()
	return (h.Size + (uint64(1) << shift) - 1) >> shift
}

// parseHeader decodes and validates the header found in the first cluster of an image.
// buf holds the file's first bytes (up to one cluster; shorter if the file is shorter).
// It checks everything that can be checked without reading other clusters.
func parseHeader(buf []byte, readOnly bool) (*Header, error) {
	be := binary.BigEndian
	if len(buf) < 4 || be.Uint32(buf) != qcowMagic {
		return nil, ErrNotQcow2
	}
	if len(buf) < headerV2Len {
		return nil, formatErr(0, "qcow2 header too short")
	}
	h := &Header{
		Version:               be.Uint32(buf[hdrOffVersion:]),
		BackingFileOffset:     be.Uint64(buf[hdrOffBackingOffset:]),
		BackingFileSize:       be.Uint32(buf[hdrOffBackingSize:]),
		ClusterBits:           be.Uint32(buf[hdrOffClusterBits:]),
		Size:                  be.Uint64(buf[hdrOffSize:]),
		CryptMethod:           be.Uint32(buf[hdrOffCryptMethod:]),
		L1Size:                be.Uint32(buf[hdrOffL1Size:]),
		L1TableOffset:         be.Uint64(buf[hdrOffL1TableOffset:]),
		RefcountTableOffset:   be.Uint64(buf[hdrOffRefTableOffset:]),
		RefcountTableClusters: be.Uint32(buf[hdrOffRefTableCluster:]),
		NbSnapshots:           be.Uint32(buf[hdrOffNbSnapshots:]),
		SnapshotsOffset:       be.Uint64(buf[hdrOffSnapshotsOffset:]),
	}
	if h.Version != 2 && h.Version != 3 {
		return nil, unsupported("Unsupported qcow2 version %d", h.Version)
	}
	if h.ClusterBits < minClusterBits || h.ClusterBits > maxClusterBits {
		return nil, unsupported("Unsupported cluster size: 2^%d", h.ClusterBits)
	}
	cs := h.clusterSize()
	if h.Version == 2 {
		h.RefcountOrder = defaultRefcountOrder
		h.HeaderLength = headerV2Len
	} else {
		if len(buf) < headerV3MinLen {
			return nil, formatErr(0, "qcow2 header too short")
		}
		h.IncompatibleFeatures = be.Uint64(buf[hdrOffIncompatible:])
		h.CompatibleFeatures = be.Uint64(buf[hdrOffCompatible:])
		h.AutoclearFeatures = be.Uint64(buf[hdrOffAutoclear:])
		h.RefcountOrder = be.Uint32(buf[hdrOffRefcountOrder:])
		h.HeaderLength = be.Uint32(buf[hdrOffHeaderLength:])
		if h.HeaderLength < headerV3MinLen {
			return nil, formatErr(hdrOffHeaderLength, "qcow2 header too short")
		}
		if int64(h.HeaderLength) > cs {
			return nil, formatErr(hdrOffHeaderLength, "qcow2 header exceeds cluster size")
		}
		if int(h.HeaderLength) > len(buf) {
			return nil, formatErr(hdrOffHeaderLength, "qcow2 header beyond end of file")
		}
		if h.HeaderLength > hdrOffCompressionType {
			h.CompressionType = buf[hdrOffCompressionType]
		}
	}
	if h.BackingFileOffset > uint64(cs) {
		return nil, formatErr(hdrOffBackingOffset, "Invalid backing file offset")
	}
	// Extensions come before feature checks so unknown features can be named.
	if err := h.parseExtensions(buf); err != nil {
		return nil, err
	}
	if unknown := h.IncompatibleFeatures &^ incompatKnown; unknown != 0 {
		return nil, unsupported("Unsupported qcow2 feature(s): %s", h.featureNames(unknown))
	}
	if h.IncompatibleFeatures&incompatCorrupt != 0 && !readOnly {
		return nil, formatErr(hdrOffIncompatible, "qcow2: Image is corrupt; cannot be opened read/write")
	}
	if h.IncompatibleFeatures&incompatDirty != 0 && !readOnly {
		return nil, unsupported("image is marked dirty (lazy refcounts); repair it with qemu-img check -r all")
	}
	if h.IncompatibleFeatures&incompatDataFile != 0 {
		return nil, unsupported("external data file")
	}
	if h.IncompatibleFeatures&incompatExtendedL2 != 0 {
		return nil, unsupported("extended L2 entries")
	}
	if h.CryptMethod != 0 {
		return nil, unsupported("encryption (crypt_method %d)", h.CryptMethod)
	}
	if h.RefcountOrder > maxRefcountOrder {
		return nil, formatErr(hdrOffRefcountOrder, "Reference count entry width too large; may not exceed 64 bits")
	}
	switch {
	case h.CompressionType > compressionZstd:
		return nil, unsupported("Unknown compression type '%d'", h.CompressionType)
	case h.CompressionType != compressionZlib && h.IncompatibleFeatures&incompatCompression == 0:
		return nil, formatErr(hdrOffCompressionType, "Compression type incompatible feature bit must be set")
	case h.CompressionType == compressionZlib && h.IncompatibleFeatures&incompatCompression != 0:
		return nil, formatErr(hdrOffCompressionType, "Compression type incompatible feature bit must not be set")
	}
	if h.BackingFileOffset != 0 {
		if h.BackingFileSize > maxBackingFileNameLen || uint64(h.BackingFileSize) > uint64(cs)-h.BackingFileOffset {
			return nil, formatErr(hdrOffBackingSize, "Backing file name too long")
		}
		end := h.BackingFileOffset + uint64(h.BackingFileSize)
		if end > uint64(len(buf)) {
			return nil, formatErr(int64(h.BackingFileOffset), "backing file name beyond end of file")
		}
		h.BackingFile = string(buf[h.BackingFileOffset:end])
	}
	if h.RefcountTableClusters == 0 {
		return nil, formatErr(hdrOffRefTableCluster, "Image does not contain a reference count table")
	}
	if err := validateTable(h.RefcountTableOffset, uint64(h.RefcountTableClusters)*uint64(cs), 1, maxRefTableSize, cs, "Reference count table"); err != nil {
		return nil, err
	}
	if h.NbSnapshots > maxSnapshots {
		return nil, formatErr(hdrOffNbSnapshots, "Snapshot table too large")
	}
	if err := validateTable(h.SnapshotsOffset, uint64(h.NbSnapshots), snapshotFixedLen, math.MaxInt64, cs, "Snapshot table"); err != nil {
		return nil, err
	}
	if err := validateTable(h.L1TableOffset, uint64(h.L1Size), 8, maxL1Size, cs, "Active L1 table"); err != nil {
		return nil, err
	}
	if h.Size > math.MaxInt64 {
		return nil, formatErr(hdrOffSize, "Image is too big")
	}
	vmIdx := h.l1VMStateIndex()
	if vmIdx > math.MaxInt32 {
		return nil, formatErr(hdrOffSize, "Image is too big")
	}
	if uint64(h.L1Size) < vmIdx {
		return nil, formatErr(hdrOffL1Size, "L1 table is too small")
	}
	return h, nil
}

// validateTable mirrors QEMU's generic table check: size cap first, then alignment and overflow.
func validateTable(off, entries, entryLen, maxBytes uint64, cs int64, name string) error {
	if entries > maxBytes/entryLen {
		return formatErr(int64(off&math.MaxInt64), "%s too large", name)
	}
	if off%uint64(cs) != 0 || off > math.MaxInt64-entries*entryLen {
		return formatErr(int64(off&math.MaxInt64), "%s offset invalid", name)
	}
	return nil
}

// parseExtensions walks the extension area (header_length up to the backing file name or
// the end of the first cluster).
func (h *Header) parseExtensions(buf []byte) error {
	be := binary.BigEndian
	end := uint64(len(buf))
	if h.BackingFileOffset != 0 && h.BackingFileOffset < end {
		end = h.BackingFileOffset
	}
	seen := map[uint32]bool{}
	for off := uint64(h.HeaderLength); ; {
		if off+8 > end {
			// QEMU accepts a missing end marker when the area is exhausted.
			return nil
		}
		typ := be.Uint32(buf[off:])
		length := uint64(be.Uint32(buf[off+4:]))
		off += 8
		if typ == extEnd {
			return nil
		}
		if length > end-off {
			return formatErr(int64(off-8), "Header extension too large")
		}
		if seen[typ] {
			return formatErr(int64(off-8), "header extension %#x appears twice", typ)
		}
		seen[typ] = true
		data := append([]byte(nil), buf[off:off+length]...)
		h.Extensions = append(h.Extensions, HeaderExtension{Type: typ, Data: data})
		if typ == extBackingFmt {
			h.BackingFormat = string(data)
		}
		off += (length + 7) &^ 7
	}
}

// featureNames renders unknown incompatible bits using the feature name table when present.
func (h *Header) featureNames(bits uint64) string {
	var names []string
	var table []byte
	for _, e := range h.Extensions {
		if e.Type == extFeatureTable {
			table = e.Data
		}
	}
	for bit := uint(0); bit < 64; bit++ {
		if bits&(1<<bit) == 0 {
			continue
		}
		name := ""
		for i := 0; i+featureEntryLen <= len(table); i += featureEntryLen {
			if table[i] == featureTypeIncomp && uint(table[i+1]) == bit {
				name = strings.TrimRight(string(table[i+2:i+featureEntryLen]), "\x00")
				break
			}
		}
		if name == "" {
			names = append(names, fmt.Sprintf("Unknown incompatible feature: %x", uint64(1)<<bit))
		} else {
			names = append(names, name)
		}
	}
	return strings.Join(names, ", ")
}

// featureNameTable is the extension qemu-img 7.2 writes into every v3 image.
func featureNameTable() []byte {
	entries := []struct {
		typ, bit byte
		name     string
	}{
		{featureTypeIncomp, 0, "dirty bit"},
		{featureTypeIncomp, 1, "corrupt bit"},
		{featureTypeIncomp, 2, "external data file"},
		{featureTypeIncomp, 3, "compression type"},
		{featureTypeIncomp, 4, "extended L2 entries"},
		{featureTypeCompat, 0, "lazy refcounts"},
		{featureTypeAuto, 0, "bitmaps"},
		{featureTypeAuto, 1, "raw external data"},
	}
	b := make([]byte, len(entries)*featureEntryLen)
	for i, e := range entries {
		o := i * featureEntryLen
		b[o] = e.typ
		b[o+1] = e.bit
		copy(b[o+2:o+featureEntryLen], e.name)
	}
	return b
}

// encodeHeader serialises h (fixed fields, extensions, end marker, backing file name)
// into a buffer of one cluster. It fails if the result does not fit.
func encodeHeader(h *Header) ([]byte, error) {
	be := binary.BigEndian
	cs := h.clusterSize()
	buf := make([]byte, cs)
	be.PutUint32(buf, qcowMagic)
	be.PutUint32(buf[hdrOffVersion:], h.Version)
	be.PutUint32(buf[hdrOffClusterBits:], h.ClusterBits)
	be.PutUint64(buf[hdrOffSize:], h.Size)
	be.PutUint32(buf[hdrOffCryptMethod:], h.CryptMethod)
	be.PutUint32(buf[hdrOffL1Size:], h.L1Size)
	be.PutUint64(buf[hdrOffL1TableOffset:], h.L1TableOffset)
	be.PutUint64(buf[hdrOffRefTableOffset:], h.RefcountTableOffset)
	be.PutUint32(buf[hdrOffRefTableCluster:], h.RefcountTableClusters)
	be.PutUint32(buf[hdrOffNbSnapshots:], h.NbSnapshots)
	be.PutUint64(buf[hdrOffSnapshotsOffset:], h.SnapshotsOffset)
	off := uint64(headerV2Len)
	if h.Version >= 3 {
		be.PutUint64(buf[hdrOffIncompatible:], h.IncompatibleFeatures)
		be.PutUint64(buf[hdrOffCompatible:], h.CompatibleFeatures)
		be.PutUint64(buf[hdrOffAutoclear:], h.AutoclearFeatures)
		be.PutUint32(buf[hdrOffRefcountOrder:], h.RefcountOrder)
		be.PutUint32(buf[hdrOffHeaderLength:], h.HeaderLength)
		if h.HeaderLength > hdrOffCompressionType {
			buf[hdrOffCompressionType] = h.CompressionType
		}
		off = uint64(h.HeaderLength)
	}
	for _, e := range h.Extensions {
		need := 8 + (uint64(len(e.Data))+7)&^7
		if off+need+8 > uint64(cs) {
			return nil, fmt.Errorf("qcow2: header extensions do not fit in one cluster")
		}
		be.PutUint32(buf[off:], e.Type)
		be.PutUint32(buf[off+4:], uint32(len(e.Data)))
		copy(buf[off+8:], e.Data)
		off += need
	}
	off += 8 // end marker (zeros)
	h.BackingFileOffset, h.BackingFileSize = 0, 0
	if h.BackingFile != "" {
		if len(h.BackingFile) > maxBackingFileNameLen || off+uint64(len(h.BackingFile)) > uint64(cs) {
			return nil, fmt.Errorf("qcow2: backing file name too long")
		}
		h.BackingFileOffset, h.BackingFileSize = off, uint32(len(h.BackingFile))
		copy(buf[off:], h.BackingFile)
	}
	be.PutUint64(buf[hdrOffBackingOffset:], h.BackingFileOffset)
	be.PutUint32(buf[hdrOffBackingSize:], h.BackingFileSize)
	return buf, nil
}
