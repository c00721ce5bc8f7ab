// Package qcow2 reads and writes QEMU qcow2 disk images (versions 2 and 3) as a library.
//
// It owns the on-disk format: header and header extensions, L1/L2 cluster mapping, refcounts,
// internal snapshots (laid out exactly as QEMU 7.2 writes them), the VM-state area beyond the
// virtual disk, backing-file fall-through, compressed-cluster reads (deflate and zstd) and an
// offline consistency check equivalent to `qemu-img check`.
//
// Unsupported (refused with ErrUnsupported): encryption, external data files, extended L2
// entries, writing compressed clusters, shrinking. Images with unknown incompatible features,
// the dirty bit (lazy refcounts) or, for read-write opens, the corrupt bit are refused too.
//
// The format is described in QEMU's docs/interop/qcow2.txt; names in spec.go follow it.
package qcow2

import (
	"errors"
	"fmt"
	"io"
)

var (
	// ErrNotQcow2 is returned when the file does not start with the qcow2 magic.
	ErrNotQcow2 = errors.New("qcow2: Image is not in qcow2 format")
	// ErrUnsupported is returned for valid images that use features this package does not implement.
	ErrUnsupported = errors.New("qcow2: unsupported feature")
	// ErrCorrupt is returned when metadata is inconsistent or out of bounds.
	ErrCorrupt = errors.New("qcow2: image is corrupt")
)

// FormatError reports malformed metadata at a byte offset of the image file.
// It matches ErrCorrupt with errors.Is.
type FormatError struct {
	Off int64
	Msg string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("qcow2: %s (at offset %#x)", e.Msg, e.Off)
}

// Is makes errors.Is(err, ErrCorrupt) true for every FormatError.
func (e *FormatError) Is(target error) bool { return target == ErrCorrupt }

func formatErr(off int64, format string, args ...any) error {
	return &FormatError{Off: off, Msg: fmt.Sprintf(format, args...)}
}

func unsupported(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrUnsupported}, args...)...)
}

// Probe reports whether r starts with the qcow2 magic "QFI\xfb".
func Probe(r io.ReaderAt) bool {
	var b [4]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return false
	}
	return b == [4]byte{'Q', 'F', 'I', 0xfb}
}
