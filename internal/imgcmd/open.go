package imgcmd

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"

	"github.com/snapvm/snapvm/block"
	"github.com/snapvm/snapvm/qcow2"
)

// errText renders an OS error as strerror would ("No such file or directory").
func errText(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		s := errno.Error()
		return strings.ToUpper(s[:1]) + s[1:]
	}
	return err.Error()
}

// probeFormat guesses an image's format as qemu-img does for the formats
// snapvm knows: qcow2 by its magic, anything else raw.
func probeFormat(filename string) (string, error) {
	f, err := os.Open(filename)
	if err != nil {
		return "", err
	}
	defer f.Close()
	if qcow2.Probe(f) {
		return "qcow2", nil
	}
	return "raw", nil
}

// openImage opens filename as a one-image block graph. format "" probes
// (warning, as qemu-img does, when a probed raw image is opened for
// writing). noBacking leaves a qcow2 image's backing file closed; reads of
// unallocated clusters then return zeros. Errors read like qemu-img's:
// "Could not open 'f': Could not open 'f': No such file or directory".
func openImage(e *env, filename, format string, readOnly, noBacking bool) (*block.Graph, *block.Node, error) {
	if format == "" {
		f, err := probeFormat(filename)
		if err != nil {
			return nil, nil, fmt.Errorf("Could not open '%s': Could not open '%s': %s", filename, filename, errText(err))
		}
		format = f
		if format == "raw" && !readOnly && e != nil {
			fmt.Fprintf(e.stderr, "WARNING: Image format was not specified for '%s' and probing guessed raw.\n"+
				"         Automatically detecting the format is dangerous for raw images, write operations on block 0 will be restricted.\n"+
				"         Specify the 'raw' format explicitly to remove the restrictions.\n", filename)
		}
	}
	if format != "raw" && format != "qcow2" {
		return nil, nil, fmt.Errorf("Could not open '%s': Unknown driver '%s'", filename, format)
	}
	if e != nil {
		if err := e.lockImage(filename, !readOnly, format == "qcow2"); err != nil {
			return nil, nil, err
		}
	}
	ro := readOnly
	o := block.Options{
		Driver:   format,
		NodeName: "image",
		ReadOnly: &ro,
		File:     &block.Ref{Options: &block.Options{Driver: "file", Filename: filename}},
	}
	if noBacking && format == "qcow2" {
		o.Backing = &block.Ref{Null: true}
	}
	g := block.NewGraph()
	n, err := g.Add(o)
	if err != nil {
		g.Close()
		return nil, nil, fmt.Errorf("Could not open '%s': %v", filename, err)
	}
	return g, n, nil
}

func resizeRawFile(path string, size int64) error {
	return os.Truncate(path, size)
}
