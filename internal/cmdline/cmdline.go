// Package cmdline parses snapvm's command line, which uses the spelling of
// qemu-system-riscv64's options (-M virt -bios none -kernel ... -m ...
// -blockdev ... -drive ... -device virtio-blk-device,drive=... -qmp ...
// -serial ... -S -nographic), and reports mistakes with QEMU's wording.
//
// Where snapvm's options deliberately differ from qemu-system-riscv64's:
//   - No -M is -M virt (QEMU has no default machine); no -bios is -bios none
//     (QEMU loads OpenSBI). -bios default finds QEMU's own OpenSBI.
//   - -smp up to 8 harts, one socket; -cpu rv64 only.
//   - -drive if=virtio (the default interface) makes a virtio-blk on a
//     virtio-mmio slot (QEMU's virt makes virtio-blk-pci); a -drive without
//     node-name gets the node name "drive-<id>" (QEMU: "#block<N>").
//   - Without -serial and -nodefaults, UART0 is on stdio even without
//     -nographic (QEMU would use a graphical console).
//   - -monitor none only (use -qmp); -device virtio-blk-device only, with
//     drive=, id= and serial=.
//   - A bare image name (QEMU's implicit -hda) is refused.
package cmdline

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/snapvm/snapvm/block"
	"github.com/snapvm/snapvm/qmp"
)

// Serial is one -serial backend.
type Serial struct {
	Kind   string // "stdio", "null", "none", "file", "unix"
	Path   string // file and unix
	Server bool   // unix: listen instead of connecting
	Wait   bool   // unix server: wait for a client before starting
}

// Drive is one -drive.
type Drive struct {
	Arg      string // as given, for messages
	File     string
	Format   string // "", "raw", "qcow2" ("" = probe)
	If       string // "virtio" or "none"
	ID       string // given or generated ("virtio0", "none0", ...)
	NodeName string
	ReadOnly bool
	Discard  string
	Cache    string
}

// Device is one -device.
type Device struct {
	Arg    string
	Driver string // "virtio-blk-device"
	Drive  string // drive id or node name
	ID     string
	Serial string
}

// Blockdev is one -blockdev with its parsed options.
type Blockdev struct {
	Arg     string
	Options block.Options
}

// Options is everything the command line says.
type Options struct {
	// Empty: no arguments at all (snapvm then runs its demo).
	Empty bool

	Machine     string // "virt"
	DumpDTB     string // -machine dumpdtb=PATH
	NoDefaults  bool
	BIOS        string // "none" (also when not given), "default" (QEMU's OpenSBI) or a file
	Kernel      string
	Append      string
	Initrd      string
	RAMSize     uint64 // bytes; 0 = machine default
	SMP         int
	CPU         string
	Serials     []Serial
	NoGraphic   bool
	Display     string
	Monitor     string
	StartPaused bool
	NoReboot    bool
	NoShutdown  bool
	Name        string
	Blockdevs   []Blockdev
	Drives      []Drive
	Devices     []Device
	QMP         []string // -qmp specs, passed to the QMP listener
	// RTCBase is -rtc base=DATETIME (zero: host time at start, QEMU's
	// base=utc).
	RTCBase     time.Time
	ShowHelp    bool
	ShowVersion bool
}

// Error is a command-line mistake; its text follows QEMU's
// "-option value: message" form (the caller prefixes the program name).
type Error struct {
	Opt string // "-m 12x", or "" when QEMU names no option
	Msg string
}

func (e *Error) Error() string {
	if e.Opt == "" {
		return e.Msg
	}
	return e.Opt + ": " + e.Msg
}

func errf(opt, format string, args ...any) *Error {
	return &Error{Opt: opt, Msg: fmt.Sprintf(format, args...)}
}

// MaxHarts is the most -smp accepts (QEMU's virt allows 512; our harts
// each take a host thread).
const MaxHarts = 8

// optionSpec says whether an option takes an argument.
var optionSpec = map[string]bool{
	"M": true, "machine": true, "nodefaults": false, "bios": true, "kernel": true,
	"append": true, "initrd": true, "m": true, "smp": true, "cpu": true, "serial": true,
	"nographic": false, "display": true, "monitor": true, "S": false,
	"no-reboot": false, "no-shutdown": false, "name": true, "blockdev": true,
	"drive": true, "device": true, "qmp": true, "h": false, "help": false, "version": false, "rtc": true,
}

