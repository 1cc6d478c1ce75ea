"""Hypothesis strategies: one per adversarial family, each making `Layout`s laid out by
`layout.assemble` (the one chain layouter), composable through `cases(...)`.

    linux_layouts        what real Linux drivers send (< 6.2, 6.2+, 6.17+, indirect or not)
    split_layouts        header split at every offset, many and one-byte pieces, odd addresses
    direction_mixes      read-only / write-only descriptors in every position
    oversized_layouts    hdr.len around max_data_size, 2^31, 2^32; descriptor lengths near
                         2^32; addr + len wrapping 2^64; chains over 2^32 bytes
    region_layouts       holes, adjacent regions, buffers ending at or one past a region end
    malformed_chains     loops, `next` out of range, queue sizes 0/1/32768, head out of range
    indirect_edges       nested, self-referencing, bad lengths, INDIRECT+NEXT, table in a hole

Every family takes `queue=None` ("tx", "rx" or either). `layouts()` draws
from all of them, `cases()` assembles; `binary_cases()` decodes raw bytes
with the binary form, for everything the families do not think of.

In a device's own test suite:

    from hypothesis import given
    from ..oracles import check
    from .strategies import cases

    @given(cases())
    def test_my_device(case):
        bad = [f for f in check(case, my_parse(case)) if f.severity != "warning"]
        assert not bad, bad[0].message
"""

from __future__ import annotations

from dataclasses import replace

from hypothesis import strategies as st

from ..case.binary import decode
from ..case.value import U64, Region
from ..case.wire import DESC_SIZE, F_INDIRECT, F_NEXT, F_WRITE, pack_descriptor
from ..model.chain import MAX_QUEUE_SIZE
from ..case.wire import FIELD_NAMES, FIELD_WIDTHS, HEADER_SIZE, MAX_PKT_BUF_SIZE, Header
from ..case.layout import DEFAULT_REGION, LINUX_VERSIONS, PAGE, Buf, Layout, assemble, flatten
from ..case.layout import linux_header, linux_rx, linux_tx

U32 = 1 << 32
# Payload lengths at the edges a device checks.
EDGE_LENS = (0, 1, 43, 44, 45, PAGE - 1, PAGE, PAGE + 1, 8 * PAGE, 8 * PAGE + 1,
             MAX_PKT_BUF_SIZE - 1, MAX_PKT_BUF_SIZE, MAX_PKT_BUF_SIZE + 1)


def queues(queue: str | None = None):
    return st.just(queue) if queue else st.sampled_from(("tx", "rx"))


def _dir(queue: str) -> int:
    """The flags of a buffer of the queue's direction."""
    return F_WRITE if queue == "rx" else 0


def payload_lens(limit: int = MAX_PKT_BUF_SIZE):
    return st.one_of(st.integers(0, 256), st.sampled_from([n for n in EDGE_LENS if n <= limit]),
                     st.integers(0, limit))


def headers(length=None):
    """vsock headers: usually a plain RW packet, any field sometimes any value of its width."""
    fields = {}
    for name, bits in zip(FIELD_NAMES, FIELD_WIDTHS):
        if name == "len":
            continue
        default = getattr(Header(), name)
        fields[name] = st.one_of(st.just(default), st.integers(0, (1 << bits) - 1)) if name not in ("type", "op") \
            else st.one_of(st.just(default), st.integers(0, 8), st.integers(0, 0xFFFF))
    fields["len"] = st.just(0) if length is None else length
    return st.builds(Header, **fields)


def _indirect(bufs) -> tuple[Buf, ...]:
    return (Buf(DESC_SIZE * len(bufs), F_INDIRECT, table=tuple(bufs)),)


def _maybe_indirect(draw, bufs) -> tuple[Buf, ...]:
    if draw(st.integers(0, 3)) == 0 and 0 < len(bufs) <= 0xFFFF:
        return _indirect(bufs)
    return tuple(bufs)


# --- families -----------------------------------------------------------------------

@st.composite
def linux_layouts(draw, queue=None):
    """The layouts of the facts file, tx and rx, each with and without an indirect table."""
    q = draw(queues(queue))
    version = draw(st.sampled_from(LINUX_VERSIONS))
    indirect = draw(st.booleans())
    if q == "rx":
        return linux_rx(version, indirect=indirect)
    payload = draw(st.one_of(payload_lens(), st.sampled_from((33 * 1024, 64 * 1024))))
    # The connection varies; linux_tx gives its header the op Linux sends with the payload.
    conn = Header(src_port=draw(st.integers(0, U32 - 1)), dst_port=draw(st.integers(0, U32 - 1)),
                  type=draw(st.sampled_from((1, 2))))
    return linux_tx(version, payload, indirect=indirect, header=conn)


