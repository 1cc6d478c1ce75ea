/*
 * vsock_cov.c: a SanitizerCoverage runtime for vsock-fuzz's coverage channel
 * "shm-8bit-v1" and its "shm-8bit-v2" with compare hints
 * (docs/protocol-extensions.md).
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
 * Compare hints (shm-8bit-v2): compile with -fsanitize-coverage=trace-pc,trace-cmp
 * (clang: trace-pc-guard,trace-cmp) and every integer comparison calls
 * __sanitizer_cov_trace_cmp1/2/4/8 (const_cmp when one side is a constant)
 * or __sanitizer_cov_trace_switch.  When the harness passed a compare table
 * (VSOCK_FUZZ_COV_CMP_SLOTS, the table right after the counters), each call
 * records its operands there, the most recent slots-many kept; the harness
 * hands them to libFuzzer, whose mutations then write the value the device
 * compared against into the input.  Built without trace-cmp, nothing calls
 * the hooks and the table stays empty.
 *
 * A target offers the channel in its hello answer only when
 * vsock_cov_active() is true (the region was passed and mapped), and
 * shm-8bit-v2 only when vsock_cov_compares() is true as well (a table was
 * passed and a compare hook has run, as one does while the hello request is
 * read in a build with trace-cmp).
 *
 * A target that calls vsock_cov_device(1) just before its device parses a
 * case and vsock_cov_device(0) just after has only the device's edges
 * counted from then on, not those of its request reading and memory set-up,
 * whose branches follow the request's encoding (number widths, region
 * counts) rather than anything the device does: fewer inputs kept for
 * nothing, so libFuzzer mutates the ones that matter more often.  Each call
 * with 1 also starts a fresh edge chain, so a case's edges do not depend on
 * the case before it.  A target that never calls it has all its edges
 * counted, start-up included; one that calls vsock_cov_device(0) first thing
 * in main() has none of its start-up counted (the example does: its hello
 * reading would otherwise fill the compare table before the first case).
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define CMP_HEADER 16   /* le64 written, le32 slots, le32 zero */
#define CMP_ENTRY 24    /* u8 size, u8 kind, 6 zero bytes, le64 arg1, le64 arg2 */
#define CMP_MAX_SLOTS (1u << 20)

static uint8_t cov_dummy[1];
static uint8_t *cov_map = cov_dummy;  /* until the region is mapped, counts go nowhere */
static uintptr_t cov_mask;            /* size - 1 */
static uintptr_t cov_prev;
static int cov_on;
static int cov_device_only;           /* vsock_cov_device() was called: count inside it only */
static int cov_in_device;
static unsigned char *cmp_table;      /* the compare table's header, NULL without one */
static unsigned char *cmp_armed;      /* cmp_table while compares are recorded, else NULL */
static uint64_t cmp_slots;
static uint64_t cmp_mask;             /* slots - 1 when a power of two (the harness's are): no division */
static int cmp_traced;                /* a compare hook ran: built with trace-cmp */

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
    /* The slot count comes from the environment, never from the table's header: an earlier
       process of this target may have written anything there. */
    unsigned long long slots = 0;
    const char *slots_s = getenv("VSOCK_FUZZ_COV_CMP_SLOTS");
    if (slots_s) {
        slots = strtoull(slots_s, &end, 10);
        if (*end || slots > CMP_MAX_SLOTS)
            slots = 0;
    }
    size_t whole = (size_t)size + (slots ? CMP_HEADER + CMP_ENTRY * (size_t)slots : 0);
    struct stat st;
    if (slots && (fstat((int)fd, &st) < 0 || (unsigned long long)st.st_size < whole)) {
        slots = 0;  /* a table past the file's end would fault (SIGBUS) on the first compare */
        whole = (size_t)size;
    }
    void *p = mmap(NULL, whole, PROT_READ | PROT_WRITE, MAP_SHARED, (int)fd, 0);
    if (p == MAP_FAILED)
        return;
    cov_mask = (uintptr_t)size - 1;
    cov_map = p;
    if (slots) {
        cmp_table = cmp_armed = (unsigned char *)p + size;
        cmp_slots = slots;
        cmp_mask = (slots & (slots - 1)) ? 0 : slots - 1;
    }
    cov_on = 1;
}

