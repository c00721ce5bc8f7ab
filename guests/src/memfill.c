/* memfill: fills all RAM above its own image with xorshift data, then keeps
 * rewriting one random 4 KiB page per iteration and verifying another, with
 * a heartbeat now and then. Each page's content follows from (page, version)
 * and the versions are kept in RAM too, so a restored snapshot is checked
 * against itself. Never exits. */
#include "rt.h"

#define PAGE		4096
#define HEARTBEAT	16384	/* iterations between heartbeat lines */

static uint32_t *version;	/* per fill page, at the start of the free RAM */
static uint8_t *fill_base;
static uint64_t npages;

static void write_page(uint64_t p)
{
	uint64_t s = mix64((p << 20) ^ version[p]) | 1;
	uint64_t *w = (uint64_t *)(fill_base + p * PAGE);
	for (int i = 0; i < PAGE / 8; i++)
		w[i] = xorshift64(&s);
}

static int check_page(uint64_t p)
{
	uint64_t s = mix64((p << 20) ^ version[p]) | 1;
	const uint64_t *w = (const uint64_t *)(fill_base + p * PAGE);
	for (int i = 0; i < PAGE / 8; i++)
		if (w[i] != xorshift64(&s))
			return i;
	return -1;
}

int main(void)
{
	uint64_t ram = fdt_ram_size(rt_fdt);
	if (ram == 0) {
		printf("memfill: no memory node in the device tree\n");
		return 2;
	}
	uintptr_t lo = ((uintptr_t)_end + PAGE - 1) & ~(uintptr_t)(PAGE - 1);
	uintptr_t hi = DRAM_BASE + ram;
	/* The FDT is overwritten too: everything we need from it is read. */
	uint64_t total = (hi - lo) / PAGE;
	uint64_t vpages = (total * 4 + PAGE - 1) / PAGE;
	version = (uint32_t *)lo;
	fill_base = (uint8_t *)(lo + vpages * PAGE);
	npages = total - vpages;
	for (uint64_t p = 0; p < npages; p++) {
		version[p] = 1;
		write_page(p);
	}
	printf("memfill: filled %lu MiB\n", (unsigned long)((hi - lo) >> 20));
	uint64_t rng = 0x9e3779b97f4a7c15ULL, bad = 0;
	for (uint64_t it = 1;; it++) {
		uint64_t p = xorshift64(&rng) % npages;
		version[p]++;
		write_page(p);
		uint64_t q = xorshift64(&rng) % npages;
		int w = check_page(q);
		if (w >= 0) {
			bad++;
			printf("memfill: MISMATCH page 0x%lx word %d\n",
			       (unsigned long)(uintptr_t)(fill_base + q * PAGE), w);
		}
		if (it % HEARTBEAT == 0)
			printf("memfill: heartbeat %lu, %lu mismatches\n",
			       (unsigned long)(it / HEARTBEAT), (unsigned long)bad);
	}
}
