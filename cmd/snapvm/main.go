// Command snapvm is the virtual machine: the RISC-V virt board, its disks
// and the QMP monitor, with qemu-system-riscv64's option spelling. Without
// options it boots the bundled demo guest with a scratch qcow2 disk and
// prints where its QMP socket is.
package main

import "os"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
