package demoguest

import (
	"bytes"
	"testing"
)

func TestELF(t *testing.T) {
	b, err := ELF()
	if err != nil || !bytes.HasPrefix(b, []byte("\x7fELF")) {
		t.Fatalf("demo guest: %v", err)
	}
}
