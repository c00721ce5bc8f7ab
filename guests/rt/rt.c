#include "rt.h"
#include <string.h>

uint64_t rt_hartid;
const void *rt_fdt;
/* Thread pointer target: room for picolibc's thread-local errno. */
uint64_t rt_tls_block[32] __attribute__((aligned(16)));

void uart_putc(char c)
{
	volatile uint8_t *u = (volatile uint8_t *)UART0_BASE;
	while (!(u[5] & 0x20))	/* LSR.THRE */
		;
	u[0] = (uint8_t)c;
}

void uart_puts(const char *s)
{
	while (*s)
		uart_putc(*s++);
}

static int stdio_put(char c, FILE *f)
{
	(void)f;
	uart_putc(c);
	return (unsigned char)c;
}

static FILE rt_stdout = FDEV_SETUP_STREAM(stdio_put, NULL, NULL, _FDEV_SETUP_WRITE);
FILE *const stdout = &rt_stdout;
FILE *const stderr = &rt_stdout;
FILE *const stdin = &rt_stdout;

_Noreturn void poweroff(int code)
{
	uint32_t v = code == 0 ? 0x5555 : (((uint32_t)code & 0xffff) << 16) | 0x3333;
	mmio_write32(TEST_BASE, v);
	for (;;)
		__asm__ volatile("wfi");
}

uint64_t mtime(void)
{
	return mmio_read64(CLINT_MTIME);
}

void set_mtimecmp(uint64_t t)
{
	mmio_write64(CLINT_MTIMECMP + 8 * rt_hartid, t);
}

__attribute__((weak)) void trap_handler(struct trap_frame *f, uint64_t mcause, uint64_t mtval)
{
	printf("unexpected trap: mcause 0x%lx mepc 0x%lx mtval 0x%lx\n",
	       (unsigned long)mcause, (unsigned long)f->regs[0], (unsigned long)mtval);
	poweroff(1);
}

void rt_trap(struct trap_frame *f)
{
	trap_handler(f, csr_read(mcause), csr_read(mtval));
}

void rt_start(uint64_t hartid, const void *fdt)
{
	rt_hartid = hartid;
	rt_fdt = fdt;
	poweroff(main());
}

/* --- flattened device tree --- */

#define FDT_MAGIC	0xd00dfeed
#define FDT_BEGIN_NODE	1
#define FDT_END_NODE	2
#define FDT_PROP	3
#define FDT_NOP		4
#define FDT_END		9

static uint32_t be32(const void *p)
{
	const uint8_t *b = p;
	return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

/* fdt_find_prop walks the structure block and returns the value of property
 * prop in the first node at depth 1 whose name starts with node_prefix. */
static const uint8_t *fdt_find_prop(const void *fdt, const char *node_prefix,
				    const char *prop, uint32_t *len)
{
	const uint8_t *base = fdt;
	if (fdt == NULL || be32(base) != FDT_MAGIC)
		return NULL;
	const uint8_t *p = base + be32(base + 8);
	const char *strings = (const char *)base + be32(base + 12);
	int depth = 0, match = 0;
	size_t plen = strlen(node_prefix);
	for (;;) {
		uint32_t tok = be32(p);
		p += 4;
		switch (tok) {
		case FDT_BEGIN_NODE: {
			const char *name = (const char *)p;
			size_t n = strlen(name);
			depth++;
			if (depth == 2)
				match = strncmp(name, node_prefix, plen) == 0 &&
					(name[plen] == 0 || name[plen] == '@');
			p += (n + 1 + 3) & ~3UL;
			break;
		}
		case FDT_END_NODE:
			depth--;
			if (depth < 2)
				match = 0;
			break;
		case FDT_PROP: {
			uint32_t l = be32(p), nameoff = be32(p + 4);
			const uint8_t *val = p + 8;
			if (match && depth == 2 && strcmp(strings + nameoff, prop) == 0) {
				*len = l;
				return val;
			}
			p = val + ((l + 3) & ~3UL);
			break;
		}
		case FDT_NOP:
			break;
		default:
			return NULL;
		}
	}
}

uint64_t fdt_ram_size(const void *fdt)
{
	uint32_t len;
	const uint8_t *reg = fdt_find_prop(fdt, "memory", "reg", &len);
	if (reg == NULL || len < 16)
		return 0;
	return ((uint64_t)be32(reg + 8) << 32) | be32(reg + 12);
}

const char *fdt_chosen_string(const void *fdt, const char *prop)
{
	uint32_t len;
	const uint8_t *v = fdt_find_prop(fdt, "chosen", prop, &len);
	if (v == NULL || len == 0 || v[len - 1] != 0)
		return NULL;
	return (const char *)v;
}

int arg_u64(const char *args, const char *key, uint64_t *out)
{
	size_t kl = strlen(key);
	const char *p = args;
	while (p != NULL && *p) {
		while (*p == ' ')
			p++;
		if (strncmp(p, key, kl) == 0 && p[kl] == '=') {
			uint64_t v = 0;
			const char *q = p + kl + 1;
			if (*q < '0' || *q > '9')
				return 0;
			while (*q >= '0' && *q <= '9')
				v = v * 10 + (uint64_t)(*q++ - '0');
			*out = v;
			return 1;
		}
		while (*p && *p != ' ')
			p++;
	}
	return 0;
}