// Usage is what -help prints.
const Usage = `usage: snapvm [options]
With no options, boots the bundled demo guest with a scratch qcow2 disk and a QMP socket.

Options (qemu-system-riscv64 spelling):
-M|-machine virt[,accel=tcg][,dumpdtb=FILE]   the board (the only one)
-bios none|default|FILE     firmware at 0x80000000 (none when not given; default = QEMU's OpenSBI)
-kernel FILE                ELF (at its physical addresses) or raw image
-append STRING              /chosen/bootargs
-initrd FILE                at kernel + min(RAM/2, 128M), in /chosen
-m [size=]N[k|M|G|T]        RAM (default 128M)
-smp [cpus=]N               harts (1..8)
-cpu rv64                   the only CPU model (RV64IMAC, Sv39)
-serial stdio|null|none|file:PATH|unix:PATH[,server=on|off][,wait=on|off]
-nographic, -display none, -monitor none, -nodefaults, -name NAME
-rtc base=utc|DATETIME[,clock=vm]   goldfish RTC start time (it follows the VM clock)
-S                          start paused (prelaunch) until QMP cont
-no-reboot, -no-shutdown    as QEMU
-blockdev OPTIONS           block node (drivers file, raw, qcow2)
-drive file=F[,format=raw|qcow2][,if=virtio|none][,id=ID][,node-name=N][,readonly=on]
-device virtio-blk-device,drive=ID[,id=ID][,serial=S]
-qmp unix:PATH,server=on[,wait=off] | tcp:HOST:PORT,server=on[,wait=off]
-version, -h|-help
`

// Parse reads args (without the program name).
func Parse(args []string) (*Options, error) {
	o := &Options{Empty: len(args) == 0, SMP: 1}
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !strings.HasPrefix(a, "-") || a == "-" {
			// QEMU takes a lone non-option as the disk image (-hda); we do not.
			return nil, errf(a, "invalid option")
		}
		name := strings.TrimPrefix(strings.TrimPrefix(a, "-"), "-")
		hasArg, ok := optionSpec[name]
		if !ok {
			return nil, errf("-"+name, "invalid option")
		}
		var val string
		if hasArg {
			if i+1 >= len(args) {
				return nil, errf("-"+name, "requires an argument")
			}
			i++
			val = args[i]
		}
		if err := o.apply(name, val); err != nil {
			return nil, err
		}
	}
	return o, o.finish()
}

func (o *Options) apply(name, val string) error {
	opt := "-" + name + " " + val
	switch name {
	case "M", "machine":
		return o.parseMachine(opt, val)
	case "nodefaults":
		o.NoDefaults = true
	case "bios":
		if val == "" {
			return errf(opt, "empty firmware file name")
		}
		o.BIOS = val
	case "kernel":
		o.Kernel = val
	case "append":
		o.Append = val
	case "initrd":
		o.Initrd = val
	case "m":
		n, err := parseMemory(opt, val)
		if err != nil {
			return err
		}
		o.RAMSize = n
	case "smp":
		return o.parseSMP(opt, val)
	case "cpu":
		if val != "rv64" {
			return errf("", "unable to find CPU model '%s'", val)
		}
		o.CPU = val
	case "serial":
		s, err := parseSerial(opt, val)
		if err != nil {
			return err
		}
		o.Serials = append(o.Serials, s)
	case "nographic":
		o.NoGraphic = true
	case "display":
		if val != "none" {
			return errf(opt, "Parameter 'type' does not accept value '%s'", val)
		}
		o.Display = val
	case "monitor":
		if val != "none" {
			return errf(opt, "only '-monitor none' is supported; use -qmp for a monitor")
		}
		o.Monitor = val
	case "S":
		o.StartPaused = true
	case "rtc":
		return o.parseRTC(opt, val)
	case "h", "help":
		o.ShowHelp = true
	case "version":
		o.ShowVersion = true
	case "no-reboot":
		o.NoReboot = true
	case "no-shutdown":
		o.NoShutdown = true
	case "name":
		return o.parseName(opt, val)
	case "blockdev":
		bo, err := block.ParseOptionsArg(val)
		if err != nil {
			return errf(opt, "%v", err)
		}
		o.Blockdevs = append(o.Blockdevs, Blockdev{Arg: val, Options: bo})
	case "drive":
		return o.parseDrive(opt, val)
	case "device":
		return o.parseDevice(opt, val)
	case "qmp":
		kind, _, _ := strings.Cut(val, ":")
		if kind != "unix" && kind != "tcp" {
			return errf(opt, "'%s' is not a valid char driver", val)
		}
		// The monitor's own parser decides what it can listen on.
		if _, _, _, err := qmp.ParseSpec(val); err != nil {
			return errf(opt, "%s", strings.TrimPrefix(err.Error(), "qmp: "))
		}
		o.QMP = append(o.QMP, val)
	}
	return nil
}

