package imgcmd

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/snapvm/snapvm/block"
)

// benchSpec is one qemu-img bench run.
type benchSpec struct {
	count, depth  int
	bufSize, step int64
	offset        int64
	write         bool
	pattern       byte
	flushInterval int
	drain         bool
}

// runBench is qemu-img bench: count requests of bufSize bytes, depth of
// them in flight at once (goroutines), at offsets offset, offset+step, ...
// wrapping at the end of the image, optionally flushing every
// flushInterval requests.
func runBench(e *env, args []string) error {
	opts, pos, err := getopt(args, ":hc:d:f:ni:o:qs:S:t:wU", "help", "pattern=", "no-drain", "flush-interval=", "image-opts", "force-share", "object=")
	if err != nil {
		return err
	}
	sp := benchSpec{count: 75000, depth: 64, bufSize: 4096, drain: true}
	format, cache, native, stepSet := "", "writeback", false, false
	for _, o := range opts {
		switch o.name {
		case "c":
			n, err := strconv.ParseUint(o.val, 10, 31)
			if err != nil || n == 0 {
				return fail("Invalid request count specified")
			}
			sp.count = int(n)
		case "d":
			n, err := strconv.ParseUint(o.val, 10, 31)
			if err != nil || n == 0 {
				return fail("Invalid queue depth specified")
			}
			sp.depth = int(n)
		case "f":
			format = o.val
		case "n":
			native = true
		case "i":
			switch o.val {
			case "threads", "native", "io_uring":
				native = o.val == "native"
			default:
				return fail("Invalid aio option: %s", o.val)
			}
		case "o":
			n, err := parseSize(o.val)
			if err != nil {
				return fail("Invalid offset specified")
			}
			sp.offset = n
		case "q":
			// qemu-img bench prints its two lines even with -q.
		case "s":
			n, err := parseSize(o.val)
			if err != nil || n > 1<<31-1 {
				return fail("Invalid buffer size specified")
			}
			sp.bufSize = n
		case "S":
			n, err := parseSize(o.val)
			if err != nil || n > 1<<31-1 {
				return fail("Invalid step_size specified. You may use k, M, G, T, P or E suffixes for\n%s: kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.", Prog)
			}
			sp.step, stepSet = n, true
		case "t":
			switch o.val {
			case "none", "writeback", "unsafe", "directsync", "writethrough":
				cache = o.val
			default:
				return fail("Invalid cache mode")
			}
		case "w":
			sp.write = true
		case "pattern":
			n, err := strconv.ParseUint(o.val, 10, 64)
			if err != nil || n > 0xff {
				return fail("Invalid pattern byte specified")
			}
			sp.pattern = byte(n)
		case "no-drain":
			sp.drain = false
		case "flush-interval":
			n, err := strconv.ParseUint(o.val, 10, 31)
			if err != nil {
				return fail("Invalid flush interval specified")
			}
			sp.flushInterval = int(n)
		case "U", "force-share":
		case "h", "help":
			fmt.Fprintln(e.stdout, commands["bench"].help)
			return nil
		default:
			return usageErr("--%s is not supported", o.name)
		}
	}
	if len(pos) != 1 {
		return usageErr("Expecting one image file name")
	}
	if !stepSet || sp.step == 0 {
		sp.step = sp.bufSize
	}
	if sp.flushInterval > 0 && !sp.write {
		return fail("--flush-interval is only available in write tests")
	}
	if sp.flushInterval > 0 && sp.flushInterval < sp.depth {
		return fail("Flush interval can't be smaller than depth")
	}
	if !sp.drain && sp.flushInterval == 0 {
		return fail("--no-drain requires --flush-interval")
	}
	if native && cache != "none" && cache != "directsync" {
		return fail("Could not open '%s': aio=native was specified, but it requires cache.direct=on, which was not specified.", pos[0])
	}
	g, n, err := openImage(e, pos[0], format, !sp.write, false)
	if err != nil {
		return fail("%v", err)
	}
	defer g.Close()
	be, err := g.NewBackend("", n)
	if err != nil {
		return fail("%v", err)
	}

	kind := "read"
	if sp.write {
		kind = "write"
	}
	fmt.Fprintf(e.stdout, "Sending %d %s requests, %d bytes each, %d in parallel (starting at offset %d, step size %d)\n",
		sp.count, kind, sp.bufSize, sp.depth, sp.offset, sp.step)
	if sp.flushInterval > 0 {
		fmt.Fprintf(e.stdout, "Sending flush every %d requests\n", sp.flushInterval)
	}
	start := time.Now()
	if err := sp.run(be); err != nil {
		if errors.Is(err, block.ErrOutOfRange) {
			err = syscall.EIO
		}
		return fail("Failed request: %s", errText(err))
	}
	fmt.Fprintf(e.stdout, "Run completed in %3.3f seconds.\n", time.Since(start).Seconds())
	// Like qemu-img, closing the image (which flushes it) is not timed.
	if err := g.Close(); err != nil {
		return fail("%v", err)
	}
	return nil
}

// offsetOf is the offset of request i: qemu-img advances by step and wraps
// modulo (image size - buffer size).
func (sp *benchSpec) offsetOf(i int, size int64) int64 {
	if i == 0 {
		return sp.offset
	}
	if size <= sp.bufSize {
		return 0
	}
	return (sp.offset + int64(i)*sp.step) % (size - sp.bufSize)
}

// run issues the requests from sp.depth goroutines. With draining, a flush
// waits for every earlier request and holds later ones back; without it,
// flushes run alongside the requests.
func (sp *benchSpec) run(be *block.Backend) error {
	size := be.Size()
	var next atomic.Int64
	var firstErr error
	var errOnce sync.Once
	failed := atomic.Bool{}
	setErr := func(err error) {
		errOnce.Do(func() { firstErr = err; failed.Store(true) })
	}
	batch := sp.count
	if sp.flushInterval > 0 && sp.drain {
		batch = sp.flushInterval
	}
	for done := 0; done < sp.count && !failed.Load(); done += batch {
		limit := int64(min(done+batch, sp.count))
		next.Store(int64(done))
		var wg sync.WaitGroup
		for w := 0; w < sp.depth && w < int(limit)-done; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				buf := make([]byte, sp.bufSize)
				if sp.write && sp.pattern != 0 {
					for i := range buf {
						buf[i] = sp.pattern
					}
				}
				for !failed.Load() {
					i := next.Add(1) - 1
					if i >= limit {
						return
					}
					off := sp.offsetOf(int(i), size)
					var err error
					if sp.write {
						_, err = be.WriteAt(buf, off)
					} else {
						_, err = be.ReadAt(buf, off)
					}
					if err != nil {
						setErr(err)
						return
					}
					if sp.flushInterval > 0 && !sp.drain && (i+1)%int64(sp.flushInterval) == 0 {
						if err := be.Flush(); err != nil {
							setErr(err)
							return
						}
					}
				}
			}()
		}
		wg.Wait()
		if sp.flushInterval > 0 && sp.drain && !failed.Load() {
			if err := be.Flush(); err != nil {
				setErr(err)
			}
		}
	}
	return firstErr
}
