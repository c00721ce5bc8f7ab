package randinsn

import "encoding/binary"

// wrapELF makes an ELF64 RISC-V executable with a single PT_LOAD segment
// holding image at (physical and virtual) address base.
func wrapELF(image []byte, base uint64) []byte {
	const ehSize, phSize, dataOff = 64, 56, 0x1000
	out := make([]byte, dataOff, dataOff+len(image))
	le := binary.LittleEndian
	copy(out, "\x7fELF")
	out[4] = 2                   // ELFCLASS64
	out[5] = 1                   // little endian
	out[6] = 1                   // EV_CURRENT
	le.PutUint16(out[16:], 2)    // ET_EXEC
	le.PutUint16(out[18:], 243)  // EM_RISCV
	le.PutUint32(out[20:], 1)    // version
	le.PutUint64(out[24:], base) // entry
	le.PutUint64(out[32:], ehSize)
	le.PutUint64(out[40:], 0) // no section headers
	le.PutUint32(out[48:], 0) // flags: no float ABI, no RVC requirement recorded
	le.PutUint16(out[52:], ehSize)
	le.PutUint16(out[54:], phSize)
	le.PutUint16(out[56:], 1) // one program header
	le.PutUint16(out[58:], 64)
	ph := out[ehSize:]
	le.PutUint32(ph[0:], 1) // PT_LOAD
	le.PutUint32(ph[4:], 7) // RWX
	le.PutUint64(ph[8:], dataOff)
	le.PutUint64(ph[16:], base)
	le.PutUint64(ph[24:], base)
	le.PutUint64(ph[32:], uint64(len(image)))
	le.PutUint64(ph[40:], uint64(len(image)))
	le.PutUint64(ph[48:], 0x1000)
	return append(out, image...)
}
