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
	"bytes"
	"crypto/sha256"
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

// Path returns the absolute path of the named guest's ELF, for handing to
// qemu-system-riscv64 or snapvm as -kernel: guests/build/NAME.elf in the
// source tree when it is there (tests, make), otherwise a copy of the
// embedded image written once to the temporary directory (binaries built
// with -trimpath or run away from the source).
func Path(name string) (string, error) {
	data, err := ELF(name)
	if err != nil {
		return "", err
	}
	if _, file, _, ok := runtime.Caller(0); ok && filepath.IsAbs(file) {
		p := filepath.Join(filepath.Dir(file), "build", name+".elf")
		if onDisk, err := os.ReadFile(p); err == nil && bytes.Equal(onDisk, data) {
			return p, nil
		}
	}
	sum := sha256.Sum256(data)
	p := filepath.Join(os.TempDir(), "snapvm-guests", fmt.Sprintf("%s-%x.elf", name, sum[:6]))
	if onDisk, err := os.ReadFile(p); err == nil && bytes.Equal(onDisk, data) {
		return p, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", fmt.Errorf("guests: %w", err)
	}
	// Write under a unique name and rename, so concurrent callers never see
	// a partial file.
	tmp, err := os.CreateTemp(filepath.Dir(p), name+"-*.tmp")
	if err != nil {
		return "", fmt.Errorf("guests: %w", err)
	}
	_, werr := tmp.Write(data)
	cerr := tmp.Close()
	if werr == nil {
		werr = cerr
	}
	if werr == nil {
		werr = os.Rename(tmp.Name(), p)
	}
	if werr != nil {
		os.Remove(tmp.Name())
		return "", fmt.Errorf("guests: %w", werr)
	}
	return p, nil
}
