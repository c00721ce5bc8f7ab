package randinsn

import (
	"fmt"
	"strings"
)

// LinesPerSeq is how many output lines one sequence prints.
func (o Options) LinesPerSeq() int {
	if o.Dump && o.Paging && o.Traps {
		return 7
	}
	if o.Dump {
		return 5
	}
	return 1
}

// Explain compares the outputs of a Dump program on two machines and
// describes the first sequence that differs, field by field.
func Explain(o Options, wantName string, want []byte, gotName string, got []byte) string {
	wl := strings.Split(string(want), "\n")
	gl := strings.Split(string(got), "\n")
	per := o.LinesPerSeq()
	dataAddr := ^uint64(0) // computed on first use: it means generating the program
	for seq := 0; seq*per < len(wl); seq++ {
		var diffs []string
		for k := 0; k < per; k++ {
			i := seq*per + k
			if i >= len(wl) {
				break
			}
			w := wl[i]
			g := "<missing>"
			if i < len(gl) {
				g = gl[i]
			}
			if w == g {
				continue
			}
			if k == 0 || k == 3 || !o.Dump {
				what := "hash, trap count"
				if k == 3 {
					what = "data area hash"
				}
				diffs = append(diffs, fmt.Sprintf("  %s: %s %s, %s %s", what, wantName, w, gotName, g))
				continue
			}
			wf, gf := strings.Fields(w), strings.Fields(g)
			for j := 0; j < len(wf); j++ {
				gv := "<missing>"
				if j < len(gf) {
					gv = gf[j]
				}
				if wf[j] == gv {
					continue
				}
				var field string
				switch k {
				case 1:
					field = fmt.Sprintf("x%d", j+1)
				case 5, 6:
					field = fmt.Sprintf("%s-table PTE for window page %d", map[int]string{5: "S", 6: "U"}[k], j)
				case 4:
					if dataAddr == ^uint64(0) {
						dataAddr = loadBaseData(o)
					}
					field = fmt.Sprintf("data word %#x (middle%+d)", dataAddr+uint64(8*j), 8*j-dataSize/2)
				default:
					names := []string{"mcause", "mtval", "mepc"}
					if j >= 24 {
						names = []string{"scause", "stval", "sepc"}
					}
					field = fmt.Sprintf("trap slot %d %s", j%24/3, names[j%3])
				}
				if len(diffs) >= 12 {
					diffs = append(diffs, "  ...")
					break
				}
				diffs = append(diffs, fmt.Sprintf("  %s: %s %s, %s %s", field, wantName, wf[j], gotName, gv))
			}
		}
		if len(diffs) > 0 {
			return fmt.Sprintf("sequence %d differs:\n%s", seq, strings.Join(diffs, "\n"))
		}
	}
	if len(gl) != len(wl) {
		return fmt.Sprintf("%s printed %d lines, %s %d", wantName, len(wl), gotName, len(gl))
	}
	return "no difference"
}

// loadBaseData is the data area's address in o's program.
func loadBaseData(o Options) uint64 {
	addr, err := DataAddress(o)
	if err != nil {
		return 0
	}
	return addr
}
