package qcow2

// On-disk constants, named after QEMU's docs/interop/qcow2.txt (sections "Header",
// "Header extensions", "Cluster mapping", "Host cluster management" and "Snapshots").
// All multi-byte fields are big-endian.

// Header ("== Header ==").
const (
	qcowMagic = 0x514649fb // "QFI\xfb"

	headerV2Len      = 72  // version 2 header, fixed size
	headerV3MinLen   = 104 // version 3 minimum header_length
	headerV3WriteLen = 112 // what qemu-img 7.2 writes: 104 + compression_type + padding

	// Field offsets.
	hdrOffVersion         = 4
	hdrOffBackingOffset   = 8
	hdrOffBackingSize     = 16
	hdrOffClusterBits     = 20
	hdrOffSize            = 24
	hdrOffCryptMethod     = 32
	hdrOffL1Size          = 36 // l1_size (4) + l1_table_offset (8): updated together
	hdrOffL1TableOffset   = 40
	hdrOffRefTableOffset  = 48 // refcount_table_offset (8) + refcount_table_clusters (4)
	hdrOffRefTableCluster = 56
	hdrOffNbSnapshots     = 60 // nb_snapshots (4) + snapshots_offset (8): updated together
	hdrOffSnapshotsOffset = 64
	hdrOffIncompatible    = 72
	hdrOffCompatible      = 80
	hdrOffAutoclear       = 88
	hdrOffRefcountOrder   = 96
	hdrOffHeaderLength    = 100
	hdrOffCompressionType = 104
)

// Feature bits.
const (
	incompatDirty        = 1 << 0
	incompatCorrupt      = 1 << 1
	incompatDataFile     = 1 << 2
	incompatCompression  = 1 << 3
	incompatExtendedL2   = 1 << 4
	incompatKnown        = incompatDirty | incompatCorrupt | incompatDataFile | incompatCompression | incompatExtendedL2
	compatLazyRefcounts  = 1 << 0
	autoclearBitmaps     = 1 << 0
	autoclearRawDataFile = 1 << 1
)

// Compression types (header byte 104).
const (
	compressionZlib = 0
	compressionZstd = 1
)

// Header extension types ("== Header extensions ==").
const (
	extEnd          = 0x00000000
	extBackingFmt   = 0xe2792aca
	extFeatureTable = 0x6803f857
	extBitmaps      = 0x23852875
	extCrypto       = 0x0537be77
	extDataFile     = 0x44415441
)

// Feature name table entry: type (1), bit (1), name (46).
const (
	featureEntryLen   = 48
	featureTypeIncomp = 0
	featureTypeCompat = 1
	featureTypeAuto   = 2
)

// Cluster mapping ("== Cluster mapping ==").
const (
	l1eOffsetMask   = 0x00fffffffffffe00 // bits 9-55: L2 table offset
	l1eReservedMask = 0x7f000000000001ff // bits 0-8 and 56-62
	oflagCopied     = uint64(1) << 63    // refcount is exactly 1
	oflagCompressed = uint64(1) << 62
	oflagZero       = uint64(1) << 0 // standard cluster reads as zeros (v3)

	l2eOffsetMask   = 0x00fffffffffffe00 // bits 9-55: host cluster offset
	l2eReservedMask = 0x3f000000000001fe // bits 1-8 and 56-61 of a standard entry

	compressedSectorSize = 512
)

// Snapshot table ("== Snapshots ==").
const (
	snapshotFixedLen      = 40
	snapshotExtraWriteLen = 24 // vm_state_size_large, disk_size, icount
	snapshotExtraV3Min    = 16
)

// Limits QEMU enforces on untrusted images (block/qcow2.h).
const (
	maxSnapshots          = 65536
	maxSnapshotsSize      = 1024 * maxSnapshots // total snapshot table bytes
	maxSnapshotExtraData  = 1024
	maxL1Size             = 32 << 20 // bytes
	maxRefTableSize       = 8 << 20  // bytes
	maxClusterOffset      = (uint64(1) << 56) - 1
	maxBackingFileNameLen = 1023
	minClusterBits        = 9
	maxClusterBits        = 21
	maxRefcountOrder      = 6
	defaultClusterSize    = 65536
	defaultRefcountOrder  = 4
)
