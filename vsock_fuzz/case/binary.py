"""The compact binary case encoding, for coverage-guided mutation.

Every byte string decodes to a valid case: decoding is total, deterministic
and never raises. Missing bytes read as zero, and zero means the common
choice, so the layouts real drivers send are a couple of dozen bytes.

    byte 0    version (1; any other value is decoded as version 1)
    byte 1    bit 0: rx queue; bit 1: the raw form follows
    structured form (a chain described field by field, laid out by `layout.assemble`):
      u8 queue size code (SIZES[code]; past the table a power of 2 below 128, the code itself from 128)
      u8 head index
      varint max_data_size (0: 65536, else v-1)
      varint descriptor table offset from the first region
      u8 regions: 1 + (b & 3), each: varint gap after the previous one, varint size (0: 1 MiB)
      u8 descriptors (at most half the bytes left), each:
        u8 ctl: bit0 WRITE, bit1 INDIRECT, bit2 flip NEXT, bit3 explicit next (u16),
                bits 4-5 address (0 auto, 1 region start + off, 2 region end - off, 3 absolute),
                bit 6 an unknown flag (0x8)
        varint len; [u8 region, varint off] or [varint addr]; [u16 next];
        INDIRECT: u8 count of the following descriptors that form its table
      header (tx): varint src_cid (0: 3, else v-1), dst_cid (0: 2, else v-1), src_port,
        dst_port, len (0: what the chain carries, else v-1), type (0: STREAM, else v-1),
        op (0: RW, else v-1), flags, buf_alloc (0: 262144, else v-1), fwd_cnt
      u8 extra writes (at most half the bytes left), each: u8 region, varint off, varint n, n bytes
    raw form (any case exactly; what `encode` writes):
      varint max_data_size, ring size, desc_table, avail, used, head
      varint regions (at most half the bytes left), each varint gpa, varint size
        (an empty, wrapping or overlapping region is dropped)
      varint writes (at most half the bytes left), each varint gpa, varint n, n bytes
        (clipped to memory; the available ring write is appended unless they end with it)

Small changes stay small: one byte changes one descriptor field, one region
bound or one header field. Binary -> case -> binary normalises to the raw
form, which is then stable; case -> binary -> case is the identity.
"""

from __future__ import annotations

from bisect import bisect_right

from .value import U64, Case, Region, Ring, avail_ring_writes, clip_each
from .wire import F_INDIRECT, F_NEXT, F_WRITE
from .wire import FIELD_NAMES, HEADER_SIZE, Header
from .layout import Buf, Layout, assemble, stream_len

VERSION = 1
RX = 1
RAW = 2
SIZES = (256, 1, 2, 4, 8, 16, 32, 64, 128, 512, 1024, 2048, 4096, 8192, 16384, 32768, 0, 3, 65535, 65536)
DEFAULT_REGION_SIZE = 1 << 20
MASK64 = U64 - 1
NO_BYTES_LEFT = (0,) * len(FIELD_NAMES)  # the header fields of an input that ends before them


def _ctl_flags(ctl: int) -> int:
    """The descriptor flags a structured-form ctl byte sets."""
    return (ctl & 1) * F_WRITE | (ctl >> 1 & 1) * F_INDIRECT | (ctl >> 2 & 1) * F_NEXT | (ctl >> 6 & 1) * 8


CTL_FLAGS = tuple(_ctl_flags(ctl) for ctl in range(256))  # by ctl byte: a lookup per descriptor decoded


