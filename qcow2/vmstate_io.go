package qcow2

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"unsafe"
)

// Writing and reading the vm-state area from several goroutines at once.
//
// A VM snapshot writes guest RAM, hundreds of MiB, into the vm-state area while the guest
// runs, and a load reads it back. Most of that time is the data moving, not the metadata,
// so WriteVMState and ReadVMState do only the metadata under the image lock: they find or
// allocate the clusters and update the cached L2 entries, then copy the data after
// releasing the lock, so concurrent callers overlap their copies (and guest disk requests
// are not held up behind them).
//
// Crash safety. Only two kinds of clusters take their data outside the lock: clusters
// already allocated to the active vm-state area and not shared (COPIED), and freshly
// allocated clusters beyond the end of the file, which the file is extended over (under the
// lock) before anything points at them. Either reads as valid data at every instant: old
// stream bytes or zeros. So an L2 entry written out early (a flush, a cache eviction)
// never names a cluster holding anything but vm-state bytes or zeros, and `qemu-img check`
// finds nothing wrong whenever the process dies. The vm-state area means something only
// once a snapshot records it, and every operation that shares, frees or moves its clusters
// (snapshot create, replace, apply, delete, DiscardVMState, Resize, Close) first waits for
// the data copies in flight, so a snapshot always sees the data of every WriteVMState call
// that returned, and no cluster is freed under a read in flight. Clusters that need old
// contents merged in (shared with a snapshot, or reused from inside the file) are written
// under the lock, as guest writes are.
//
// Large copies bypass the page cache (O_DIRECT, through a second descriptor of the same
// file). A save writes the whole of guest RAM once: putting it through the page cache
// first costs a memory copy and hundreds of MiB of fresh page cache, which a host under
// memory pressure or a hypervisor backing guest memory lazily makes several times slower
// than the write itself, and the snapshot's fsync then writes it all again. A load reads
// straight into guest RAM the same way. The kernel keeps the two descriptors coherent (a
// direct request first writes back any dirty cached page it covers, and a direct write
// drops the cached copies); small copies, scattered pages rewritten by the later pre-copy
// passes, stay buffered, where a write costs less.

// dataCopy is a copy of data into (WriteVMState) or out of (ReadVMState) the file, made
// outside the lock.
type dataCopy struct {
	p    []byte
	host int64
}

// WriteVMState writes p at position pos of the vm-state area (through the active L1).
// Concurrent calls for disjoint ranges run their data copies in parallel.
func (img *Image) WriteVMState(p []byte, pos int64) error {
	return img.vmStateIO(p, pos, img.writable, img.writeAtLater, img.writeData)
}

// ReadVMState reads p from position pos of the vm-state area; holes read as zeros.
// Concurrent calls run their data copies in parallel.
func (img *Image) ReadVMState(p []byte, pos int64) error {
	return img.vmStateIO(p, pos, img.usable, img.readAtLater, img.readData)
}

// vmStateIO checks the image and the range under the lock, does the metadata part of
// the transfer there (meta), and leaves the data copies it returns to copyUnlocked.
func (img *Image) vmStateIO(p []byte, pos int64, ready func() error,
	meta func(p []byte, off int64, later *[]dataCopy) error,
	copy func(direct *os.File, w dataCopy) error) error {
	img.mu.Lock()
	if err := ready(); err != nil {
		img.mu.Unlock()
		return err
	}
	off, err := img.checkVMState(pos, int64(len(p)))
	if err != nil {
		img.mu.Unlock()
		return err
	}
	var later []dataCopy
	if err := meta(p, off, &later); err != nil || len(later) == 0 {
		img.mu.Unlock()
		return err
	}
	return img.copyUnlocked(later, copy)
}

// copyUnlocked runs copy over the data copies with mu released, counted in vmCopies so
// that operations moving clusters wait for them. It is called with mu held and returns
// with it released.
func (img *Image) copyUnlocked(later []dataCopy, copy func(direct *os.File, w dataCopy) error) error {
	if img.vmIdle == nil {
		img.vmIdle = sync.NewCond(&img.mu)
	}
	direct := img.directFile()
	img.vmCopies++
	img.mu.Unlock()

	var cerr error
	for _, w := range later {
		if err := copy(direct, w); err != nil {
			cerr = err
			break
		}
	}

	img.mu.Lock()
	img.vmCopies--
	if img.vmCopies == 0 {
		img.vmIdle.Broadcast()
	}
	img.mu.Unlock()
	return cerr
}

// directMin is the smallest copy sent past the page cache, and
// directAlign the alignment of memory, length and file offset it needs.
const (
	directMin   = 256 << 10
	directAlign = 4096
)

// useDirect reports whether a copy goes past the page cache.
func useDirect(direct *os.File, w dataCopy) bool {
	return direct != nil && len(w.p) >= directMin &&
		(uintptr(unsafe.Pointer(unsafe.SliceData(w.p)))|uintptr(len(w.p))|uintptr(w.host))%directAlign == 0
}

// writeData makes one of WriteVMState's copies.
func (img *Image) writeData(direct *os.File, w dataCopy) error {
	if useDirect(direct, w) {
		_, err := direct.WriteAt(w.p, w.host)
		if err == nil {
			return nil
		}
		// A file system may refuse some direct requests; the buffered path takes them.
		if !errors.Is(err, syscall.EINVAL) {
			return err
		}
	}
	_, err := img.f.storage.WriteAt(w.p, w.host)
	return err
}

// readData makes one of ReadVMState's copies; bytes beyond the end of the file read as
// zeros.
func (img *Image) readData(direct *os.File, w dataCopy) error {
	if useDirect(direct, w) {
		n, err := direct.ReadAt(w.p, w.host)
		if err == nil || errors.Is(err, io.EOF) {
			clear(w.p[n:])
			return nil
		}
		if !errors.Is(err, syscall.EINVAL) {
			return err
		}
	}
	n, err := img.f.storage.ReadAt(w.p, w.host)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	clear(w.p[n:])
	return nil
}

// directFile returns the image file opened a second time with O_DIRECT, opening it on
// first use, or nil where that is not possible (a test recorder instead of a file, a file
// system without direct I/O). Called with mu held.
func (img *Image) directFile() *os.File {
	if img.directTried {
		return img.direct
	}
	img.directTried = true
	f, ok := img.f.storage.(*os.File)
	if !ok {
		return nil
	}
	// Through /proc the very file open here is reopened, whatever became of its path.
	rc, err := f.SyscallConn()
	if err != nil {
		return nil
	}
	var fd uintptr
	if rc.Control(func(v uintptr) { fd = v }) != nil {
		return nil
	}
	flag := os.O_RDWR
	if img.readOnly {
		flag = os.O_RDONLY
	}
	d, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), flag|syscall.O_DIRECT, 0)
	if err != nil {
		return nil
	}
	img.direct = d
	return d
}

// waitVMCopies returns, with mu held, once no WriteVMState or ReadVMState data copy is in
// flight. Operations that share, free or move vm-state clusters, or close the file, call
// it first.
func (img *Image) waitVMCopies() {
	for img.vmCopies > 0 {
		img.vmIdle.Wait()
	}
}
