package machine

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/snapvm/snapvm/memory"
)

// segment is a piece of the kernel image placed in RAM. Reset copies the
// segments again, as QEMU re-installs its ROM blobs.
type segment struct {
	addr uint64
	data []byte // file contents
	size uint64 // memory size (>= len(data); the rest is zero)
}

// loadImage decodes an ELF (segments at their physical addresses) or
// takes a raw image (at rawAt).
func loadImage(img []byte, rawAt uint64, ram *memory.RAM) ([]segment, error) {
	if len(img) == 0 {
		return nil, errors.New("kernel image is empty")
	}
	if !bytes.HasPrefix(img, []byte(elf.ELFMAG)) {
		if !ram.Contains(rawAt, uint64(len(img))) {
			return nil, fmt.Errorf("image of %d bytes at %#x does not fit in RAM", len(img), rawAt)
		}
		return []segment{{addr: rawAt, data: img, size: uint64(len(img))}}, nil
	}
	f, err := elf.NewFile(bytes.NewReader(img))
	if err != nil {
		return nil, fmt.Errorf("kernel: %w", err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_RISCV {
		return nil, fmt.Errorf("kernel: not a 64-bit RISC-V ELF (%v, %v)", f.Class, f.Machine)
	}
	var segs []segment
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Memsz == 0 {
			continue
		}
		if p.Filesz > p.Memsz || !ram.Contains(p.Paddr, p.Memsz) {
			return nil, fmt.Errorf("kernel: segment at %#x (%#x bytes) is outside RAM %#x-%#x",
				p.Paddr, p.Memsz, ram.Base, ram.Base+ram.Size())
		}
		data := make([]byte, p.Filesz)
		if _, err := p.ReadAt(data, 0); err != nil {
			return nil, fmt.Errorf("kernel: segment at %#x: %w", p.Paddr, err)
		}
		segs = append(segs, segment{addr: p.Paddr, data: data, size: p.Memsz})
	}
	if len(segs) == 0 {
		return nil, errors.New("kernel: ELF has no loadable segments")
	}
	return segs, nil
}

func installSegments(segs []segment, ram *memory.RAM) error {
	for _, s := range segs {
		if err := ram.WriteAt(s.data, s.addr); err != nil {
			return err
		}
		if zero := s.size - uint64(len(s.data)); zero > 0 {
			if err := ram.WriteAt(make([]byte, zero), s.addr+uint64(len(s.data))); err != nil {
				return err
			}
		}
	}
	return nil
}

// endAddr is the first address after every segment.
func endAddr(segs []segment) uint64 {
	var end uint64
	for _, s := range segs {
		end = max(end, s.addr+s.size)
	}
	return end
}

// overlap reports whether any segment of a overlaps one of b.
func overlap(a, b []segment) bool {
	for _, x := range a {
		for _, y := range b {
			if x.addr < y.addr+y.size && y.addr < x.addr+x.size {
				return true
			}
		}
	}
	return false
}

// kernelAlign is where a kernel goes after firmware: the next 2 MiB
// boundary, as QEMU's riscv_calc_kernel_start_addr does on RV64.
const kernelAlign = 2 << 20

func lowestAddr(segs []segment) uint64 {
	lo := segs[0].addr
	for _, s := range segs[1:] {
		lo = min(lo, s.addr)
	}
	return lo
}

// fdtAddress is where QEMU puts the device tree:
// align_down(min(DRAM end, 3 GiB) - size, 2 MiB).
func fdtAddress(ramSize uint64, fdtSize int) uint64 {
	end := min(uint64(DRAMBase)+ramSize, fdtLimit)
	return (end - uint64(fdtSize)) &^ (fdtAlign - 1)
}

// resetROM builds the MROM contents: QEMU's reset stub (a0 = mhartid,
// a1 = FDT, a2 = &fw_dynamic_info, jump to DRAM base) followed by the
// start address, the FDT address and OpenSBI's fw_dynamic_info.
func resetROM(fdtAddr, kernelLow uint64) []byte {
	rom := make([]byte, MROMSize)
	le := binary.LittleEndian
	words := []uint32{
		0x00000297, // auipc t0, 0
		0x02828613, // addi  a2, t0, 40
		0xf1402573, // csrr  a0, mhartid
		0x0202b583, // ld    a1, 32(t0)
		0x0182b283, // ld    t0, 24(t0)
		0x00028067, // jr    t0
	}
	for i, w := range words {
		le.PutUint32(rom[4*i:], w)
	}
	le.PutUint64(rom[0x18:], DRAMBase)
	le.PutUint64(rom[0x20:], fdtAddr)
	// fw_dynamic_info: magic "OSBI", version 2, next_addr, next_mode S,
	// options, boot_hart.
	info := []uint64{0x4942534f, 2, kernelLow, 1, 0, 0}
	for i, v := range info {
		le.PutUint64(rom[0x28+8*i:], v)
	}
	return rom
}
