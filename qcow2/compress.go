package qcow2

import (
	"bytes"
	"compress/flate"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
)

// Compressed clusters ("Compressed Clusters Descriptor" in qcow2.txt): the L2 entry holds
// the host byte offset in bits 0..x-1 and the number of additional 512-byte sectors in bits
// x..61, with x = 62 - (cluster_bits - 8). The data is a raw deflate stream (compression
// type 0) or a zstd frame (type 1) that expands to exactly one cluster.

// compressedRange decodes a compressed L2 entry into the host byte range it occupies.
func (img *Image) compressedRange(e uint64) (off, n int64) {
	x := 62 - (img.clusterBits - 8)
	off = int64(e & (uint64(1)<<x - 1))
	sectors := int64((e>>x)&(uint64(1)<<(img.clusterBits-8)-1)) + 1
	return off, sectors*compressedSectorSize - off%compressedSectorSize
}

// decompressor keeps reusable decoder state (one per image, used under its lock).
type decompressor struct {
	in   []byte
	br   bytes.Reader
	fl   io.ReadCloser
	zstd *zstd.Decoder
}

// readCompressed fills dst (one cluster) with the decompressed contents of entry e.
func (img *Image) readCompressed(dst []byte, e uint64) error {
	off, n := img.compressedRange(e)
	if img.zbufOff == off+1 && img.zbuf != nil {
		copy(dst, img.zbuf)
		return nil
	}
	d := &img.decomp
	if cap(d.in) < int(n) {
		d.in = make([]byte, n)
	}
	in := d.in[:n]
	if err := img.readFull(in, off); err != nil {
		return err
	}
	d.br.Reset(in)
	var r io.Reader
	switch img.hdr.CompressionType {
	case compressionZlib:
		if d.fl == nil {
			d.fl = flate.NewReader(&d.br)
		} else if err := d.fl.(flate.Resetter).Reset(&d.br, nil); err != nil {
			return err
		}
		r = d.fl
	case compressionZstd:
		if d.zstd == nil {
			z, err := zstd.NewReader(&d.br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(64<<20))
			if err != nil {
				return err
			}
			d.zstd = z
		} else if err := d.zstd.Reset(&d.br); err != nil {
			return err
		}
		r = d.zstd
	default:
		return unsupported("compression type %d", img.hdr.CompressionType)
	}
	if _, err := io.ReadFull(r, dst[:img.cs]); err != nil {
		return &FormatError{Off: off, Msg: fmt.Sprintf("cannot decompress cluster: %v", err)}
	}
	if img.zbuf == nil {
		img.zbuf = make([]byte, img.cs)
	}
	copy(img.zbuf, dst[:img.cs])
	img.zbufOff = off + 1
	return nil
}
