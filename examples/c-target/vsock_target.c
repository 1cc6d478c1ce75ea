/*
 * vsock_target.c: a vsock-fuzz target in plain C.
 *
 * An independent implementation of the harness's `spec` profile (see the
 * docstring of vsock_fuzz/packet.py for the rules and error names) speaking
 * target protocol v1 (docs: ../../docs/protocol.md) and the
 * "frames-v1" fast transport (docs/protocol-extensions.md).
 *
 * TEMPLATE FOR AN ADAPTER AROUND YOUR OWN DEVICE.  Everything but
 * parse_case() is transport: reading requests, guest memory, writing
 * answers.  To check your device's parser, keep the transport, build the
 * guest memory your device expects from `struct request` (regions and
 * writes), call your parser where parse_case() calls parse_spec(), and
 * report what it did with set_header()/add_slice() or reject(): the guest
 * addresses it reads (tx) or writes (rx), or its own error name.  The
 * harness checks every answer; it never trusts the target.
 *
 * Build: cc -O2 -o vsock_target vsock_target.c   (or `make c-target`)
 * Run:   vsock-fuzz fuzz --target 'cmd:examples/c-target/vsock_target'
 */

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef uint64_t u64;
typedef unsigned __int128 u128;  /* guest addresses + lengths may pass 2^64 */

#define U64_END ((u128)1 << 64)
#define HEADER_SIZE 44
#define DESC_SIZE 16
#define F_NEXT 1
#define F_WRITE 2
#define F_INDIRECT 4
#define MAX_QUEUE_SIZE 32768
#define MAX_INDIRECT_ENTRIES 0xFFFF
#define SPEC_MAX_CHAIN_BYTES ((u128)1 << 32)
#define MODE_FRAMES "frames-v1"
#define COV_CHANNEL "shm-8bit-v1"
#define COV_CHANNEL_CMP "shm-8bit-v2"  /* v1 plus the device's compares (vsock_cov.c) */

/* Linked in from vsock_cov.c in the instrumented build (vsock_target_cov): whether the harness
   passed a coverage region and it is mapped.  Absent (NULL) in the plain build. */
int vsock_cov_active(void) __attribute__((weak));
/* Also from vsock_cov.c: count the device's edges only (1 before it runs, 0 after). */
void vsock_cov_device(int running) __attribute__((weak));
/* And whether the harness passed a compare table that vsock_cov.c records compares in. */
int vsock_cov_compares(void) __attribute__((weak));

static void die(const char *what)
{
    fprintf(stderr, "vsock_target: %s\n", what);
    exit(2);
}

static void *xrealloc(void *p, size_t n)
{
    p = realloc(p, n ? n : 1);
    if (!p)
        die("out of memory");
    return p;
}

/* Grow a dynamic array so that it holds at least `need` elements. */
#define RESERVE(arr, cap, need)                                          \
    do {                                                                 \
        if ((need) > (cap)) {                                            \
            (cap) = (need) > 2 * (cap) ? (need) : 2 * (cap);             \
            (arr) = xrealloc((arr), (cap) * sizeof *(arr));              \
        }                                                                \
    } while (0)

/* ---- buffered stdin/stdout ------------------------------------------------
 * Output is flushed only when we are about to wait for input, so a harness
 * that sends many cases at once gets its answers in few writes. */

static unsigned char *in_buf;
static size_t in_cap, in_pos, in_len;
static unsigned char out_buf[1 << 16];
static size_t out_len;