class Reader:
    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes, pos: int = 0):
        self.data = data
        self.pos = pos
        self.end = len(data)

    def u8(self) -> int:
        p = self.pos
        if p < self.end:
            self.pos = p + 1
            return self.data[p]
        return 0  # missing bytes read as zero

    def u16(self) -> int:
        p = self.pos
        if p + 2 <= self.end:
            self.pos = p + 2
            return self.data[p] | self.data[p + 1] << 8
        return self.u8()  # at most one byte left: the missing high byte reads as zero

    def varint(self) -> int:
        data, p = self.data, self.pos
        if p >= self.end:
            return 0  # missing bytes read as zero
        b = data[p]
        if b < 0x80:  # one byte: the usual case
            self.pos = p + 1
            return b
        v = shift = 0
        for b in data[p:p + 10]:  # at most 10 bytes; the last one lacks bit 7
            v |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        self.pos = p + shift // 7
        return v & MASK64

    def count(self) -> int:
        """A u8 or varint count, never more than half the bytes left: every
        counted item takes at least two bytes, so missing bytes cannot make
        hundreds of empty items."""
        return min(self.varint(), (self.end - self.pos) // 2)

    def count8(self) -> int:
        n = self.u8()
        return min(n, (self.end - self.pos) // 2)

    def take(self, n: int) -> bytes:
        p = self.pos
        out = self.data[p:p + n]
        self.pos = p + len(out)
        return bytes(out)


_ONE_BYTE = tuple(bytes((b,)) for b in range(128))


def varint(v: int) -> bytes:
    if v < 0x80:
        return _ONE_BYTE[v]
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def encode(case: Case) -> bytes:
    r = case.ring
    out = [bytes((VERSION, (RX if case.queue == "rx" else 0) | RAW))]
    for v in (case.max_data_size, r.size, r.desc_table, r.avail, r.used, r.head, len(case.regions)):
        out.append(varint(v))
    for reg in case.regions:
        out.append(varint(reg.gpa) + varint(reg.size))
    out.append(varint(len(case.writes)))
    for w in case.writes:
        out.append(varint(w.gpa) + varint(len(w.data)) + w.data)
    return b"".join(out)


def decode(data: bytes) -> Case:
    rd = Reader(data, 1)
    mode = rd.u8()
    queue = "rx" if mode & RX else "tx"
    if mode & RAW:
        return _decode_raw(rd, queue)
    return assemble(decode_layout(rd, queue))


def _decode_raw(rd: Reader, queue: str) -> Case:
    varint = rd.varint
    mds, size, desc_table, avail, used, head = varint(), varint(), varint(), varint(), varint(), varint()
    regions: list[Region] = []
    starts: list[int] = []  # sorted region starts and their ends, to drop overlaps in O(log n)
    ends: list[int] = []
    for _ in range(rd.count()):
        gpa, rsize = varint(), varint()
        end = gpa + rsize
        i = bisect_right(starts, gpa)
        if rsize == 0 or end > U64 or (i and ends[i - 1] > gpa) or (i < len(starts) and starts[i] < end):
            continue  # empty, wrapping or overlapping: dropped
        starts.insert(i, gpa)
        ends.insert(i, end)
        regions.append(Region(gpa, rsize))
    raw = []
    for _ in range(rd.count()):
        gpa = varint()
        raw.append((gpa, rd.take(varint())))
    writes = clip_each(regions, raw)
    ring = Ring(size, desc_table, avail, used, head)
    # The available ring is written last (protocol); add it unless the writes end with it.
    tail = avail_ring_writes(regions, ring)
    if tail and writes[-len(tail):] != tail:
        writes += tail
    return Case(queue, mds, tuple(regions), tuple(writes), ring)


def _minus_one(v: int, default: int) -> int:
    return default if v == 0 else v - 1


def _read_chain(rd: Reader):
    """The structured form up to its header fields: (size, head, mds, table_off, regions,
    recs, counts), leaving `rd` at the first header field."""
    u8, u16, varint = rd.u8, rd.u16, rd.varint
    code = u8()
    size = SIZES[code] if code < len(SIZES) else 1 << (code & 15) if code < 128 else code
    head = u8()
    mds = _minus_one(varint(), 65536)
    table_off = varint()
    regions: list[Region] = []
    end = 0
    for _ in range(1 + (u8() & 3)):
        gpa = end + varint()
        rsize = varint() or DEFAULT_REGION_SIZE
        rsize = min(rsize, U64 - gpa) if gpa < U64 else 0
        if rsize:
            regions.append(Region(gpa, rsize))
            end = gpa + rsize
    if not regions:
        regions.append(Region(0, DEFAULT_REGION_SIZE))

    recs = []    # the descriptors in encoding order
    counts = []  # and how many of the records after each form its indirect table
    n_regions = len(regions)
    for _ in range(rd.count8()):
        ctl = u8()
        flags = CTL_FLAGS[ctl]
        length = varint() & 0xFFFFFFFF
        anchor = ctl >> 4 & 3
        if anchor == 0:
            addr = None
        elif anchor == 3:
            addr = varint()
        else:
            start, rsize = regions[u8() % n_regions]
            off = varint()
            addr = (start + off if anchor == 1 else start + rsize - off) & MASK64
        nxt = u16() if ctl & 8 else None
        counts.append(u8() if ctl & 2 else 0)
        recs.append(Buf(length, flags, addr, nxt))
    return size, head, mds, table_off, regions, recs, counts


def decode_layout(rd: Reader, queue: str) -> Layout:
    u8, varint = rd.u8, rd.varint
    size, head, mds, table_off, regions, recs, counts = _read_chain(rd)
    bufs = _tables(recs, counts, 0, len(recs))[0] if any(counts) else tuple(recs)

    # the header fields, read for rx too so the extra writes sit at the same place;
    # fuzzed inputs often end before them, and then they all read as zero
    src_cid, dst_cid, src_port, dst_port, hlen, htype, op, hflags, buf_alloc, fwd_cnt = (
        varint(), varint(), varint(), varint(), varint(), varint(), varint(), varint(), varint(), varint()
    ) if rd.pos < rd.end else NO_BYTES_LEFT
    header = None
    if queue == "tx":
        # Every record sits once in the flat list (tables still empty): the same bytes as the chain.
        auto_len = min(max(stream_len(recs) - HEADER_SIZE, 0), 0xFFFFFFFF)
        header = Header(
            _minus_one(src_cid, 3), _minus_one(dst_cid, 2), src_port & 0xFFFFFFFF, dst_port & 0xFFFFFFFF,
            _minus_one(hlen, auto_len) & 0xFFFFFFFF, _minus_one(htype, 1) & 0xFFFF, _minus_one(op, 5) & 0xFFFF,
            hflags & 0xFFFFFFFF, _minus_one(buf_alloc, 262144) & 0xFFFFFFFF, fwd_cnt & 0xFFFFFFFF)
    extra = []
    for _ in range(rd.count8()):
        reg = regions[u8() % len(regions)]
        gpa = reg.gpa + varint()
        extra.append((gpa, rd.take(varint())))
    return Layout(queue, bufs, header, tuple(regions), size, head,
                  (regions[0].gpa + table_off) & MASK64, None, mds, tuple(extra))


# How decode_layout reads each header field from its varint v: v - 1, 0 standing for the
# default (None: len's default is what the chain carries), or v itself.
HEADER_PLUS_ONE = (True, True, False, False, True, True, True, False, True, False)
HEADER_DEFAULTS = (3, 2, 0, 0, None, 1, 5, 0, 262144, 0)


def header_fields(data: bytes) -> list[tuple[int, int, int]] | None:
    """Where a structured-form tx input keeps its header: (start, end, varint) of each of the
    ten fields in FIELD_NAMES order, read as decode_layout reads them (a field past the end
    of the input reads as 0, with start == end); None for the raw form and for rx. Lets a
    mutation rewrite one field by its value (CompareHints, targets/coverage.py)."""
    rd = Reader(data, 1)
    if rd.u8() & (RX | RAW):
        return None
    _read_chain(rd)
    varint = rd.varint
    out = []
    for _ in FIELD_NAMES:
        start = rd.pos
        v = varint()
        out.append((start, rd.pos, v))
    return out


def _tables(recs, counts, pos: int, count: int):
    """`count` buffers from recs[pos:], a record with counts[i] > 0 taking the records after it as its table."""
    bufs = []
    n = len(recs)
    while count and pos < n:
        buf, sub = recs[pos], counts[pos]
        pos += 1
        if sub:
            entries, pos = _tables(recs, counts, pos, sub)
            buf = Buf(buf.len, buf.flags, buf.addr, buf.next, entries)
        bufs.append(buf)
        count -= 1
    return tuple(bufs), pos


def encode_layout(lay: Layout) -> bytes:
    """The structured form of a layout made of auto-placed buffers (seeds, dictionaries)."""
    out = bytearray((VERSION, RX if lay.queue == "rx" else 0))
    if lay.size in SIZES:
        code = SIZES.index(lay.size)
    elif 128 <= lay.size < 256:
        code = lay.size
    else:
        raise ValueError(f"queue size {lay.size} has no structured code; use the raw form (encode)")
    out += bytes((code & 0xFF, lay.head & 0xFF))
    out += varint(0 if lay.max_data_size == 65536 else lay.max_data_size + 1)
    out += varint((lay.desc_table or lay.regions[0].gpa) - lay.regions[0].gpa)
    out.append(len(lay.regions) - 1)
    end = 0
    for reg in lay.regions:
        out += varint(reg.gpa - end) + varint(0 if reg.size == DEFAULT_REGION_SIZE else reg.size)
        end = reg.end
    recs = bytearray()
    count = 0

    def emit(bufs):
        nonlocal count
        for b in bufs:
            ctl = (b.flags & F_WRITE and 1) | (b.flags & F_INDIRECT and 2) | (b.flags & F_NEXT and 4) \
                | (b.flags & 8 and 64) | (8 if b.next is not None else 0) | (48 if b.addr is not None else 0)
            recs.append(ctl)
            recs.extend(varint(b.len))
            if b.addr is not None:
                recs.extend(varint(b.addr))
            if b.next is not None:
                recs.extend(b.next.to_bytes(2, "little"))
            if b.flags & F_INDIRECT:
                recs.append(len(b.table))
            count += 1
            if b.flags & F_INDIRECT:
                emit(b.table)

    emit(lay.bufs)
    out.append(count)
    out += recs
    if lay.header is not None:
        h = lay.header
        auto = max(stream_len(lay.bufs) - HEADER_SIZE, 0)
        out += varint(0 if h.src_cid == 3 else h.src_cid + 1) + varint(0 if h.dst_cid == 2 else h.dst_cid + 1)
        out += varint(h.src_port) + varint(h.dst_port) + varint(0 if h.len == auto else h.len + 1)
        out += varint(0 if h.type == 1 else h.type + 1) + varint(0 if h.op == 5 else h.op + 1)
        out += varint(h.flags) + varint(0 if h.buf_alloc == 262144 else h.buf_alloc + 1) + varint(h.fwd_cnt)
    return bytes(out)
