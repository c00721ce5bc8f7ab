package imgcmd

import (
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/snapvm/snapvm/qcow2"
)

// errnoOf picks the errno qemu-img would report for a library error.
func errnoOf(err error) syscall.Errno {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return errno
	}
	switch {
	case errors.Is(err, qcow2.ErrUnsupported):
		return syscall.ENOTSUP
	case errors.Is(err, qcow2.ErrCorrupt):
		return syscall.EIO
	}
	return syscall.EIO
}

func runSnapshot(e *env, args []string) error {
	opts, pos, err := getopt(args, ":la:c:d:hqU", "help", "force-share", "image-opts", "object=")
	if err != nil {
		return err
	}
	action, name, quiet := "", "", false
	for _, o := range opts {
		switch o.name {
		case "l", "a", "c", "d":
			if action != "" {
				return usageErr("Cannot mix '-l', '-a', '-c', '-d'")
			}
			action, name = o.name, o.val
		case "q":
			quiet = true
		case "h", "help":
			fmt.Fprintln(e.stdout, commands["snapshot"].help)
			return nil
		case "image-opts", "object":
			return usageErr("--%s is not supported", o.name)
		}
	}
	_ = quiet // qemu-img snapshot prints nothing but the list anyway
	if err := oneImage(pos); err != nil {
		return err
	}
	filename := pos[0]
	g, n, err := openImage(e, filename, "", action == "l" || action == "", true)
	if err != nil {
		return fail("%v", err)
	}
	defer g.Close()
	img := n.Qcow2()

	switch action {
	case "l":
		if img == nil {
			return nil
		}
		list := snapshotInfos(img)
		if len(list) == 0 {
			return nil
		}
		fmt.Fprintln(e.stdout, "Snapshot list:")
		writeSnapshotTable(e.stdout, list)
	case "c":
		if img == nil {
			return fail("Could not create snapshot '%s': -%d (%s)", name, int(syscall.ENOTSUP), errText(syscall.ENOTSUP))
		}
		now := time.Now()
		// qemu-img writes the date (from gettimeofday: microseconds) and
		// zero for the clock and icount.
		_, err := img.CreateSnapshot(qcow2.SnapshotInfo{
			Name:     name,
			DateSec:  uint32(now.Unix()),
			DateNsec: uint32(now.Nanosecond() / 1000 * 1000),
		})
		if err != nil {
			errno := errnoOf(err)
			return fail("Could not create snapshot '%s': -%d (%s)", name, int(errno), errText(errno))
		}
	case "a":
		if img == nil {
			return fail("Could not apply snapshot '%s': Failed to load snapshot: %s", name, errText(syscall.ENOTSUP))
		}
		if _, ok := img.FindSnapshot(name); !ok {
			return fail("Could not apply snapshot '%s': Failed to load snapshot: %s", name, errText(syscall.ENOENT))
		}
		if err := img.ApplySnapshot(name); err != nil {
			return fail("Could not apply snapshot '%s': Failed to load snapshot: %s", name, trimQcow2(err))
		}
	case "d":
		if img == nil {
			return fail("Could not delete snapshot '%s': %s", name, errText(syscall.ENOTSUP))
		}
		found := false
		for _, s := range img.Snapshots() {
			if s.Name == name {
				found = true
				break
			}
		}
		if !found {
			return fail("Could not delete snapshot '%s': snapshot not found", name)
		}
		if err := img.DeleteSnapshot("", name); err != nil {
			return fail("Could not delete snapshot '%s': %s", name, trimQcow2(err))
		}
	}
	if err := g.Close(); err != nil {
		return fail("%v", trimQcow2(err))
	}
	return nil
}
