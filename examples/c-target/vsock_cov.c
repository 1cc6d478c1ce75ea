/*
 * vsock_cov.c: a SanitizerCoverage runtime for vsock-fuzz's coverage channel
 * "shm-8bit-v1" (docs/protocol-extensions.md).
 *
 * The harness passes a shared-memory region of 8-bit counters to the target
 * as an inherited file descriptor: VSOCK_FUZZ_COV_FD names it and
 * VSOCK_FUZZ_COV_SIZE gives its size (a power of two).  This file maps it
 * before main() and counts the target's edges there; libFuzzer in the fuzz
 * worker clears the counters before each input and reads them after it.
 *
 * Compile the code to measure with gcc's (or clang's)
 * -fsanitize-coverage=trace-pc and link this file, compiled WITHOUT that flag:
 *
 *   cc -O2 -c vsock_cov.c
 *   cc -O2 -fsanitize-coverage=trace-pc -o vsock_target_cov vsock_target.c vsock_cov.o
 *
 * Each basic block calls __sanitizer_cov_trace_pc(); its return address,
 * taken relative to the executable's start (stable under ASLR), is hashed,
 * and the counter of the edge (previous block, this block) is incremented,
 * saturating at 255 (AFL's scheme).  With clang, -fsanitize-coverage=
 * trace-pc-guard works too: __sanitizer_cov_trace_pc_guard is provided.
 *
 * A target offers the channel in its hello answer only when
 * vsock_cov_active() is true (the region was passed and mapped).
 *
 * A target that calls vsock_cov_device(1) just before its device parses a
 * case and vsock_cov_device(0) just after has only the device's edges
 * counted from then on, not those of its request reading and memory set-up,
 * whose branches follow the request's encoding (number widths, region
 * counts) rather than anything the device does: fewer inputs kept for
 * nothing, so libFuzzer mutates the ones that matter more often.  Each call
 * with 1 also starts a fresh edge chain, so a case's edges do not depend on
 * the case before it.  A target that never calls it has all its edges
 * counted, start-up included.
 */

#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>

static uint8_t cov_dummy[1];
static uint8_t *cov_map = cov_dummy;  /* until the region is mapped, counts go nowhere */
static uintptr_t cov_mask;            /* size - 1 */
static uintptr_t cov_prev;
static int cov_on;
static int cov_device_only;           /* vsock_cov_device() was called: count inside it only */
static int cov_in_device;

extern char __executable_start;

__attribute__((constructor(101))) static void vsock_cov_init(void)
{
    const char *fd_s = getenv("VSOCK_FUZZ_COV_FD"), *size_s = getenv("VSOCK_FUZZ_COV_SIZE");
    if (!fd_s || !size_s)
        return;
    char *end;
    long fd = strtol(fd_s, &end, 10);
    if (*end || fd < 0)
        return;
    unsigned long long size = strtoull(size_s, &end, 10);
    if (*end || size == 0 || (size & (size - 1)) || size > (1ull << 30))
        return;
    void *p = mmap(NULL, (size_t)size, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
    if (p == MAP_FAILED)
        return;
    cov_mask = (uintptr_t)size - 1;
    cov_map = p;
    cov_on = 1;
}

int vsock_cov_active(void)
{
    return cov_on;
}

void vsock_cov_device(int running)
{
    cov_device_only = 1;
    cov_in_device = running;
    cov_prev = 0;
}

static inline void cov_hit(uintptr_t loc)
{
    if (cov_device_only && !cov_in_device)
        return;
    loc = (loc ^ (loc >> 17)) * 0x9E3779B97F4A7C15ull;
    loc ^= loc >> 29;
    uintptr_t i = (loc ^ cov_prev) & cov_mask;
    cov_prev = loc >> 1;
    uint8_t v = cov_map[i] + 1;
    cov_map[i] = v ? v : 255;
}

void __sanitizer_cov_trace_pc(void)
{
    cov_hit((uintptr_t)__builtin_return_address(0) - (uintptr_t)&__executable_start);
}

/* clang's -fsanitize-coverage=trace-pc-guard: each guard gets a number once. */
void __sanitizer_cov_trace_pc_guard_init(uint32_t *start, uint32_t *stop)
{
    static uint32_t n;
    if (start == stop || *start)
        return;
    for (uint32_t *g = start; g < stop; g++)
        *g = ++n;
}

void __sanitizer_cov_trace_pc_guard(uint32_t *guard)
{
    if (*guard)
        cov_hit(*guard);
}
