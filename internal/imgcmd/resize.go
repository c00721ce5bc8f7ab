package imgcmd

import (
	"fmt"
	"strings"
)

const sizeParamHint = "Parameter 'size' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively."

// runResize is qemu-img resize: an absolute size or +/- a delta; growing
// only for qcow2 (shrinking needs --shrink and works for raw).
func runResize(e *env, args []string) error {
	if len(args) == 0 {
		return usageErr("Expecting image file name and size")
	}
	// The size is taken off before option parsing so "-1M" is not an option.
	sizeArg := args[len(args)-1]
	opts, pos, err := getopt(args[:len(args)-1], ":f:hqU", "help", "shrink", "preallocation=", "object=", "image-opts")
	if err != nil {
		return err
	}
	format, quiet, shrink := "", false, false
	for _, o := range opts {
		switch o.name {
		case "f":
			format = o.val
		case "q":
			quiet = true
		case "shrink":
			shrink = true
		case "preallocation":
			if o.val != "off" {
				return fail("Preallocation mode '%s' is not supported by %s", o.val, Prog)
			}
		case "U":
		case "h", "help":
			fmt.Fprintln(e.stdout, commands["resize"].help)
			return nil
		default:
			return usageErr("--%s is not supported", o.name)
		}
	}
	if len(pos) != 1 {
		return usageErr("Expecting image file name and size")
	}
	relative := 0
	s := sizeArg
	if strings.HasPrefix(s, "+") {
		relative, s = 1, s[1:]
	} else if strings.HasPrefix(s, "-") {
		relative, s = -1, s[1:]
	}
	n, err := parseSize(s)
	if err != nil {
		return fail("%s", sizeParamHint)
	}
	g, node, err := openImage(e, pos[0], format, false, true)
	if err != nil {
		return fail("%v", err)
	}
	defer g.Close()
	cur := node.Size()
	newSize := n
	switch relative {
	case 1:
		newSize = cur + n
	case -1:
		newSize = cur - n
	}
	if newSize < 0 {
		return fail("New image size must be positive")
	}
	if newSize < cur && !shrink {
		e.warn("Use the --shrink option to perform a shrink operation.")
		return fail("warning: Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there.")
	}
	if img := node.Qcow2(); img != nil {
		if newSize < cur {
			return fail("qcow2 doesn't support shrinking images yet")
		}
		if err := img.Resize(newSize); err != nil {
			return fail("%s", trimQcow2(err))
		}
	} else {
		if err := resizeRawFile(node.Filename(), newSize); err != nil {
			return fail("%v", err)
		}
	}
	if err := g.Close(); err != nil {
		return fail("%v", err)
	}
	if !quiet {
		fmt.Fprintln(e.stdout, "Image resized.")
	}
	return nil
}
