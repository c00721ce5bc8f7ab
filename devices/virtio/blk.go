package virtio

import (
	"encoding/binary"
	"fmt"
	"sync/atomic"
)

// DeviceIDBlock is virtio-blk's device type.
const DeviceIDBlock = 2

// virtio-blk feature bits offered.
const (
	blkFSegMax      = 1 << 2
	blkFGeometry    = 1 << 4
	blkFRO          = 1 << 5
	blkFBlkSize     = 1 << 6
	blkFSCSI        = 1 << 7 // legacy only; SCSI requests are refused (UNSUPP) as on QEMU
	blkFFlush       = 1 << 9
	blkFTopology    = 1 << 10
	blkFConfigWCE   = 1 << 11
	blkFDiscard     = 1 << 13
	blkFWriteZeroes = 1 << 14
)

// Request types and status values.
const (
	blkTIn          = 0
	blkTOut         = 1
	blkTFlush       = 4
	blkTGetID       = 8
	blkTDiscard     = 11
	blkTWriteZeroes = 13
	blkTBarrier     = 0x80000000

	blkSOK     = 0
	blkSIOErr  = 1
	blkSUnsupp = 2

	blkIDBytes     = 20
	blkWZUnmap     = 1
	sectorSize     = 512
	maxDiscardSect = 0x3fffff
	configLen      = 0x39
)

// Disk is the storage behind a virtio-blk device; block.Backend implements
// it, and the requests in flight on it are what the block layer drains.
type Disk interface {
	ReadAt(p []byte, off int64) (int, error)
	WriteAt(p []byte, off int64) (int, error)
	Flush() error
	WriteZeroes(off, n int64, unmap bool) error
	Discard(off, n int64) error
	Size() int64
	ReadOnly() bool
}

// Blk is a virtio-blk device with one request queue.
type Blk struct {
	disk   Disk
	serial string
	// geometry is QEMU's guess for a disk without a partition table:
	// 16 heads, 63 sectors, cylinders from the size (2..16383).
	cyls uint16

	// writeback is the guest-visible write-cache mode (config byte wce):
	// off means every write is flushed before it completes. Written by the
	// hart goroutine (feature negotiation, config writes), read by the
	// worker, hence atomic.
	writeback atomic.Bool
}

// NewBlk creates a virtio-blk device on disk. serial is what GET_ID returns
// (QEMU's -device serial=, empty by default).
func NewBlk(disk Disk, serial string) *Blk {
	b := &Blk{disk: disk, serial: serial}
	cyls := uint64(disk.Size()) / sectorSize / (16 * 63)
	b.cyls = uint16(min(max(cyls, 2), 16383))
	b.Reset()
	return b
}

// Reset implements Device: the write cache returns to the drive's mode
// (writeback, QEMU's default cache setting).
func (b *Blk) Reset() { b.setWriteback(true) }

// writeCacheReporter is implemented by disks that show the guest's
// write-cache mode to the monitor (query-block, info block).
type writeCacheReporter interface{ SetWriteCache(on bool) }

func (b *Blk) setWriteback(on bool) {
	b.writeback.Store(on)
	if r, ok := b.disk.(writeCacheReporter); ok {
		r.SetWriteCache(on)
	}
}

// Negotiated implements Device: as QEMU, at DRIVER_OK a driver that
// acknowledges neither CONFIG_WCE nor FLUSH gets a write-through cache,
// since it would never flush; one that acknowledges CONFIG_WCE keeps the
// mode it sets.
func (b *Blk) Negotiated(features uint64) {
	if features&blkFConfigWCE == 0 {
		b.setWriteback(features&blkFFlush != 0)
	}
}

// SaveState implements Device: the write-cache mode.
func (b *Blk) SaveState() []byte {
	if b.writeback.Load() {
		return []byte{1}
	}
	return []byte{0}
}

// LoadState implements Device.
func (b *Blk) LoadState(s []byte) error {
	if len(s) != 1 || s[0] > 1 {
		return fmt.Errorf("virtio-blk: bad device state %x", s)
	}
	b.setWriteback(s[0] == 1)
	return nil
}

// Disk returns the storage.
func (b *Blk) Disk() Disk { return b.disk }

// DeviceID implements Device.
func (b *Blk) DeviceID() uint32 { return DeviceIDBlock }

// NumQueues implements Device.
func (b *Blk) NumQueues() int { return 1 }

// Features implements Device: QEMU 7.2's legacy set, 0x31006ed4 (plus RO
// for a read-only disk).
func (b *Blk) Features() uint64 {
	f := uint64(blkFSegMax | blkFGeometry | blkFBlkSize | blkFSCSI | blkFFlush | blkFTopology | blkFConfigWCE |
		blkFDiscard | blkFWriteZeroes | featureNotifyEmpty | featureIndirectDesc | featureEventIdx)
	if b.disk.ReadOnly() {
		f |= blkFRO
	}
	return f
}

