package imgcmd

import (
	"fmt"
	"io"

	"github.com/snapvm/snapvm/qcow2"
)

// imageCheck is QAPI's ImageCheck, the JSON qemu-img check prints.
type imageCheck struct {
	Filename           string `json:"filename"`
	Format             string `json:"format"`
	CheckErrors        int    `json:"check-errors"`
	ImageEndOffset     int64  `json:"image-end-offset,omitempty"`
	Corruptions        int    `json:"corruptions,omitempty"`
	Leaks              int    `json:"leaks,omitempty"`
	CorruptionsFixed   int    `json:"corruptions-fixed,omitempty"`
	LeaksFixed         int    `json:"leaks-fixed,omitempty"`
	TotalClusters      int64  `json:"total-clusters,omitempty"`
	AllocatedClusters  int64  `json:"allocated-clusters,omitempty"`
	FragmentedClusters int64  `json:"fragmented-clusters,omitempty"`
	CompressedClusters int64  `json:"compressed-clusters,omitempty"`
}

func fromResult(r *qcow2.CheckResult, filename string) imageCheck {
	return imageCheck{
		Filename: filename, Format: "qcow2",
		CheckErrors: r.CheckErrors, ImageEndOffset: r.ImageEndOffset,
		Corruptions: r.Corruptions, Leaks: r.Leaks,
		CorruptionsFixed: r.CorruptionsFixed, LeaksFixed: r.LeaksFixed,
		TotalClusters: r.TotalClusters, AllocatedClusters: r.AllocatedClusters,
		FragmentedClusters: r.FragmentedClusters, CompressedClusters: r.CompressedClusters,
	}
}

// runCheck is qemu-img check. Exit status: 0 clean, 1 check failed,
// 2 corruptions, 3 only leaks, 63 format without checks.
func runCheck(e *env, args []string) error {
	opts, pos, err := getopt(args, ":hf:r:T:qU", "output=", "repair=", "help", "force-share", "image-opts", "object=")
	if err != nil {
		return err
	}
	format, asJSON, quiet := "", false, false
	repair := qcow2.RepairNone
	for _, o := range opts {
		switch o.name {
		case "f":
			format = o.val
		case "output":
			if asJSON, err = outputFormat(o.val); err != nil {
				return err
			}
		case "r", "repair":
			switch o.val {
			case "leaks":
				repair = qcow2.RepairLeaks
			case "all":
				repair = qcow2.RepairAll
			default:
				return usageErr("Unknown option value for -r (expecting 'leaks' or 'all'): %s", o.val)
			}
		case "q":
			quiet = true
		case "h", "help":
			fmt.Fprintln(e.stdout, commands["check"].help)
			return nil
		case "image-opts", "object":
			return usageErr("--%s is not supported", o.name)
		}
	}
	if err := oneImage(pos); err != nil {
		return err
	}
	filename := pos[0]
	if format == "" {
		if format, err = probeFormat(filename); err != nil {
			return fail("Could not open '%s': Could not open '%s': %s", filename, filename, errText(err))
		}
	}
	switch format {
	case "qcow2":
	case "raw":
		// Opening checks the file is there.
		g, _, err := openImage(e, filename, format, true, true)
		if err != nil {
			return fail("%v", err)
		}
		g.Close()
		return &exitError{code: 63, msg: "This image format does not support checks"}
	default:
		return fail("Could not open '%s': Unknown driver '%s'", filename, format)
	}

	if err := e.lockImage(filename, repair != qcow2.RepairNone, true); err != nil {
		return fail("%v", err)
	}
	res, err := qcow2.Check(filename, repair)
	if err != nil {
		return fail("Could not open '%s': %s", filename, trimQcow2(err))
	}
	for _, m := range res.Messages {
		fmt.Fprintln(e.stderr, m)
	}
	out := fromResult(res, filename)
	if res.CorruptionsFixed != 0 || res.LeaksFixed != 0 {
		if !asJSON && !quiet {
			fmt.Fprintf(e.stdout, "The following inconsistencies were found and repaired:\n\n"+
				"    %d leaked clusters\n    %d corruptions\n\nDouble checking the fixed image now...\n",
				res.LeaksFixed, res.CorruptionsFixed)
		}
		again, err := qcow2.Check(filename, qcow2.RepairNone)
		if err != nil {
			return fail("Check failed: %s", trimQcow2(err))
		}
		for _, m := range again.Messages {
			fmt.Fprintln(e.stderr, m)
		}
		out = fromResult(again, filename)
		out.LeaksFixed, out.CorruptionsFixed = res.LeaksFixed, res.CorruptionsFixed
	}
	if asJSON {
		if err := writeQemuJSON(e.stdout, out); err != nil {
			return err
		}
	} else if !quiet {
		dumpHumanCheck(e.stdout, out)
	}
	switch {
	case out.CheckErrors != 0:
		return &exitError{code: 1, msg: "Check failed"}
	case out.Corruptions != 0:
		return &exitError{code: 2}
	case out.Leaks != 0:
		return &exitError{code: 3}
	}
	return nil
}

func dumpHumanCheck(w io.Writer, c imageCheck) {
	if c.Corruptions == 0 && c.Leaks == 0 && c.CheckErrors == 0 {
		fmt.Fprintf(w, "No errors were found on the image.\n")
	} else {
		if c.Corruptions != 0 {
			fmt.Fprintf(w, "\n%d errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.\n", c.Corruptions)
		}
		if c.Leaks != 0 {
			fmt.Fprintf(w, "\n%d leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.\n", c.Leaks)
		}
		if c.CheckErrors != 0 {
			fmt.Fprintf(w, "\n%d internal errors have occurred during the check.\n", c.CheckErrors)
		}
	}
	if c.TotalClusters != 0 && c.AllocatedClusters != 0 {
		fmt.Fprintf(w, "%d/%d = %0.2f%% allocated, %0.2f%% fragmented, %0.2f%% compressed clusters\n",
			c.AllocatedClusters, c.TotalClusters,
			float64(c.AllocatedClusters)*100/float64(c.TotalClusters),
			float64(c.FragmentedClusters)*100/float64(c.AllocatedClusters),
			float64(c.CompressedClusters)*100/float64(c.AllocatedClusters))
	}
	if c.ImageEndOffset != 0 {
		fmt.Fprintf(w, "Image end offset: %d\n", c.ImageEndOffset)
	}
}
