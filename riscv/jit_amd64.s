#include "textflag.h"

// func jitEnter(entry uintptr, ctx *jitCtx)
//
// Loads the registers generated code expects (see jit_amd64.go) and calls
// the block at entry; blocks return here with RET after storing exitPC and
// exitKind. The offsets are those of jitCtx (TestJITContextLayout).
TEXT ·jitEnter(SB), 0, $16-16
	MOVQ R14, 0(SP)
	MOVQ entry+0(FP), AX
	MOVQ ctx+8(FP), R12
	MOVQ 0(R12), BX
	MOVQ 8(R12), R13
	MOVQ 16(R12), R14
	MOVQ 48(R12), R15
	CALL AX
	MOVQ R15, 48(R12)
	MOVQ 0(SP), R14
	RET
