package machine

import (
	"fmt"

	"github.com/snapvm/snapvm/fdt"
)

// ISA and MMU advertised for our harts (RV64IMAC, Sv39, no Sstc so that
// timers go through the CLINT).
const (
	cpuISA   = "rv64imac_zicsr_zifencei"
	cpuMMU   = "riscv,sv39"
	timebase = 10_000_000
)

// dtParams is what the device tree depends on.
type dtParams struct {
	harts    int
	ramSize  uint64
	bootargs string
	rngSeed  []byte // 32 bytes, or nil to leave the property out
	// initrdStart/End (0: no initrd) become /chosen/linux,initrd-*, as
	// 32-bit cells like QEMU 7.2 writes them.
	initrdStart, initrdEnd uint64
}

// buildDeviceTree produces the tree QEMU 7.2's virt board generates, in
// its node and property order, minus the devices we do not model (PCIe,
// flash, fw_cfg, platform bus, PMU).
func buildDeviceTree(p dtParams) ([]byte, error) {
	n := p.harts
	// QEMU creates harts last-first, so hart h gets phandle 2(n-1-h)+1 and
	// its interrupt controller the next one; then the PLIC and the test
	// device.
	cpuPh := func(h int) uint32 { return uint32(2*(n-1-h) + 1) }
	intcPh := func(h int) uint32 { return cpuPh(h) + 1 }
	plicPh := uint32(2*n + 1)
	testPh := uint32(2*n + 2)

	b := fdt.NewBuilder()
	b.BeginNode("")
	b.PropU32("#address-cells", 2)
	b.PropU32("#size-cells", 2)
	b.PropString("compatible", "riscv-virtio")
	b.PropString("model", "riscv-virtio,qemu")

	b.BeginNode("chosen")
	if p.initrdEnd != 0 {
		b.PropU32("linux,initrd-end", uint32(p.initrdEnd))
		b.PropU32("linux,initrd-start", uint32(p.initrdStart))
	}
	if p.rngSeed != nil {
		b.Prop("rng-seed", p.rngSeed)
	}
	if p.bootargs != "" {
		b.PropString("bootargs", p.bootargs)
	}
	b.PropString("stdout-path", fmt.Sprintf("/soc/serial@%x", UARTBase))
	b.EndNode()

	for _, r := range []struct {
		name, compat string
		value        uint32
	}{{"poweroff", "syscon-poweroff", 0x5555}, {"reboot", "syscon-reboot", 0x7777}} {
		b.BeginNode(r.name)
		b.PropU32("value", r.value)
		b.PropU32("offset", 0)
		b.PropU32("regmap", testPh)
		b.PropString("compatible", r.compat)
		b.EndNode()
	}

	b.BeginNode(fmt.Sprintf("memory@%x", DRAMBase))
	b.PropString("device_type", "memory")
	b.PropU64("reg", DRAMBase, p.ramSize)
	b.EndNode()

	b.BeginNode("cpus")
	b.PropU32("#address-cells", 1)
	b.PropU32("#size-cells", 0)
	b.PropU32("timebase-frequency", timebase)
	for h := 0; h < n; h++ {
		b.BeginNode(fmt.Sprintf("cpu@%d", h))
		b.PropU32("phandle", cpuPh(h))
		b.PropString("device_type", "cpu")
		b.PropU32("reg", uint32(h))
		b.PropString("status", "okay")
		b.PropString("compatible", "riscv")
		b.PropString("riscv,isa", cpuISA)
		b.PropString("mmu-type", cpuMMU)
		b.BeginNode("interrupt-controller")
		b.PropU32("#interrupt-cells", 1)
		b.PropEmpty("interrupt-controller")
		b.PropString("compatible", "riscv,cpu-intc")
		b.PropU32("phandle", intcPh(h))
		b.EndNode()
		b.EndNode()
	}
	b.BeginNode("cpu-map")
	b.BeginNode("cluster0")
	for h := 0; h < n; h++ {
		b.BeginNode(fmt.Sprintf("core%d", h))
		b.PropU32("cpu", cpuPh(h))
		b.EndNode()
	}
	b.EndNode()
	b.EndNode()
	b.EndNode() // cpus

	b.BeginNode("soc")
	b.PropU32("#address-cells", 2)
	b.PropU32("#size-cells", 2)
	b.PropString("compatible", "simple-bus")
	b.PropEmpty("ranges")

	b.BeginNode(fmt.Sprintf("rtc@%x", RTCBase))
	b.PropU32("interrupts", RTCIRQ)
	b.PropU32("interrupt-parent", plicPh)
	b.PropU64("reg", RTCBase, RTCDTSize)
	b.PropString("compatible", "google,goldfish-rtc")
	b.EndNode()

	b.BeginNode(fmt.Sprintf("serial@%x", UARTBase))
	b.PropU32("interrupts", UARTIRQ)
	b.PropU32("interrupt-parent", plicPh)
	b.PropU32("clock-frequency", UARTClock)
	b.PropU64("reg", UARTBase, UARTDTSize)
	b.PropString("compatible", "ns16550a")
	b.EndNode()

	b.BeginNode(fmt.Sprintf("test@%x", TestBase))
	b.PropU32("phandle", testPh)
	b.PropU64("reg", TestBase, TestSize)
	b.PropString("compatible", "sifive,test1", "sifive,test0", "syscon")
	b.EndNode()

	for i := VirtioSlots - 1; i >= 0; i-- {
		b.BeginNode(fmt.Sprintf("virtio_mmio@%x", VirtioSlotBase(i)))
		b.PropU32("interrupts", uint32(VirtioFirstIRQ+i))
		b.PropU32("interrupt-parent", plicPh)
		b.PropU64("reg", VirtioSlotBase(i), VirtioDTSize)
		b.PropString("compatible", "virtio,mmio")
		b.EndNode()
	}

	var plicIRQs, clintIRQs []uint32
	for h := 0; h < n; h++ {
		plicIRQs = append(plicIRQs, intcPh(h), 11, intcPh(h), 9)
		clintIRQs = append(clintIRQs, intcPh(h), 3, intcPh(h), 7)
	}
	b.BeginNode(fmt.Sprintf("plic@%x", PLICBase))
	b.PropU32("phandle", plicPh)
	b.PropU32("riscv,ndev", PLICNDev)
	b.PropU64("reg", PLICBase, PLICDTSize)
	b.PropU32("interrupts-extended", plicIRQs...)
	b.PropEmpty("interrupt-controller")
	b.PropString("compatible", "sifive,plic-1.0.0", "riscv,plic0")
	b.PropU32("#address-cells", 0)
	b.PropU32("#interrupt-cells", 1)
	b.EndNode()

	b.BeginNode(fmt.Sprintf("clint@%x", CLINTBase))
	b.PropU32("interrupts-extended", clintIRQs...)
	b.PropU64("reg", CLINTBase, CLINTDTSize)
	b.PropString("compatible", "sifive,clint0", "riscv,clint0")
	b.EndNode()

	b.EndNode() // soc
	b.EndNode() // root
	return b.Finish(0)
}
