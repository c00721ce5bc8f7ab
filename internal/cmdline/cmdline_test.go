package cmdline

import (
	"strings"
	"testing"
)

func TestFullCommandLine(t *testing.T) {
	args := strings.Fields("-M virt,accel=tcg -nodefaults -bios none -kernel g.elf -append a=1 -m size=256M -smp 1 -cpu rv64 " +
		"-serial file:/tmp/out -nographic -display none -monitor none -S -no-reboot -no-shutdown -name guest=vm1 " +
		"-blockdev driver=file,node-name=f0,filename=d.qcow2 -blockdev driver=qcow2,node-name=d0,file=f0 " +
		"-drive file=x.raw,format=raw,if=none,id=x0,readonly=on -drive file=y.qcow2 " +
		"-device virtio-blk-device,drive=d0 -device virtio-blk-device,drive=x0,id=blk1 " +
		"-qmp unix:/tmp/q.sock,server=on,wait=off -qmp tcp:127.0.0.1:4444,server,nowait,id=mon1")
	o, err := Parse(args)
	if err != nil {
		t.Fatal(err)
	}
	if o.SMP != 1 {
		t.Fatalf("smp %d", o.SMP)
	}
	if o2, err := Parse([]string{"-kernel", "k", "-smp", "cpus=4"}); err != nil || o2.SMP != 4 {
		t.Fatalf("-smp cpus=4: %v", err)
	}
	if o.Empty || o.Machine != "virt" || o.Kernel != "g.elf" || o.Append != "a=1" || o.RAMSize != 256<<20 {
		t.Fatalf("%+v", o)
	}
	if !o.NoDefaults || !o.StartPaused || !o.NoReboot || !o.NoShutdown || o.Name != "vm1" || !o.NoGraphic {
		t.Fatalf("flags %+v", o)
	}
	if s := o.SerialBackend(); s.Kind != "file" || s.Path != "/tmp/out" {
		t.Fatalf("serial %+v", s)
	}
	if len(o.Blockdevs) != 2 || o.Blockdevs[1].Options.NodeName != "d0" {
		t.Fatalf("blockdevs %+v", o.Blockdevs)
	}
	if len(o.Drives) != 2 || o.Drives[0].ID != "x0" || !o.Drives[0].ReadOnly || o.Drives[1].ID != "virtio0" || o.Drives[1].If != "virtio" {
		t.Fatalf("drives %+v", o.Drives)
	}
	if len(o.Devices) != 2 || o.Devices[0].Drive != "d0" || o.Devices[1].ID != "blk1" {
		t.Fatalf("devices %+v", o.Devices)
	}
	if len(o.QMP) != 2 {
		t.Fatalf("qmp %v", o.QMP)
	}
}

func TestMemorySizes(t *testing.T) {
	for in, want := range map[string]uint64{
		"256": 256 << 20, "256M": 256 << 20, "1G": 1 << 30, "size=512M": 512 << 20, "65536k": 64 << 20, "1.5G": 3 << 29,
		"1000000": 1000000 << 20, "4097k": 4104 << 10,
	} {
		o, err := Parse([]string{"-kernel", "k", "-m", in})
		if err != nil {
			t.Errorf("-m %s: %v", in, err)
			continue
		}
		if o.RAMSize != want {
			t.Errorf("-m %s = %d, want %d", in, o.RAMSize, want)
		}
	}
}

func TestFirmwareWithoutKernel(t *testing.T) {
	o, err := Parse([]string{"-bios", "default"})
	if err != nil || !o.HasFirmware() {
		t.Fatalf("%v %+v", err, o)
	}
	if o, _ := Parse([]string{"-bios", "none", "-kernel", "k"}); o.HasFirmware() {
		t.Fatal("-bios none is no firmware")
	}
}

func TestNoArguments(t *testing.T) {
	o, err := Parse(nil)
	if err != nil || !o.Empty {
		t.Fatalf("%v %+v", err, o)
	}
	if s := o.SerialBackend(); s.Kind != "stdio" {
		t.Fatalf("default serial %+v", s)
	}
}

func TestRTC(t *testing.T) {
	o, err := Parse(strings.Fields("-kernel k -rtc base=2020-02-03T04:05:06,clock=vm"))
	if err != nil || o.RTCBase.Unix() != 1580702706 {
		t.Fatalf("%v %v", err, o.RTCBase)
	}
	for _, bad := range []string{"base=2020-13-01", "clock=host", "clock=foo", "bogus=1"} {
		if _, err := Parse([]string{"-kernel", "k", "-rtc", bad}); err == nil {
			t.Errorf("-rtc %s accepted", bad)
		}
	}
}

