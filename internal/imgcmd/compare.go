package imgcmd

import (
	"bytes"
	"fmt"

	"github.com/snapvm/snapvm/block"
)

const sectorSize = 512

// runCompare is qemu-img compare: exit 0 identical, 1 different, 2 error.
// A size difference is allowed (with a warning) when the larger image's
// extra part reads as zeros, except in strict mode.
func runCompare(e *env, args []string) error {
	opts, pos, err := getopt(args, ":hf:F:T:pqsU", "help", "object=", "image-opts", "force-share")
	if err != nil {
		return err // usage errors exit with 1, as in qemu-img
	}
	fmt1, fmt2, quiet, strict, showProgress := "", "", false, false, false
	for _, o := range opts {
		switch o.name {
		case "f":
			fmt1 = o.val
		case "F":
			fmt2 = o.val
		case "q":
			quiet = true
		case "s":
			strict = true
		case "p":
			showProgress = true
		case "T", "U", "force-share":
		case "h", "help":
			fmt.Fprintln(e.stdout, commands["compare"].help)
			return nil
		default:
			return usageErr("--%s is not supported", o.name)
		}
	}
	if quiet {
		showProgress = false
	}
	if len(pos) != 2 {
		return usageErr("Expecting two image file names")
	}
	if fmt2 == "" {
		fmt2 = fmt1
	}
	g1, n1, err := openImage(e, pos[0], fmt1, true, false)
	if err != nil {
		return &exitError{code: 2, msg: err.Error()}
	}
	defer g1.Close()
	g2, n2, err := openImage(e, pos[1], fmt2, true, false)
	if err != nil {
		return &exitError{code: 2, msg: err.Error()}
	}
	defer g2.Close()

	say := func(format string, args ...any) {
		if !quiet {
			fmt.Fprintf(e.stdout, format, args...)
		}
	}
	s1, s2 := n1.Size(), n2.Size()
	if s1 != s2 {
		if strict {
			say("Strict mode: Image size mismatch!\n")
			return &exitError{code: 1}
		}
		say("Warning: Image size mismatch!\n")
	}
	common := min(s1, s2)
	total := max(s1, s2)
	p := &progress{w: e.stdout, on: showProgress, total: total}
	p.print(0)
	b1 := make([]byte, convertChunk)
	b2 := make([]byte, convertChunk)
	for off := int64(0); off < common; {
		n := min(int64(convertChunk), common-off)
		if _, err := n1.ReadAt(b1[:n], off); err != nil {
			return &exitError{code: 2, msg: fmt.Sprintf("Error while reading offset %d of %s: %v", off, pos[0], err)}
		}
		if _, err := n2.ReadAt(b2[:n], off); err != nil {
			return &exitError{code: 2, msg: fmt.Sprintf("Error while reading offset %d of %s: %v", off, pos[1], err)}
		}
		if !bytes.Equal(b1[:n], b2[:n]) {
			i := firstDiff(b1[:n], b2[:n])
			p.end()
			say("Content mismatch at offset %d!\n", off+int64(i)/sectorSize*sectorSize)
			return &exitError{code: 1}
		}
		off += n
		p.print(off)
	}
	if s1 != s2 {
		big := n1
		if s2 > s1 {
			big = n2
		}
		if at, err := firstNonZero(big, common, total); err != nil {
			return &exitError{code: 2, msg: err.Error()}
		} else if at >= 0 {
			p.end()
			say("Content mismatch at offset %d!\n", at)
			return &exitError{code: 1}
		}
	}
	p.print(total)
	p.end()
	say("Images are identical.\n")
	return nil
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// firstNonZero returns the sector-aligned offset of the first non-zero
// byte of n in [from, to), or -1.
func firstNonZero(n *block.Node, from, to int64) (int64, error) {
	buf := make([]byte, convertChunk)
	for off := from; off < to; {
		c := min(int64(convertChunk), to-off)
		if _, err := n.ReadAt(buf[:c], off); err != nil {
			return 0, err
		}
		for i, x := range buf[:c] {
			if x != 0 {
				return (off + int64(i)) / sectorSize * sectorSize, nil
			}
		}
		off += c
	}
	return -1, nil
}
