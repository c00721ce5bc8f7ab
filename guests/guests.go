// Package guests holds snapvm's bare-metal guest programs: their C/assembly
// sources, the Makefile that builds them with riscv64-unknown-elf-gcc, and
// the built ELFs (committed under build/), which it embeds so tests and
// tools need no cross compiler.
//
// Every guest runs in M-mode on hart 0 of the virt board, prints on UART0
// and powers off through sifive_test when it finishes:
//
//	hello      deterministic greeting plus misa, mhartid, FDT address, RAM size
//	ticker     "tick N" every 100 ms of guest time while dirtying RAM; endless
//	diskcheck  writes/verifies generations of sectors on virtio-blk; endless
//	memfill    fills RAM with xorshift data, rewrites/verifies pages; endless
//	cpubench   fixed compute load; prints checksum and instret ("rounds=N" in -append)
package guests

import (
	"embed"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
)

//go:embed build/*.elf
var built embed.FS

// Names lists the guests, in a stable order.
func Names() []string {
	return []string{"hello", "ticker", "diskcheck", "memfill", "cpubench"}
}

// ELF returns the embedded image of the named guest.
func ELF(name string) ([]byte, error) {
	if !slices.Contains(Names(), name) {
		return nil, fmt.Errorf("guests: unknown guest %q", name)
	}
	return built.ReadFile("build/" + name + ".elf")
}

// Path returns the absolute path of the named guest's ELF in the source tree
// (guests/build/NAME.elf), for handing to qemu-system-riscv64 or snapvm as
// -kernel. It works wherever the module source is present (tests, make);
// programs shipped without the source should use ELF.
func Path(name string) (string, error) {
	if !slices.Contains(Names(), name) {
		return "", fmt.Errorf("guests: unknown guest %q", name)
	}
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		return "", fmt.Errorf("guests: cannot locate the source directory")
	}
	p := filepath.Join(filepath.Dir(file), "build", name+".elf")
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("guests: %w", err)
	}
	return p, nil
}
