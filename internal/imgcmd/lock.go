package imgcmd

import (
	"errors"
	"fmt"

	"github.com/snapvm/snapvm/block"
)

// lockImage checks and takes QEMU's image locks on filename for a reader or
// a writer (see block.LockImage; a qcow2 reader also keeps writers out);
// they are dropped when Main returns. -U lets readers skip the check, as
// in qemu-img.
func (e *env) lockImage(filename string, write, qcow2 bool) error {
	if e.forceShare && !write {
		return nil
	}
	l, err := block.LockImage(filename, write, qcow2)
	var le *block.LockError
	if errors.As(err, &le) {
		return fmt.Errorf("Could not open '%s': %v\nIs another process using the image [%s]?", filename, err, filename)
	}
	if err != nil {
		return nil // the open that follows reports it
	}
	e.locks = append(e.locks, l)
	return nil
}

func (e *env) releaseLocks() {
	for _, l := range e.locks {
		l.Release()
	}
	e.locks = nil
}
