/* ticker: prints "tick N" from the CLINT timer interrupt every 100 ms of
 * guest time while the main loop keeps dirtying RAM pages. The counter lives
 * in RAM, so a restored snapshot continues with the next tick. Never exits. */
#include "rt.h"

#define PERIOD		(TIMEBASE_HZ / 10)	/* 100 ms */
#define DIRTY_PAGES	1024			/* 4 MiB rolling area */

static volatile uint64_t ticks;
static volatile uint64_t next_deadline;
static uint64_t area[DIRTY_PAGES * 512] __attribute__((aligned(4096)));

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
	next_deadline = mtime() + PERIOD;
	set_mtimecmp(next_deadline);
	csr_set(mie, MIE_MTIE);
	csr_set(mstatus, MSTATUS_MIE);
	uint64_t sum = 0x243f6a8885a308d3ULL, i = 0;
	for (;;) {
		/* One word in every page per sweep: every page is dirty again quickly. */
		for (uint64_t p = 0; p < DIRTY_PAGES; p++) {
			uint64_t *w = &area[p * 512 + (i & 511)];
			sum = (sum ^ *w) * 0x100000001b3ULL + p;
			*w = sum;
		}
		i++;
	}
}
