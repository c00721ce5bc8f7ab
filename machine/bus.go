package machine

import (
	"encoding/binary"

	"github.com/snapvm/snapvm/devices/virtio"
)

// mmio is a device region on the bus; offsets are relative to its base and
// the device itself enforces its decoded size and access widths.
type mmio interface {
	Load(off uint64, size int) (uint64, bool)
	Store(off uint64, size int, val uint64) bool
}

// bus routes the harts' non-RAM physical accesses (riscv.Bus). Holes and
// accesses a device does not decode give access faults.
type bus struct {
	rom    []byte // MROMSize bytes: reset stub, zero-filled
	test   mmio
	rtc    mmio
	clint  mmio
	plic   mmio
	uart   mmio
	virtio [VirtioSlots]*virtio.Transport
}

func (b *bus) route(addr uint64) (mmio, uint64) {
	switch {
	case addr >= UARTBase && addr < UARTBase+UARTDTSize:
		return b.uart, addr - UARTBase
	case addr >= CLINTBase && addr < CLINTBase+CLINTDTSize:
		return b.clint, addr - CLINTBase
	case addr >= PLICBase && addr < PLICBase+PLICDTSize:
		return b.plic, addr - PLICBase
	case addr >= VirtioBase && addr < VirtioBase+VirtioSlots*VirtioStride:
		i := (addr - VirtioBase) / VirtioStride
		return b.virtio[i], addr - VirtioSlotBase(int(i))
	case addr >= TestBase && addr < TestBase+TestSize:
		return b.test, addr - TestBase
	case addr >= RTCBase && addr < RTCBase+RTCDTSize:
		return b.rtc, addr - RTCBase
	case addr >= PCIePIOBase && addr < PCIePIOBase+PCIePIOSize,
		addr >= PCIeECAMBase && addr < PCIeECAMBase+PCIeECAMSize,
		addr >= PCIeMMIOBase && addr < PCIeMMIOBase+PCIeMMIOSize:
		return emptyBus{}, 0
	}
	return nil, 0
}

// emptyBus is a PCIe window with nothing behind it: reads all-ones, writes
// are dropped. (QEMU has a host bridge at 00:00.0 in ECAM; we do not.)
type emptyBus struct{}

func (emptyBus) Load(off uint64, size int) (uint64, bool) {
	if size == 8 {
		return ^uint64(0), true
	}
	return 1<<(8*size) - 1, true
}

func (emptyBus) Store(off uint64, size int, val uint64) bool { return true }

// Load implements riscv.Bus.
func (b *bus) Load(addr uint64, size int) (uint64, bool) {
	if addr >= MROMBase && addr < MROMBase+MROMSize {
		off := addr - MROMBase
		if off+uint64(size) > MROMSize {
			return 0, false
		}
		var buf [8]byte
		copy(buf[:], b.rom[off:off+uint64(size)])
		return binary.LittleEndian.Uint64(buf[:]), true
	}
	dev, off := b.route(addr)
	if dev == nil {
		return 0, false
	}
	return dev.Load(off, size)
}

// Store implements riscv.Bus. The ROM ignores writes, as on QEMU.
func (b *bus) Store(addr uint64, size int, val uint64) bool {
	if addr >= MROMBase && addr < MROMBase+MROMSize {
		return addr-MROMBase+uint64(size) <= MROMSize
	}
	dev, off := b.route(addr)
	if dev == nil {
		return false
	}
	return dev.Store(off, size, val)
}