// keyvals splits "a=1,b=2" (",," is a literal comma). A first element
// without '=' is returned as implied (e.g. the machine type in -M virt,...).
func keyvals(s string, implied string) ([][2]string, error) {
	var out [][2]string
	var parts []string
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			if i+1 < len(s) && s[i+1] == ',' {
				cur.WriteByte(',')
				i++
				continue
			}
			parts = append(parts, cur.String())
			cur.Reset()
			continue
		}
		cur.WriteByte(s[i])
	}
	parts = append(parts, cur.String())
	for i, p := range parts {
		k, v, ok := strings.Cut(p, "=")
		if !ok {
			if i == 0 && implied != "" {
				out = append(out, [2]string{implied, p})
				continue
			}
			if p == "" {
				return nil, fmt.Errorf("Invalid parameter ''")
			}
			return nil, fmt.Errorf("Expected '=' after parameter '%s'", p)
		}
		out = append(out, [2]string{k, v})
	}
	return out, nil
}

func parseBool(opt, key, v string) (bool, error) {
	switch v {
	case "on", "yes", "true", "y":
		return true, nil
	case "off", "no", "false", "n":
		return false, nil
	}
	return false, errf(opt, "Parameter '%s' expects 'on' or 'off'", key)
}

func (o *Options) parseMachine(opt, val string) error {
	kv, err := keyvals(val, "type")
	if err != nil {
		return errf(opt, "%v", err)
	}
	for _, p := range kv {
		switch p[0] {
		case "type":
			if p[1] != "virt" {
				return errf("", "unsupported machine type\nUse -machine help to list supported machines")
			}
			o.Machine = "virt"
		case "accel":
			if p[1] != "tcg" {
				return errf(opt, "invalid accelerator %s (snapvm emulates: accel=tcg)", p[1])
			}
		case "dumpdtb":
			o.DumpDTB = p[1]
		default:
			return errf("", "Property 'virt-machine.%s' not found", p[0])
		}
	}
	return nil
}

const memoryHelp = "Parameter 'size' expects a non-negative number below 2^64\n" +
	"Optional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\n" +
	"and exabytes, respectively."

// parseMemory reads -m: "256", "256M", "1G", "size=256M". A number without
// suffix is in MiB, as in QEMU.
func parseMemory(opt, val string) (uint64, error) {
	kv, err := keyvals(val, "size")
	if err != nil {
		return 0, errf(opt, "%v", err)
	}
	var size string
	for _, p := range kv {
		if p[0] != "size" {
			return 0, errf(opt, "Invalid parameter '%s'", p[0])
		}
		size = p[1]
	}
	n, err := parseSize(size, 1<<20)
	if err != nil {
		return 0, errf(opt, "%s", memoryHelp)
	}
	// QEMU rounds RAM up to 8 KiB.
	n = (n + 8191) &^ 8191
	return n, nil
}

