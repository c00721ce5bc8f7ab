package qcow2

import (
	"bytes"
	"fmt"
	"testing"
)

// TestCreateMatchesQemuImg compares the files Create writes with qemu-img create's.
func TestCreateMatchesQemuImg(t *testing.T) {
	for _, tc := range []struct {
		o    CreateOptions
		args []string
	}{
		{CreateOptions{Size: 64 << 20}, nil},
		{CreateOptions{Size: 1 << 30, ClusterSize: 4096}, []string{"-o", "cluster_size=4096"}},
		{CreateOptions{Size: 64 << 20, Compat: "0.10"}, []string{"-o", "compat=0.10"}},
		{CreateOptions{Size: 100 << 20, ClusterSize: 512, RefcountBits: 8}, []string{"-o", "cluster_size=512,refcount_bits=8"}},
		{CreateOptions{Size: 0}, nil},
		{CreateOptions{Size: 100001}, nil},
	} {
		t.Run(fmt.Sprint(tc.args), func(t *testing.T) {
			dir := t.TempDir()
			if err := Create(dir+"/ours.qcow2", tc.o); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"create", "-q", "-f", "qcow2"}, tc.args...)
			args = append(args, dir+"/qemu.qcow2", fmt.Sprint(tc.o.Size))
			run(t, nil, "qemu-img", args...)
			ours, theirs := readFileT(t, dir+"/ours.qcow2"), readFileT(t, dir+"/qemu.qcow2")
			if !bytes.Equal(ours, theirs) {
				n := min(len(ours), len(theirs))
				for i := 0; i < n; i++ {
					if ours[i] != theirs[i] {
						t.Fatalf("first difference at %#x: ours %#x qemu %#x (sizes %d/%d)", i, ours[i], theirs[i], len(ours), len(theirs))
					}
				}
				t.Fatalf("sizes differ: ours %d qemu %d", len(ours), len(theirs))
			}
		})
	}
}
