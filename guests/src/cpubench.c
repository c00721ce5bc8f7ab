/* cpubench: a fixed, deterministic compute load (CRC32, sieve, sort, matrix
 * multiply, byte shuffling) that prints its checksum and the retired
 * instruction count, then powers off. "rounds=N" in the kernel command line
 * (-append) overrides the default number of rounds. */
#include "rt.h"

#define DEFAULT_ROUNDS	200
#define BUF_BYTES	(64 * 1024)
#define SIEVE_N		200000
#define SORT_N		4096
#define MAT_N		32

static uint8_t buf[BUF_BYTES];
static uint8_t sieve[SIEVE_N];
static uint32_t arr[SORT_N];
static uint32_t tmp[SORT_N];
static int32_t ma[MAT_N][MAT_N], mb[MAT_N][MAT_N], mc[MAT_N][MAT_N];

static uint32_t crc32(const uint8_t *p, size_t n, uint32_t crc)
{
	crc = ~crc;
	while (n--) {
		crc ^= *p++;
		for (int k = 0; k < 8; k++)
			crc = (crc >> 1) ^ (0xedb88320U & (0U - (crc & 1)));
	}
	return ~crc;
}

static uint64_t do_sieve(void)
{
	uint64_t count = 0, sum = 0;
	for (int i = 0; i < SIEVE_N; i++)
		sieve[i] = i >= 2;
	for (int i = 2; (long)i * i < SIEVE_N; i++)
		if (sieve[i])
			for (int j = i * i; j < SIEVE_N; j += i)
				sieve[j] = 0;
	for (int i = 0; i < SIEVE_N; i++)
		if (sieve[i]) {
			count++;
			sum += (uint64_t)i * count;
		}
	return sum ^ (count << 40);
}

static void merge_sort(uint32_t *a, uint32_t *t, int n)
{
	if (n < 16) {	/* insertion sort for short runs: more branches */
		for (int i = 1; i < n; i++) {
			uint32_t v = a[i];
			int j = i - 1;
			while (j >= 0 && a[j] > v) {
				a[j + 1] = a[j];
				j--;
			}
			a[j + 1] = v;
		}
		return;
	}
	int h = n / 2;
	merge_sort(a, t, h);
	merge_sort(a + h, t, n - h);
	int i = 0, j = h, k = 0;
	while (i < h && j < n)
		t[k++] = a[i] <= a[j] ? a[i++] : a[j++];
	while (i < h)
		t[k++] = a[i++];
	while (j < n)
		t[k++] = a[j++];
	for (k = 0; k < n; k++)
		a[k] = t[k];
}

static uint64_t do_sort(uint64_t *rng)
{
	for (int i = 0; i < SORT_N; i++)
		arr[i] = (uint32_t)xorshift64(rng);
	merge_sort(arr, tmp, SORT_N);
	uint64_t h = 0;
	for (int i = 0; i < SORT_N; i++) {
		if (i > 0 && arr[i - 1] > arr[i])
			h ^= 0xdead;	/* would mean a broken sort */
		h = h * 31 + arr[i];
	}
	return h;
}

static uint64_t do_matmul(uint64_t *rng)
{
	for (int i = 0; i < MAT_N; i++)
		for (int j = 0; j < MAT_N; j++) {
			ma[i][j] = (int32_t)(xorshift64(rng) % 2001) - 1000;
			mb[i][j] = (int32_t)(xorshift64(rng) % 2001) - 1000;
		}
	for (int i = 0; i < MAT_N; i++)
		for (int j = 0; j < MAT_N; j++) {
			int64_t s = 0;
			for (int k = 0; k < MAT_N; k++)
				s += (int64_t)ma[i][k] * mb[k][j];
			mc[i][j] = (int32_t)(s / 7) ^ (int32_t)(s % 13);
		}
	uint64_t h = 0;
	for (int i = 0; i < MAT_N; i++)
		for (int j = 0; j < MAT_N; j++)
			h = (h << 5 | h >> 59) ^ (uint32_t)mc[i][j];
	return h;
}

int main(void)
{
	uint64_t rounds = DEFAULT_ROUNDS;
	const char *args = fdt_chosen_string(rt_fdt, "bootargs");
	if (args)
		arg_u64(args, "rounds", &rounds);
	printf("cpubench: %lu rounds\n", (unsigned long)rounds);
	uint64_t start = csr_read(minstret);
	uint64_t rng = 0x0123456789abcdefULL, sum = 0;
	uint32_t crc = 0;
	for (uint64_t r = 0; r < rounds; r++) {
		for (int i = 0; i < BUF_BYTES; i += 8) {
			uint64_t v = xorshift64(&rng);
			for (int k = 0; k < 8; k++)
				buf[i + k] = (uint8_t)(v >> (8 * k));
		}
		crc = crc32(buf, BUF_BYTES, crc);
		uint64_t s = do_sieve();
		uint64_t o = do_sort(&rng);
		uint64_t m = do_matmul(&rng);
		sum = mix64(sum ^ crc ^ s ^ o ^ m ^ r);
		printf("cpubench: round %lu crc 0x%08x sum 0x%016lx\n", (unsigned long)r, crc,
		       (unsigned long)sum);
	}
	uint64_t insns = csr_read(minstret) - start;
	printf("cpubench: checksum 0x%016lx\n", (unsigned long)sum);
	printf("cpubench: instret %lu\n", (unsigned long)insns);
	return 0;
}
