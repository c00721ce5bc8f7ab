// Package imgcmd implements snapvm-img, the offline image tool: the
// qemu-img subcommands snapvm supports (create, info, check, snapshot,
// convert, compare, resize, bench), spelled like qemu-img 7.2 with the same
// output texts, JSON layout (QEMU's member order included) and exit codes.
// Error messages carry the prefix "snapvm-img:" where qemu-img's carry
// "qemu-img:".
//
// Differences from qemu-img 7.2, all refused with a message rather than
// ignored where they would change the result:
//   - formats qcow2 and raw only; create refuses lazy_refcounts=on,
//     encryption, preallocation and other -o options ("Invalid parameter");
//   - convert takes one source, no -B/-c/--bitmaps; -m/-W/-t/-T are accepted
//     and change nothing (it always reads 8 chunks at once, writes in order)
//     and the target is flushed at the end (qemu-img's default cache=unsafe
//     skips that);
//   - resize cannot shrink qcow2 images (raw can, with --shrink);
//   - bench uses the page cache whatever -t/-n/-i say;
//   - QEMU's image locks are checked and taken for the image named on the
//     command line, not for the backing files below it;
//   - --object and --image-opts are not supported.
package imgcmd

import (
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"

	"github.com/snapvm/snapvm/block"
)

// Prog is the name messages are prefixed with.
const Prog = "snapvm-img"

// exitError ends a subcommand with a message on stderr and a status.
type exitError struct {
	code int
	msg  string // printed as "snapvm-img: msg"; "" prints nothing
	hint bool   // add the --help hint as getopt errors do
	// noNewline reproduces qemu-img messages that lack their final newline.
	noNewline bool
}

func (e *exitError) Error() string { return e.msg }

func fail(format string, args ...any) error {
	return &exitError{code: 1, msg: fmt.Sprintf(format, args...)}
}

func usageErr(format string, args ...any) error {
	return &exitError{code: 1, msg: fmt.Sprintf(format, args...), hint: true}
}

// oneImage checks that the subcommand got exactly one image file name,
// with qemu-img's texts otherwise.
func oneImage(pos []string) error {
	switch len(pos) {
	case 1:
		return nil
	case 0:
		return usageErr("Expecting one image file name")
	}
	return usageErr("Unexpected argument: %s", pos[1])
}

// env is what a subcommand runs with.
type env struct {
	stdout, stderr io.Writer
	forceShare     bool               // -U: read without QEMU's "write" lock check
	locks          []*block.ImageLock // QEMU image locks held until Main returns
}

func (e *env) warn(format string, args ...any) {
	fmt.Fprintf(e.stderr, Prog+": "+format+"\n", args...)
}

type command struct {
	run  func(e *env, args []string) error
	help string
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"bench":    {runBench, "bench [-c count] [-d depth] [-f fmt] [--flush-interval=flush_interval] [-n] [--no-drain] [-o offset] [--pattern=pattern] [-q] [-s buffer_size] [-S step_size] [-t cache] [-w] [-U] filename"},
		"check":    {runCheck, "check [-q] [-f fmt] [--output=ofmt] [-r [leaks | all]] [-U] filename"},
		"compare":  {runCompare, "compare [-f fmt] [-F fmt] [-p] [-q] [-s] [-U] filename1 filename2"},
		"convert":  {runConvert, "convert [-f fmt] [-O output_fmt] [-o options] [-p] [-q] [-n] [-U] filename [filename2 [...]] output_filename"},
		"create":   {runCreate, "create [-q] [-f fmt] [-b backing_file [-F backing_fmt]] [-u] [-o options] filename [size]"},
		"info":     {runInfo, "info [-f fmt] [--output=ofmt] [--backing-chain] [-U] filename"},
		"resize":   {runResize, "resize [-f fmt] [-q] [--shrink] filename [+ | -]size"},
		"snapshot": {runSnapshot, "snapshot [-q] [-l | -a snapshot | -c snapshot | -d snapshot] [-U] filename"},
	}
}

// Main runs snapvm-img with args (without the program name) and returns
// the exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	e := &env{stdout: stdout, stderr: stderr}
	if len(args) == 0 {
		e.warn("Not enough arguments")
		fmt.Fprintf(stderr, "Try '%s --help' for more information\n", Prog)
		return 1
	}
	switch args[0] {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	case "-V", "--version":
		fmt.Fprintf(stdout, "%s (snapvm) compatible with qemu-img version 7.2\n", Prog)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		e.warn("Command not found: %s", args[0])
		return 1
	}
	// SNAPVM_IMG_CPUPROFILE=file records a pprof CPU profile of the run.
	if path := os.Getenv("SNAPVM_IMG_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			if pprof.StartCPUProfile(f) == nil {
				defer func() { pprof.StopCPUProfile(); f.Close() }()
			}
		}
	}
	for _, a := range args[1:] {
		if a == "--" {
			break
		}
		if a == "-U" || a == "--force-share" {
			e.forceShare = true
		}
	}
	err := c.run(e, args[1:])
	e.releaseLocks()
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if ee.msg != "" && ee.noNewline {
			fmt.Fprintf(stderr, "%s: %s", Prog, ee.msg)
		} else if ee.msg != "" {
			e.warn("%s", ee.msg)
		}
		if ee.hint {
			fmt.Fprintf(stderr, "Try '%s --help' for more information\n", Prog)
		}
		return ee.code
	}
	e.warn("%v", err)
	return 1
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "%s: offline qcow2/raw image tool (qemu-img compatible subset)\nusage: %s [standard options] command [command options]\n\nCommand syntax:\n", Prog, Prog)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %s\n", commands[n].help)
	}
}

