#include "rt.h"
#include "virtio.h"
#include <string.h>

#define VIRTIO_MAGIC		0x000
#define VIRTIO_VERSION		0x004
#define VIRTIO_DEVICE_ID	0x008
#define VIRTIO_DEVICE_FEATURES	0x010
#define VIRTIO_DRIVER_FEATURES	0x020
#define VIRTIO_GUEST_PAGE_SIZE	0x028
#define VIRTIO_QUEUE_SEL	0x030
#define VIRTIO_QUEUE_NUM_MAX	0x034
#define VIRTIO_QUEUE_NUM	0x038
#define VIRTIO_QUEUE_ALIGN	0x03c
#define VIRTIO_QUEUE_PFN	0x040
#define VIRTIO_QUEUE_NOTIFY	0x050
#define VIRTIO_INTERRUPT_STATUS	0x060
#define VIRTIO_INTERRUPT_ACK	0x064
#define VIRTIO_STATUS		0x070
#define VIRTIO_CONFIG		0x100

#define ST_ACK		1
#define ST_DRIVER	2
#define ST_DRIVER_OK	4

#define DESC_NEXT	1
#define DESC_WRITE	2

#define PAGE		4096

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

/* Legacy contiguous ring: descriptors and avail ring in the first page, used
 * ring at the next QueueAlign (= page) boundary. */
static uint8_t ring_mem[2 * PAGE] __attribute__((aligned(PAGE)));
#define DESC	((volatile struct vring_desc *)ring_mem)
#define AVAIL_FLAGS	((volatile uint16_t *)(ring_mem + 16 * VBLK_QUEUE))
#define AVAIL_IDX	((volatile uint16_t *)(ring_mem + 16 * VBLK_QUEUE + 2))
#define AVAIL_RING	((volatile uint16_t *)(ring_mem + 16 * VBLK_QUEUE + 4))
#define USED_IDX	((volatile uint16_t *)(ring_mem + PAGE + 2))
#define USED_RING	((volatile uint32_t *)(ring_mem + PAGE + 4))	/* {id, len} pairs */

static void wr(struct vblk *d, uint32_t off, uint32_t v) { mmio_write32(d->base + off, v); }
static uint32_t rd(struct vblk *d, uint32_t off) { return mmio_read32(d->base + off); }

int vblk_init(struct vblk *d)
{
	memset(d, 0, sizeof(*d));
	for (int slot = 7; slot >= 0; slot--) {
		uintptr_t base = 0x10001000UL + 0x1000UL * (uintptr_t)slot;
		if (mmio_read32(base + VIRTIO_MAGIC) != 0x74726976 ||
		    mmio_read32(base + VIRTIO_DEVICE_ID) != 2)
			continue;
		d->base = base;
		d->slot = slot;
		break;
	}
	if (d->base == 0)
		return -1;
	if (rd(d, VIRTIO_VERSION) != 1) {
		printf("virtio-blk: transport version %u not supported\n", rd(d, VIRTIO_VERSION));
		return -1;
	}
	wr(d, VIRTIO_STATUS, 0);
	wr(d, VIRTIO_STATUS, ST_ACK);
	wr(d, VIRTIO_STATUS, ST_ACK | ST_DRIVER);
	(void)rd(d, VIRTIO_DEVICE_FEATURES);
	wr(d, VIRTIO_DRIVER_FEATURES, 0);	/* plain requests only */
	wr(d, VIRTIO_GUEST_PAGE_SIZE, PAGE);
	wr(d, VIRTIO_QUEUE_SEL, 0);
	if (rd(d, VIRTIO_QUEUE_PFN) != 0 || rd(d, VIRTIO_QUEUE_NUM_MAX) < VBLK_QUEUE) {
		printf("virtio-blk: queue 0 unusable\n");
		return -1;
	}
	memset(ring_mem, 0, sizeof(ring_mem));
	wr(d, VIRTIO_QUEUE_NUM, VBLK_QUEUE);
	wr(d, VIRTIO_QUEUE_ALIGN, PAGE);
	wr(d, VIRTIO_QUEUE_PFN, (uint32_t)((uintptr_t)ring_mem / PAGE));
	*AVAIL_FLAGS = 1;	/* no interrupts: we poll */
	d->capacity = (uint64_t)rd(d, VIRTIO_CONFIG) | ((uint64_t)rd(d, VIRTIO_CONFIG + 4) << 32);
	wr(d, VIRTIO_STATUS, ST_ACK | ST_DRIVER | ST_DRIVER_OK);
	return 0;
}

int vblk_submit(struct vblk *d, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
	int tag = -1;
	for (int i = 0; i < VBLK_MAXREQ; i++)
		if (!d->busy[i]) {
			tag = i;
			break;
		}
	if (tag < 0)
		return -1;
	d->busy[tag] = 1;
	d->hdr[tag].type = type;
	d->hdr[tag].reserved = 0;
	d->hdr[tag].sector = sector;
	d->status[tag] = 0xff;
	uint16_t h = (uint16_t)(3 * tag);
	DESC[h].addr = (uintptr_t)&d->hdr[tag];
	DESC[h].len = sizeof(struct vblk_req);
	DESC[h].flags = DESC_NEXT;
	DESC[h].next = h + 1;
	DESC[h + 1].addr = (uintptr_t)buf;
	DESC[h + 1].len = len;
	DESC[h + 1].flags = DESC_NEXT | (type == VBLK_T_IN ? DESC_WRITE : 0);
	DESC[h + 1].next = h + 2;
	DESC[h + 2].addr = (uintptr_t)&d->status[tag];
	DESC[h + 2].len = 1;
	DESC[h + 2].flags = DESC_WRITE;
	DESC[h + 2].next = 0;
	AVAIL_RING[d->avail_idx % VBLK_QUEUE] = h;
	__sync_synchronize();	/* ring entry before index */
	d->avail_idx++;
	*AVAIL_IDX = d->avail_idx;
	__sync_synchronize();	/* index before notify */
	wr(d, VIRTIO_QUEUE_NOTIFY, 0);
	return tag;
}

int vblk_poll(struct vblk *d, uint8_t *status)
{
	if (*USED_IDX == d->last_used)
		return -1;
	__sync_synchronize();	/* index before entry */
	uint32_t id = USED_RING[2 * (d->last_used % VBLK_QUEUE)];
	d->last_used++;
	int tag = (int)(id / 3);
	if (id % 3 != 0 || tag >= VBLK_MAXREQ || !d->busy[tag]) {
		printf("virtio-blk: bogus used id %u\n", id);
		poweroff(2);
	}
	d->busy[tag] = 0;
	*status = d->status[tag];
	/* Acknowledge whatever the device raised (we never enable the PLIC line). */
	uint32_t isr = rd(d, VIRTIO_INTERRUPT_STATUS);
	if (isr)
		wr(d, VIRTIO_INTERRUPT_ACK, isr);
	return tag;
}

int vblk_inflight(const struct vblk *d)
{
	int n = 0;
	for (int i = 0; i < VBLK_MAXREQ; i++)
		n += d->busy[i];
	return n;
}