func TestDefaultSerial(t *testing.T) {
	for args, want := range map[string]string{
		"-kernel k":                          "stdio",
		"-kernel k -nographic":               "stdio",
		"-kernel k -nodefaults -nographic":   "none",
		"-kernel k -nodefaults -serial null": "null",
	} {
		o, err := Parse(strings.Fields(args))
		if err != nil || o.SerialBackend().Kind != want {
			t.Errorf("%s: serial %+v (%v), want %s", args, o.SerialBackend(), err, want)
		}
	}
}

func TestSerialBackends(t *testing.T) {
	for in, want := range map[string]Serial{
		"stdio":                          {Kind: "stdio"},
		"mon:stdio":                      {Kind: "stdio"},
		"null":                           {Kind: "null"},
		"file:/x/y":                      {Kind: "file", Path: "/x/y"},
		"unix:/tmp/s,server=on,wait=off": {Kind: "unix", Path: "/tmp/s", Server: true},
		"unix:/tmp/s":                    {Kind: "unix", Path: "/tmp/s", Wait: true},
	} {
		o, err := Parse([]string{"-kernel", "k", "-serial", in})
		if err != nil {
			t.Errorf("-serial %s: %v", in, err)
			continue
		}
		if o.Serials[0] != want {
			t.Errorf("-serial %s = %+v, want %+v", in, o.Serials[0], want)
		}
	}
}

func TestErrors(t *testing.T) {
	for _, c := range []struct{ args, want string }{
		{"-foo", "-foo: invalid option"},
		{"--foo", "-foo: invalid option"},
		{"disk.img", "disk.img: invalid option"},
		{"-kernel", "-kernel: requires an argument"},
		{"-kernel k -m 12x", "-m 12x: Parameter 'size' expects a non-negative number below 2^64"},
		{"-kernel k -m size=1G,slots=2", "-m size=1G,slots=2: Invalid parameter 'slots'"},
		{"-kernel k -M foo", "unsupported machine type"},
		{"-kernel k -M virt,foo=1", "Property 'virt-machine.foo' not found"},
		{"-kernel k -M virt,accel=kvm", "-M virt,accel=kvm: invalid accelerator kvm"},
		{"-kernel k -serial bogus:x", "-serial bogus:x: 'bogus:x' is not a valid char driver"},
		{"-kernel k -smp 2x", "Parameter 'smp.cpus' expects integer"},
		{"-kernel k -smp 9", "Invalid SMP CPUs 9. The max CPUs supported by machine 'virt' is 8"},
		{"-kernel k -smp 2,sockets=2", "-smp 2,sockets=2: snapvm models one socket"},
		{"-kernel k -cpu foo", "unable to find CPU model 'foo'"},
		{"-kernel k -device foo", "-device foo: 'foo' is not a valid device model name"},
		{"-kernel k -device virtio-blk-device", "-device virtio-blk-device: drive property not set"},
		{"-kernel k -device virtio-blk-device,drive=d,bogus=1", "Property 'virtio-blk-device.bogus' not found"},
		{"-kernel k -display gtk", "-display gtk: Parameter 'type' does not accept value 'gtk'"},
		{"-kernel k -qmp foo", "-qmp foo: 'foo' is not a valid char driver"},
		{"-kernel k -qmp unix:/x,server=maybe", "parameter 'server' expects 'on' or 'off'"},
		{"-kernel k -qmp unix:/x", "must be a server socket"},
		{"-kernel k -qmp unix:/x,server=on,bogus=1", "invalid parameter 'bogus'"},
		{"-kernel k -drive if=virtio", "-drive if=virtio: Device needs media, but drive is empty"},
		{"-kernel k -drive file=x,format=foo", "-drive file=x,format=foo: Unknown driver 'foo'"},
		{"-kernel k -drive file=x,if=scsi", "unsupported bus type 'scsi'"},
		{"-kernel k -drive file=x,id=a -drive file=y,id=a", "Duplicate ID 'a' for drive"},
		{"-kernel k -blockdev driver=foo", "-blockdev driver=foo: "},
		{"-append x", "-append only allowed with -kernel option"},
		{"-bios default -initrd x", "-initrd only allowed with -kernel option"},
		{"-S", "no -kernel given"},
	} {
		_, err := Parse(strings.Fields(c.args))
		if err == nil {
			t.Errorf("%s: accepted", c.args)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %q, want it to contain %q", c.args, err, c.want)
		}
	}
}

func FuzzParse(f *testing.F) {
	f.Add("-kernel\x00k\x00-m\x00size=1G\x00-drive\x00file=a,,b,if=none")
	f.Add("-M\x00virt,accel=tcg\x00-qmp\x00tcp:h:1,server=on,wait=off\x00-serial\x00unix:/s,server=on")
	f.Add("-device\x00virtio-blk-device,drive=x\x00-blockdev\x00driver=file,filename=x,node-name=n")
	f.Fuzz(func(t *testing.T, s string) {
		Parse(strings.Split(s, "\x00")) //nolint:errcheck // must not panic
	})
}
