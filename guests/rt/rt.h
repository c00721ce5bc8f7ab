/* Tiny runtime shared by the snapvm guests: UART output (printf through
 * picolibc's tinystdio), power-off, CSR access, CLINT timer, FDT lookups. */
#ifndef RT_H
#define RT_H

#include <stdint.h>
#include <stddef.h>
#include <stdio.h>

#define UART0_BASE	0x10000000UL
#define TEST_BASE	0x100000UL
#define CLINT_BASE	0x2000000UL
#define CLINT_MTIMECMP	(CLINT_BASE + 0x4000)
#define CLINT_MTIME	(CLINT_BASE + 0xbff8)
#define TIMEBASE_HZ	10000000UL
#define DRAM_BASE	0x80000000UL

#define csr_read(csr) ({ uint64_t __v; __asm__ volatile("csrr %0, " #csr : "=r"(__v)); __v; })
#define csr_write(csr, v) __asm__ volatile("csrw " #csr ", %0" :: "rK"((uint64_t)(v)))
#define csr_set(csr, v) __asm__ volatile("csrs " #csr ", %0" :: "rK"((uint64_t)(v)))
#define csr_clear(csr, v) __asm__ volatile("csrc " #csr ", %0" :: "rK"((uint64_t)(v)))

#define MSTATUS_MIE	(1UL << 3)
#define MIE_MTIE	(1UL << 7)
#define MCAUSE_INTR	(1UL << 63)

static inline void mmio_write32(uintptr_t a, uint32_t v) { *(volatile uint32_t *)a = v; }
static inline uint32_t mmio_read32(uintptr_t a) { return *(volatile uint32_t *)a; }
static inline void mmio_write64(uintptr_t a, uint64_t v) { *(volatile uint64_t *)a = v; }
static inline uint64_t mmio_read64(uintptr_t a) { return *(volatile uint64_t *)a; }

/* Register frame built by rt_trap_entry: regs[0] is mepc, regs[i] is x<i>. */
struct trap_frame {
	uint64_t regs[32];
};

/* Guests define main; a1 (the FDT) is also kept in rt_fdt. */
int main(void);
extern uint64_t rt_hartid;
extern const void *rt_fdt;

/* Called on every trap; guests that take interrupts override it (weak default
 * prints the trap and fails). */
void trap_handler(struct trap_frame *f, uint64_t mcause, uint64_t mtval);

void uart_putc(char c);
void uart_puts(const char *s);
_Noreturn void poweroff(int code);	/* 0: pass (0x5555), else fail with code */

uint64_t mtime(void);
void set_mtimecmp(uint64_t t);

/* FDT helpers: RAM size from /memory reg, a /chosen string property. */
uint64_t fdt_ram_size(const void *fdt);
const char *fdt_chosen_string(const void *fdt, const char *prop);
/* Parse "key=NUMBER" out of a space-separated argument string. */
int arg_u64(const char *args, const char *key, uint64_t *out);

static inline uint64_t xorshift64(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	return *s = x;
}

static inline uint64_t mix64(uint64_t z)
{
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

extern char _end[];

#endif
