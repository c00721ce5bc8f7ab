package imgcmd

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/snapvm/snapvm/block"
	"github.com/snapvm/snapvm/qcow2"
)

func outputFormat(v string) (json bool, err error) {
	switch v {
	case "human":
		return false, nil
	case "json":
		return true, nil
	}
	return false, fail("--output must be used with human or json as argument.")
}

func runInfo(e *env, args []string) error {
	opts, pos, err := getopt(args, ":f:hU", "output=", "backing-chain", "force-share", "help", "image-opts", "object=")
	if err != nil {
		return err
	}
	format, asJSON, chain := "", false, false
	for _, o := range opts {
		switch o.name {
		case "f":
			format = o.val
		case "output":
			if asJSON, err = outputFormat(o.val); err != nil {
				return err
			}
		case "backing-chain":
			chain = true
		case "h", "help":
			fmt.Fprintln(e.stdout, commands["info"].help)
			return nil
		case "image-opts", "object":
			return usageErr("--%s is not supported", o.name)
		}
	}
	if err := oneImage(pos); err != nil {
		return err
	}
	g, n, err := openImage(e, pos[0], format, true, !chain)
	if err != nil {
		return fail("%v", err)
	}
	defer g.Close()
	var infos []block.ImageInfo
	for x := n; x != nil; x = x.Backing() {
		infos = append(infos, x.ImageInfo(false))
		if !chain {
			break
		}
	}
	if asJSON {
		if chain {
			return writeQemuJSON(e.stdout, infos)
		}
		return writeQemuJSON(e.stdout, infos[0])
	}
	for i, info := range infos {
		if i > 0 {
			fmt.Fprintln(e.stdout)
		}
		dumpImageInfo(e.stdout, info)
	}
	return nil
}

// dumpImageInfo prints qemu-img info's human form of one image.
func dumpImageInfo(w io.Writer, info block.ImageInfo) {
	fmt.Fprintf(w, "image: %s\nfile format: %s\n", info.Filename, info.Format)
	fmt.Fprintf(w, "virtual size: %s (%d bytes)\n", sizeToStr(uint64(info.VirtualSize)), info.VirtualSize)
	if info.ActualSize != nil {
		fmt.Fprintf(w, "disk size: %s\n", sizeToStr(uint64(*info.ActualSize)))
	} else {
		fmt.Fprintf(w, "disk size: unavailable\n")
	}
	if info.ClusterSize != 0 {
		fmt.Fprintf(w, "cluster_size: %d\n", info.ClusterSize)
	}
	if info.DirtyFlag != nil && *info.DirtyFlag {
		fmt.Fprintf(w, "cleanly shut down: no\n")
	}
	if info.BackingFilename != "" {
		fmt.Fprintf(w, "backing file: %s", info.BackingFilename)
		if info.FullBackingFilename == "" {
			fmt.Fprintf(w, " (cannot determine actual path)")
		} else if info.FullBackingFilename != info.BackingFilename {
			fmt.Fprintf(w, " (actual path: %s)", info.FullBackingFilename)
		}
		fmt.Fprintln(w)
	}
	if info.BackingFilenameFormat != "" {
		fmt.Fprintf(w, "backing file format: %s\n", info.BackingFilenameFormat)
	}
	if len(info.Snapshots) > 0 {
		fmt.Fprintln(w, "Snapshot list:")
		writeSnapshotTable(w, info.Snapshots)
	}
	if fs := info.FormatSpecific; fs != nil {
		fmt.Fprintln(w, "Format specific information:")
		d := fs.Data
		fmt.Fprintf(w, "    compat: %s\n    compression type: %s\n", d.Compat, d.CompressionType)
		if d.LazyRefcounts != nil {
			fmt.Fprintf(w, "    lazy refcounts: %t\n", *d.LazyRefcounts)
		}
		fmt.Fprintf(w, "    refcount bits: %d\n", d.RefcountBits)
		if d.Corrupt != nil {
			fmt.Fprintf(w, "    corrupt: %t\n", *d.Corrupt)
		}
		if d.ExtendedL2 != nil {
			fmt.Fprintf(w, "    extended l2: %t\n", *d.ExtendedL2)
		}
	}
}

// writeSnapshotTable prints the header and rows of QEMU's snapshot table
// (bdrv_snapshot_dump).
func writeSnapshotTable(w io.Writer, list []block.SnapshotInfo) {
	fmt.Fprintf(w, "%-10s%-17s%8s%20s%13s%11s\n", "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT")
	for _, s := range list {
		fmt.Fprintln(w, snapshotRow(s))
	}
}

func snapshotRow(s block.SnapshotInfo) string {
	date := time.Unix(s.DateSec, 0).Format("2006-01-02 15:04:05")
	clock := s.VMClockSec*1e9 + s.VMClockNsec
	secs := clock / 1e9
	vmClock := fmt.Sprintf("%02d:%02d:%02d.%03d", secs/3600, secs/60%60, secs%60, clock/1e6%1000)
	icount := ""
	if s.ICount != nil {
		icount = fmt.Sprintf("%d", *s.ICount)
	}
	return fmt.Sprintf("%-9s %-16s %8s%20s%13s%11s", s.ID, s.Name, sizeToStr(s.VMStateSize), date, vmClock, icount)
}

// snapshotInfos converts the library's entries for printing.
func snapshotInfos(img *qcow2.Image) []block.SnapshotInfo {
	return block.SnapshotInfos(img.Snapshots())
}

// trimQcow2 drops the library's "qcow2: " prefix from an error text.
func trimQcow2(err error) string {
	return strings.TrimPrefix(err.Error(), "qcow2: ")
}