// parseSize reads a number with an optional k/M/G/T/P/E suffix; plain
// numbers are multiplied by unit.
func parseSize(s string, unit uint64) (uint64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty size")
	}
	mult := unit
	last := s[len(s)-1]
	if idx := strings.IndexByte("kKMGTPE", last); idx >= 0 {
		mult = map[byte]uint64{'k': 1 << 10, 'K': 1 << 10, 'M': 1 << 20, 'G': 1 << 30, 'T': 1 << 40, 'P': 1 << 50, 'E': 1 << 60}[last]
		s = s[:len(s)-1]
	}
	if s == "" {
		return 0, fmt.Errorf("no digits")
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && strings.Contains(s, ".") {
		v := f * float64(mult)
		if v < 0 || v >= 1<<64 {
			return 0, fmt.Errorf("out of range")
		}
		return uint64(v), nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n != 0 && mult > ^uint64(0)/n {
		return 0, fmt.Errorf("out of range")
	}
	return n * mult, nil
}

func (o *Options) parseSMP(opt, val string) error {
	kv, err := keyvals(val, "cpus")
	if err != nil {
		return errf(opt, "%v", err)
	}
	cpus := 0
	for _, p := range kv {
		switch p[0] {
		case "cpus", "maxcpus", "sockets", "cores", "threads", "dies", "clusters":
			n, err := strconv.Atoi(p[1])
			if err != nil || n < 0 {
				return errf("", "Parameter 'smp.%s' expects integer", p[0])
			}
			if p[0] == "cpus" {
				cpus = n
			} else if p[0] != "maxcpus" && n > 1 {
				return errf(opt, "snapvm models one socket of one-thread cores: use -smp N")
			}
		default:
			return errf(opt, "Invalid parameter '%s'", p[0])
		}
	}
	if cpus > MaxHarts {
		return errf("", "Invalid SMP CPUs %d. The max CPUs supported by machine 'virt' is %d", cpus, MaxHarts)
	}
	if cpus > 0 {
		o.SMP = cpus
	}
	return nil
}

// parseRTC reads -rtc [base=utc|localtime|DATETIME][,clock=vm]. snapvm's
// RTC always follows the VM clock, so clock=host and clock=rt are refused.
func (o *Options) parseRTC(opt, val string) error {
	kv, err := keyvals(val, "")
	if err != nil {
		return errf(opt, "%v", err)
	}
	for _, p := range kv {
		switch p[0] {
		case "base":
			switch p[1] {
			case "utc", "localtime":
				o.RTCBase = time.Time{}
			default:
				t, err := time.Parse("2006-01-02T15:04:05", p[1])
				if err != nil {
					t, err = time.Parse("2006-01-02", p[1])
				}
				if err != nil {
					return errf("", "invalid datetime format\nvalid formats: '2006-06-17T16:01:21' or '2006-06-17'")
				}
				o.RTCBase = t
			}
		case "clock":
			switch p[1] {
			case "vm":
			case "host", "rt":
				return errf(opt, "the RTC follows the VM clock in snapvm: use clock=vm")
			default:
				return errf("", "invalid option value '%s'", p[1])
			}
		case "driftfix":
			if p[1] != "none" && p[1] != "slew" {
				return errf("", "invalid option value '%s'", p[1])
			}
		default:
			return errf(opt, "Invalid parameter '%s'", p[0])
		}
	}
	return nil
}

func (o *Options) parseName(opt, val string) error {
	kv, err := keyvals(val, "guest")
	if err != nil {
		return errf(opt, "%v", err)
	}
	for _, p := range kv {
		switch p[0] {
		case "guest":
			o.Name = p[1]
		case "process", "debug-threads":
		default:
			return errf(opt, "Invalid parameter '%s'", p[0])
		}
	}
	return nil
}

func parseSerial(opt, val string) (Serial, error) {
	switch val {
	case "stdio", "mon:stdio":
		return Serial{Kind: "stdio"}, nil
	case "null", "none":
		return Serial{Kind: val}, nil
	}
	if path, ok := strings.CutPrefix(val, "file:"); ok && path != "" {
		return Serial{Kind: "file", Path: path}, nil
	}
	if strings.HasPrefix(val, "unix:") {
		if err := checkSocketSpec(opt, val); err != nil {
			return Serial{}, err
		}
		kv, _ := keyvals(strings.TrimPrefix(val, "unix:"), "path")
		s := Serial{Kind: "unix", Wait: true}
		for _, p := range kv {
			switch p[0] {
			case "path":
				s.Path = p[1]
			case "server":
				s.Server, _ = parseBool(opt, p[0], p[1])
			case "wait":
				s.Wait, _ = parseBool(opt, p[0], p[1])
			}
		}
		return s, nil
	}
	return Serial{}, errf(opt, "'%s' is not a valid char driver", val)
}

// checkSocketSpec validates a -serial unix:PATH[,server=on|off][,wait=on|off].
func checkSocketSpec(opt, val string) error {
	kind, rest, ok := strings.Cut(val, ":")
	if !ok || kind != "unix" || rest == "" {
		return errf(opt, "'%s' is not a valid char driver", val)
	}
	kv, err := keyvals(rest, "path")
	if err != nil {
		return errf(opt, "%v", err)
	}
	if kv[0][0] != "path" || kv[0][1] == "" {
		return errf(opt, "'%s' is not a valid char driver", val)
	}
	for _, p := range kv[1:] {
		switch p[0] {
		case "server", "wait", "nowait":
			if p[0] == "nowait" {
				continue
			}
			if _, err := parseBool(opt, p[0], p[1]); err != nil {
				return err
			}
		default:
			return errf(opt, "Invalid parameter '%s'", p[0])
		}
	}
	return nil
}

func (o *Options) parseDrive(opt, val string) error {
	kv, err := keyvals(val, "file")
	if err != nil {
		return errf(opt, "%v", err)
	}
	d := Drive{Arg: val, If: "virtio"}
	for _, p := range kv {
		switch p[0] {
		case "file":
			d.File = p[1]
		case "format":
			if p[1] != "raw" && p[1] != "qcow2" {
				return errf(opt, "Unknown driver '%s'", p[1])
			}
			d.Format = p[1]
		case "if":
			if p[1] != "virtio" && p[1] != "none" {
				return errf(opt, "unsupported bus type '%s'", p[1])
			}
			d.If = p[1]
		case "id":
			d.ID = p[1]
		case "node-name":
			d.NodeName = p[1]
		case "readonly", "read-only":
			ro, err := parseBool(opt, p[0], p[1])
			if err != nil {
				return err
			}
			d.ReadOnly = ro
		case "media":
			if p[1] != "disk" {
				return errf(opt, "'%s' invalid media", p[1])
			}
		case "discard":
			d.Discard = p[1]
		case "cache":
			d.Cache = p[1]
		case "index":
			if _, err := strconv.Atoi(p[1]); err != nil {
				return errf(opt, "Parameter 'index' expects a number")
			}
		default:
			return errf(opt, "Invalid parameter '%s'", p[0])
		}
	}
	if d.File == "" {
		return errf(opt, "Device needs media, but drive is empty")
	}
	if d.ID == "" {
		n := 0
		for _, x := range o.Drives {
			if x.If == d.If {
				n++
			}
		}
		d.ID = fmt.Sprintf("%s%d", d.If, n)
	}
	for _, x := range o.Drives {
		if x.ID == d.ID {
			return errf(opt, "Duplicate ID '%s' for drive", d.ID)
		}
	}
	o.Drives = append(o.Drives, d)
	return nil
}

func (o *Options) parseDevice(opt, val string) error {
	kv, err := keyvals(val, "driver")
	if err != nil {
		return errf(opt, "%v", err)
	}
	d := Device{Arg: val}
	for _, p := range kv {
		switch p[0] {
		case "driver":
			if p[1] != "virtio-blk-device" {
				return errf(opt, "'%s' is not a valid device model name", p[1])
			}
			d.Driver = p[1]
		case "drive":
			d.Drive = p[1]
		case "id":
			d.ID = p[1]
		case "serial":
			d.Serial = p[1]
		default:
			return errf(opt, "Property 'virtio-blk-device.%s' not found", p[0])
		}
	}
	if d.Driver == "" {
		return errf(opt, "Parameter 'driver' is missing")
	}
	if d.Drive == "" {
		return errf(opt, "drive property not set")
	}
	o.Devices = append(o.Devices, d)
	return nil
}

// finish checks what depends on several options.
func (o *Options) finish() error {
	if o.ShowHelp || o.ShowVersion {
		return nil
	}
	if o.Machine == "" {
		// qemu-system-riscv64 has no default machine; we only have one.
		o.Machine = "virt"
	}
	if o.Append != "" && o.Kernel == "" && !o.Empty {
		return errf("", "-append only allowed with -kernel option")
	}
	if o.Initrd != "" && o.Kernel == "" {
		return errf("", "-initrd only allowed with -kernel option")
	}
	if o.Kernel == "" && !o.Empty && o.DumpDTB == "" && !o.HasFirmware() {
		return errf("", "no -kernel given: snapvm boots bare-metal guests with -bios none -kernel FILE")
	}
	virtioDevs := len(o.Devices)
	for _, d := range o.Drives {
		if d.If == "virtio" {
			virtioDevs++
		}
	}
	if virtioDevs > 8 {
		return errf("", "too many virtio devices: the virt board has 8 virtio-mmio slots")
	}
	return nil
}

// HasFirmware reports whether -bios names firmware to load.
func (o *Options) HasFirmware() bool { return o.BIOS != "" && o.BIOS != "none" }

// SerialBackend is the backend of UART0: the first -serial, or the
// default: none with -nodefaults (even with -nographic, as QEMU), stdio
// otherwise (QEMU's default without -nographic is a graphical console,
// which snapvm does not have).
func (o *Options) SerialBackend() Serial {
	if len(o.Serials) > 0 {
		return o.Serials[0]
	}
	if o.NoDefaults {
		return Serial{Kind: "none"}
	}
	return Serial{Kind: "stdio"}
}
