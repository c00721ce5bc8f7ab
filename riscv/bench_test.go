package riscv

import (
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// threadCPU is the CPU time the calling OS thread has used; on a shared
// machine it is a steadier measure than wall time.
func threadCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_THREAD, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// benchRun runs the hart for b.N instructions of an endless program and
// reports guest instructions per second.
func benchRun(b *testing.B, r *rig) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ResetTimer()
	cpu0 := threadCPU()
	start := r.h.instret
	left := uint64(b.N)
	for left > 0 {
		n := left
		if n > 1<<20 {
			n = 1 << 20
		}
		r.h.Run(n)
		left -= n
	}
	b.StopTimer()
	cpu := threadCPU() - cpu0
	done := r.h.instret - start
	b.ReportMetric(float64(done)/b.Elapsed().Seconds()/1e6, "Minstr/s")
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(done), "ns/instr")
	b.ReportMetric(float64(done)/cpu.Seconds()/1e6, "Minstr/cpu-s")
}

// BenchmarkLoop: a tight integer loop (ALU ops and a taken branch).
func BenchmarkLoop(b *testing.B) {
	r := newRig(b)
	r.load(ramBase, prog(
		LI12(a0, 0),
		ADDI(a1, a1, 1), // loop:
		XOR(a2, a2, a1),
		ADD(a3, a3, a2),
		SLLI(a4, a3, 3),
		SUB(a5, a4, a1),
		ADDI(a0, a0, 1),
		BNE(a0, zero, -24),
	))
	benchRun(b, r)
}

// BenchmarkLoadStore: a loop over an array with loads and stores.
func BenchmarkLoadStore(b *testing.B) {
	r := newRig(b)
	r.load(ramBase, prog(
		li(s0, ramBase+0x10000),
		LI12(t0, 0),
		ADD(t1, s0, t0), // loop:
		LD(a0, t1, 0),
		ADDI(a0, a0, 3),
		SD(a0, t1, 0),
		LW(a1, t1, 8),
		ADD(a2, a2, a1),
		ADDI(t0, t0, 16),
		ANDI(t0, t0, 0x7f0),
		JAL(zero, -32),
	))
	benchRun(b, r)
}

// BenchmarkCompressed: the integer loop written with compressed
// instructions, as gcc -march=rv64imac emits most code.
func BenchmarkCompressed(b *testing.B) {
	r := newRig(b)
	// c.addi a1,1; c.xor a2,a1... use vectors assembled by hand:
	// 0: c.li a0,0 ; loop: c.addi a1,1 ; c.add a3,a2 ; c.slli a3,3 ; c.addi a0,1 ; c.bnez a0, loop
	r.load16(ramBase,
		0x4501, // c.li a0,0
		0x0585, // c.addi a1,1
		0x96b2, // c.add a3,a2
		0x068e, // c.slli a3,3
		0x0505, // c.addi a0,1
		0xf97d, // c.bnez a0,-8
	)
	benchRun(b, r)
}
