// Command benchext times blockdev-snapshot-sync on a running diskcheck guest:
// it boots the guest with a fresh 16 MiB qcow2 disk (node disk0), waits for
// two verified generations, then takes -n external snapshots, each on top of
// the last, -gap apart, and prints one JSON object with the command latency
// (request written to QMP socket -> reply read), the STOP/RESUME events seen
// and whether diskcheck kept verifying. The same command line and QMP
// conversation work with snapvm and qemu-system-riscv64.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"time"

	"github.com/snapvm/snapvm/tests/externale2e"
)

func main() {
	bin := flag.String("bin", "bin/snapvm", "VM binary (snapvm or qemu-system-riscv64)")
	kernel := flag.String("kernel", "guests/build/diskcheck.elf", "diskcheck guest")
	n := flag.Int("n", 20, "snapshots to take")
	gap := flag.Duration("gap", 150*time.Millisecond, "pause between snapshots")
	flag.Parse()
	// The VM runs in a temporary directory: resolve paths first.
	b, err := exec.LookPath(*bin)
	if err == nil {
		b, err = filepath.Abs(b)
	}
	k, kerr := filepath.Abs(*kernel)
	if err == nil {
		err = kerr
	}
	if err == nil {
		err = run(b, k, *n, *gap)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchext:", err)
		os.Exit(1)
	}
}

type result struct {
	VM          string    `json:"vm"`
	Snapshots   int       `json:"snapshots"`
	LatencyMs   []float64 `json:"latency_ms"`
	MinMs       float64   `json:"min_ms"`
	MedianMs    float64   `json:"median_ms"`
	MaxMs       float64   `json:"max_ms"`
	StopEvents  int       `json:"stop_events"`
	Resume      int       `json:"resume_events"`
	GensDuring  int       `json:"generations_verified_during"`
	DiskcheckOK bool      `json:"diskcheck_ok"`
}

func run(bin, kernel string, n int, gap time.Duration) error {
	dir, err := os.MkdirTemp("", "benchext-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	base := filepath.Join(dir, "base.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", base, "16M").CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img create: %v %s", err, out)
	}
	v, err := externale2e.Start(filepath.Base(bin), bin, dir, externale2e.DiskArgs(kernel, base))
	if err != nil {
		return err
	}
	defer v.Kill()
	if err := v.WaitLine(0, 2*time.Minute, "gen 2", func(l string) bool { return l == "diskcheck gen 2 ok" }); err != nil {
		return err
	}
	gen0 := externale2e.LastGen(v.Lines(0))
	r := result{VM: filepath.Base(bin), Snapshots: n}
	top := "disk0"
	began := time.Now()
	for i := 1; i <= n; i++ {
		node := fmt.Sprintf("ov%d", i)
		args := map[string]any{"node-name": top, "snapshot-file": filepath.Join(dir, node+".qcow2"),
			"snapshot-node-name": node, "format": "qcow2"}
		start := time.Now()
		if _, err := v.Run("blockdev-snapshot-sync", args); err != nil {
			return err
		}
		r.LatencyMs = append(r.LatencyMs, float64(time.Since(start).Microseconds())/1000)
		top = node
		time.Sleep(gap)
	}
	// The guest must go on verifying on the deepest chain.
	mark, last := len(v.Output()), externale2e.LastGen(v.Lines(0))
	if err := v.WaitLine(mark, 2*time.Minute, "progress", func(l string) bool {
		return externale2e.LastGen([]string{l}) >= last+2
	}); err != nil {
		return err
	}
	r.GensDuring = externale2e.LastGen(v.Lines(0)) - gen0
	r.DiskcheckOK = externale2e.CheckDiskcheck(v.Output()) == nil
	for _, e := range v.Events() {
		if e.At.Before(began) {
			continue // e.g. the RESUME of a start that raced the connection
		}
		switch e.Name {
		case "STOP":
			r.StopEvents++
		case "RESUME":
			r.Resume++
		}
	}
	s := append([]float64(nil), r.LatencyMs...)
	sort.Float64s(s)
	r.MinMs, r.MedianMs, r.MaxMs = s[0], s[len(s)/2], s[len(s)-1]
	if err := v.Quit(30 * time.Second); err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}
