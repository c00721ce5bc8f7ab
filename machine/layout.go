package machine

// The virt board's physical map and interrupt numbers (QEMU 7.2
// hw/riscv/virt.c), shared by the bus and the device tree.
const (
	MROMBase = 0x1000
	MROMSize = 0xf000

	TestBase = 0x100000
	TestSize = 0x1000 // DT reg size and decoded size

	RTCBase   = 0x101000
	RTCDTSize = 0x1000
	RTCIRQ    = 11

	CLINTBase   = 0x2000000
	CLINTDTSize = 0x10000

	PLICBase   = 0xc000000
	PLICDTSize = 0x600000
	PLICNDev   = 96

	UARTBase   = 0x10000000
	UARTDTSize = 0x100
	UARTIRQ    = 10
	UARTClock  = 3686400

	VirtioBase     = 0x10001000
	VirtioStride   = 0x1000
	VirtioDTSize   = 0x1000
	VirtioSlots    = 8
	VirtioFirstIRQ = 1

	// PCIe windows: nothing is plugged in and the device tree has no PCI
	// node, but QEMU decodes them (an empty bus reads all-ones).
	PCIePIOBase  = 0x3000000
	PCIePIOSize  = 0x10000
	PCIeECAMBase = 0x30000000
	PCIeECAMSize = 0x10000000
	PCIeMMIOBase = 0x40000000
	PCIeMMIOSize = 0x40000000

	DRAMBase = 0x80000000

	// DefaultRAMSize is QEMU's default -m for virt.
	DefaultRAMSize = 128 << 20

	// fdtLimit: the FDT is placed below min(DRAM end, this address).
	fdtLimit = 0xc0000000
	fdtAlign = 2 << 20
)

// VirtioSlotBase is the address of virtio-mmio slot i.
func VirtioSlotBase(i int) uint64 { return VirtioBase + uint64(i)*VirtioStride }
