package monitor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/snapvm/snapvm/block"
	"github.com/snapvm/snapvm/qmp"
)

// NamedNodesArgs are query-named-block-nodes' arguments.
type NamedNodesArgs struct {
	Flat *bool `json:"flat,omitempty"`
}

// BlockdevDelArgs are blockdev-del's arguments.
type BlockdevDelArgs struct {
	NodeName string `json:"node-name"`
}

func (mon *Monitor) registerBlock() {
	s, g := mon.srv, mon.g
	qmp.Register(s, "query-block", func(context.Context, empty) ([]block.BlockInfo, error) {
		return g.QueryBlock(), nil
	})
	qmp.Register(s, "query-named-block-nodes", func(_ context.Context, a NamedNodesArgs) ([]block.BlockDeviceInfo, error) {
		nodes := g.QueryNamedBlockNodes()
		if a.Flat != nil && *a.Flat {
			for i := range nodes {
				nodes[i].Image.BackingImage = nil
			}
		}
		return nodes, nil
	})
	// blockdev-add's arguments are a BlockdevOptions union; the block package validates
	// them with QEMU's texts.
	qmp.Register(s, "blockdev-add", func(_ context.Context, raw json.RawMessage) (empty, error) {
		o, err := block.ParseOptionsJSON(raw)
		if err != nil {
			return empty{}, err
		}
		_, err = g.Add(o)
		return empty{}, err
	})
	qmp.Register(s, "blockdev-del", func(_ context.Context, a BlockdevDelArgs) (empty, error) {
		return empty{}, g.Del(a.NodeName)
	})
}

// infoBlock renders HMP "info block [device]" the way QEMU prints query-block.
func (mon *Monitor) infoBlock(args string) (string, error) {
	filter := ""
	for _, w := range strings.Fields(args) {
		if !strings.HasPrefix(w, "-") {
			filter = w
		}
	}
	var sb strings.Builder
	first := true
	for _, bi := range mon.g.QueryBlock() {
		in := bi.Inserted
		name := bi.Device
		if name == "" && in != nil && in.NodeName != "" {
			name = in.NodeName
		} else if name == "" {
			name = bi.Qdev
		}
		if filter != "" && filter != bi.Device && (in == nil || filter != in.NodeName) {
			continue
		}
		if !first {
			sb.WriteString("\n")
		}
		first = false
		sb.WriteString(name)
		if bi.Device != "" && in != nil && in.NodeName != "" {
			fmt.Fprintf(&sb, " (%s)", in.NodeName)
		}
		if in == nil {
			sb.WriteString(": [not inserted]\n")
		} else {
			fmt.Fprintf(&sb, ": %s (%s", in.File, in.Drv)
			if in.RO {
				sb.WriteString(", read-only")
			}
			if in.Encrypted {
				sb.WriteString(", encrypted")
			}
			sb.WriteString(")\n")
		}
		if bi.Qdev != "" {
			fmt.Fprintf(&sb, "    Attached to:      %s\n", bi.Qdev)
		}
		if bi.IOStatus != "" && bi.IOStatus != "ok" {
			fmt.Fprintf(&sb, "    I/O status:       %s\n", bi.IOStatus)
		}
		if bi.Removable {
			locked, tray := "not ", "closed"
			if bi.Locked {
				locked = ""
			}
			if bi.TrayOpen != nil && *bi.TrayOpen {
				tray = "open"
			}
			fmt.Fprintf(&sb, "    Removable device: %slocked, tray %s\n", locked, tray)
		}
		if in == nil {
			continue
		}
		mode := "writethrough"
		if in.Cache.Writeback {
			mode = "writeback"
		}
		if in.Cache.Direct {
			mode += ", direct"
		}
		if in.Cache.NoFlush {
			mode += ", ignore flushes"
		}
		fmt.Fprintf(&sb, "    Cache mode:       %s\n", mode)
		if in.BackingFile != "" {
			fmt.Fprintf(&sb, "    Backing file:     %s (chain depth: %d)\n", in.BackingFile, in.BackingFileDepth)
		}
		if in.DetectZeroes != "" && in.DetectZeroes != "off" {
			fmt.Fprintf(&sb, "    Detect zeroes:    %s\n", in.DetectZeroes)
		}
	}
	if filter != "" && first {
		return "", fmt.Errorf("Device '%s' not found", filter)
	}
	return sb.String(), nil
}
