package fdt

import (
	"bytes"
	"testing"
)

func build() []byte {
	b := NewBuilder()
	b.BeginNode("")
	b.PropU32("#address-cells", 2)
	b.PropString("compatible", "riscv-virtio")
	b.BeginNode("soc")
	b.PropEmpty("ranges")
	b.BeginNode("serial@10000000")
	b.PropU64("reg", 0x10000000, 0x100)
	b.PropString("compatible", "a", "b")
	b.EndNode()
	b.EndNode()
	b.EndNode()
	blob, _ := b.Finish(0)
	return blob
}

func TestRoundTrip(t *testing.T) {
	root, err := Parse(build())
	if err != nil {
		t.Fatal(err)
	}
	n := root.Lookup("/soc/serial@10000000")
	if n == nil {
		t.Fatal("lookup")
	}
	if r := n.U32s("reg"); len(r) != 4 || r[1] != 0x10000000 || r[3] != 0x100 {
		t.Fatalf("reg %v", r)
	}
	if !bytes.Equal(n.Props["compatible"], []byte("a\x00b\x00")) {
		t.Fatal("string list")
	}
	if root.String("compatible") != "riscv-virtio" || root.U32s("#address-cells")[0] != 2 {
		t.Fatal("root props")
	}
	if _, ok := root.Lookup("/soc").Props["ranges"]; !ok {
		t.Fatal("empty prop")
	}
}

func TestUnbalanced(t *testing.T) {
	b := NewBuilder()
	b.BeginNode("")
	if _, err := b.Finish(0); err == nil {
		t.Fatal("open node accepted")
	}
}

func FuzzParse(f *testing.F) {
	f.Add(build())
	f.Add([]byte{0xd0, 0x0d, 0xfe, 0xed})
	f.Fuzz(func(t *testing.T, blob []byte) {
		Parse(blob) //nolint:errcheck // must not panic
	})
}
