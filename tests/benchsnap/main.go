// Command benchsnap measures VM snapshots on snapvm or on QEMU with the same
// guest, the same command line and the same QMP conversation: it boots the
// memfill guest with a qcow2 disk, waits until the guest has written all its
// RAM, then times snapshot-save, snapshot-load and snapshot-delete (command
// to "concluded"), the guest's downtime (STOP to RESUME, from the events'
// timestamps) and the image's growth. It prints one JSON object.
//
//	benchsnap -bin snapvm|qemu-system-riscv64 -m 256M -kernel guests/build/memfill.elf
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

type result struct {
	VM            string  `json:"vm"`
	Memory        string  `json:"memory"`
	SaveSeconds   float64 `json:"save_s"`
	SaveDowntime  float64 `json:"save_downtime_s"`
	LoadSeconds   float64 `json:"load_s"`
	LoadDowntime  float64 `json:"load_downtime_s"`
	DeleteSeconds float64 `json:"delete_s"`
	ImageGrowth   int64   `json:"image_growth_bytes"`
	VMStateSize   int64   `json:"vm_state_size"`
}

func main() {
	bin := flag.String("bin", "snapvm", "the VM binary (snapvm or qemu-system-riscv64)")
	mem := flag.String("m", "256M", "guest RAM")
	kernel := flag.String("kernel", "guests/build/memfill.elf", "guest ELF")
	ready := flag.String("ready", "memfill: filled", "serial text that says the guest has written its RAM")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	flag.Parse()
	if err := run(*bin, *mem, *kernel, *ready, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "benchsnap:", err)
		os.Exit(1)
	}
}

func run(bin, mem, kernel, ready string, timeout time.Duration) error {
	dir, err := os.MkdirTemp("", "benchsnap")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	disk := filepath.Join(dir, "disk.qcow2")
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", disk, "64M").CombinedOutput(); err != nil {
		return fmt.Errorf("qemu-img create: %v: %s", err, out)
	}
	sock := filepath.Join(dir, "qmp.sock")
	serial := filepath.Join(dir, "serial.log")
	cmd := exec.Command(bin, "-M", "virt", "-bios", "none", "-m", mem, "-kernel", kernel,
		"-display", "none", "-monitor", "none", "-serial", "file:"+serial,
		"-blockdev", "driver=file,node-name=file0,filename="+disk,
		"-blockdev", "driver=qcow2,node-name=disk0,file=file0",
		"-device", "virtio-blk-device,drive=disk0",
		"-qmp", "unix:"+sock+",server=on,wait=off")
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
		}
	}()
	deadline := time.Now().Add(timeout)
	if err := waitFor(serial, ready, deadline); err != nil {
		return err
	}
	mon, err := qmp.NewSocketMonitor("unix", sock, 10*time.Second)
	if err != nil {
		return err
	}
	if err := mon.Connect(); err != nil {
		return err
	}
	defer mon.Disconnect()
	raw, _ := mon.Events(nil)
	events := make(chan qmp.Event, 64)
	go func() {
		for e := range raw {
			events <- e
		}
	}()

	res := result{VM: filepath.Base(bin), Memory: mem}
	before, err := allocated(disk)
	if err != nil {
		return err
	}
	devices := `"vmstate": "disk0", "devices": ["disk0"]`
	res.SaveSeconds, res.SaveDowntime, err = runJob(mon, events, "snapshot-save", "save0", `"tag": "bench", `+devices, deadline)
	if err != nil {
		return err
	}
	after, err := allocated(disk)
	if err != nil {
		return err
	}
	res.ImageGrowth = after - before
	res.VMStateSize = vmStateSize(disk)
	res.LoadSeconds, res.LoadDowntime, err = runJob(mon, events, "snapshot-load", "load0", `"tag": "bench", `+devices, deadline)
	if err != nil {
		return err
	}
	res.DeleteSeconds, _, err = runJob(mon, events, "snapshot-delete", "del0", `"tag": "bench", "devices": ["disk0"]`, deadline)
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// runJob starts a snapshot job and waits for it to conclude, returning the
// time from sending the command to the "concluded" event and the downtime
// between the STOP and RESUME events (0 if there were none).
func runJob(mon *qmp.SocketMonitor, events <-chan qmp.Event, cmd, id, args string, deadline time.Time) (float64, float64, error) {
	start := time.Now()
	reply, err := mon.Run([]byte(fmt.Sprintf(`{"execute": %q, "arguments": {"job-id": %q, %s}}`, cmd, id, args)))
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %v", cmd, err)
	}
	if strings.Contains(string(reply), `"error"`) {
		return 0, 0, fmt.Errorf("%s: %s", cmd, reply)
	}
	var stop, resume float64
	for {
		select {
		case e := <-events:
			ts := float64(e.Timestamp.Seconds) + float64(e.Timestamp.Microseconds)/1e6
			switch e.Event {
			case "STOP":
				stop = ts
			case "RESUME":
				resume = ts
			case "JOB_STATUS_CHANGE":
				if e.Data["id"] == id && e.Data["status"] == "concluded" {
					elapsed := time.Since(start).Seconds()
					reply, err := mon.Run([]byte(`{"execute": "query-jobs"}`))
					if err != nil {
						return 0, 0, err
					}
					if strings.Contains(string(reply), `"error"`) {
						return 0, 0, fmt.Errorf("%s failed: %s", cmd, reply)
					}
					if _, err := mon.Run([]byte(fmt.Sprintf(`{"execute": "job-dismiss", "arguments": {"id": %q}}`, id))); err != nil {
						return 0, 0, err
					}
					down := 0.0
					if stop > 0 && resume >= stop {
						down = resume - stop
					}
					return elapsed, down, nil
				}
			}
		case <-time.After(time.Until(deadline)):
			return 0, 0, fmt.Errorf("%s: timed out", cmd)
		}
	}
}

func waitFor(path, text string, deadline time.Time) error {
	for time.Now().Before(deadline) {
		if b, err := os.ReadFile(path); err == nil && strings.Contains(string(b), text) {
			return nil
		}
		time.Sleep(100 * time.Millisecond)
	}
	return fmt.Errorf("guest did not print %q in time", text)
}

// allocated is the image's space on the host (what users pay for).
func allocated(path string) (int64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Blocks * 512, nil
}

// vmStateSize reads the snapshot's VM SIZE the way users see it.
func vmStateSize(path string) int64 {
	out, err := exec.Command("qemu-img", "info", "-U", "--output=json", path).Output()
	if err != nil {
		return -1
	}
	var info struct {
		Snapshots []struct {
			VMStateSize int64 `json:"vm-state-size"`
		} `json:"snapshots"`
	}
	if json.Unmarshal(out, &info) != nil || len(info.Snapshots) == 0 {
		return -1
	}
	return info.Snapshots[0].VMStateSize
}
