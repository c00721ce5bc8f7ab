package imgcmd

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/snapvm/snapvm/block"
	"github.com/snapvm/snapvm/qcow2"
)

// parseOptList splits a -o argument: comma-separated key=value pairs, ",,"
// standing for a literal comma. A bare key means key=on.
func parseOptList(s string) ([][2]string, error) {
	var out [][2]string
	var cur strings.Builder
	flush := func() error {
		item := cur.String()
		cur.Reset()
		if item == "" {
			return nil
		}
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			v = "on"
		}
		out = append(out, [2]string{k, v})
		return nil
	}
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			if i+1 < len(s) && s[i+1] == ',' {
				cur.WriteByte(',')
				i++
				continue
			}
			flush()
			continue
		}
		cur.WriteByte(s[i])
	}
	flush()
	return out, nil
}

// createSpec is what qemu-img create's options resolve to.
type createSpec struct {
	format        string
	filename      string
	size          int64
	sizeSet       bool
	clusterSize   int
	compat        string // as given ("" = default)
	backingFile   string
	backingFormat string
	refcountBits  int
	lazyRefcounts string
}

func runCreate(e *env, args []string) error {
	opts, pos, err := getopt(args, ":F:b:f:ho:qu", "object=", "help")
	if err != nil {
		return err
	}
	sp := createSpec{format: "raw", refcountBits: 16, clusterSize: 65536}
	quiet, unsafe := false, false
	var olist []string
	for _, o := range opts {
		switch o.name {
		case "f":
			sp.format = o.val
		case "b":
			sp.backingFile = o.val
		case "F":
			sp.backingFormat = o.val
		case "o":
			olist = append(olist, o.val)
		case "q":
			quiet = true
		case "u":
			unsafe = true
		case "h", "help":
			fmt.Fprintln(e.stdout, commands["create"].help)
			return nil
		case "object":
			return usageErr("--object is not supported")
		}
	}
	if len(pos) < 1 {
		return usageErr("Expecting image file name")
	}
	if len(pos) > 2 {
		return usageErr("Unexpected argument: %s", pos[2])
	}
	sp.filename = pos[0]
	if len(pos) == 2 {
		n, err := parseSize(pos[1])
		if err != nil {
			return fail("%s", sizeHint)
		}
		sp.size, sp.sizeSet = n, true
	}
	if sp.format != "qcow2" && sp.format != "raw" {
		return fail("%s: Unknown file format '%s'", sp.filename, sp.format)
	}
	prefix := sp.filename + ": "
	for _, ol := range olist {
		kv, _ := parseOptList(ol)
		for _, p := range kv {
			if err := sp.set(p[0], p[1]); err != nil {
				return fail("%s%v", prefix, err)
			}
		}
	}
	if sp.format == "raw" && sp.backingFile != "" {
		return fail("%sBacking file not supported for file format 'raw'", prefix)
	}
	if sp.backingFile != "" {
		if sp.backingFile == sp.filename {
			return fail("%sError: Trying to create an image with the same filename as the backing file", prefix)
		}
		if !unsafe {
			// The backing file must open; it also gives the default size.
			path := block.BackingPath(sp.filename, sp.backingFile)
			g, n, err := openImage(e, path, sp.backingFormat, true, true)
			if err != nil {
				return fail("%s%s\nCould not open backing image.", prefix, trimCouldNotOpen(err, path))
			}
			if sp.backingFormat == "" {
				g.Close()
				// qemu-img ends this message without a newline.
				return &exitError{code: 1, noNewline: true,
					msg: fmt.Sprintf("%sBacking file specified without backing format\nDetected format of %s.", prefix, n.Driver())}
			}
			if !sp.sizeSet {
				sp.size, sp.sizeSet = n.Size(), true
			}
			g.Close()
		}
	}
	if !sp.sizeSet {
		return fail("%sImage creation needs a size parameter", prefix)
	}
	if !quiet {
		fmt.Fprintln(e.stdout, sp.formatting())
	}
	if err := sp.create(); err != nil {
		return fail("%s%v", prefix, err)
	}
	return nil
}

// trimCouldNotOpen turns openImage's "Could not open 'p': Could not open
// 'p': why" into the single "Could not open 'p': why" qemu-img create
// prints for a backing file.
func trimCouldNotOpen(err error, path string) string {
	s := err.Error()
	dup := fmt.Sprintf("Could not open '%s': ", path)
	return strings.Replace(s, dup+dup, dup, 1)
}

