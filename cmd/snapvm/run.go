package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/snapvm/snapvm/block"
	"github.com/snapvm/snapvm/blockcmd"
	"github.com/snapvm/snapvm/internal/cmdline"
	"github.com/snapvm/snapvm/machine"
	"github.com/snapvm/snapvm/monitor"
	"github.com/snapvm/snapvm/qcow2"
	"github.com/snapvm/snapvm/snapshot"
	"github.com/snapvm/snapvm/snapshotcmd"
)

const progName = "snapvm"

// run is the whole program; it returns the exit status.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fail := func(err error) int {
		fmt.Fprintf(stderr, "%s: %v\n", progName, err)
		return 1
	}
	opts, err := cmdline.Parse(args)
	if err != nil {
		return fail(err)
	}
	if opts.ShowHelp {
		fmt.Fprint(stdout, cmdline.Usage)
		return 0
	}
	if opts.ShowVersion {
		fmt.Fprintf(stdout, "snapvm: RISC-V virt machine, command line and QMP compatible with QEMU emulator version 7.2\n")
		return 0
	}
	var kernel []byte
	var cleanup func()
	if opts.Empty {
		if kernel, cleanup, err = setupDemo(opts, stderr); err != nil {
			return fail(err)
		}
		defer cleanup()
	} else if opts.Kernel != "" {
		if kernel, err = os.ReadFile(opts.Kernel); err != nil {
			return fail(fmt.Errorf("could not load kernel '%s': %v", opts.Kernel, unwrapPathErr(err)))
		}
	} else if !opts.HasFirmware() {
		kernel = []byte{0x73, 0x00, 0x50, 0x10} // -machine dumpdtb without a kernel: a lone wfi
	}

	var initrd []byte
	if opts.Initrd != "" {
		if initrd, err = os.ReadFile(opts.Initrd); err != nil {
			return fail(fmt.Errorf("could not load initial ram disk '%s': %v", opts.Initrd, unwrapPathErr(err)))
		}
	}
	var firmware []byte
	if opts.HasFirmware() {
		if firmware, err = loadFirmware(opts.BIOS); err != nil {
			return fail(err)
		}
	}

	g := block.NewGraph()
	// Lock images as QEMU does, so qemu-img and snapvm-img refuse to write
	// a disk this VM is using.
	g.SetImageLocking(true)
	defer g.Close()
	backends, serials, err := attachDisks(g, opts)
	if err != nil {
		return fail(err)
	}

	serial, err := openSerial(opts.SerialBackend(), stdin, stdout, stderr)
	if err != nil {
		return fail(err)
	}
	defer serial.Close()
	if opts.SerialBackend().Kind == "stdio" {
		defer rawStdin(stdin)()
	}

	m, err := machine.New(machine.Config{
		RAMSize: opts.RAMSize, Harts: opts.SMP, Firmware: firmware, Kernel: kernel, Append: opts.Append, Initrd: initrd,
		Serial: serial.out, SerialIn: serial.in,
		Blocks: g, BlkDevices: backends, BlkSerials: serials,
		NoShutdown: opts.NoShutdown, NoReboot: opts.NoReboot,
		StartPaused: true, Name: opts.Name, RTCBase: opts.RTCBase,
	})
	if err != nil {
		return fail(err)
	}
	defer m.Close()

	if opts.DumpDTB != "" {
		blob, _ := m.FDT()
		if err := os.WriteFile(opts.DumpDTB, blob, 0o666); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stderr, "%s: info: dtb dumped to %s. Exiting.\n", progName, opts.DumpDTB)
		return 0
	}

	// The monitor: QMP on every -qmp listener, with the run-state, block,
	// job and snapshot commands.
	mon := monitor.New(m, g, monitor.Options{Package: "snapvm " + version})
	snapshots := &snapshot.Manager{VM: m, Disks: snapshotcmd.Disks(g), HoldDiskWrites: g.Drain}
	snapshotcmd.Register(mon.Server(), mon.Jobs(), mon.HMP(), snapshots)
	blockOpts := blockcmd.Options{VMClock: m.Clock().Nanoseconds}
	blockcmd.RegisterWith(mon.Server(), g, blockOpts)
	blockcmd.RegisterHMP(mon.HMP(), g, blockOpts)
	listeners, err := mon.Listen(opts.QMP...)
	if err != nil {
		return fail(fmt.Errorf("-qmp: %v", err))
	}
	defer mon.Close()
	for _, l := range listeners {
		if l.Wait {
			<-l.Connected
		}
	}

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	defer signal.Stop(sigs)
	go func() {
		for sig := range sigs {
			if s, ok := sig.(syscall.Signal); ok {
				fmt.Fprintf(stderr, "%s: terminating on signal %d\n", progName, int(s))
			}
			m.Shutdown("host-signal")
		}
	}()

	if !opts.StartPaused {
		m.Start()
	}
	if opts.Empty {
		go demoScript(m, snapshots, stderr)
	}
	<-m.Done()
	return m.ExitCode()
}

