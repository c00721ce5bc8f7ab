package block

import (
	"errors"
	"os"

	"golang.org/x/sys/unix"
)

// QEMU coordinates processes sharing an image file with open-file-
// description byte locks: holding permission P is a shared lock on byte
// 100+P, refusing to let others have P a shared lock on byte 200+P.
// Honouring the protocol keeps qemu-img (and QEMU) from modifying an image
// snapvm is using, and snapvm from opening one they are modifying.
const (
	lockPermBase   = 100
	lockSharedBase = 200
	permConsistent = 0 // bit numbers of QEMU's BLK_PERM_*
	permWrite      = 1
	permResize     = 3
)

// LockError reports that another process holds a conflicting image lock.
// Its text is QEMU's.
type LockError struct {
	Shared bool // we wanted to read (a shared lock), not to write
}

func (e *LockError) Error() string {
	if e.Shared {
		return `Failed to get shared "write" lock`
	}
	return `Failed to get "write" lock`
}

// ImageLock is the set of QEMU locks one user holds on an image file.
type ImageLock struct {
	f     *os.File
	write bool
}

// LockImage checks for conflicting users of path and takes QEMU's locks.
// A reader holds consistent-read; with unshareWrite (what QEMU's qcow2
// driver asks of its file, as its metadata must not change underneath it)
// it also lets no one else write. A writer holds write and resize and
// shares neither, as a VM's disk does. A file system without OFD locks
// gives an inert lock, as QEMU carries on without locking there.
func LockImage(path string, write, unshareWrite bool) (*ImageLock, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	l := &ImageLock{f: f, write: write}
	held := func(b int64) bool {
		lk := unix.Flock_t{Type: unix.F_WRLCK, Start: b, Len: 1}
		if unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk) != nil {
			return false
		}
		return lk.Type != unix.F_UNLCK
	}
	take := []int64{lockPermBase + permConsistent}
	switch {
	case write:
		if held(lockSharedBase+permWrite) || held(lockPermBase+permWrite) || held(lockSharedBase+permResize) {
			f.Close()
			return nil, &LockError{}
		}
		take = append(take, lockPermBase+permWrite, lockPermBase+permResize, lockSharedBase+permWrite, lockSharedBase+permResize)
	case unshareWrite:
		if held(lockPermBase + permWrite) {
			f.Close()
			return nil, &LockError{Shared: true}
		}
		take = append(take, lockSharedBase+permWrite)
	}
	for _, b := range take {
		lk := unix.Flock_t{Type: unix.F_RDLCK, Start: b, Len: 1}
		if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
			if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
				f.Close()
				return nil, &LockError{Shared: !write}
			}
			return l, nil // no OFD locks on this file system
		}
	}
	return l, nil
}

// Downgrade gives up the write and resize permissions and lets others
// resize again (a writer becoming a read-only user, e.g. the base of a new
// external snapshot); others still may not write.
func (l *ImageLock) Downgrade() {
	if l == nil || !l.write || l.f == nil {
		return
	}
	for _, b := range []int64{lockPermBase + permWrite, lockPermBase + permResize, lockSharedBase + permResize} {
		lk := unix.Flock_t{Type: unix.F_UNLCK, Start: b, Len: 1}
		unix.FcntlFlock(l.f.Fd(), unix.F_OFD_SETLK, &lk)
	}
	l.write = false
}

// Release drops all the locks.
func (l *ImageLock) Release() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
