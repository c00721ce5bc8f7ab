package imgcmd

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// QEMU coordinates processes sharing an image with open-file-description
// byte locks in the image file: holding permission P is a shared lock on
// byte 100+P, refusing to share P a shared lock on byte 200+P. snapvm-img
// honours the protocol so it neither modifies an image a running QEMU (or
// qemu-img) uses nor lets one modify an image snapvm-img is working on.
const (
	lockPermBase   = 100
	lockSharedBase = 200
	permConsistent = 0 // bit numbers of QEMU's BLK_PERM_*
	permWrite      = 1
	permResize     = 3
)

// lockImage checks and takes QEMU's locks on filename for a reader (which
// refuses to share writing) or a writer (which also takes write and resize
// and shares neither). The locks are dropped when Main returns.
func (e *env) lockImage(filename string, write bool) error {
	if e.forceShare && !write {
		return nil
	}
	f, err := os.Open(filename)
	if err != nil {
		return nil // the open that follows reports it
	}
	held := func(b int64) bool {
		lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: b, Len: 1}
		if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &lk); err != nil {
			return false // no OFD locks here: nothing to coordinate with
		}
		return lk.Type != unix.F_UNLCK
	}
	busy := func(shared bool) error {
		f.Close()
		kind := `"write"`
		if shared {
			kind = `shared "write"`
		}
		return fmt.Errorf("Could not open '%s': Failed to get %s lock\nIs another process using the image [%s]?", filename, kind, filename)
	}
	if write {
		if held(lockSharedBase+permWrite) || held(lockPermBase+permWrite) || held(lockSharedBase+permResize) {
			return busy(false)
		}
	} else if held(lockPermBase + permWrite) {
		return busy(true)
	}
	take := []int64{lockPermBase + permConsistent, lockSharedBase + permWrite}
	if write {
		take = append(take, lockPermBase+permWrite, lockPermBase+permResize, lockSharedBase+permResize)
	}
	for _, b := range take {
		lk := unix.Flock_t{Type: unix.F_RDLCK, Whence: 0, Start: b, Len: 1}
		if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk); err != nil {
			f.Close()
			if err == unix.EAGAIN || err == unix.EACCES {
				return busy(!write)
			}
			return nil // the file system has no locks: carry on as QEMU does
		}
	}
	e.locks = append(e.locks, f)
	return nil
}

func (e *env) releaseLocks() {
	for _, f := range e.locks {
		f.Close()
	}
	e.locks = nil
}
