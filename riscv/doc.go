// Package riscv owns one RV64 hart: an interpreter and a translator to
// host code for RV64IMAC with Zicsr and Zifencei, M/S/U modes, the CSR
// file, traps and interrupts, PMP, the Sv39 MMU with its TLBs, a
// decoded-instruction cache, and the hart's snapshot section.
//
// # Running a hart
//
// Run(budget) executes on the calling goroutine and returns StopBudget,
// StopWFI (the guest waits for an interrupt: call WaitForInterrupt with the
// time to the next timer deadline, then Run again) or StopKicked (Kick was
// called). Interrupts are level inputs driven with SetInterrupt from any
// goroutine; the effective mip is those lines ORed with the bits software
// wrote (SSIP, STIP, SEIP). Pending interrupts are checked between slices
// of at most a few thousand instructions and after every CSR write,
// xRET or MMIO store, so a device raising a line is seen promptly.
//
// # Memory
//
// Accesses to guest RAM go straight to memory.RAM.Data through TLBs that
// cache host offsets per virtual page; every store marks its page dirty
// (memory.RAM.MarkDirty). Everything else goes to the Bus with the access
// size (1, 2, 4 or 8); a Bus that returns ok=false raises an access fault.
// Instruction fetches outside RAM (the reset ROM) are 2-byte Bus loads.
// A store to MMIO ends the current slice, so a device may change RAM,
// interrupt lines or the clock while handling it.
//
// Decoded instructions are cached per physical page. The hart's own stores
// (including AMOs and A/D updates) keep the cache coherent by themselves.
// Writes by anyone else (device DMA through memory.RAM.WriteAt, loading a
// snapshot's RAM) must be announced with InvalidateCode, or the guest must
// execute FENCE.I, after which every cached page is compared with RAM
// before it next runs and decoded again if it changed.
//
// Harts may run on separate goroutines over the same RAM: AMOs, LR/SC and
// page-table A/D updates are host-atomic on RAM. TLBs and decoded code are
// per hart; guests synchronise them with SFENCE.VMA and FENCE.I as the ISA
// requires.
//
// # Differences from QEMU 7.2
//
// Deliberate, and visible to guests:
//   - misa reports what is implemented, RV64 ACIMSU (0x8000000000141105);
//     QEMU reports ACDFHIMSU. There is no F, D or H: FS stays 0 and FP
//     instructions and CSRs are illegal.
//   - No Sstc (stimecmp is illegal) and no hpm counters (mhpmcounter3..31
//     and mhpmevent3..31 read as zero): OpenSBI prints extensions "time"
//     and MHPM count 0.
//   - satp accepts Bare and Sv39 only (Sv48/Sv57 writes are ignored, as
//     for any unsupported mode), so the device tree must say riscv,sv39.
//   - Interrupts are taken in the specification's priority order
//     MEI > MSI > MTI > SEI > SSI > STI (QEMU takes the lowest bit first).
//   - mcycle and minstret both count retired instructions (QEMU uses host
//     time), which makes runs repeatable.
//
// QEMU's behaviour is kept for: hardware A/D bit updates; misaligned loads
// and stores performed without trapping; misaligned LR/AMO raising cause 4
// (load address misaligned); a misaligned SC without a reservation failing
// silently; SC succeeding when the reserved address still holds the value
// LR read; 16 PMP entries with 4-byte granularity, S/U denied when no
// entry matches and MRET to S/U illegal when no entry is set; tval 0 for
// ECALL/EBREAK and the instruction bits for illegal instructions; mtvec and
// stvec writes with MODE >= 2 ignored; marchid/mimpid 0x070216.
//
// # Translation
//
// On amd64 hosts Run translates code into host instructions (jit.go,
// jit_amd64.go, with the encoder in internal/x64); elsewhere, with
// SetJIT(false) or with SNAPVM_JIT=0 in the environment, it interprets.
// A block is a run of up to 128 integer instructions (RV64IM, loads,
// stores, branches and jumps) within one page, translated when first
// reached. Blocks keep the guest registers they use in six host registers
// and write them back to Hart.x at every exit; a block that branches back
// to its own start and uses at most six registers is emitted as a loop
// that keeps them there across iterations. Blocks look data addresses up
// in the interpreter's TLB entries and mark dirty and written bits as
// MarkDirty does (store first, then the bits); a TLB miss, a misaligned
// access, a store to a page that holds decoded code, and every instruction
// outside that set (CSRs, AMOs, LR/SC, ECALL, xRET, WFI, FENCE.I,
// SFENCE.VMA, illegal or page-crossing instructions) leave the block, and
// the interpreter executes that one instruction. A block jumps straight to
// a block of its own page (patched in once the target is translated) and
// to any other address through the fetch TLB, so everything that drops
// decoded code or fetch translations (stores into code, FENCE.I,
// InvalidateCode, SFENCE.VMA, satp or privilege changes, snapshot loads)
// drops or bypasses the blocks with it. A block starts, or loops again,
// only if the budget covers it, so Run's budget stays exact and
// minstret counts the same as when interpreting. Translated and
// interpreted runs are compared instruction for instruction by
// TestJITMatchesInterpreter, TestJITLoopModeMatchesInterpreter and
// FuzzJITMatchesInterpreter, and both run the guest and random-instruction
// comparisons with QEMU (make test runs the hart's tests both ways).
// SNAPVM_PERFMAP=1 writes /tmp/perf-PID.map for perf(1).
//
// # Snapshots
//
// Hart implements vmstate.Section as "hart<id>", version 1: pc, x1..x31,
// privilege, WFI state, the LR reservation, the retired-instruction count
// and every CSR's architectural value (state.go lists the layout). Caches
// are not saved; LoadSection validates every value and flushes them.
// Interrupt lines belong to the devices that drive them.
package riscv
