// Command snapvm-img is snapvm's offline image tool, spelled like qemu-img;
// see package internal/imgcmd.
package main

import (
	"os"

	"github.com/snapvm/snapvm/internal/imgcmd"
)

func main() {
	os.Exit(imgcmd.Main(os.Args[1:], os.Stdout, os.Stderr))
}