@st.composite
def split_layouts(draw, queue=None):
    """The packet's bytes cut into pieces: the header split at any offset, data in many or
    one-byte pieces, buffers at odd addresses."""
    q = draw(queues(queue))
    payload = draw(st.integers(0, 200) if draw(st.booleans()) else payload_lens())
    total = HEADER_SIZE + payload
    mode = draw(st.sampled_from(("header", "random", "bytes")))
    if mode == "bytes" and total <= 250:
        cuts = list(range(1, total))
    else:
        cuts = set(draw(st.lists(st.integers(1, max(total - 1, 1)), max_size=12)))
        if mode == "header":
            cuts.add(draw(st.integers(1, HEADER_SIZE - 1)))
        cuts = sorted(c for c in cuts if 0 < c < total)
    edges = [0] + cuts + [total]
    flags = _dir(q)
    bufs = []
    for lo, hi in zip(edges, edges[1:]):
        addr = None
        if draw(st.integers(0, 4)) == 0:  # an odd address somewhere in the data area
            addr = 0x80001 + 2 * draw(st.integers(0, 0x30000))
        bufs.append(Buf(hi - lo, flags, addr))
    hdr = draw(headers(st.just(payload)))
    return Layout(q, _maybe_indirect(draw, bufs), header=hdr if q == "tx" else None,
                  data_base=draw(st.sampled_from((None, 0x20001, 0x20003, 0x20007))))


def _flip(bufs, positions: set[int], counter: list[int]) -> tuple[Buf, ...]:
    """`bufs` with WRITE flipped on the buffers (in walk order) whose position is in `positions`."""
    out = []
    for b in bufs:
        if b.flags & F_INDIRECT:
            out.append(Buf(b.len, b.flags, b.addr, b.next, _flip(b.table, positions, counter)))
            continue
        if counter[0] in positions:
            b = Buf(b.len, b.flags ^ F_WRITE, b.addr, b.next, b.table)
        counter[0] += 1
        out.append(b)
    return tuple(out)


@st.composite
def direction_mixes(draw, queue=None):
    """A good layout with WRITE flipped on some buffers: every position, any number of them."""
    lay = draw(st.one_of(linux_layouts(queue), split_layouts(queue)))
    count = sum(1 for _ in flatten(lay.bufs))
    positions = set(draw(st.lists(st.integers(0, max(count - 1, 0)), min_size=1, max_size=3)))
    return replace(lay, bufs=_flip(lay.bufs, positions, [0]))


