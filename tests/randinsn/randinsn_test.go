package randinsn

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/snapvm/snapvm/tests/vmrun"
)

var (
	flagN     = flag.Int("randinsn.n", 200, "random sequences to run (programs rotate plain, traps, traps+paging, traps+delegation)")
	flagSeed  = flag.Int64("randinsn.seed", 1, "first program seed")
	flagInsns = flag.Int("randinsn.insns", 100, "random items per sequence")
	flagDump  = flag.String("randinsn.dump", "", "directory to write the generated ELFs to")
	flagAMOs  = flag.Bool("randinsn.window-amos", false, "paging programs also run AMOs on the paged window (see Options.WindowAMOs)")
)

// seqsPerProgram amortizes one VM start-up over many sequences.
const seqsPerProgram = 50

type program struct {
	name string
	opts Options
	elf  []byte
	path string
}

// programs generates the ELFs for the configured number of sequences,
// alternating plain and trap mode, into dir.
func programs(t *testing.T, dir string) []program {
	t.Helper()
	var ps []program
	for left, i := *flagN, 0; left > 0; i++ {
		n := min(left, seqsPerProgram)
		left -= n
		// Rotate through plain, traps, traps with Sv39 paging, and traps
		// delegated to S.
		o := Options{Seed: *flagSeed + int64(i), Seqs: n, Insns: *flagInsns, Traps: i%4 != 0, Paging: i%4 == 2,
			WindowAMOs: *flagAMOs, Delegate: i%4 == 3}
		elf, err := Generate(o)
		if err != nil {
			t.Fatalf("seed %d: %v", o.Seed, err)
		}
		name := fmt.Sprintf("randinsn-seed%d-traps%v-paging%v-amos%v-deleg%v.elf", o.Seed, o.Traps, o.Paging,
			o.WindowAMOs && o.Paging, o.Delegate)
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, elf, 0o644); err != nil {
			t.Fatal(err)
		}
		ps = append(ps, program{name, o, elf, path})
	}
	return ps
}

func outDir(t *testing.T) string {
	if *flagDump != "" {
		if err := os.MkdirAll(*flagDump, 0o755); err != nil {
			t.Fatal(err)
		}
		return *flagDump
	}
	return t.TempDir()
}

var lineRE = regexp.MustCompile(`^([0-9a-f]{16}) ([0-9a-f]{16})$`)

// parse checks the output shape: one "hash traps" line per sequence.
func parse(t *testing.T, p program, out []byte) (traps []uint64) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	per := p.opts.LinesPerSeq()
	if len(lines) != p.opts.Seqs*per {
		t.Fatalf("%s: %d output lines, want %d:\n%s", p.name, len(lines), p.opts.Seqs*per, out)
	}
	for i := 0; i < len(lines); i += per {
		l := lines[i]
		m := lineRE.FindStringSubmatch(l)
		if m == nil {
			t.Fatalf("%s: sequence %d printed %q", p.name, i, l)
		}
		n, _ := strconv.ParseUint(m[2], 16, 64)
		traps = append(traps, n)
	}
	return traps
}