// opt is one parsed option: its name ("f", "output", ...) and value.
type opt struct {
	name, val string
}

// getopt parses args like GNU getopt_long with permutation: short options
// from spec ("f:" takes a value, attached or as the next argument), long
// options from longs ("output=" takes a value, "shrink" does not), "--"
// ends options, and options may follow the positional arguments.
func getopt(args []string, spec string, longs ...string) ([]opt, []string, error) {
	takes := map[byte]bool{}
	for i := 0; i < len(spec); i++ {
		if spec[i] == ':' {
			continue
		}
		takes[spec[i]] = i+1 < len(spec) && spec[i+1] == ':'
	}
	longTakes := map[string]bool{}
	for _, l := range longs {
		longTakes[strings.TrimSuffix(l, "=")] = strings.HasSuffix(l, "=")
	}
	var opts []opt
	var pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			pos = append(pos, args[i+1:]...)
			return opts, pos, nil
		case strings.HasPrefix(a, "--"):
			name, val, hasVal := strings.Cut(a[2:], "=")
			t, ok := longTakes[name]
			if !ok {
				return nil, nil, usageErr("unrecognized option '%s'", a)
			}
			if t && !hasVal {
				if i+1 >= len(args) {
					return nil, nil, usageErr("missing argument for option '--%s'", name)
				}
				i++
				val = args[i]
			} else if !t && hasVal {
				return nil, nil, usageErr("unrecognized option '%s'", a)
			}
			opts = append(opts, opt{name, val})
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				c := a[j]
				t, ok := takes[c]
				if !ok {
					return nil, nil, usageErr("unrecognized option '%s'", a)
				}
				if !t {
					opts = append(opts, opt{string(c), ""})
					continue
				}
				val := a[j+1:]
				if val == "" {
					if i+1 >= len(args) {
						return nil, nil, usageErr("missing argument for option '-%c'", c)
					}
					i++
					val = args[i]
				}
				opts = append(opts, opt{string(c), val})
				break
			}
		default:
			pos = append(pos, a)
		}
	}
	return opts, pos, nil
}

// parseSize reads a size the way qemu-img does (qemu_strtosz): a
// non-negative number, optionally with a fraction, and an optional suffix
// b/B (bytes), k/K, M, G, T, P, E (powers of 1024); no suffix means bytes.
func parseSize(s string) (int64, error) {
	errBad := errors.New("invalid size")
	if s == "" || s[0] == '-' || s[0] == '+' || s[0] == ' ' {
		return 0, errBad
	}
	end := 0
	for end < len(s) && (s[end] >= '0' && s[end] <= '9' || s[end] == '.') {
		end++
	}
	num, suffix := s[:end], s[end:]
	if num == "" {
		return 0, errBad
	}
	var mult float64 = 1
	switch strings.ToUpper(suffix) {
	case "", "B":
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	case "T":
		mult = 1 << 40
	case "P":
		mult = 1 << 50
	case "E":
		mult = 1 << 60
	default:
		return 0, errBad
	}
	if !strings.Contains(num, ".") {
		v, err := strconv.ParseUint(num, 10, 64)
		if err != nil {
			return 0, errBad
		}
		if mult > 1 && v > uint64(math.MaxInt64)/uint64(mult) || v > math.MaxInt64 {
			return 0, errBad
		}
		return int64(v) * int64(mult), nil
	}
	if mult == 1 {
		return 0, errBad // QEMU refuses a fraction of a byte
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f*mult >= math.MaxInt64 {
		return 0, errBad
	}
	return int64(f * mult), nil
}

const sizeHint = "Invalid image size specified. You may use k, M, G, T, P or E suffixes for\n" + Prog + ": kilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes."

// sizeToStr is QEMU's size_to_str: three significant digits and a binary
// unit ("196 KiB", "1.25 MiB", "0 B").
func sizeToStr(v uint64) string {
	suffixes := []string{"", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"}
	_, exp := math.Frexp(float64(v) / (1000.0 / 1024.0))
	i := (exp - 1) / 10
	if i < 0 {
		i = 0
	}
	if i >= len(suffixes) {
		i = len(suffixes) - 1
	}
	div := float64(uint64(1) << (uint(i) * 10))
	return fmt.Sprintf("%s %sB", fmtG3(float64(v)/div), suffixes[i])
}

// fmtG3 is C's "%0.3g".
func fmtG3(f float64) string {
	return strconv.FormatFloat(f, 'g', 3, 64)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