@st.composite
def oversized_layouts(draw, queue=None):
    """Lengths at the limits: hdr.len, descriptor lengths, wrapping addresses, chain totals."""
    q = draw(queues(queue))
    flags = _dir(q)
    mds = draw(st.sampled_from((MAX_PKT_BUF_SIZE, MAX_PKT_BUF_SIZE, 0, HEADER_SIZE, PAGE, U32 - 1, U64 - 1)))
    big = st.sampled_from((MAX_PKT_BUF_SIZE - 1, MAX_PKT_BUF_SIZE, MAX_PKT_BUF_SIZE + 1, (1 << 31) - 1,
                           1 << 31, (1 << 31) + 1, U32 - 45, U32 - 44, U32 - 1))
    kind = draw(st.sampled_from(("hdr.len", "desc.len", "wrap", "total")))
    regions = (DEFAULT_REGION,)
    hlen = draw(payload_lens())
    if kind == "hdr.len":
        # Around the case's max_data_size, and around 64 KiB: the fixed limit real devices declare,
        # which replaces the case's own (Device.fit).
        hlen = draw(st.one_of(big, st.integers(mds - 2, mds + 2).filter(lambda n: 0 <= n < U32)
                              if mds < U32 else big, st.integers(MAX_PKT_BUF_SIZE - 1, MAX_PKT_BUF_SIZE + 2)))
        carried = draw(st.sampled_from((hlen, min(hlen, MAX_PKT_BUF_SIZE + 2), 0)))
        bufs = (Buf(HEADER_SIZE, flags), Buf(carried, flags)) if draw(st.booleans()) \
            else (Buf(min(HEADER_SIZE + carried, U32 - 1), flags),)  # a descriptor length is a le32
        if carried >= 0x40000:
            regions = (Region(0, 1 << 40),)  # sparse: a huge buffer costs nothing
    elif kind == "desc.len":
        n = draw(big)
        bufs = (Buf(HEADER_SIZE, flags), Buf(n, flags)) if draw(st.booleans()) else (Buf(n, flags),)
        regions = draw(st.sampled_from(((DEFAULT_REGION,), (Region(0, 1 << 40),))))
    elif kind == "wrap":
        back = draw(st.sampled_from((1, 16, HEADER_SIZE - 1, HEADER_SIZE, PAGE)))
        n = draw(st.sampled_from((back, back + 1, HEADER_SIZE + 8, PAGE)))
        wrap = Buf(n, flags, addr=U64 - back)
        bufs = (wrap,) if draw(st.booleans()) else (Buf(HEADER_SIZE, flags), wrap)
        regions = draw(st.sampled_from(((DEFAULT_REGION,), (DEFAULT_REGION, Region(U64 - 0x10000, 0x10000)))))
    else:  # the chain's total passes 2^32 (2.7.13.1) with every buffer mapped
        n = draw(st.sampled_from(((1 << 31), (1 << 31) + 1, U32 - 1)))
        bufs = (Buf(HEADER_SIZE, flags),) + (Buf(n, flags),) * draw(st.integers(2, 3))
        regions = (Region(0, 1 << 40),)
    hdr = linux_header(hlen & (U32 - 1))
    return Layout(q, _maybe_indirect(draw, bufs), header=hdr if q == "tx" else None,
                  regions=regions, max_data_size=mds)


@st.composite
def region_layouts(draw, queue=None):
    """Several regions with holes or adjacent; buffers ending at, one before or one past a region end."""
    q = draw(queues(queue))
    flags = _dir(q)
    first = Region(0, 1 << 20)
    regions = [first]
    for _ in range(draw(st.integers(1, 2))):
        gap = draw(st.sampled_from((0, 0, 1, PAGE, 1 << 20)))
        size = draw(st.sampled_from((PAGE, 0x10000, 44, 1)))
        regions.append(Region(regions[-1].end + gap, size))
    payload = draw(st.one_of(st.integers(0, 128), st.sampled_from((PAGE, 2 * PAGE))))
    bufs = list(draw(st.sampled_from(((Buf(HEADER_SIZE, flags), Buf(payload, flags)) if payload else (Buf(HEADER_SIZE, flags),),
                                      (Buf(HEADER_SIZE + payload, flags),)))))
    # Pin one buffer against a region end: exactly at it, one byte past, straddling into what follows.
    i = draw(st.integers(0, len(bufs) - 1))
    r = draw(st.sampled_from(regions))
    n = bufs[i].len
    end_off = draw(st.sampled_from((0, 1, -1, n // 2, HEADER_SIZE // 2, -n)))  # bytes past the region end
    bufs[i] = Buf(n, flags, addr=max(r.end - n + end_off, 0))
    hdr = linux_header(payload)
    return Layout(q, _maybe_indirect(draw, bufs), header=hdr if q == "tx" else None, regions=tuple(regions))


@st.composite
def malformed_chains(draw, queue=None):
    """Chains a driver must not write and queues a device must refuse."""
    q = draw(queues(queue))
    flags = _dir(q)
    kind = draw(st.sampled_from(("loop", "next", "size", "head")))
    payload = draw(st.integers(0, 64))
    bufs = [Buf(HEADER_SIZE, flags), Buf(payload, flags)] if payload else [Buf(HEADER_SIZE, flags)]
    size, head = 256, 0
    if kind == "loop":  # `next` points back into the chain (2.7.13.1: loops are forbidden)
        bufs += [Buf(draw(st.integers(0, 64)), flags) for _ in range(draw(st.integers(0, 2)))]
        j = draw(st.integers(0, len(bufs) - 1))
        bufs[-1] = Buf(bufs[-1].len, flags ^ F_NEXT, next=draw(st.integers(0, j)))
    elif kind == "next":  # `next` at or past the queue size
        j = draw(st.integers(0, len(bufs) - 1))
        bufs[j] = Buf(bufs[j].len, flags ^ (0 if j < len(bufs) - 1 else F_NEXT),
                      next=draw(st.sampled_from((size, size + 1, 0xFFFF))))
    elif kind == "size":
        size = draw(st.sampled_from((0, 0, 1, 2, 3, 255, MAX_QUEUE_SIZE, MAX_QUEUE_SIZE + 1, 0xFFFF)))
        if size == 1:
            bufs = [Buf(HEADER_SIZE + payload, flags)]
    else:
        head = draw(st.sampled_from((size, size + 1, 0xFFFF, 0x10000)))
    hdr = linux_header(payload)
    regions = (Region(0, 1 << 21),)  # room for a 32768-entry queue and the data after it
    return Layout(q, tuple(bufs), header=hdr if q == "tx" else None, size=size, head=head, regions=regions)


@st.composite
def indirect_edges(draw, queue=None):
    """Indirect tables at the rules' edges (2.7.5.3): nested, self-referencing, lengths not a
    multiple of 16 or zero, INDIRECT with NEXT, the table in a hole, WRITE on the table descriptor,
    direct descriptors before the table, a `next` just past the table's end with a plausible
    descriptor in the memory there (a walk bounded by the queue size, not len/16, takes it)."""
    q = draw(queues(queue))
    flags = _dir(q)
    payload = draw(st.integers(0, 64))
    inner = [Buf(HEADER_SIZE, flags), Buf(payload, flags)] if payload else [Buf(HEADER_SIZE + payload, flags)]
    kind = draw(st.sampled_from(("nested", "self", "len", "zero", "next", "hole", "write", "after", "past")))
    table_len = DESC_SIZE * len(inner)
    extra = ()
    if kind == "past":
        at = draw(st.sampled_from((0x80000, 0x80008)))  # the table, aligned or not
        payload = max(payload, 1)
        # Header in the table's only entry, its next one past it; the planted descriptor holds the data.
        bufs = (Buf(DESC_SIZE, F_INDIRECT, addr=at, table=(Buf(HEADER_SIZE, flags | F_NEXT, next=1),)),)
        extra = ((at + DESC_SIZE, pack_descriptor(at + 0x400, payload, flags, 0)),)
    elif kind == "nested":
        bufs = (Buf(DESC_SIZE, F_INDIRECT, table=(Buf(table_len, F_INDIRECT, table=tuple(inner)),)),)
    elif kind == "self":  # the table is the queue's own descriptor table
        bufs = (Buf(DESC_SIZE * draw(st.integers(1, 4)), F_INDIRECT, addr=0),)
    elif kind == "len":
        bufs = (Buf(table_len + draw(st.sampled_from((-15, -1, 1, 8, 15))), F_INDIRECT, table=tuple(inner)),)
    elif kind == "zero":
        bufs = (Buf(0, F_INDIRECT, table=tuple(inner)),)
    elif kind == "next":  # 2.7.5.3.1: INDIRECT and NEXT together
        bufs = (Buf(table_len, F_INDIRECT, table=tuple(inner)), Buf(draw(st.integers(0, 64)), flags))
    elif kind == "hole":
        bufs = (Buf(table_len, F_INDIRECT, addr=draw(st.sampled_from((1 << 20, (1 << 20) - 8))), table=tuple(inner)),)
    elif kind == "write":  # 2.7.5.3.2: the device MUST ignore WRITE on the table descriptor
        bufs = (Buf(table_len, F_INDIRECT | F_WRITE, table=tuple(inner)),)
    else:  # zero or more direct descriptors, then the table (valid)
        bufs = (Buf(HEADER_SIZE, flags), Buf(DESC_SIZE, F_INDIRECT, table=(Buf(payload, flags),)))
    hdr = linux_header(payload)
    return Layout(q, bufs, header=hdr if q == "tx" else None, extra=extra)


FAMILIES = {
    "linux": linux_layouts, "split": split_layouts, "direction": direction_mixes,
    "oversized": oversized_layouts, "region": region_layouts, "malformed": malformed_chains,
    "indirect": indirect_edges,
}


def layouts(queue=None, families=None):
    """Any family's layouts (or only `families`, names from FAMILIES)."""
    return st.one_of([FAMILIES[f](queue) for f in (families or FAMILIES)])


def cases(queue=None, families=None):
    return layouts(queue, families).map(assemble)


def binary_cases(max_size: int = 96):
    """Cases from raw bytes through the binary form (total decoder: every string is a case)."""
    return st.binary(max_size=max_size).map(decode)
