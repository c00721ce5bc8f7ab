//go:build !amd64

package riscv

const jitSupported = false

// jitHart is empty where no translator exists: harts interpret.
type jitHart struct {
	ctx        jitCtx
	loopBlocks int
}

func newJITHart(h *Hart) *jitHart { return &jitHart{} }

func (j *jitHart) translate(h *Hart, cp *codePage, pc uint64) uintptr { return 0 }

func jitEnter(entry uintptr, ctx *jitCtx) { panic("riscv: no translator on this host") }

func (j *jitHart) patchJump(site, target uintptr) {}
