package blockcmd

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/snapvm/snapvm/block"
	"github.com/snapvm/snapvm/hmp"
)

// RegisterHMP adds the human-monitor forms of the disk snapshot commands to
// c: snapshot_blkdev, snapshot_blkdev_internal and
// snapshot_delete_blkdev_internal, with QEMU 7.2's help, argument parsing
// and messages. They call the same code as the QMP commands.
func RegisterHMP(c *hmp.Commands, g *block.Graph, o Options) {
	cmds := &commands{g: g, o: o}
	c.Register("snapshot_blkdev", "[-n] device [new-image-file] [format] -- initiates a live snapshot\n\t\t\t"+
		"of device. If a new image file is specified, the\n\t\t\t"+
		"new image file will become the new root image.\n\t\t\t"+
		"If format is specified, the snapshot file will\n\t\t\t"+
		"be created in that format.\n\t\t\t"+
		"The default format is qcow2.  The -n flag requests QEMU\n\t\t\t"+
		"to reuse the image found in new-image-file, instead of\n\t\t\t"+
		"recreating it from scratch.",
		func(_ context.Context, line string) (string, error) {
			a, usage := parseHMP("snapshot_blkdev", line, "-n", "B", "s?", "s?")
			if usage != "" {
				return usage, nil
			}
			if a[2] == nil {
				return "", fmt.Errorf("Parameter 'snapshot-file' is missing")
			}
			s := block.SnapshotSync{Device: a[1], SnapshotFile: *a[2], Mode: block.ModeAbsolutePaths}
			if a[0] != nil {
				s.Mode = block.ModeExisting
			}
			if a[3] != nil {
				s.Format = *a[3]
			}
			return hmpError(g.SnapshotSync(s))
		})
	c.Register("snapshot_blkdev_internal", "device name -- take an internal snapshot of device.\n\t\t\t"+
		"The format of the image used by device must\n\t\t\t"+
		"support it, such as qcow2.\n\t\t\t",
		func(_ context.Context, line string) (string, error) {
			a, usage := parseHMP("snapshot_blkdev_internal", line, "B", "s")
			if usage != "" {
				return usage, nil
			}
			return "", g.InternalSnapshot(cmds.internalAction(BlockdevSnapshotInternal{Device: *a[0], Name: *a[1]}))
		})
	c.Register("snapshot_delete_blkdev_internal", "device name [id] -- delete an internal snapshot of device.\n\t\t\t"+
		"If id is specified, qemu will try delete\n\t\t\t"+
		"the snapshot matching both id and name.\n\t\t\t"+
		"The format of the image used by device must\n\t\t\t"+
		"support it, such as qcow2.\n\t\t\t",
		func(_ context.Context, line string) (string, error) {
			a, usage := parseHMP("snapshot_delete_blkdev_internal", line, "B", "s", "s?")
			if usage != "" {
				return usage, nil
			}
			_, err := g.DeleteInternalSnapshot(*a[0], a[2], a[1])
			return "", err
		})
}

// parseHMP splits an HMP argument line the way QEMU's monitor does for
// the types these commands use: "-n" (an optional flag), "B" (a block
// device name), "s" (a string) and "s?" (an optional string). Strings are
// words or double-quoted with \n \r \\ \' \" escapes. A nil entry is an
// absent optional argument (or flag). On a usage error it returns QEMU's
// two-line message instead.
func parseHMP(cmd, line string, types ...string) (args []*string, usage string) {
	fail := func(msg string) ([]*string, string) {
		return nil, fmt.Sprintf("%s: %s\nTry \"help %s\" for more information\n", cmd, msg, cmd)
	}
	p := line
	skip := func() { p = strings.TrimLeft(p, " \t\n\r\v\f") }
	for _, t := range types {
		skip()
		switch t {
		case "-n":
			var v *string
			if strings.HasPrefix(p, "-") {
				if len(p) < 2 || p[1] != 'n' {
					opt := byte(0)
					if len(p) > 1 {
						opt = p[1]
					}
					return fail(fmt.Sprintf("unsupported option -%c", opt))
				}
				p = p[2:]
				v = new(string)
			}
			args = append(args, v)
		default:
			if p == "" && strings.HasSuffix(t, "?") {
				args = append(args, nil)
				continue
			}
			s, rest, ok := hmpString(p)
			if !ok {
				if t == "B" {
					return fail("block device name expected")
				}
				return fail("string expected")
			}
			p = rest
			args = append(args, &s)
		}
	}
	skip()
	if p != "" {
		return fail("extraneous characters at the end of line")
	}
	return args, ""
}

// hmpString reads one string argument (QEMU's get_str).
func hmpString(p string) (s, rest string, ok bool) {
	if p == "" {
		return "", p, false
	}
	if p[0] != '"' {
		i := strings.IndexAny(p, " \t\n\r\v\f")
		if i < 0 {
			i = len(p)
		}
		return p[:i], p[i:], true
	}
	var b strings.Builder
	i := 1
	for i < len(p) && p[i] != '"' {
		c := p[i]
		if c == '\\' {
			if i+1 >= len(p) {
				return "", p, false
			}
			switch p[i+1] {
			case 'n':
				c = '\n'
			case 'r':
				c = '\r'
			case '\\', '\'', '"':
				c = p[i+1]
			default:
				return "", p, false // unsupported escape code
			}
			i++
		}
		b.WriteByte(c)
		i++
	}
	if i >= len(p) {
		return "", p, false // unterminated string
	}
	return b.String(), p[i+1:], true
}

// hmpError prints an error as QEMU's human monitor does, with its hint
// line when it has one.
func hmpError(err error) (string, error) {
	var se *block.SnapshotError
	if errors.As(err, &se) && se.Hint != "" {
		return "Error: " + se.Msg + "\n" + se.Hint + "\n", nil
	}
	return "", err
}