func (sp *createSpec) set(k, v string) error {
	qcowOnly := func() error {
		if sp.format != "qcow2" {
			return fmt.Errorf("Invalid parameter '%s'", k)
		}
		return nil
	}
	switch k {
	case "size":
		n, err := parseSize(v)
		if err != nil {
			return fmt.Errorf("Parameter 'size' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.")
		}
		sp.size, sp.sizeSet = n, true
	case "cluster_size":
		if err := qcowOnly(); err != nil {
			return err
		}
		n, err := parseSize(v)
		if err != nil || n > 1<<30 {
			return fmt.Errorf("Parameter 'cluster_size' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.")
		}
		sp.clusterSize = int(n)
	case "compat":
		if err := qcowOnly(); err != nil {
			return err
		}
		sp.compat = v
	case "backing_file":
		if err := qcowOnly(); err != nil {
			return err
		}
		sp.backingFile = v
	case "backing_fmt":
		if err := qcowOnly(); err != nil {
			return err
		}
		sp.backingFormat = v
	case "refcount_bits":
		if err := qcowOnly(); err != nil {
			return err
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return fmt.Errorf("Parameter 'refcount_bits' expects a number")
		}
		sp.refcountBits = n
	case "lazy_refcounts":
		if err := qcowOnly(); err != nil {
			return err
		}
		switch v {
		case "on", "off":
			sp.lazyRefcounts = v
		default:
			return fmt.Errorf("Parameter 'lazy_refcounts' expects 'on' or 'off'")
		}
	default:
		return fmt.Errorf("Invalid parameter '%s'", k)
	}
	return nil
}

// formatting is qemu-img's "Formatting ..." line.
func (sp *createSpec) formatting() string {
	if sp.format == "raw" {
		return fmt.Sprintf("Formatting '%s', fmt=raw size=%d", sp.filename, sp.size)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Formatting '%s', fmt=qcow2 cluster_size=%d extended_l2=off compression_type=zlib size=%d", sp.filename, sp.clusterSize, sp.size)
	if sp.compat != "" {
		fmt.Fprintf(&b, " compat=%s", sp.compat)
	}
	if sp.backingFile != "" {
		fmt.Fprintf(&b, " backing_file=%s", sp.backingFile)
	}
	if sp.backingFormat != "" {
		fmt.Fprintf(&b, " backing_fmt=%s", sp.backingFormat)
	}
	lazy := sp.lazyRefcounts
	if lazy == "" {
		lazy = "off"
	}
	fmt.Fprintf(&b, " lazy_refcounts=%s refcount_bits=%d", lazy, sp.refcountBits)
	return b.String()
}

func (sp *createSpec) create() error {
	// QEMU rounds the size up to whole 512-byte sectors (the Formatting
	// line still shows it as given).
	size := (sp.size + 511) &^ 511
	if sp.format == "raw" {
		f, err := os.OpenFile(sp.filename, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
		if err != nil {
			return fmt.Errorf("Could not create '%s': %s", sp.filename, errText(err))
		}
		defer f.Close()
		if err := f.Truncate(size); err != nil {
			return err
		}
		// Like QEMU, allocate the first block so later alignment probing
		// of the file finds real data.
		_, err = f.WriteAt(make([]byte, min(4096, size)), 0)
		return err
	}
	compat := ""
	switch sp.compat {
	case "", "1.1", "v3":
		compat = "1.1"
	case "0.10", "v2":
		compat = "0.10"
	default:
		return fmt.Errorf("Parameter 'version' does not accept value '%s'", sp.compat)
	}
	cs := sp.clusterSize
	if cs < 512 || cs > 2<<20 || cs&(cs-1) != 0 {
		return fmt.Errorf("Cluster size must be a power of two between 512 and 2048k")
	}
	rb := sp.refcountBits
	if rb < 1 || rb > 64 || rb&(rb-1) != 0 {
		return fmt.Errorf("Refcount width must be a power of two and may not exceed 64 bits")
	}
	if compat == "0.10" && rb != 16 {
		return fmt.Errorf("Different refcount widths than 16 bits require compatibility level 1.1 or above (use version=v3 or greater)")
	}
	if sp.lazyRefcounts == "on" {
		if compat == "0.10" {
			return fmt.Errorf("Lazy refcounts only supported with compatibility level 1.1 and above (use version=v3 or greater)")
		}
		return fmt.Errorf("lazy_refcounts=on is not supported by %s", Prog)
	}
	if sp.backingFormat != "" && sp.backingFormat != "qcow2" && sp.backingFormat != "raw" {
		return fmt.Errorf("Unknown driver '%s'", sp.backingFormat)
	}
	err := qcow2.Create(sp.filename, qcow2.CreateOptions{
		Size:          size,
		ClusterSize:   cs,
		Compat:        compat,
		BackingFile:   sp.backingFile,
		BackingFormat: sp.backingFormat,
		RefcountBits:  rb,
	})
	if err != nil {
		return fmt.Errorf("%s", strings.TrimPrefix(err.Error(), "qcow2: "))
	}
	return nil
}
