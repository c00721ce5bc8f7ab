/* S-mode payload for the OpenSBI boot test (riscv/opensbi_test.go), loaded
 * at 0x80200000 behind OpenSBI's fw_dynamic. It exercises what Linux needs
 * from the hart through OpenSBI: legacy console ecalls, rdtime, the SBI
 * timer with a delegated S-timer interrupt taken out of WFI, Sv39 with a
 * gigapage, a misaligned load, starting a second hart through SBI HSM (an
 * IPI), and SBI system reset.
 * Build: riscv64-unknown-elf-gcc -march=rv64imac_zicsr -mabi=lp64 -nostdlib
 *        -Wl,-Ttext=0x80200000 -Wl,--build-id=none -o sbipayload.elf sbipayload.S
 *        riscv64-unknown-elf-objcopy -O binary sbipayload.elf sbipayload.bin */
	.section .text
	.globl _start
_start:
	mv	s0, a0			/* hart id */
	la	sp, stack_top
	la	a0, msg_hello
	call	puts
	/* a0 = hart id as a digit */
	addi	a0, s0, '0'
	call	putc
	li	a0, '\n'
	call	putc

	/* Timer: stvec, arm the SBI timer 1000 ticks ahead, wait in WFI. */
	la	t0, trap
	csrw	stvec, t0
	li	t0, 1 << 5		/* STIE */
	csrs	sie, t0
	rdtime	a0
	addi	a0, a0, 1000
	li	a7, 0x54494D45		/* TIME */
	li	a6, 0
	ecall
	/* WFI wakes on a pending interrupt even with SIE clear; the handler
	 * runs when SIE is opened, so no wakeup is lost between test and WFI. */
1:	wfi
	csrsi	sstatus, 2		/* SIE: take it */
	csrci	sstatus, 2
	beqz	s1, 1b			/* s1 set by the handler */
	la	a0, msg_timer
	call	puts

	/* Sv39: identity-map 0x80000000 with a gigapage, plus VA 0x40000000
	 * aliasing it; read a word through the alias. */
	la	t0, pt
	li	t1, (0x80000000 >> 12 << 10) | 0xcf	/* V R W X A D */
	sd	t1, 16(t0)		/* VPN2 = 2: identity */
	sd	t1, 8(t0)		/* VPN2 = 1: 0x40000000 */
	srli	t0, t0, 12
	li	t1, 8 << 60
	or	t0, t0, t1
	csrw	satp, t0
	sfence.vma
	la	t2, magic
	li	t3, 0x40000000
	sub	t2, t2, t3		/* alias address */
	ld	t4, 0(t2)
	li	t5, 0x1234567890abcdef
	bne	t4, t5, fail
	la	a0, msg_vm
	call	puts

	/* A misaligned load (QEMU performs it without a trap). */
	la	t2, magic
	ld	t4, 1(t2)
	li	t5, 0x001234567890abcd
	bne	t4, t5, fail
	la	a0, msg_mis
	call	puts

	/* Start the other hart, if there is one, through SBI HSM (an IPI to
	 * a hart parked in WFI) and wait until it has run. */
	li	a7, 0x48534D		/* HSM */
	li	a6, 0			/* hart_start */
	xori	a0, s0, 1		/* the other hart's id */
	la	a1, second
	li	a2, 0
	ecall
	bnez	a0, 6f			/* no such hart */
	la	t0, flag
5:	lw	t1, 0(t0)
	beqz	t1, 5b
	la	a0, msg_second
	call	puts
6:
	/* Shutdown through SBI SRST. */
	li	a7, 0x53525354
	li	a6, 0
	li	a0, 0
	li	a1, 0
	ecall
fail:
	la	a0, msg_fail
	call	puts
	li	a7, 0x53525354
	li	a6, 0
	li	a0, 0
	li	a1, 1			/* system failure */
	ecall
2:	j	2b

	.align 2
trap:
	csrr	t0, scause
	li	t1, (1 << 63) | 5
	bne	t0, t1, fail
	li	a7, 0x54494D45		/* disarm: timer far in the future */
	li	a6, 0
	li	a0, -1
	ecall
	li	s1, 1
	sret

/* The second hart starts here in S-mode with the MMU off. */
second:
	la	t0, flag
	li	t1, 1
	amoswap.w t1, t1, (t0)
	li	a7, 0x48534D		/* HSM */
	li	a6, 1			/* hart_stop */
	ecall
7:	j	7b

putc:	li	a7, 1			/* legacy console_putchar */
	ecall
	ret

puts:	mv	t6, ra
	mv	t5, a0
3:	lbu	a0, 0(t5)
	beqz	a0, 4f
	call	putc
	addi	t5, t5, 1
	j	3b
4:	mv	ra, t6
	ret

	.section .rodata
msg_hello:	.asciz "sbipayload: S-mode on hart "
msg_timer:	.asciz "sbipayload: timer interrupt\n"
msg_vm:		.asciz "sbipayload: sv39 ok\n"
msg_mis:	.asciz "sbipayload: misaligned ok\n"
msg_fail:	.asciz "sbipayload: FAIL\n"
msg_second:	.asciz "sbipayload: second hart ran\n"
	.align 3
magic:	.dword 0x1234567890abcdef
	.dword 0

	.section .bss
	.align 3
flag:	.space 8
	.align 12
pt:	.space 4096
	.space 4096
stack_top:
