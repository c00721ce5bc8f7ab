package guests

import (
	"bytes"
	"debug/elf"
	"os"
	"testing"
)

// The reset ROM jumps to DRAM base whatever the ELF says, so every guest must
// be an RV64 executable whose first loaded byte is at 0x80000000.
func TestELFsLoadAtDRAMBase(t *testing.T) {
	for _, name := range Names() {
		data, err := ELF(name)
		if err != nil {
			t.Fatal(err)
		}
		f, err := elf.NewFile(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_RISCV || f.Entry != 0x80000000 {
			t.Errorf("%s: class %v machine %v entry %#x", name, f.Class, f.Machine, f.Entry)
		}
		lowest := ^uint64(0)
		for _, p := range f.Progs {
			if p.Type == elf.PT_LOAD && p.Paddr < lowest {
				lowest = p.Paddr
			}
		}
		if lowest != 0x80000000 {
			t.Errorf("%s: lowest PT_LOAD at %#x", name, lowest)
		}
		p, err := Path(name)
		if err != nil {
			t.Fatal(err)
		}
		onDisk, err := os.ReadFile(p)
		if err != nil || !bytes.Equal(onDisk, data) {
			t.Errorf("%s: %s differs from the embedded copy (%v)", name, p, err)
		}
	}
	if _, err := ELF("nope"); err == nil {
		t.Error("ELF(nope) succeeded")
	}
}
