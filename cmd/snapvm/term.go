package main

import (
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// rawStdin puts a terminal on stdin into character mode without echo, as
// QEMU's stdio character device does, so keys reach the guest at once and
// the guest does its own echo. Signals stay on: Ctrl-C ends snapvm (QEMU's
// signal=on). It returns the function that restores the terminal.
func rawStdin(in io.Reader) (restore func()) {
	f, ok := in.(*os.File)
	if !ok {
		return func() {}
	}
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return func() {} // not a terminal
	}
	raw := *old
	raw.Iflag &^= unix.ICRNL | unix.IXON | unix.ISTRIP | unix.INLCR | unix.IGNCR
	raw.Lflag &^= unix.ICANON | unix.ECHO | unix.ECHONL | unix.IEXTEN
	raw.Cc[unix.VMIN] = 1
	raw.Cc[unix.VTIME] = 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return func() {}
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) } //nolint:errcheck // best effort on exit
}