static void out_flush(void)
{
    size_t done = 0;
    while (done < out_len) {
        ssize_t n = write(1, out_buf + done, out_len - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            exit(0);  /* the harness went away */
        done += (size_t)n;
    }
    out_len = 0;
}

static void out_bytes(const void *p, size_t n)
{
    const unsigned char *b = p;
    while (n) {
        if (out_len == sizeof out_buf)
            out_flush();
        size_t k = sizeof out_buf - out_len;
        if (k > n)
            k = n;
        memcpy(out_buf + out_len, b, k);
        out_len += k;
        b += k;
        n -= k;
    }
}

static void out_str(const char *s) { out_bytes(s, strlen(s)); }

static void out_fmt(const char *fmt, ...)
{
    char tmp[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    out_bytes(tmp, n < (int)sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Make at least `need` unread bytes available; 0 at end of input. */
static int in_want(size_t need)
{
    while (in_len - in_pos < need) {
        out_flush();
        if (in_pos) {
            memmove(in_buf, in_buf + in_pos, in_len - in_pos);
            in_len -= in_pos;
            in_pos = 0;
        }
        if (in_cap - in_len < (1 << 16) || in_cap < need)
            RESERVE(in_buf, in_cap, (need > in_len + (1 << 16) ? need : in_len + (1 << 16)));
        ssize_t n = read(0, in_buf + in_len, in_cap - in_len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return 0;
        in_len += (size_t)n;
    }
    return 1;
}

/* The next line without its '\n'; NULL at end of input. */
static char *in_line(size_t *len)
{
    size_t scanned = 0;
    for (;;) {
        unsigned char *nl = in_len > in_pos + scanned
                                ? memchr(in_buf + in_pos + scanned, '\n', in_len - in_pos - scanned) : NULL;
        if (nl) {
            char *line = (char *)in_buf + in_pos;
            *len = (size_t)(nl - in_buf) - in_pos;
            in_pos += *len + 1;
            return line;
        }
        scanned = in_len - in_pos;
        if (!in_want(scanned + 1))
            return NULL;
    }
}

/* ---- the request ------------------------------------------------------- */

struct region { u64 gpa, size; };
struct gwrite { u64 gpa, len; size_t off; };  /* data at wdata + off */

struct request {
    int rx;
    u64 max_data_size;
    struct region *regions;
    size_t nregions, cap_regions;
    struct gwrite *writes;
    size_t nwrites, cap_writes;
    unsigned char *wdata;
    size_t wdata_len, cap_wdata;
    u64 size, desc_table, avail, used, head;
};

static struct request rq;

/* ---- guest memory ------------------------------------------------------- */

/* Index of the region holding gpa, -1 in a hole (regions sorted by gpa). */
static long region_of(u128 gpa)
{
    size_t lo = 0, hi = rq.nregions;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (rq.regions[mid].gpa <= gpa)
            lo = mid + 1;
        else
            hi = mid;
    }
    if (lo == 0)
        return -1;
    const struct region *r = &rq.regions[lo - 1];
    return gpa < (u128)r->gpa + r->size ? (long)lo - 1 : -1;
}

struct slice { u64 gpa, len; };
struct slices { struct slice *v; size_t n, cap; };

/* Append [gpa, gpa+size) cut at region boundaries (each region is its own
 * host mapping); -1 if any byte is unmapped. */
static int mem_slices(u128 gpa, u128 size, struct slices *out)
{
    u128 end = gpa + size;
    if (end > U64_END)
        return -1;
    while (gpa < end) {
        long i = region_of(gpa);
        if (i < 0)
            return -1;
        u128 rend = (u128)rq.regions[i].gpa + rq.regions[i].size;
        u128 piece = (end < rend ? end : rend) - gpa;
        if (out) {
            RESERVE(out->v, out->cap, out->n + 1);
            out->v[out->n++] = (struct slice){(u64)gpa, (u64)piece};
        }
        gpa += piece;
    }
    return 0;
}

static int mem_contains(u128 gpa, u128 size) { return size == 0 || mem_slices(gpa, size, NULL) == 0; }

/* Read n (small) bytes the caller knows are mapped: zero unless written; later writes win. */
static void mem_read(u128 gpa, size_t n, unsigned char *dst)
{
    memset(dst, 0, n);
    u128 end = gpa + n;
    for (size_t i = 0; i < rq.nwrites; i++) {
        const struct gwrite *w = &rq.writes[i];
        u128 ws = w->gpa, we = (u128)w->gpa + w->len;
        if (ws < end && we > gpa) {
            u128 lo = ws > gpa ? ws : gpa, hi = we < end ? we : end;
            memcpy(dst + (size_t)(lo - gpa), rq.wdata + w->off + (size_t)(lo - ws), (size_t)(hi - lo));
        }
    }
}

static u64 le(const unsigned char *p, int n)
{
    u64 v = 0;
    for (int i = n - 1; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

/* ---- the answer -------------------------------------------------------- */

struct answer {
    int ok;
    int has_header;
    unsigned char header[HEADER_SIZE];
    struct slices hdr, data;
    const char *error;
    char detail[256];
};

static struct answer ans;

static int reject(const char *name, const char *fmt, ...)
{
    va_list ap;
    ans.ok = 0;
    ans.error = name;
    va_start(ap, fmt);
    vsnprintf(ans.detail, sizeof ans.detail, fmt, ap);
    va_end(ap);
    return -1;
}

/* ---- the spec profile -------------------------------------------------- */

struct desc { u64 addr; uint32_t len; uint16_t flags, next; };
static struct desc *chain;
static size_t nchain, cap_chain;

/* 2.7: queue configuration a device validates before it pops anything. */
static int check_queue(void)
{
    u64 size = rq.size;
    /* queue size is a power of 2 in 1..32768 (0 divided by zero in virtio-queue #173) */
    if (size == 0 || size > MAX_QUEUE_SIZE || (size & (size - 1)))
        return reject("InvalidQueueSize", "queue size %llu is not a power of 2 in 1..32768", (unsigned long long)size);
    /* 2.7.2: descriptor table 16-aligned, available ring 2-aligned, used ring 4-aligned */
    const struct { const char *name; u64 addr; u64 align; u128 len; } rings[3] = {
        {"descriptor table", rq.desc_table, 16, (u128)DESC_SIZE * size},
        {"available ring", rq.avail, 2, 6 + 2 * (u128)size},
        {"used ring", rq.used, 4, 6 + 8 * (u128)size},
    };
    for (int i = 0; i < 3; i++) {
        if (rings[i].addr % rings[i].align)
            return reject("MisalignedRing", "%s at %#llx is not %llu-aligned", rings[i].name,
                          (unsigned long long)rings[i].addr, (unsigned long long)rings[i].align);
        if (!mem_contains(rings[i].addr, rings[i].len)) {
#ifdef CRASH_ON_UNMAPPED_AVAIL
            /* A crash-prone twin for benchmarks/bench_gap.py: libkrun panicked on an unmapped
             * available ring, which is most of what a fuzzer makes from an empty corpus. */
            if (i == 1)
                abort();
#endif
            return reject("RingOutOfMemory", "%s is not inside guest memory", rings[i].name);
        }
    }
    if (rq.head >= size)
        return reject("InvalidHead", "head index %llu >= queue size %llu",
                      (unsigned long long)rq.head, (unsigned long long)size);
    return 0;
}

/* 2.7.4/2.7.5: walk the whole chain into `chain`, expanding one indirect table. */
static int walk_chain(void)
{
    u64 table = rq.desc_table, table_size = rq.size, index = rq.head;
    u64 ttl = rq.size;  /* 2.7.13.1: no chain is longer than the queue (bounds loops) */
    int indirect = 0;
    u128 total = 0;
    nchain = 0;
    for (;;) {
        if (index >= table_size)
            return reject("DescriptorIndexOutOfRange", "next index %llu >= table size %llu",
                          (unsigned long long)index, (unsigned long long)table_size);
        if (ttl == 0)
            return reject("ChainTooLong", "chain longer than its table (a loop?)");
        ttl--;
        u128 at = (u128)table + (u128)DESC_SIZE * index;
        if (!mem_contains(at, DESC_SIZE))
            return reject("DescriptorUnreadable", "descriptor %llu is not inside guest memory", (unsigned long long)index);
        unsigned char raw[DESC_SIZE];
        mem_read(at, DESC_SIZE, raw);
        struct desc d = {le(raw, 8), (uint32_t)le(raw + 8, 4), (uint16_t)le(raw + 12, 2), (uint16_t)le(raw + 14, 2)};
        if (d.flags & F_INDIRECT) {
            /* 2.7.5.3.1: one level of indirection only */
            if (indirect)
                return reject("NestedIndirect", "INDIRECT inside an indirect table");
            /* 2.7.5.3.1: the driver MUST NOT set INDIRECT and NEXT together */
            if (d.flags & F_NEXT)
                return reject("IndirectWithNext", "descriptor sets both INDIRECT and NEXT");
            /* the table is len/16 entries; other lengths are refused (virtio-queue) */
            if (d.len == 0 || d.len % DESC_SIZE || d.len / DESC_SIZE > MAX_INDIRECT_ENTRIES)
                return reject("InvalidIndirectTable", "indirect table length %u is not a multiple of 16 up to %d entries",
                              d.len, MAX_INDIRECT_ENTRIES);
            /* 2.7.5.3.2: WRITE on the table descriptor is ignored */
            table = d.addr;
            table_size = ttl = d.len / DESC_SIZE;
            index = 0;
            indirect = 1;
            continue;
        }
        total += d.len;
        /* 2.7.13.1: a chain holds at most 2^32 bytes */
        if (total > SPEC_MAX_CHAIN_BYTES)
            return reject("ChainTooLarge", "chain holds more than 2^32 bytes");
        RESERVE(chain, cap_chain, nchain + 1);
        chain[nchain++] = d;
        if (!(d.flags & F_NEXT))
            return 0;
        index = d.next;
    }
}

/* The chain's non-empty buffers as one byte stream (2.6.4: any arrangement). */
static size_t st_i;      /* current descriptor in `chain` */
static u64 st_off;       /* bytes of it already consumed */
static u128 st_left;     /* bytes left in the stream */

/* Slices for the next n bytes; 1 if the stream ends first, -1 on a rejection. */
static int take(u128 n, struct slices *out)
{
    if (n > st_left)
        return 1;
    while (n) {
        while (chain[st_i].len == 0)
            st_i++;
        const struct desc *d = &chain[st_i];
        /* 5.10.6 / 2.7.4.1: tx buffers are device-readable, rx buffers device-writable */
        if (!!(d->flags & F_WRITE) != rq.rx)
            return rq.rx ? reject("UnexpectedReadOnlyDescriptor", "descriptor at %#llx is device-readable", (unsigned long long)d->addr)
                         : reject("UnexpectedWriteOnlyDescriptor", "descriptor at %#llx is device-writable", (unsigned long long)d->addr);
        u128 piece = d->len - st_off;
        if (piece > n)
            piece = n;
        u128 addr = (u128)d->addr + st_off;
        if (mem_slices(addr, piece, out) < 0)
            return reject("InvalidMemoryAccess", "buffer at %#llx is not inside guest memory", (unsigned long long)d->addr);
        n -= piece;
        st_left -= piece;
        st_off += (u64)piece;
        if (st_off == d->len) {
            st_i++;
            st_off = 0;
        }
    }
    return 0;
}

static int parse_spec(void)
{
    if (check_queue() < 0 || walk_chain() < 0)
        return -1;
    st_i = 0;
    st_off = 0;
    st_left = 0;
    for (size_t i = 0; i < nchain; i++)
        st_left += chain[i].len;
    int r = take(HEADER_SIZE, &ans.hdr);
    if (r < 0)
        return -1;
    if (r > 0)
        return reject("HeaderTooShort", "the chain's buffers hold fewer than %d bytes", HEADER_SIZE);
    if (rq.rx) {
        /* rx data: the rest of the stream, at most max_data_size bytes */
        u128 n = st_left < rq.max_data_size ? st_left : rq.max_data_size;
        if (take(n, &ans.data) < 0)
            return -1;
        ans.ok = 1;
        return 0;
    }
    unsigned char *h = ans.header;
    for (size_t i = 0; i < ans.hdr.n; i++) {
        mem_read(ans.hdr.v[i].gpa, (size_t)ans.hdr.v[i].len, h);
        h += ans.hdr.v[i].len;
    }
    ans.has_header = 1;
    u64 len = le(ans.header + 24, 4);
    /* Linux and rust-vmm: a payload over max_data_size is refused */
    if (len > rq.max_data_size)
        return reject("InvalidHeaderLen", "hdr.len %llu > max_data_size %llu",
                      (unsigned long long)len, (unsigned long long)rq.max_data_size);
    r = take(len, &ans.data);
    if (r < 0)
        return -1;
    if (r > 0)
        return reject("DataTooShort", "hdr.len %llu but the chain carries fewer bytes", (unsigned long long)len);
    ans.ok = 1;
    return 0;
}

/* YOUR DEVICE GOES HERE: answer one validated request in `rq` into `ans`. */
static void parse_case(void)
{
    ans.ok = 0;
    ans.has_header = 0;
    ans.hdr.n = ans.data.n = 0;
    ans.error = NULL;
    ans.detail[0] = 0;
    if (vsock_cov_device)
        vsock_cov_device(1);
    parse_spec();
    if (vsock_cov_device)
        vsock_cov_device(0);
}

/* ---- request validation (shared by both transports) --------------------- */

static int cmp_region(const void *a, const void *b)
{
    u64 x = ((const struct region *)a)->gpa, y = ((const struct region *)b)->gpa;
    return x < y ? -1 : x > y;
}

/* Sort and check the regions, check the writes lie in memory; NULL or what is wrong. */
static const char *validate(void)
{
    qsort(rq.regions, rq.nregions, sizeof *rq.regions, cmp_region);
    for (size_t i = 0; i < rq.nregions; i++) {
        const struct region *r = &rq.regions[i];
        if (r->size == 0)
            return "a memory region has size 0";
        if ((u128)r->gpa + r->size > U64_END)
            return "a memory region runs past 2^64";
        if (i && (u128)rq.regions[i - 1].gpa + rq.regions[i - 1].size > r->gpa)
            return "memory regions overlap";
    }
    for (size_t i = 0; i < rq.nwrites; i++)
        if (!mem_contains(rq.writes[i].gpa, rq.writes[i].len))
            return "a write does not lie inside memory";
    return NULL;
}

static void add_region(u64 gpa, u64 size)
{
    RESERVE(rq.regions, rq.cap_regions, rq.nregions + 1);
    rq.regions[rq.nregions++] = (struct region){gpa, size};
}

static unsigned char *add_write(u64 gpa, size_t len)
{
    RESERVE(rq.writes, rq.cap_writes, rq.nwrites + 1);
    RESERVE(rq.wdata, rq.cap_wdata, rq.wdata_len + len);
    rq.writes[rq.nwrites++] = (struct gwrite){gpa, len, rq.wdata_len};
    rq.wdata_len += len;
    return rq.wdata + rq.wdata_len - len;
}

static void reset_request(void)
{
    rq.nregions = rq.nwrites = rq.wdata_len = 0;
}

/* ---- a small JSON reader for the request shape --------------------------
 * Strings are compared raw (no escapes in the keys and values we read);
 * integers are plain non-negative JSON numbers up to 2^64-1. */

struct json { const char *p, *end; const char *err; };

static void ws(struct json *j)
{
    while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\r' || *j->p == '\n'))
        j->p++;
}

static int fail(struct json *j, const char *why)
{
    if (!j->err)
        j->err = why;
    return -1;
}

static int expect(struct json *j, char c)
{
    ws(j);
    if (j->p >= j->end || *j->p != c)
        return fail(j, "malformed JSON");
    j->p++;
    return 0;
}

/* Is the next non-space char c? (consumes it if so) */
static int peek_take(struct json *j, char c)
{
    ws(j);
    if (j->p < j->end && *j->p == c) {
        j->p++;
        return 1;
    }
    return 0;
}

static int string(struct json *j, const char **s, size_t *n)
{
    if (expect(j, '"') < 0)
        return -1;
    const char *start = j->p;
    while (j->p < j->end && *j->p != '"') {
        if (*j->p == '\\')
            j->p++;
        j->p++;
    }
    if (j->p >= j->end)
        return fail(j, "unterminated string");
    *s = start;
    *n = (size_t)(j->p - start);
    j->p++;
    return 0;
}

static int u64_value(struct json *j, u64 *out)
{
    ws(j);
    const char *p = j->p;
    u64 v = 0;
    if (p >= j->end || *p < '0' || *p > '9')
        return fail(j, "expected an integer in 0..2^64-1");
    for (; p < j->end && *p >= '0' && *p <= '9'; p++) {
        u64 d = (u64)(*p - '0');
        if (v > (UINT64_MAX - d) / 10)
            return fail(j, "integer larger than 2^64-1");
        v = v * 10 + d;
    }
    if (p < j->end && (*p == '.' || *p == 'e' || *p == 'E'))
        return fail(j, "expected an integer, not a fraction");
    j->p = p;
    *out = v;
    return 0;
}

static int skip_value(struct json *j, int depth)
{
    const char *s;
    size_t n;
    ws(j);
    if (j->p >= j->end || depth > 64)
        return fail(j, "malformed JSON");
    char c = *j->p;
    if (c == '"')
        return string(j, &s, &n);
    if (c == '{' || c == '[') {
        char close = c == '{' ? '}' : ']';
        j->p++;
        if (peek_take(j, close))
            return 0;
        do {
            if (c == '{' && (string(j, &s, &n) < 0 || expect(j, ':') < 0))
                return -1;
            if (skip_value(j, depth + 1) < 0)
                return -1;
        } while (peek_take(j, ','));
        return expect(j, close);
    }
    const char *start = j->p;
    while (j->p < j->end && (*j->p == '-' || *j->p == '+' || *j->p == '.' || (*j->p >= '0' && *j->p <= '9') ||
                             (*j->p >= 'a' && *j->p <= 'z') || (*j->p >= 'A' && *j->p <= 'Z')))
        j->p++;
    return j->p > start ? 0 : fail(j, "malformed JSON");
}

#define KEY(name) (klen == sizeof(name) - 1 && memcmp(key, name, klen) == 0)

/* Iterate over an object's members: `body` sees key/klen and reads the value. */
#define FOR_MEMBERS(j, body)                                                  \
    do {                                                                      \
        if (expect(j, '{') < 0)                                               \
            return -1;                                                        \
        if (!peek_take(j, '}')) {                                             \
            do {                                                              \
                const char *key;                                              \
                size_t klen;                                                  \
                if (string(j, &key, &klen) < 0 || expect(j, ':') < 0)         \
                    return -1;                                                \
                body                                                          \
            } while (peek_take(j, ','));                                      \
            if (expect(j, '}') < 0)                                           \
                return -1;                                                    \
        }                                                                     \
    } while (0)

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

static int region_value(struct json *j)
{
    u64 gpa = 0, size = 0;
    int have = 0;
    FOR_MEMBERS(j, {
        if (KEY("gpa")) { if (u64_value(j, &gpa) < 0) return -1; have |= 1; }
        else if (KEY("size")) { if (u64_value(j, &size) < 0) return -1; have |= 2; }
        else if (skip_value(j, 0) < 0) return -1;
    });
    if (have != 3)
        return fail(j, "a memory region needs gpa and size");
    add_region(gpa, size);
    return 0;
}

static int write_value(struct json *j)
{
    u64 gpa = 0;
    const char *hex = NULL;
    size_t hlen = 0;
    int have = 0;
    FOR_MEMBERS(j, {
        if (KEY("gpa")) { if (u64_value(j, &gpa) < 0) return -1; have |= 1; }
        else if (KEY("hex")) { if (string(j, &hex, &hlen) < 0) return -1; have |= 2; }
        else if (skip_value(j, 0) < 0) return -1;
    });
    if (have != 3 || hlen % 2)
        return fail(j, "a write needs gpa and an even-length hex string");
    unsigned char *dst = add_write(gpa, hlen / 2);
    for (size_t i = 0; i < hlen; i += 2) {
        int hi = hexval(hex[i]), lo = hexval(hex[i + 1]);
        if (hi < 0 || lo < 0)
            return fail(j, "a write's hex is not hex");
        dst[i / 2] = (unsigned char)(hi << 4 | lo);
    }
    return 0;
}

static int array_of(struct json *j, int (*item)(struct json *))
{
    if (expect(j, '[') < 0)
        return -1;
    if (peek_take(j, ']'))
        return 0;
    do {
        if (item(j) < 0)
            return -1;
    } while (peek_take(j, ','));
    return expect(j, ']');
}

static int ring_value(struct json *j, int *have)
{
    FOR_MEMBERS(j, {
        u64 *dst = KEY("size") ? &rq.size : KEY("desc_table") ? &rq.desc_table : KEY("avail") ? &rq.avail
                 : KEY("used") ? &rq.used : KEY("head") ? &rq.head : NULL;
        if (dst) {
            if (u64_value(j, dst) < 0) return -1;
            *have |= 1 << (dst == &rq.size ? 0 : dst == &rq.desc_table ? 1 : dst == &rq.avail ? 2 : dst == &rq.used ? 3 : 4);
        } else if (skip_value(j, 0) < 0) return -1;
    });
    return 0;
}

struct line_req {
    const char *id;       /* raw JSON text of "id", echoed back */
    size_t id_len;
    int op;               /* 0 unknown, 1 hello, 2 parse */
    int wants_frames;
    int wants_coverage;   /* bit 0: shm-8bit-v1 offered, bit 1: shm-8bit-v2 */
};

/* A list of strings; bit i of *found set when wants[i] is among them. */
static int names_value(struct json *j, const char *const *wants, int *found)
{
    if (expect(j, '[') < 0)
        return -1;
    if (peek_take(j, ']'))
        return 0;
    do {
        const char *s;
        size_t n;
        if (string(j, &s, &n) < 0)
            return -1;
        for (int i = 0; wants[i]; i++)
            if (n == strlen(wants[i]) && memcmp(s, wants[i], n) == 0)
                *found |= 1 << i;
    } while (peek_take(j, ','));
    return expect(j, ']');
}

static const char *const MODES[] = {MODE_FRAMES, NULL};
static const char *const COV_CHANNELS[] = {COV_CHANNEL, COV_CHANNEL_CMP, NULL};

static int request_line(struct json *j, struct line_req *lr)
{
    int have = 0, ring = 0;
    const char *s;
    size_t n;
    FOR_MEMBERS(j, {
        if (KEY("id")) {
            ws(j);
            lr->id = j->p;
            if (skip_value(j, 0) < 0) return -1;
            lr->id_len = (size_t)(j->p - lr->id);
        } else if (KEY("op")) {
            if (string(j, &s, &n) < 0) return -1;
            lr->op = n == 5 && !memcmp(s, "hello", 5) ? 1 : n == 5 && !memcmp(s, "parse", 5) ? 2 : 0;
        } else if (KEY("queue")) {
            if (string(j, &s, &n) < 0) return -1;
            if (n != 2 || (memcmp(s, "tx", 2) && memcmp(s, "rx", 2))) return fail(j, "queue must be \"tx\" or \"rx\"");
            rq.rx = s[0] == 'r';
            have |= 1;
        } else if (KEY("max_data_size")) {
            if (u64_value(j, &rq.max_data_size) < 0) return -1;
            have |= 2;
        } else if (KEY("memory")) {
            rq.nregions = 0;
            if (array_of(j, region_value) < 0) return -1;
            have |= 4;
        } else if (KEY("writes")) {
            rq.nwrites = rq.wdata_len = 0;
            if (array_of(j, write_value) < 0) return -1;
        } else if (KEY("ring")) {
            if (ring_value(j, &ring) < 0) return -1;
            have |= 8;
        } else if (KEY("modes")) {
            if (names_value(j, MODES, &lr->wants_frames) < 0) return -1;
        } else if (KEY("coverage")) {
            if (names_value(j, COV_CHANNELS, &lr->wants_coverage) < 0) return -1;
        } else if (skip_value(j, 0) < 0) return -1;
    });
    if (lr->op == 2 && (have != 15 || ring != 31))
        return fail(j, "a parse request needs queue, max_data_size, memory and ring (size, desc_table, avail, used, head)");
    return 0;
}

/* ---- v1 answers: one JSON line ------------------------------------------ */

static void out_json_string(const char *s)
{
    out_str("\"");
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            out_fmt("\\%c", c);
        else if (c < 0x20)
            out_fmt("\\u%04x", c);
        else
            out_bytes(&c, 1);
    }
    out_str("\"");
}

static void out_id(const struct line_req *lr)
{
    if (lr->id) {
        out_str("{\"id\":");
        out_bytes(lr->id, lr->id_len);
        out_str(",");
    } else {
        out_str("{");
    }
}

static void out_error_line(const struct line_req *lr, const char *name, const char *detail)
{
    out_id(lr);
    out_str("\"ok\":false,\"error\":");
    out_json_string(name);
    out_str(",\"detail\":");
    out_json_string(detail);
    out_str("}\n");
}

static void out_slices_json(const struct slices *s)
{
    out_str("[");
    for (size_t i = 0; i < s->n; i++)
        out_fmt("%s[%llu,%llu]", i ? "," : "", (unsigned long long)s->v[i].gpa, (unsigned long long)s->v[i].len);
    out_str("]");
}

static void out_answer_line(const struct line_req *lr)
{
    if (!ans.ok) {
        out_error_line(lr, ans.error, ans.detail);
        return;
    }
    out_id(lr);
    out_str("\"ok\":true,");
    if (ans.has_header) {
        const unsigned char *h = ans.header;
        out_fmt("\"header\":{\"src_cid\":%llu,\"dst_cid\":%llu,\"src_port\":%llu,\"dst_port\":%llu,\"len\":%llu,"
                "\"type\":%llu,\"op\":%llu,\"flags\":%llu,\"buf_alloc\":%llu,\"fwd_cnt\":%llu},",
                (unsigned long long)le(h, 8), (unsigned long long)le(h + 8, 8), (unsigned long long)le(h + 16, 4),
                (unsigned long long)le(h + 20, 4), (unsigned long long)le(h + 24, 4), (unsigned long long)le(h + 28, 2),
                (unsigned long long)le(h + 30, 2), (unsigned long long)le(h + 32, 4), (unsigned long long)le(h + 36, 4),
                (unsigned long long)le(h + 40, 4));
    }
    out_str("\"header_slices\":");
    out_slices_json(&ans.hdr);
    out_str(",\"data_slices\":");
    out_slices_json(&ans.data);
    out_str("}\n");
}

/* ---- frames-v1: length-prefixed binary frames (docs/protocol-extensions.md) */

static void put_le(unsigned char *p, u64 v, int n)
{
    for (int i = 0; i < n; i++, v >>= 8)
        p[i] = (unsigned char)v;
}

struct reader { const unsigned char *p, *end; int short_read; };

static u64 varint(struct reader *r)
{
    u64 v = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end) {
            r->short_read = 1;
            return 0;
        }
        unsigned char b = *r->p++;
        if (shift < 64)
            v |= (u64)(b & 0x7F) << shift;
        if (b < 0x80)
            break;
    }
    return v;
}

/* The raw binary case form (vsock_fuzz/binary.py, "raw form") into `rq`. */
static const char *decode_raw_case(const unsigned char *p, size_t n)
{
    struct reader r = {p + 2, p + n, 0};
    if (n < 2 || !(p[1] & 2))
        return "a frame carries a case in the raw binary form (byte 1 bit 1 set)";
    reset_request();
    rq.rx = p[1] & 1;
    rq.max_data_size = varint(&r);
    rq.size = varint(&r);
    rq.desc_table = varint(&r);
    rq.avail = varint(&r);
    rq.used = varint(&r);
    rq.head = varint(&r);
    u64 count = varint(&r);
    for (u64 i = 0; i < count && !r.short_read; i++) {
        u64 gpa = varint(&r), size = varint(&r);
        add_region(gpa, size);
    }
    count = varint(&r);
    for (u64 i = 0; i < count && !r.short_read; i++) {
        u64 gpa = varint(&r), len = varint(&r);
        if (len > (u64)(r.end - r.p)) {
            r.short_read = 1;
            break;
        }
        memcpy(add_write(gpa, (size_t)len), r.p, (size_t)len);
        r.p += len;
    }
    if (r.short_read)
        return "the case ends early";
    return validate();
}

static void out_frame(const unsigned char *head, size_t hlen, const char *name, const char *detail)
{
    unsigned char len[4];
    size_t nlen = name ? strlen(name) : 0, dlen = detail ? strlen(detail) : 0;
    put_le(len, hlen + (name ? 1 + nlen + dlen : 0), 4);
    out_bytes(len, 4);
    out_bytes(head, hlen);
    if (name) {
        unsigned char nl = (unsigned char)nlen;
        out_bytes(&nl, 1);
        out_bytes(name, nlen);
        out_bytes(detail, dlen);
    }
}

static void out_slices_frame(const struct slices *s)
{
    unsigned char b[16];
    put_le(b, s->n, 4);
    out_bytes(b, 4);
    for (size_t i = 0; i < s->n; i++) {
        put_le(b, s->v[i].gpa, 8);
        put_le(b + 8, s->v[i].len, 8);
        out_bytes(b, 16);
    }
}

static void serve_frames(void)
{
    while (in_want(4)) {
        u64 n = le(in_buf + in_pos, 4);
        if (n < 4 || !in_want(4 + n))
            die("truncated frame");
        const unsigned char *f = in_buf + in_pos + 4;
        in_pos += 4 + n;
        unsigned char head[4 + 1 + 1 + HEADER_SIZE];
        memcpy(head, f, 4);  /* the id, echoed */
        const char *bad = decode_raw_case(f + 4, n - 4);
        if (bad) {
            head[4] = 0;
            out_frame(head, 5, "BadRequest", bad);
            continue;
        }
        parse_case();
        head[4] = (unsigned char)ans.ok;
        if (!ans.ok) {
            out_frame(head, 5, ans.error, ans.detail);
            continue;
        }
        /* frame length: id, status, has_header, [header], two slice lists */
        size_t hlen = 6 + (ans.has_header ? HEADER_SIZE : 0);
        head[5] = (unsigned char)ans.has_header;
        memcpy(head + 6, ans.header, HEADER_SIZE);
        unsigned char len[4];
        put_le(len, hlen + 8 + 16 * (ans.hdr.n + ans.data.n), 4);
        out_bytes(len, 4);
        out_bytes(head, hlen);
        out_slices_frame(&ans.hdr);
        out_slices_frame(&ans.data);
    }
    out_flush();
}

/* ---- main loop: protocol v1 lines until a hello negotiates frames ---------- */

int main(void)
{
    size_t len;
    char *line;
    /* Only the device's edges and compares, from the start: hello's are not the device's. */
    if (vsock_cov_device)
        vsock_cov_device(0);
    while ((line = in_line(&len))) {
        struct json j = {line, line + len, NULL};
        struct line_req lr = {0};
        ws(&j);
        if (j.p == j.end)
            continue;  /* blank line */
        reset_request();
        const char *bad = NULL;
        if (request_line(&j, &lr) < 0)
            bad = j.err;
        else if (lr.op == 2)
            bad = validate();
        if (bad) {
            out_error_line(&lr, "BadRequest", bad);
            continue;
        }
        if (lr.op == 1) {
            out_id(&lr);
            out_str("\"ok\":true,\"protocol\":1,\"name\":\"vsock_target.c (spec)\",\"version\":\"1\"");
            if (lr.wants_coverage && vsock_cov_active && vsock_cov_active()) {
                int cmp = (lr.wants_coverage & 2) && vsock_cov_compares && vsock_cov_compares();
                if (cmp || (lr.wants_coverage & 1))
                    out_str(cmp ? ",\"coverage\":\"" COV_CHANNEL_CMP "\"" : ",\"coverage\":\"" COV_CHANNEL "\"");
            }
            out_str(lr.wants_frames ? ",\"mode\":\"" MODE_FRAMES "\"}\n" : "}\n");
            if (lr.wants_frames) {
                serve_frames();
                return 0;
            }
            continue;
        }
        if (lr.op != 2) {
            out_error_line(&lr, "BadRequest", "unknown op");
            continue;
        }
        parse_case();
        out_answer_line(&lr);
    }
    out_flush();
    return 0;
}
