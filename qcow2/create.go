package qcow2

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"path/filepath"
)

// CreateOptions describes a new image, like the -o options of qemu-img create.
type CreateOptions struct {
	Size          int64  // virtual size, bytes (0 with a backing file: the backing file's size)
	ClusterSize   int    // 0 = 65536; 512..2 MiB, a power of two
	Compat        string // "" or "1.1" = version 3, "0.10" = version 2
	BackingFile   string
	BackingFormat string // "qcow2", "raw", "" (unknown)
	RefcountBits  int    // 0 = 16
}

// Create writes a fresh image with the layout qemu-img 7.2 produces: header cluster,
// refcount table in cluster 1, first refcount block in cluster 2, L1 table from cluster 3.
func Create(path string, o CreateOptions) error {
	if o.Size == 0 && o.BackingFile != "" {
		size, err := backingSize(path, o)
		if err != nil {
			return err
		}
		o.Size = size
	}
	h, err := newHeader(o)
	if err != nil {
		return err
	}
	o.Size = (o.Size + 511) &^ 511 // qemu-img rounds the size up to whole sectors
	hb, err := encodeHeader(h)
	if err != nil {
		return err
	}
	cs := h.clusterSize()
	buf := make([]byte, 3*cs)
	copy(buf, hb)
	binary.BigEndian.PutUint64(buf[cs:], uint64(2*cs)) // refcount table entry 0
	rb := buf[2*cs:]
	for c := int64(0); c < 3; c++ {
		setRefEntry(rb, c, 1<<h.RefcountOrder, 1)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := f.WriteAt(buf, 0); err != nil {
		f.Close()
		return err
	}
	img, err := openFile(f, path, false)
	if err != nil {
		f.Close()
		return err
	}
	img.mu.Lock()
	err = img.setSize(uint64(o.Size))
	img.mu.Unlock()
	return errors.Join(err, img.Close())
}

func newHeader(o CreateOptions) (*Header, error) {
	h := &Header{Version: 3, HeaderLength: headerV3WriteLen, RefcountOrder: defaultRefcountOrder}
	switch o.Compat {
	case "", "1.1", "v3":
	case "0.10", "v2":
		h.Version, h.HeaderLength = 2, headerV2Len
	default:
		return nil, fmt.Errorf("qcow2: invalid compatibility level: '%s'", o.Compat)
	}
	cs := o.ClusterSize
	if cs == 0 {
		cs = defaultClusterSize
	}
	if cs < 1<<minClusterBits || cs > 1<<maxClusterBits || cs&(cs-1) != 0 {
		return nil, fmt.Errorf("qcow2: Cluster size must be a power of two between 512 and 2048k")
	}
	h.ClusterBits = uint32(bits.TrailingZeros(uint(cs)))
	if o.RefcountBits != 0 {
		rb := o.RefcountBits
		if rb > 64 || rb&(rb-1) != 0 {
			return nil, fmt.Errorf("qcow2: Refcount width must be a power of two and may not exceed 64 bits")
		}
		if h.Version < 3 && rb != 16 {
			return nil, fmt.Errorf("qcow2: Different refcount widths than 16 bits require compatibility level 1.1 or above (use compat=1.1 or greater)")
		}
		h.RefcountOrder = uint32(bits.TrailingZeros(uint(rb)))
	}
	if o.Size < 0 {
		return nil, fmt.Errorf("qcow2: invalid size %d", o.Size)
	}
	if o.BackingFile != "" {
		h.BackingFile = o.BackingFile
		if o.BackingFormat != "" {
			h.BackingFormat = o.BackingFormat
			h.Extensions = append(h.Extensions, HeaderExtension{Type: extBackingFmt, Data: []byte(o.BackingFormat)})
		}
	}
	if h.Version >= 3 && cs > 4096 {
		// qemu-img leaves the table out of small header clusters.
		h.Extensions = append(h.Extensions, HeaderExtension{Type: extFeatureTable, Data: featureNameTable()})
	}
	h.RefcountTableOffset = uint64(cs)
	h.RefcountTableClusters = 1
	return h, nil
}

// backingSize returns the virtual size of the backing file named in o.
func backingSize(path string, o CreateOptions) (int64, error) {
	name := o.BackingFile
	if !filepath.IsAbs(name) {
		name = filepath.Join(filepath.Dir(path), name)
	}
	f, err := os.Open(name)
	if err != nil {
		return 0, fmt.Errorf("qcow2: Could not open backing file: %w", err)
	}
	defer f.Close()
	if o.BackingFormat == "qcow2" || (o.BackingFormat == "" && Probe(f)) {
		b, err := Open(name, OpenOptions{ReadOnly: true, NoBacking: true})
		if err != nil {
			return 0, err
		}
		defer b.Close()
		return b.Size(), nil
	}
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return st.Size(), nil
}
