/* hello: deterministic greeting used by the differential tests. */
#include "rt.h"

int main(void)
{
	printf("Hello from snapvm guest\n");
	printf("mhartid %lu\n", (unsigned long)csr_read(mhartid));
	printf("misa 0x%016lx\n", (unsigned long)csr_read(misa));
	printf("mvendorid 0x%lx\n", (unsigned long)csr_read(mvendorid));
	printf("fdt at 0x%lx\n", (unsigned long)(uintptr_t)rt_fdt);
	uint64_t ram = fdt_ram_size(rt_fdt);
	printf("ram %lu MiB\n", (unsigned long)(ram >> 20));
	const char *args = fdt_chosen_string(rt_fdt, "bootargs");
	printf("bootargs \"%s\"\n", args ? args : "");
	printf("bye\n");
	return 0;
}
