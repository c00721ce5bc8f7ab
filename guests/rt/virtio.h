/* Minimal virtio-blk driver for the legacy (version 1) virtio-mmio transport,
 * polling the used ring; several requests may be in flight at once. */
#ifndef VIRTIO_H
#define VIRTIO_H

#include <stdint.h>

#define VBLK_QUEUE	16	/* ring entries */
#define VBLK_MAXREQ	(VBLK_QUEUE / 3)	/* three descriptors per request */

#define VBLK_T_IN	0
#define VBLK_T_OUT	1

struct vblk_req {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

struct vblk {
	uintptr_t base;		/* MMIO base of the transport */
	int slot;		/* 0..7 */
	uint64_t capacity;	/* 512-byte sectors */
	uint16_t last_used;	/* next used-ring entry to consume */
	uint16_t avail_idx;	/* our copy of avail->idx */
	int busy[VBLK_MAXREQ];
	struct vblk_req hdr[VBLK_MAXREQ];
	volatile uint8_t status[VBLK_MAXREQ];
};

/* vblk_init finds the first virtio-blk device (scanning the eight slots) and
 * sets up its queue. Returns 0 on success, -1 if none or setup failed. */
int vblk_init(struct vblk *d);
/* vblk_submit queues one request; returns its tag (0..VBLK_MAXREQ-1) or -1
 * if all tags are busy. */
int vblk_submit(struct vblk *d, uint32_t type, uint64_t sector, void *buf, uint32_t len);
/* vblk_poll returns a completed tag and its status byte in *status, or -1
 * if nothing has completed yet. */
int vblk_poll(struct vblk *d, uint8_t *status);
int vblk_inflight(const struct vblk *d);

#endif
