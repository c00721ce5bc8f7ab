// Command snapvm-qmp is a QMP shell and one-shot client for snapvm (and QEMU):
//
//	snapvm-qmp /tmp/snapvm.qmp                       # interactive
//	snapvm-qmp /tmp/snapvm.qmp query-status          # one command, prints the return
//	snapvm-qmp --wait /tmp/snapvm.qmp snapshot-save job-id=s1 tag=t vmstate=d0 devices='["d0"]'
package main

import (
	"os"

	"github.com/snapvm/snapvm/internal/qmpclient"
)

func main() {
	os.Exit(qmpclient.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
