/* ticker: prints "tick N" from the CLINT timer interrupt every 100 ms of
 * guest time while the main loop keeps dirtying RAM pages (a rolling area of
 * 1024 pages, or "dirty=N" pages from the kernel command line, bounded by
 * the RAM size). The counter lives in RAM, so a restored snapshot continues
 * with the next tick. Never exits. */
#include "rt.h"

#define PERIOD		(TIMEBASE_HZ / 10)	/* 100 ms */
#define DIRTY_PAGES	1024			/* default: 4 MiB rolling area */

static volatile uint64_t ticks;
static volatile uint64_t next_deadline;

void trap_handler(struct trap_frame *f, uint64_t mcause, uint64_t mtval)
{
	if (mcause != (MCAUSE_INTR | 7)) {
		printf("unexpected trap: mcause 0x%lx mepc 0x%lx mtval 0x%lx\n",
		       (unsigned long)mcause, (unsigned long)f->regs[0], (unsigned long)mtval);
		poweroff(1);
	}
	ticks++;
	printf("tick %lu\n", (unsigned long)ticks);
	uint64_t next = next_deadline + PERIOD;
	uint64_t now = mtime();
	if (next <= now)	/* fell behind (e.g. a long pause): no burst of ticks */
		next = now + PERIOD;
	next_deadline = next;
	set_mtimecmp(next);
}

int main(void)
{
	uint64_t pages = DIRTY_PAGES;
	const char *args = fdt_chosen_string(rt_fdt, "bootargs");
	if (args)
		arg_u64(args, "dirty", &pages);
	/* The area starts after the image and stays 4 MiB below the end of RAM
	 * (everything needed from the FDT has been read by then anyway). */
	uintptr_t lo = ((uintptr_t)_end + 4095) & ~(uintptr_t)4095;
	uint64_t ram = fdt_ram_size(rt_fdt);
	uint64_t room = ram > (lo - DRAM_BASE) + (4UL << 20) ? (ram - (lo - DRAM_BASE) - (4UL << 20)) / 4096 : 0;
	if (pages > room)
		pages = room;
	if (pages == 0)
		pages = 1;
	uint64_t *area = (uint64_t *)lo;
	next_deadline = mtime() + PERIOD;
	set_mtimecmp(next_deadline);
	csr_set(mie, MIE_MTIE);
	csr_set(mstatus, MSTATUS_MIE);
	uint64_t sum = 0x243f6a8885a308d3ULL, i = 0;
	for (;;) {
		/* One word in every page per sweep: every page is dirty again quickly. */
		for (uint64_t p = 0; p < pages; p++) {
			uint64_t *w = &area[p * 512 + (i & 511)];
			sum = (sum ^ *w) * 0x100000001b3ULL + p;
			*w = sum;
		}
		i++;
	}
}
