"""Lay a descriptor chain out in guest memory: the one place that turns a
driver's intent (buffers, an indirect table, a header) into a `Case`.

The binary decoder, the Hypothesis strategies and the `check` matrix all
describe chains as `Buf`s and call `assemble`. `linux_*` are the layouts real
Linux drivers put on the queues (facts file, "What real guest drivers put on
the queues").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

from .value import Case, Region, Ring, avail_ring_writes, clip_each
from .wire import DESC_SIZE, DESC_STRUCT, F_INDIRECT, F_NEXT, F_WRITE
from .wire import CID_HOST, HEADER_SIZE, MAX_PKT_BUF_SIZE, OP_CREDIT_UPDATE, OP_RW, SEQ_EOM, TYPE_SEQPACKET
from .wire import TYPE_STREAM, Header

PAGE = 4096
DEFAULT_REGION = Region(0, 1 << 20)


class Buf(NamedTuple):
    """One descriptor as the driver writes it.

    `addr=None` places the buffer after the previous one in the data area;
    `next=None` links to the following entry of the same table and sets NEXT
    on all but the last (`flags` is XORed on top, so F_NEXT there flips it);
    `table` holds the entries of an indirect table (set F_INDIRECT in flags).
    """
    len: int
    flags: int = 0
    addr: int | None = None
    next: int | None = None
    table: tuple["Buf", ...] = ()


@dataclass(frozen=True)
class Layout:
    queue: str
    bufs: tuple[Buf, ...]
    header: Header | None = None  # tx: scattered over the first 44 bytes of the buffers
    regions: tuple[Region, ...] = (DEFAULT_REGION,)
    size: int = 256  # Firecracker's vsock queue size; room for 6.17's 17-descriptor packets
    head: int = 0
    desc_table: int | None = None  # None: start of the first region
    data_base: int | None = None   # None: first page after the rings
    max_data_size: int = MAX_PKT_BUF_SIZE
    extra: tuple[tuple[int, bytes], ...] = field(default=())  # raw (gpa, bytes), written last but for the avail ring


def flatten(bufs):
    """The buffers in the order a walk meets them (indirect tables expanded in place)."""
    for b in bufs:
        if b.flags & F_INDIRECT:
            yield from flatten(b.table)
        else:
            yield b


def stream_len(bufs, writable: bool = False) -> int:
    """Bytes of the given direction the chain carries, in walk order."""
    want = F_WRITE if writable else 0
    total = 0
    for length, flags, _, _, table in bufs:
        if flags & F_INDIRECT:
            if table:  # decode_layout counts its flat records, whose tables are empty
                total += stream_len(table, writable)
        elif flags & F_WRITE == want:
            total += length
    return total


def assemble(lay: Layout) -> Case:
    regions = lay.regions
    base = regions[0].gpa if regions else 0
    desc_table = base if lay.desc_table is None else lay.desc_table
    avail = desc_table + DESC_SIZE * lay.size
    used = (avail + 6 + 2 * lay.size + 3) & ~3
    cursor = (used + 6 + 8 * lay.size + PAGE - 1) & ~(PAGE - 1) if lay.data_base is None else lay.data_base
    tables: list[tuple[int, bytes]] = []  # (addr, entries) of each descriptor table, inner ones first
    placed: list[tuple[int, int]] = []  # (addr, len) of data buffers in walk order
    _lay_table(lay.bufs, desc_table, cursor, tables, placed)
    raw = tables[::-1]  # last laid out first: a table ahead of those inside it
    if lay.header is not None:
        raw += scatter(lay.header.pack(), placed)
    raw += lay.extra
    ring = Ring(lay.size, desc_table, avail, used, lay.head)
    writes = clip_each(regions, raw)
    writes += avail_ring_writes(regions, ring)  # written last, as the harness does
    return Case(lay.queue, lay.max_data_size, tuple(regions), tuple(writes), ring)


def _lay_table(bufs, at: int, cursor: int, tables: list, placed: list) -> int:
    """Lay `bufs` out as the descriptor table at `at`, auto-placed buffers (and their
    tables) from `cursor` on; returns the cursor after them."""
    entries = []
    last = len(bufs) - 1
    pack = DESC_STRUCT.pack
    for i, (length, flags, addr, nxt, table) in enumerate(bufs):
        indirect = flags & F_INDIRECT
        if addr is None:  # after the previous buffer, 8-aligned
            addr = cursor
            cursor = (cursor + (max(length, DESC_SIZE * len(table)) if indirect else length) + 7) & ~7
        if indirect:
            cursor = _lay_table(table, addr, cursor, tables, placed)
        else:
            placed.append((addr, length))
        flags = ((0 if i == last else F_NEXT) ^ flags) & 0xFFFF
        nxt = (i + 1 if nxt is None else nxt) & 0xFFFF
        entries.append(pack(addr & 0xFFFFFFFFFFFFFFFF, length & 0xFFFFFFFF, flags, nxt))
    if entries:
        tables.append((at, b"".join(entries)))
    return cursor


def scatter(data: bytes, pieces):
    """Cut `data` over the (addr, len) pieces in order, as a device reads a byte stream."""
    out, pos = [], 0
    for addr, length in pieces:
        if pos >= len(data):
            break
        take = min(length, len(data) - pos)
        if take:
            out.append((addr, data[pos:pos + take]))
            pos += take
    return out


# --- what real Linux drivers send (facts file) -----------------------------

def linux_header(payload: int, conn: Header | None = None) -> Header:
    """The header a Linux guest sends with `payload` bytes on the connection `conn` (its CIDs,
    ports, type, flags and credit; by default `Header()`, guest CID 3 to the host on a STREAM
    socket). Facts file, "What a Linux guest writes in a tx header": only RW carries payload,
    and no STREAM socket sends RW without one (a 0-byte sendmsg sends nothing), so its empty
    packet is a CREDIT_UPDATE; a SEQPACKET one sends an empty RW only to end a message."""
    hdr = (conn or Header())._replace(len=payload)
    if not is_linux_address(hdr):
        raise ValueError(f"no Linux guest sends from CID {hdr.src_cid} to CID {hdr.dst_cid}")
    if payload and hdr.op != OP_RW:
        return hdr._replace(op=OP_RW, flags=0)
    if not payload and hdr.op == OP_RW:
        if hdr.type == TYPE_SEQPACKET:
            return hdr._replace(flags=hdr.flags | SEQ_EOM)
        return hdr._replace(op=OP_CREDIT_UPDATE, flags=0)
    return hdr


def is_linux_address(hdr: Header) -> bool:
    """virtio-vsock carries guest-host traffic only: a guest CID (>= 3, a u32) to the host."""
    return hdr.dst_cid == CID_HOST and 3 <= hdr.src_cid < 0xFFFFFFFF


def is_linux_header(hdr: Header) -> bool:
    """Whether a Linux guest may send this header (facts file): guest to host, STREAM or
    SEQPACKET, a known op, payload on RW only and at most VIRTIO_VSOCK_MAX_PKT_BUF_SIZE, and
    no empty RW on a STREAM socket."""
    if not is_linux_address(hdr) or hdr.type not in (TYPE_STREAM, TYPE_SEQPACKET) or not 1 <= hdr.op <= 7:
        return False
    if hdr.len > MAX_PKT_BUF_SIZE:
        return False
    if hdr.op == OP_RW:
        return hdr.len > 0 or hdr.type == TYPE_SEQPACKET
    return hdr.len == 0


def linux_tx(version: str, payload: int, *, indirect: bool = False, header: Header | None = None) -> Layout:
    """A TX packet as Linux `version` ("5.x", "6.2", "6.17") lays it out, with the header
    Linux sends with that payload on the connection `header` (linux_header)."""
    hdr = linux_header(payload, header)
    if version == "5.x":  # before 6.2: header descriptor, then one data descriptor if len > 0
        bufs = (Buf(HEADER_SIZE),) + ((Buf(payload),) if payload else ())
    elif version == "6.2":  # sk_buff rework: header and data in one descriptor
        bufs = (Buf(HEADER_SIZE + payload),)
    elif version == "6.17":  # nonlinear skb: header, then page fragments when > 32 KiB
        if payload > 8 * PAGE:
            bufs = (Buf(HEADER_SIZE),) + tuple(Buf(min(PAGE, payload - off)) for off in range(0, payload, PAGE))
        else:
            bufs = (Buf(HEADER_SIZE + payload),)
    else:
        raise ValueError(f"unknown Linux layout {version!r}")
    return Layout("tx", _indirect(bufs) if indirect else bufs, header=hdr)


def plain_packet() -> Case:
    """A Linux 6.2 tx packet with 64 bytes of payload: one every device must answer, to tell a
    target that works from one that cannot (a campaign's start, a cmd: target's restart cap)."""
    return assemble(linux_tx("6.2", 64))


def linux_rx(version: str, *, indirect: bool = False) -> Layout:
    """An RX buffer as Linux `version` offers it (the 6.17 rx layout is the 6.2 one)."""
    if version == "5.x":
        bufs = (Buf(HEADER_SIZE, F_WRITE), Buf(PAGE, F_WRITE))
    elif version in ("6.2", "6.17"):
        bufs = (Buf(HEADER_SIZE + PAGE, F_WRITE),)
    else:
        raise ValueError(f"unknown Linux layout {version!r}")
    return Layout("rx", _indirect(bufs) if indirect else bufs)


def _indirect(bufs) -> tuple[Buf, ...]:
    # Linux puts any multi-descriptor buffer in a table when INDIRECT_DESC is negotiated.
    return (Buf(DESC_SIZE * len(bufs), F_INDIRECT, table=tuple(bufs)),)


LINUX_VERSIONS = ("5.x", "6.2", "6.17")