// firmwareDirs are searched for -bios default and relative -bios names,
// like QEMU's data directory.
var firmwareDirs = []string{"/usr/share/qemu", "/usr/local/share/qemu"}

// defaultFirmware is what qemu-system-riscv64 loads for -bios default.
const defaultFirmware = "opensbi-riscv64-generic-fw_dynamic.bin"

// loadFirmware reads the -bios image.
func loadFirmware(name string) ([]byte, error) {
	file := name
	if name == "default" {
		file = defaultFirmware
	}
	candidates := []string{file}
	if !filepath.IsAbs(file) {
		for _, d := range firmwareDirs {
			candidates = append(candidates, filepath.Join(d, file))
		}
	}
	for _, c := range candidates {
		if b, err := os.ReadFile(c); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("Unable to load the RISC-V firmware %q", file)
}

// attachDisks opens -blockdev and -drive nodes and returns the backends of
// the virtio-blk devices in slot order (first device = highest slot) with
// their serial numbers.
func attachDisks(g *block.Graph, opts *cmdline.Options) ([]*block.Backend, []string, error) {
	for _, b := range opts.Blockdevs {
		if _, err := g.Add(b.Options); err != nil {
			return nil, nil, fmt.Errorf("-blockdev %s: %v", b.Arg, err)
		}
	}
	drives := map[string]*block.Backend{}
	var driveOrder []*block.Backend
	for _, d := range opts.Drives {
		be, err := openDrive(g, d)
		if err != nil {
			return nil, nil, err
		}
		drives[d.ID] = be
		if d.If == "virtio" {
			driveOrder = append(driveOrder, be)
		}
	}
	used := map[*block.Backend]bool{}
	var out []*block.Backend
	var serials []string
	anon := 0
	for _, dev := range opts.Devices {
		be := drives[dev.Drive]
		if be == nil {
			n, ok := g.Node(dev.Drive)
			if !ok {
				return nil, nil, fmt.Errorf("-device %s: Property 'virtio-blk-device.drive' can't find value '%s'", dev.Arg, dev.Drive)
			}
			var err error
			if be, err = g.NewBackend("", n); err != nil {
				return nil, nil, fmt.Errorf("-device %s: %v", dev.Arg, err)
			}
		}
		if used[be] {
			return nil, nil, fmt.Errorf("-device %s: Property 'virtio-blk-device.drive' can't take value '%s': Drive is already in use", dev.Arg, dev.Drive)
		}
		used[be] = true
		qdev := dev.ID
		if qdev == "" {
			qdev = fmt.Sprintf("/machine/peripheral-anon/device[%d]", anon)
			anon++
		}
		be.SetQdev(qdev)
		out = append(out, be)
		serials = append(serials, dev.Serial)
	}
	// Drives with if=virtio get their device after the -device ones, as
	// QEMU creates them later.
	for _, be := range driveOrder {
		be.SetQdev(fmt.Sprintf("/machine/peripheral-anon/device[%d]", anon))
		anon++
		out = append(out, be)
		serials = append(serials, "")
	}
	return out, serials, nil
}

// openDrive creates a -drive's nodes (protocol file + format) and its
// named backend.
func openDrive(g *block.Graph, d cmdline.Drive) (*block.Backend, error) {
	format := d.Format
	if format == "" {
		f, err := os.Open(d.File)
		if err != nil {
			return nil, fmt.Errorf("-drive %s: Could not open '%s': %v", d.Arg, d.File, unwrapPathErr(err))
		}
		if qcow2.Probe(f) {
			format = "qcow2"
		} else {
			format = "raw"
		}
		f.Close()
	}
	name := d.NodeName
	if name == "" {
		// The block graph wants named roots; QEMU would generate "#blockN".
		name = "drive-" + d.ID
	}
	ro := d.ReadOnly
	o := block.Options{
		Driver: format, NodeName: name, ReadOnly: &ro,
		File: &block.Ref{Options: &block.Options{Driver: "file", Filename: d.File}},
	}
	if d.Discard != "" {
		o.Discard = d.Discard
	}
	n, err := g.Add(o)
	if err != nil {
		return nil, fmt.Errorf("-drive %s: %v", d.Arg, err)
	}
	be, err := g.NewBackend(d.ID, n)
	if err != nil {
		return nil, fmt.Errorf("-drive %s: %v", d.Arg, err)
	}
	return be, nil
}

// setupDemo prepares the no-options run: the bundled guest, a scratch
// qcow2 disk and a QMP socket in a fresh directory.
func setupDemo(opts *cmdline.Options, stderr io.Writer) ([]byte, func(), error) {
	kernel, err := demoELF()
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "snapvm-demo-")
	if err != nil {
		return nil, nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	disk := filepath.Join(dir, "disk.qcow2")
	if err := qcow2.Create(disk, qcow2.CreateOptions{Size: 64 << 20}); err != nil {
		cleanup()
		return nil, nil, fmt.Errorf("demo disk: %w", err)
	}
	sock := filepath.Join(dir, "qmp.sock")
	bo, err := block.ParseOptionsArg("driver=qcow2,node-name=disk0,file.driver=file,file.filename=" + escapeComma(disk))
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	opts.Blockdevs = append(opts.Blockdevs, cmdline.Blockdev{Arg: "driver=qcow2,node-name=disk0,...", Options: bo})
	opts.Devices = append(opts.Devices, cmdline.Device{Arg: "virtio-blk-device,drive=disk0", Driver: "virtio-blk-device", Drive: "disk0"})
	opts.QMP = append(opts.QMP, "unix:"+sock+",server=on,wait=off")
	fmt.Fprintf(stderr, "snapvm: demo guest %q with scratch disk %s (node disk0)\n", "ticker", disk)
	fmt.Fprintf(stderr, "snapvm: QMP socket: %s\n", sock)
	fmt.Fprintf(stderr, "snapvm: save: snapvm-qmp --wait %s snapshot-save job-id=s1 tag=t1 vmstate=disk0 devices=disk0\n", sock)
	fmt.Fprintf(stderr, "snapvm: load: snapvm-qmp --wait %s snapshot-load job-id=l1 tag=t1 vmstate=disk0 devices=disk0\n", sock)
	fmt.Fprintf(stderr, "snapvm: stop with Ctrl-C (the directory is removed on exit)\n")
	return kernel, cleanup, nil
}

func escapeComma(s string) string {
	var out []byte
	for i := 0; i < len(s); i++ {
		out = append(out, s[i])
		if s[i] == ',' {
			out = append(out, ',')
		}
	}
	return string(out)
}

var errNoDemo = errors.New("the demo guest is not available")
