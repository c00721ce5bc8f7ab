package qcow2

import (
	"encoding/binary"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestMalformedHeaders patches fields of a valid image and checks that Open refuses it with
// the message qemu-img gives (qemu-img info prints "Could not open '<f>': <msg>").
func TestMalformedHeaders(t *testing.T) {
	type patch struct {
		off int64
		val any // uint32 or uint64
	}
	cases := []struct {
		name     string
		patches  []patch
		msg      string
		sentinel error
	}{
		{"version", []patch{{hdrOffVersion, uint32(4)}}, "Unsupported qcow2 version 4", ErrUnsupported},
		{"cluster bits", []patch{{hdrOffClusterBits, uint32(22)}}, "Unsupported cluster size: 2^22", ErrUnsupported},
		{"snapshots", []patch{{hdrOffNbSnapshots, uint32(65537)}}, "Snapshot table too large", ErrCorrupt},
		{"snapshot offset", []patch{{hdrOffNbSnapshots, uint32(1)}, {hdrOffSnapshotsOffset, uint64(12345)}}, "Snapshot table offset invalid", ErrCorrupt},
		{"l1 size", []patch{{hdrOffL1Size, uint32(0x1000000)}}, "Active L1 table too large", ErrCorrupt},
		{"l1 offset", []patch{{hdrOffL1TableOffset, uint64(0x30001)}}, "Active L1 table offset invalid", ErrCorrupt},
		{"l1 too small", []patch{{hdrOffL1Size, uint32(0)}}, "L1 table is too small", ErrCorrupt},
		{"reftable size", []patch{{hdrOffRefTableCluster, uint32(0x10000)}}, "Reference count table too large", ErrCorrupt},
		{"reftable offset", []patch{{hdrOffRefTableOffset, uint64(0x10010)}}, "Reference count table offset invalid", ErrCorrupt},
		{"no reftable", []patch{{hdrOffRefTableCluster, uint32(0)}}, "Image does not contain a reference count table", ErrCorrupt},
		{"refcount order", []patch{{hdrOffRefcountOrder, uint32(7)}}, "Reference count entry width too large; may not exceed 64 bits", ErrCorrupt},
		{"unknown feature", []patch{{hdrOffIncompatible, uint64(1 << 5)}}, "Unsupported qcow2 feature(s): Unknown incompatible feature: 20", ErrUnsupported},
		{"corrupt", []patch{{hdrOffIncompatible, uint64(incompatCorrupt)}}, "qcow2: Image is corrupt; cannot be opened read/write", ErrCorrupt},
		{"data file", []patch{{hdrOffIncompatible, uint64(incompatDataFile)}}, "external data file", ErrUnsupported},
		{"encryption", []patch{{hdrOffCryptMethod, uint32(2)}}, "encryption", ErrUnsupported},
		{"header length", []patch{{hdrOffHeaderLength, uint32(96)}}, "qcow2 header too short", ErrCorrupt},
		{"backing offset", []patch{{hdrOffBackingOffset, uint64(0x20000)}}, "Invalid backing file offset", ErrCorrupt},
		{"backing size", []patch{{hdrOffBackingOffset, uint64(0x200)}, {hdrOffBackingSize, uint32(1024)}}, "Backing file name too long", ErrCorrupt},
		{"magic", []patch{{0, uint32(0x12345678)}}, "Image is not in qcow2 format", ErrNotQcow2},
	}
	dir := t.TempDir()
	base := dir + "/base.qcow2"
	if err := Create(base, CreateOptions{Size: 64 << 20}); err != nil {
		t.Fatal(err)
	}
	good := readFileT(t, base)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := append([]byte(nil), good...)
			for _, p := range tc.patches {
				switch v := p.val.(type) {
				case uint32:
					binary.BigEndian.PutUint32(b[p.off:], v)
				case uint64:
					binary.BigEndian.PutUint64(b[p.off:], v)
				}
			}
			path := dir + "/" + strings.ReplaceAll(tc.name, " ", "-") + ".qcow2"
			os.WriteFile(path, b, 0o644)
			_, err := Open(path, OpenOptions{})
			if err == nil || !strings.Contains(Message(err), tc.msg) || !errors.Is(err, tc.sentinel) {
				t.Fatalf("Open: %v; want %q (%v)", err, tc.msg, tc.sentinel)
			}
		})
	}
}
