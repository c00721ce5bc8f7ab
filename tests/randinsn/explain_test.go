package randinsn

import "testing"

// Explain reads whatever a VM printed, so odd output must not crash it.
func FuzzExplain(f *testing.F) {
	f.Add([]byte("0123456789abcdef 0000000000000000\n"), []byte("0123456789abcdef 0000000000000001\n"), true)
	f.Add([]byte("a\nb c\n\n"), []byte("a\nb\n"), true)
	f.Add([]byte(""), []byte("x y z\n1 2\n"), false)
	f.Fuzz(func(t *testing.T, want, got []byte, dump bool) {
		o := Options{Seed: 1, Seqs: 2, Insns: 1, Dump: dump}
		if s := Explain(o, "a", want, "b", got); s == "" {
			t.Fatal("empty explanation")
		}
	})
}
