package block

import (
	"errors"
	"io"
	"os"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/snapvm/snapvm/qcow2"
)

// fileDriver is QEMU's "file" protocol driver: a host file, read and
// written in place. Reads past the end of the file return zeros, as QEMU's
// file-posix pads short reads.
type fileDriver struct {
	f    *os.File
	len  atomic.Int64 // cached length; grows with writes past the end
	lock *ImageLock   // QEMU image locks, when the graph takes them
}

func openFileDriver(path string, readOnly bool) (*fileDriver, error) {
	flag := os.O_RDWR
	if readOnly {
		flag = os.O_RDONLY
	}
	f, err := os.OpenFile(path, flag, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.IsDir() {
		f.Close()
		return nil, unix.EISDIR
	}
	d := &fileDriver{f: f}
	d.len.Store(st.Size())
	return d, nil
}

func (d *fileDriver) readAt(p []byte, off int64) (int, error) {
	n, err := d.f.ReadAt(p, off)
	if errors.Is(err, io.EOF) {
		clear(p[n:])
		return len(p), nil
	}
	return n, err
}

func (d *fileDriver) grow(end int64) {
	for {
		cur := d.len.Load()
		if end <= cur || d.len.CompareAndSwap(cur, end) {
			return
		}
	}
}

func (d *fileDriver) writeAt(p []byte, off int64) (int, error) {
	n, err := d.f.WriteAt(p, off)
	d.grow(off + int64(n))
	return n, err
}

func (d *fileDriver) writeZeroes(off, n int64, unmap bool) error {
	mode := uint32(unix.FALLOC_FL_ZERO_RANGE)
	if unmap {
		mode = unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE
	}
	if err := unix.Fallocate(int(d.f.Fd()), mode, off, n); err == nil {
		d.grow(off + n)
		return nil
	}
	// The file system cannot do it: write zeros.
	buf := make([]byte, min(n, 1<<20))
	for n > 0 {
		c := min(n, int64(len(buf)))
		if _, err := d.writeAt(buf[:c], off); err != nil {
			return err
		}
		off += c
		n -= c
	}
	return nil
}

func (d *fileDriver) discard(off, n int64) error {
	// A discard is advisory: a file system without hole punching ignores it.
	_ = unix.Fallocate(int(d.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	return nil
}

func (d *fileDriver) flush() error { return d.f.Sync() }
func (d *fileDriver) size() int64  { return d.len.Load() }
func (d *fileDriver) close() error {
	d.lock.Release()
	return d.f.Close()
}

// actualSize is the host space the file occupies (qemu-img's "disk size").
func (d *fileDriver) actualSize() int64 {
	var st unix.Stat_t
	if err := unix.Fstat(int(d.f.Fd()), &st); err != nil {
		return 0
	}
	return st.Blocks * 512
}

// rawDriver is QEMU's "raw" format: the guest sees its file child unchanged.
type rawDriver struct{ file *Node }

func (d rawDriver) readAt(p []byte, off int64) (int, error)  { return d.file.drv.readAt(p, off) }
func (d rawDriver) writeAt(p []byte, off int64) (int, error) { return d.file.drv.writeAt(p, off) }
func (d rawDriver) writeZeroes(off, n int64, unmap bool) error {
	return d.file.drv.writeZeroes(off, n, unmap)
}
func (d rawDriver) discard(off, n int64) error { return d.file.drv.discard(off, n) }
func (d rawDriver) flush() error               { return d.file.drv.flush() }
func (d rawDriver) size() int64                { return d.file.drv.size() }
func (d rawDriver) close() error               { return nil }

// qcow2Driver is the qcow2 format over the image the qcow2 package opened
// on the file child's path.
type qcow2Driver struct{ img *qcow2.Image }

func (d qcow2Driver) readAt(p []byte, off int64) (int, error)  { return d.img.ReadAt(p, off) }
func (d qcow2Driver) writeAt(p []byte, off int64) (int, error) { return d.img.WriteAt(p, off) }
func (d qcow2Driver) writeZeroes(off, n int64, unmap bool) error {
	return d.img.WriteZeroes(off, n, unmap)
}
func (d qcow2Driver) discard(off, n int64) error { return d.img.Discard(off, n) }
func (d qcow2Driver) flush() error               { return d.img.Flush() }
func (d qcow2Driver) size() int64                { return d.img.Size() }
func (d qcow2Driver) close() error               { return d.img.Close() }
