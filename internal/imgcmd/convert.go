package imgcmd

import (
	"fmt"
	"io"

	"github.com/snapvm/snapvm/block"
)

// convertChunk is how much convert reads at a time; zeroBlock is the
// granularity at which all-zero data is left unwritten (qemu-img's default
// -S 4k).
const (
	convertChunk = 2 << 20
	zeroBlock    = 4096
)

// progress prints qemu-img's "    (x.xx/100%)\r" progress lines.
type progress struct {
	w       io.Writer
	on      bool
	total   int64
	lastPct float64
}

func (p *progress) print(done int64) {
	if !p.on {
		return
	}
	pct := 100.0
	if p.total > 0 {
		pct = float64(done) * 100 / float64(p.total)
	}
	if done != 0 && done != p.total && pct-p.lastPct < 1 {
		return
	}
	p.lastPct = pct
	fmt.Fprintf(p.w, "    (%.2f/100%%)\r", pct)
}

func (p *progress) end() {
	if p.on {
		fmt.Fprintf(p.w, "    (%.2f/100%%)\r\n", p.lastPct)
	}
}

func runConvert(e *env, args []string) error {
	opts, pos, err := getopt(args, ":hf:O:B:Cco:l:S:pt:T:qnm:WrU", "help", "object=", "image-opts", "target-image-opts", "force-share", "salvage", "target-is-zero", "bitmaps")
	if err != nil {
		return err
	}
	srcFmt, outFmt, showProgress, quiet, noCreate := "", "raw", false, false, false
	var olist []string
	for _, o := range opts {
		switch o.name {
		case "f":
			srcFmt = o.val
		case "O":
			outFmt = o.val
		case "o":
			olist = append(olist, o.val)
		case "p":
			showProgress = true
		case "q":
			quiet = true
		case "n":
			noCreate = true
		case "m", "W", "t", "T", "U", "force-share":
			// Parallelism and cache modes change only speed here.
		case "h", "help":
			fmt.Fprintln(e.stdout, commands["convert"].help)
			return nil
		default:
			return usageErr("option '%s' is not supported by %s convert", o.name, Prog)
		}
	}
	if quiet {
		showProgress = false
	}
	if len(pos) < 2 {
		return usageErr("Must specify image file name")
	}
	if len(pos) > 2 {
		return fail("converting more than one source image is not supported")
	}
	if outFmt != "qcow2" && outFmt != "raw" {
		return fail("Unknown file format '%s'", outFmt)
	}
	src, out := pos[0], pos[1]
	sg, sn, err := openImage(e, src, srcFmt, true, false)
	if err != nil {
		return fail("%v", err)
	}
	defer sg.Close()
	size := sn.Size()

	if !noCreate {
		sp := createSpec{format: outFmt, filename: out, size: size, sizeSet: true, clusterSize: 65536, refcountBits: 16}
		for _, ol := range olist {
			kv, _ := parseOptList(ol)
			for _, p := range kv {
				if err := sp.set(p[0], p[1]); err != nil {
					return fail("%s: %v", out, err)
				}
			}
		}
		if sp.backingFile != "" {
			return fail("%s: converting to an image with a backing file is not supported", out)
		}
		if err := sp.create(); err != nil {
			return fail("%s: %v", out, err)
		}
	}
	tg, tn, err := openImage(e, out, outFmt, false, true)
	if err != nil {
		return fail("%v", err)
	}
	defer tg.Close()
	if noCreate && tn.Size() < size {
		return fail("Target image is smaller than the source image")
	}

	p := &progress{w: e.stdout, on: showProgress, total: size}
	p.print(0)
	if err := copyImage(sn, tn, size, !noCreate, p); err != nil {
		return fail("error while writing at byte %v", err)
	}
	if err := tn.Flush(); err != nil {
		return fail("error while flushing: %v", err)
	}
	p.print(size)
	p.end()
	if err := tg.Close(); err != nil {
		return fail("%v", err)
	}
	return nil
}

// convertReaders is how many chunks are read at once (qemu-img convert's
// default -m 8); writes stay in order so the target is laid out sequentially.
const convertReaders = 8

// copyChunk is one piece of the copy, read by a worker and written in order.
type copyChunk struct {
	off, n int64
	skip   bool // known to read as zeros: nothing to write
	buf    []byte
	err    error
	done   chan struct{}
}

// copyImage copies size bytes from src to dst, skipping ranges the source
// knows to be zero and, when dst starts out zeroed, blocks that read as
// zeros (so the target stays sparse). Reads run in parallel; writes go out
// in order.
func copyImage(src, dst *block.Node, size int64, dstZeroed bool, p *progress) error {
	pool := make(chan []byte, convertReaders+2)
	for i := 0; i < cap(pool); i++ {
		pool <- make([]byte, convertChunk)
	}
	jobs := make(chan *copyChunk, convertReaders)
	ordered := make(chan *copyChunk, convertReaders)
	stop := make(chan struct{})
	defer close(stop)

	// Readers.
	for i := 0; i < convertReaders; i++ {
		go func() {
			for c := range jobs {
				if _, err := src.ReadAt(c.buf[:c.n], c.off); err != nil {
					c.err = fmt.Errorf("%d: read: %v", c.off, err)
				}
				close(c.done)
			}
		}()
	}
	// Planner: cuts the image into chunks at allocation-status changes.
	go func() {
		defer close(ordered)
		defer close(jobs)
		img := src.Qcow2()
		for off := int64(0); off < size; {
			n := min(int64(convertChunk), size-off)
			c := &copyChunk{off: off, done: make(chan struct{})}
			if img != nil && dstZeroed {
				extents, err := img.Map(off, n)
				if err == nil && len(extents) > 0 && extents[0].Off == off {
					if extents[0].Zero && extents[0].Len > 0 {
						c.n, c.skip = min(extents[0].Len, size-off), true
						close(c.done)
						select {
						case ordered <- c:
						case <-stop:
							return
						}
						off += c.n
						continue
					}
					n = min(n, extents[0].Len) // stop at the next status change
				}
			}
			c.n = n
			select {
			case c.buf = <-pool:
			case <-stop:
				return
			}
			select {
			case ordered <- c:
			case <-stop:
				return
			}
			jobs <- c
			off += n
		}
	}()
	// Writer (this goroutine), in order.
	for c := range ordered {
		<-c.done
		if c.err != nil {
			return c.err
		}
		if !c.skip {
			if err := writeNonZero(dst, c.buf[:c.n], c.off, dstZeroed); err != nil {
				return err
			}
			pool <- c.buf
		}
		p.print(c.off + c.n)
	}
	return nil
}

// writeNonZero writes b at off, leaving out zeroBlock-sized runs of zeros
// when the destination already reads as zeros there.
func writeNonZero(dst *block.Node, b []byte, off int64, dstZeroed bool) error {
	if !dstZeroed {
		_, err := dst.WriteAt(b, off)
		if err != nil {
			return fmt.Errorf("%d: %v", off, err)
		}
		return nil
	}
	start := -1 // start of the pending non-zero run
	for i := 0; i < len(b); i += zeroBlock {
		end := min(i+zeroBlock, len(b))
		if isZero(b[i:end]) {
			if start >= 0 {
				if _, err := dst.WriteAt(b[start:i], off+int64(start)); err != nil {
					return fmt.Errorf("%d: %v", off+int64(start), err)
				}
				start = -1
			}
			continue
		}
		if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		if _, err := dst.WriteAt(b[start:], off+int64(start)); err != nil {
			return fmt.Errorf("%d: %v", off+int64(start), err)
		}
	}
	return nil
}

func isZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
