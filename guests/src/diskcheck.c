/* diskcheck: writes generations of sector patterns to the first virtio-blk
 * disk, remembers in RAM which generation each sector must hold, and reads
 * everything back to compare. Several requests are kept in flight so that a
 * snapshot is likely to catch I/O mid-request. Runs forever. */
#include "rt.h"
#include "virtio.h"
#include <string.h>

#define SECTOR		512
#define CHUNK		16	/* sectors per request */
#define MAX_SECTORS	4096	/* 2 MiB exercised at most */

static struct vblk dev;
static uint32_t want_gen[MAX_SECTORS];	/* 0: never written by us */
static uint8_t buf[VBLK_MAXREQ][CHUNK * SECTOR] __attribute__((aligned(64)));
static uint64_t req_sector[VBLK_MAXREQ];
static uint32_t req_gen[VBLK_MAXREQ];
static int req_write[VBLK_MAXREQ];
static uint64_t nsect;
static uint64_t mismatches;

/* Word i of sector s in generation g. Words 0 and 1 are readable markers. */
static uint64_t pattern(uint64_t s, uint32_t g, int i)
{
	if (i == 0)
		return 0x5ec7000000000000ULL | s;
	if (i == 1)
		return g;
	return mix64((s << 32) ^ ((uint64_t)g << 8) ^ (uint64_t)i);
}

static void fill(uint8_t *p, uint64_t s, uint32_t g)
{
	uint64_t *w = (uint64_t *)p;
	for (int i = 0; i < SECTOR / 8; i++)
		w[i] = pattern(s, g, i);
}

static void check(const uint8_t *p, uint64_t s)
{
	const uint64_t *w = (const uint64_t *)p;
	uint32_t g = want_gen[s];
	if (g == 0)
		return;
	for (int i = 0; i < SECTOR / 8; i++) {
		if (w[i] != pattern(s, g, i)) {
			printf("MISMATCH sector %lu want gen %u: word %d is 0x%016lx (sector word0 0x%016lx gen %lu)\n",
			       (unsigned long)s, g, i, (unsigned long)w[i], (unsigned long)w[0],
			       (unsigned long)w[1]);
			mismatches++;
			return;
		}
	}
}

static void complete_one(void)
{
	uint8_t st;
	int tag;
	while ((tag = vblk_poll(&dev, &st)) < 0)
		;
	if (st != 0) {
		printf("diskcheck: request at sector %lu failed with status %u\n",
		       (unsigned long)req_sector[tag], st);
		poweroff(3);
	}
	for (int k = 0; k < CHUNK; k++) {
		uint64_t s = req_sector[tag] + (uint64_t)k;
		if (req_write[tag])
			want_gen[s] = req_gen[tag];	/* only now is the disk known to hold it */
		else
			check(buf[tag] + k * SECTOR, s);
	}
}

int main(void)
{
	if (vblk_init(&dev) != 0) {
		printf("diskcheck: no virtio-blk device\n");
		return 4;
	}
	nsect = dev.capacity < MAX_SECTORS ? dev.capacity : MAX_SECTORS;
	nsect -= nsect % CHUNK;
	printf("diskcheck: virtio-blk in slot %d, %lu sectors, exercising %lu\n", dev.slot,
	       (unsigned long)dev.capacity, (unsigned long)nsect);
	if (nsect == 0)
		return 5;
	for (uint32_t g = 1;; g++) {
		/* Write phase: every chunk in generation 1, a pseudo-random half later. */
		for (uint64_t c = 0; c < nsect / CHUNK; c++) {
			if (g > 1 && (mix64((c << 32) | g) & 1))
				continue;
			int tag = -1;
			for (;;) {
				for (int i = 0; i < VBLK_MAXREQ; i++)
					if (!dev.busy[i]) {
						tag = i;
						break;
					}
				if (tag >= 0)
					break;
				complete_one();
			}
			for (int k = 0; k < CHUNK; k++)
				fill(buf[tag] + k * SECTOR, c * CHUNK + (uint64_t)k, g);
			req_sector[tag] = c * CHUNK;
			req_gen[tag] = g;
			req_write[tag] = 1;
			if (vblk_submit(&dev, VBLK_T_OUT, c * CHUNK, buf[tag], CHUNK * SECTOR) != tag)
				poweroff(6);
		}
		while (vblk_inflight(&dev))
			complete_one();
		/* Verify phase: read everything back. */
		for (uint64_t c = 0; c < nsect / CHUNK; c++) {
			int tag = -1;
			for (;;) {
				for (int i = 0; i < VBLK_MAXREQ; i++)
					if (!dev.busy[i]) {
						tag = i;
						break;
					}
				if (tag >= 0)
					break;
				complete_one();
			}
			req_sector[tag] = c * CHUNK;
			req_write[tag] = 0;
			if (vblk_submit(&dev, VBLK_T_IN, c * CHUNK, buf[tag], CHUNK * SECTOR) != tag)
				poweroff(6);
		}
		while (vblk_inflight(&dev))
			complete_one();
		if (mismatches == 0)
			printf("diskcheck gen %u ok\n", g);
		else
			printf("diskcheck gen %u FAILED: %lu mismatches so far\n", g,
			       (unsigned long)mismatches);
	}
}