int vsock_cov_active(void)
{
    return cov_on;
}

/* Whether to take shm-8bit-v2: a table was passed, and this build traces compares (reading
   the hello request compared something). Built without trace-cmp, the target answers
   shm-8bit-v1 and is driven exactly as before. */
int vsock_cov_compares(void)
{
    return cmp_table != NULL && cmp_traced;
}

void vsock_cov_device(int running)
{
    cov_device_only = 1;
    cov_in_device = running;
    cmp_armed = running ? cmp_table : NULL;
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

/* ---- compare hints (shm-8bit-v2) ---------------------------------------- */

/* Entry k of the table goes in slot k mod slots; the harness reads the count and sets it to
   0 after each case.  Only the device's compares (as for edges): the request reading's would
   fill the table with JSON number widths and push the device's out. */
static inline void cmp_record(unsigned size, unsigned kind, uint64_t a, uint64_t b)
{
    unsigned char *t = cmp_armed;  /* one load on the common path: outside the device */
    cmp_traced = 1;
    if (!t)
        return;
    uint64_t written;
    memcpy(&written, t, 8);
    uint64_t slot = cmp_mask ? (written & cmp_mask) : written % cmp_slots;
    unsigned char *e = t + CMP_HEADER + slot * CMP_ENTRY;
    memset(e, 0, 8);
    e[0] = (unsigned char)size;
    e[1] = (unsigned char)kind;
    memcpy(e + 8, &a, 8);
    memcpy(e + 16, &b, 8);
    written++;
    memcpy(t, &written, 8);
}

/* 1-byte compares are not recorded: libFuzzer keeps none in its tables (plain mutation reaches
   a byte's 256 values), and they are two in five of a parser's compares, which would push the
   wider ones out of the table. */
void __sanitizer_cov_trace_cmp1(uint8_t a, uint8_t b) { (void)a, (void)b, cmp_traced = 1; }
void __sanitizer_cov_trace_cmp2(uint16_t a, uint16_t b) { cmp_record(2, 0, a, b); }
void __sanitizer_cov_trace_cmp4(uint32_t a, uint32_t b) { cmp_record(4, 0, a, b); }
void __sanitizer_cov_trace_cmp8(uint64_t a, uint64_t b) { cmp_record(8, 0, a, b); }
/* The constant is the first operand. */
void __sanitizer_cov_trace_const_cmp1(uint8_t a, uint8_t b) { (void)a, (void)b, cmp_traced = 1; }
void __sanitizer_cov_trace_const_cmp2(uint16_t a, uint16_t b) { cmp_record(2, 1, a, b); }
void __sanitizer_cov_trace_const_cmp4(uint32_t a, uint32_t b) { cmp_record(4, 1, a, b); }
void __sanitizer_cov_trace_const_cmp8(uint64_t a, uint64_t b) { cmp_record(8, 1, a, b); }

/* cases[0] values of cases[1] bits follow (clang sorts them, gcc need not): the value
   against the nearest case below it and the nearest above, as libFuzzer takes a switch. */
void __sanitizer_cov_trace_switch(uint64_t val, uint64_t *cases)
{
    cmp_traced = 1;
    uint64_t n = cases[0], bits = cases[1];
    if (bits != 16 && bits != 32 && bits != 64)
        return;
    uint64_t below = 0, above = 0;
    int has_below = 0, has_above = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint64_t c = cases[2 + i];
        if (c < val && (!has_below || c > below))
            below = c, has_below = 1;
        else if (c > val && (!has_above || c < above))
            above = c, has_above = 1;
    }
    if (has_below)
        cmp_record((unsigned)bits / 8, 2, val, below);
    if (has_above)
        cmp_record((unsigned)bits / 8, 2, val, above);
}

/* gcc's trace-cmp also reports floating-point compares: not part of the channel. */
void __sanitizer_cov_trace_cmpf(float a, float b) { (void)a, (void)b; }
void __sanitizer_cov_trace_cmpd(double a, double b) { (void)a, (void)b; }