func runQEMU(t *testing.T, p program) vmrun.Result {
	t.Helper()
	r, err := vmrun.Run(vmrun.QEMU(t), vmrun.QEMUArgs(p.path), 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.TimedOut || r.ExitCode != 0 {
		t.Fatalf("%s on QEMU: timed out %v, exit %d\n%s\n%s", p.name, r.TimedOut, r.ExitCode, r.Output, r.Stderr)
	}
	return r
}

// TestProgramsTerminateOnQEMU checks the generator against the reference:
// every program powers off with one line per sequence; plain programs never
// trap (so every encoding is a legal instruction doing what was meant);
// trap-mode programs do trap; and a program's output is reproducible.
func TestProgramsTerminateOnQEMU(t *testing.T) {
	ps := programs(t, outDir(t))
	sawTraps := false
	for i, p := range ps {
		r := runQEMU(t, p)
		traps := parse(t, p, r.Output)
		last := traps[len(traps)-1]
		if !p.opts.Traps && last != 0 {
			for j, n := range traps {
				if n != 0 {
					t.Fatalf("%s: plain sequence %d trapped (%d traps so far)", p.name, j, n)
				}
			}
		}
		if p.opts.Traps && last > 0 {
			sawTraps = true
		}
		if i < 2 {
			again := runQEMU(t, p)
			if string(again.Output) != string(r.Output) {
				t.Errorf("%s: two QEMU runs differ", p.name)
			}
		}
	}
	if *flagN > seqsPerProgram && !sawTraps {
		t.Error("no trap-mode program trapped")
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	o := Options{Seed: 42, Seqs: 3, Insns: 50, Traps: true}
	a, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Generate(o)
	if string(a) != string(b) {
		t.Fatal("same options, different images")
	}
	o.Seed++
	c, _ := Generate(o)
	o.Dump = true
	if d, _ := Generate(o); string(d) == string(c) {
		t.Fatal("Dump changed nothing")
	}
	if string(a) == string(c) {
		t.Fatal("different seeds, same image")
	}
}

// A Dump program prints the same hash lines plus the state, and Explain
// finds a planted difference.
func TestDumpOnQEMU(t *testing.T) {
	dir := t.TempDir()
	mk := func(dump bool) program {
		o := Options{Seed: 5, Seqs: 4, Insns: 60, Traps: true, Dump: dump}
		elf, err := Generate(o)
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(dir, fmt.Sprintf("dump%v.elf", dump))
		if err := os.WriteFile(path, elf, 0o644); err != nil {
			t.Fatal(err)
		}
		return program{path, o, elf, path}
	}
	plain, dump := mk(false), mk(true)
	po := runQEMU(t, plain).Output
	do := runQEMU(t, dump).Output
	parse(t, dump, do)
	pl := strings.Split(string(po), "\n")
	dl := strings.Split(string(do), "\n")
	per := dump.opts.LinesPerSeq()
	for i := 0; i < 4; i++ {
		if pl[i] != dl[per*i] {
			t.Fatalf("sequence %d: plain %q, dump %q", i, pl[i], dl[per*i])
		}
	}
	if e := Explain(dump.opts, "a", do, "b", do); e != "no difference" {
		t.Fatal(e)
	}
	cl := append([]string(nil), dl...)
	cl[per+1] = "0123456789abcdef" + cl[per+1][16:]
	e := Explain(dump.opts, "qemu", do, "other", []byte(strings.Join(cl, "\n")))
	if !strings.Contains(e, "sequence 1 differs") || !strings.Contains(e, "x1: qemu "+dl[per+1][:16]) {
		t.Fatalf("Explain said:\n%s", e)
	}
}

// The trap mode must keep reaching every kind of trap it aims at: illegal
// instructions (2), breakpoints (3), misaligned AMOs (4: QEMU reports the
// load cause), load and store access faults (5, 7) and ecalls from U, S
// and M (8, 9, 11).
func TestTrapCoverageOnQEMU(t *testing.T) {
	checkTrapCoverage(t, Options{Seed: 77, Seqs: 50, Insns: 100, Traps: true, Dump: true},
		[]uint64{2, 3, 4, 5, 7, 8, 9, 11})
}

// With paging, window accesses add load and store page faults (13, 15).
// Ecalls from S/U are still the way back to M (8, 9).
func TestPagingTrapCoverageOnQEMU(t *testing.T) {
	checkTrapCoverage(t, Options{Seed: 78, Seqs: 50, Insns: 100, Traps: true, Paging: true, WindowAMOs: true, Dump: true},
		[]uint64{2, 3, 5, 7, 8, 9, 13, 15})
}

// With delegation the S log sees the delegated causes: illegal
// instruction, breakpoint, misaligned AMO (4) and access faults from U and S.
func TestDelegatedTrapCoverageOnQEMU(t *testing.T) {
	checkTrapCoverage(t, Options{Seed: 79, Seqs: 50, Insns: 100, Traps: true, Delegate: true, Dump: true},
		[]uint64{2, 3, 4, 5, 7, 8, 9, 11, 1002, 1003, 1004, 1005, 1007})
}

// checkTrapCoverage wants every cause in want in the M log (cause) or the
// S log (1000 + cause).
func checkTrapCoverage(t *testing.T, o Options, want []uint64) {
	elf, err := Generate(o)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "traps.elf")
	if err := os.WriteFile(path, elf, 0o644); err != nil {
		t.Fatal(err)
	}
	p := program{"traps.elf", o, elf, path}
	out := runQEMU(t, p).Output
	parse(t, p, out)
	lines := strings.Split(string(out), "\n")
	seen := map[uint64]bool{}
	for seq := 0; seq < o.Seqs; seq++ {
		words := strings.Fields(lines[seq*o.LinesPerSeq()+2])
		for j := 0; j < len(words); j += 3 {
			cause, _ := strconv.ParseUint(words[j], 16, 64)
			if j >= 24 {
				cause += 1000
			}
			seen[cause] = true
		}
	}
	for _, c := range want {
		if !seen[c] {
			t.Errorf("no trap with mcause %d in %d sequences (saw %v)", c, o.Seqs, seen)
		}
	}
}