func (b *Blk) config() [configLen]byte {
	var c [configLen]byte
	le := binary.LittleEndian
	le.PutUint64(c[0x00:], uint64(b.disk.Size())/sectorSize)
	le.PutUint32(c[0x0c:], defaultQueueSize-2) // seg_max
	le.PutUint16(c[0x10:], b.cyls)             // geometry
	c[0x12], c[0x13] = 16, 63
	le.PutUint32(c[0x14:], sectorSize) // blk_size
	if b.writeback.Load() {
		c[0x20] = 1
	}
	le.PutUint16(c[0x22:], 1) // num_queues
	le.PutUint32(c[0x24:], maxDiscardSect)
	le.PutUint32(c[0x28:], 1)
	le.PutUint32(c[0x2c:], 1)
	le.PutUint32(c[0x30:], maxDiscardSect)
	le.PutUint32(c[0x34:], 1)
	c[0x38] = 1 // write_zeroes_may_unmap
	return c
}

// ReadConfig implements Device.
func (b *Blk) ReadConfig(off uint64, size int) (uint64, bool) {
	if off+uint64(size) > configLen {
		return 0, false
	}
	c := b.config()
	var v uint64
	for i := size - 1; i >= 0; i-- {
		v = v<<8 | uint64(c[off+uint64(i)])
	}
	return v, true
}

// WriteConfig implements Device: only the write-cache byte is writable.
func (b *Blk) WriteConfig(off uint64, size int, val uint64) {
	if off <= 0x20 && off+uint64(size) > 0x20 {
		b.setWriteback(val>>(8*(0x20-off))&0xff != 0)
	}
}

// Process implements Device: one virtio-blk request.
func (b *Blk) Process(q int, c *Chain) (uint32, error) {
	var hdr [16]byte
	if c.OutLen() < uint64(len(hdr)) {
		return 0, fmt.Errorf("%w: virtio-blk request header too short", ErrMalformed)
	}
	inLen := c.InLen()
	if inLen < 1 {
		return 0, fmt.Errorf("%w: virtio-blk request without status byte", ErrMalformed)
	}
	if err := c.ReadOut(hdr[:], 0); err != nil {
		return 0, err
	}
	typ := binary.LittleEndian.Uint32(hdr[0:]) &^ blkTBarrier
	sector := binary.LittleEndian.Uint64(hdr[8:])
	dataLen := inLen - 1
	status := b.execute(c, typ, sector, dataLen)
	if err := c.WriteIn([]byte{status}, inLen-1); err != nil {
		return 0, err
	}
	return uint32(min(inLen, 1<<32-1)), nil
}

// rangeOK is QEMU's check: whole sectors, inside the disk.
func (b *Blk) rangeOK(sector, n uint64) bool {
	total := uint64(b.disk.Size()) / sectorSize
	return n%sectorSize == 0 && sector <= total && n/sectorSize <= total-sector
}

func (b *Blk) execute(c *Chain, typ uint32, sector, dataLen uint64) uint8 {
	switch typ {
	case blkTIn:
		if !b.rangeOK(sector, dataLen) {
			return blkSIOErr
		}
		err := c.InSlices(0, dataLen, func(p []byte, pos uint64) error {
			_, err := b.disk.ReadAt(p, int64(sector*sectorSize+pos))
			return err
		})
		if err != nil {
			return blkSIOErr
		}
	case blkTOut:
		n := c.OutLen() - 16
		if b.disk.ReadOnly() || !b.rangeOK(sector, n) {
			return blkSIOErr
		}
		err := c.OutSlices(16, n, func(p []byte, pos uint64) error {
			_, err := b.disk.WriteAt(p, int64(sector*sectorSize+pos))
			return err
		})
		if err == nil && !b.writeback.Load() {
			err = b.disk.Flush() // write-through
		}
		if err != nil {
			return blkSIOErr
		}
	case blkTFlush:
		if err := b.disk.Flush(); err != nil {
			return blkSIOErr
		}
	case blkTGetID:
		var id [blkIDBytes]byte
		copy(id[:], b.serial)
		n := min(uint64(blkIDBytes), dataLen)
		if err := c.WriteIn(id[:n], 0); err != nil {
			return blkSIOErr
		}
	case blkTDiscard, blkTWriteZeroes:
		return b.discardOrZero(c, typ == blkTWriteZeroes)
	default:
		return blkSUnsupp
	}
	return blkSOK
}

func (b *Blk) discardOrZero(c *Chain, zero bool) uint8 {
	payload := c.OutLen() - 16
	if payload/16 > 1 {
		return blkSUnsupp // one segment per request (max_*_seg = 1)
	}
	var seg [16]byte
	if payload < 16 || c.ReadOut(seg[:], 16) != nil {
		return blkSIOErr
	}
	sector := binary.LittleEndian.Uint64(seg[0:])
	num := uint64(binary.LittleEndian.Uint32(seg[8:]))
	flags := binary.LittleEndian.Uint32(seg[12:])
	if b.disk.ReadOnly() || !b.rangeOK(sector, num*sectorSize) {
		return blkSIOErr
	}
	if num > maxDiscardSect {
		return blkSIOErr
	}
	var err error
	if zero {
		if flags&^blkWZUnmap != 0 {
			return blkSUnsupp
		}
		err = b.disk.WriteZeroes(int64(sector*sectorSize), int64(num*sectorSize), flags&blkWZUnmap != 0)
	} else {
		if flags != 0 {
			return blkSUnsupp
		}
		err = b.disk.Discard(int64(sector*sectorSize), int64(num*sectorSize))
	}
	if err != nil {
		return blkSIOErr
	}
	return blkSOK
}
