// Package qcow2 reads and writes QEMU qcow2 disk images (versions 2 and 3) as a library.
//
// It owns the on-disk format: header and header extensions, L1/L2 cluster mapping with
// copy-on-write, refcounts of any width (1..64 bits read, 16 written by default), zero
// clusters and discard, backing-file fall-through (qcow2 or raw, opened by name relative to
// the image), compressed-cluster reads (deflate and zstd), internal snapshots with the entry
// layout QEMU 7.2 writes, the VM-state area beyond the virtual disk, and an offline check
// with repair equivalent to `qemu-img check`.
//
// Crash consistency: guest writes follow the ordering described in refcount.go (refcounts
// before references, data before pointers, decrements after the metadata dropping them);
// snapshot create/apply/delete/replace build new metadata in free clusters and switch to it
// with one header write (commit.go). A kill at any instant leaves an image that qemu-img
// check reports free of corruption; leaked clusters are possible.
//
// Not supported (refused with ErrUnsupported): encryption, external data files, extended
// L2 entries, images marked dirty (lazy refcounts) for read-write use, writing compressed
// clusters, shrinking, and bitmaps (the extension is kept but not maintained). The header
// is only ever updated field by field, so unknown header extensions and unknown bytes are
// preserved.
//
// The format is described in QEMU's docs/interop/qcow2.txt; names in spec.go follow it.
package qcow2

import (
	"errors"
	"fmt"
	"io"
	"strings"
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

// Error is "qcow2: " followed by the message QEMU gives for the same problem; the offset
// stays available in Off.
func (e *FormatError) Error() string {
	return "qcow2: " + e.Msg
}

// Is makes errors.Is(err, ErrCorrupt) true for every FormatError.
func (e *FormatError) Is(target error) bool { return target == ErrCorrupt }

func formatErr(off int64, format string, args ...any) error {
	return &FormatError{Off: off, Msg: fmt.Sprintf(format, args...)}
}

// unsupportedError is a valid image (or request) using something this package does not
// implement; it matches ErrUnsupported with errors.Is.
type unsupportedError struct{ msg string }

func (e *unsupportedError) Error() string        { return "qcow2: " + e.msg }
func (e *unsupportedError) Is(target error) bool { return target == ErrUnsupported }

func unsupported(format string, args ...any) error {
	return &unsupportedError{msg: fmt.Sprintf(format, args...)}
}

// Message returns the text QEMU prints for an error from this package, without prefix or
// offset (for "Could not open '<file>': <message>" style output).
func Message(err error) string {
	var fe *FormatError
	var ue *unsupportedError
	switch {
	case errors.As(err, &fe):
		return fe.Msg
	case errors.As(err, &ue):
		return ue.msg
	case errors.Is(err, ErrNotQcow2):
		return "Image is not in qcow2 format"
	case err == nil:
		return ""
	}
	return strings.TrimPrefix(err.Error(), "qcow2: ")
}

// Probe reports whether r starts with the qcow2 magic "QFI\xfb".
func Probe(r io.ReaderAt) bool {
	var b [4]byte
	if _, err := r.ReadAt(b[:], 0); err != nil {
		return false
	}
	return b == [4]byte{'Q', 'F', 'I', 0xfb}
}
