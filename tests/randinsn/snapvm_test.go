package randinsn

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/snapvm/snapvm/tests/vmrun"
)

// TestSnapvmMatchesQEMU runs every generated program on both machines and
// compares the per-sequence lines. On a difference it names the program
// (seed, mode) and sequence and keeps its ELF in the temporary directory.
func TestSnapvmMatchesQEMU(t *testing.T) {
	bin := vmrun.Snapvm(t)
	for _, p := range programs(t, outDir(t)) {
		q := runQEMU(t, p)
		s, err := vmrun.Run(bin, vmrun.BootArgs(p.path), 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if s.TimedOut || s.ExitCode != 0 {
			t.Fatalf("%s on snapvm: timed out %v, exit %d\n%s\n%s", p.name, s.TimedOut, s.ExitCode, s.Output, s.Stderr)
		}
		ql := strings.Split(string(q.Output), "\n")
		sl := strings.Split(string(s.Output), "\n")
		for i := range ql {
			if i >= len(sl) || ql[i] != sl[i] {
				got := "<missing>"
				if i < len(sl) {
					got = sl[i]
				}
				keep := filepath.Join(os.TempDir(), p.name)
				if err := os.WriteFile(keep, p.elf, 0o644); err != nil {
					keep = "(could not keep the ELF: " + err.Error() + ")"
				}
				t.Fatalf("%s: sequence %d differs\n qemu:   %s\n snapvm: %s\nprogram kept as %s\n%s",
					p.name, i, ql[i], got, keep, explainWithDump(t, bin, p))
			}
		}
	}
}

// explainWithDump reruns p's sequences in Dump mode on both machines and
// names the registers, trap-log fields or data that differ.
func explainWithDump(t *testing.T, bin string, p program) string {
	o := p.opts
	o.Dump = true
	elf, err := Generate(o)
	if err != nil {
		return err.Error()
	}
	path := filepath.Join(t.TempDir(), "dump-"+p.name)
	if err := os.WriteFile(path, elf, 0o644); err != nil {
		return err.Error()
	}
	q := runQEMU(t, program{p.name, o, elf, path})
	s, err := vmrun.Run(bin, vmrun.BootArgs(path), 5*time.Minute)
	if err != nil {
		return err.Error()
	}
	return Explain(o, "qemu", q.Output, "snapvm", s.Output)
}

func TestMain(m *testing.M) {
	code := m.Run()
	vmrun.Cleanup()
	os.Exit(code)
}
