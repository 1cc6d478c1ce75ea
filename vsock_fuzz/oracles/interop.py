"""Interop oracles (error): the layouts real guest drivers send are accepted, with the right slices.

  interop.linux-rejected  the Linux layouts (< 6.2, 6.2+, 6.17+ multi-fragment tx, each also in
                          an indirect table) are accepted (facts file; vm-virtio #204, Cloud
                          Hypervisor #5691, #7672, libkrun #535)
  interop.linux-slices    and accepted with the header and data where the driver put them

Linux layouts are recognised from the walked chain, not from where the case
came from, so the recognition survives binary round trips and mutation: a
well-formed queue, every descriptor of the queue's direction, non-empty,
inside one region, with a header a Linux guest sends (tx: layout.is_linux_header),
in one of the shapes of the facts file.

A device may refuse a header for its content (an address it does not serve)
whatever the layout: `content_rejection` asks the same header and payload in
another Linux layout, and when that is refused too the rejection is about the
content, not the layout, and interop.linux-rejected has nothing to say
(oracles/run.py `evaluate` drops it; the differential warning stays).
"""

from __future__ import annotations

from ..case.layout import Buf, Layout, assemble, is_linux_header
from ..case.value import Case, Region
from ..case.wire import DESC_SIZE, DESC_STRUCT, F_INDIRECT, F_NEXT, F_WRITE, HEADER_SIZE, Header
from ..model.answer import Answer
from ..model.device import ASSUMED, Device
from ..model.memory import MemoryFault
from .context import UNSET, _Context, _total, normalise, same_bytes
from .finding import oracle

PAGE = 4096
LINUX_RX_BUF = 4096  # VIRTIO_VSOCK_DEFAULT_RX_BUF_SIZE
LINUX_LINEAR_MAX = 8 * PAGE  # 6.17: PAGE_SIZE << PAGE_ALLOC_COSTLY_ORDER; larger tx goes in fragments
PLAIN_QUEUE = 256  # the vsock queue size Firecracker, Cloud Hypervisor and libkrun offer


def linux_shape(ctx: _Context) -> str | None:
    """The Linux driver layout this chain is, from the walked chain (None if none)."""
    if ctx._linux is not UNSET:
        return ctx._linux
    ctx._linux = None
    chain, case, mem = ctx.chain, ctx.case, ctx.mem
    descs = chain.descs
    if chain.error or chain.queue_error or not descs:
        return None
    lens = [d.len for d in descs]  # the shapes' lengths first: they rule out most chains at once
    if ctx.tx:
        if lens[0] < HEADER_SIZE:
            return None
        try:
            h = Header.unpack(mem.read(descs[0].addr, HEADER_SIZE))
        except MemoryFault:
            return None  # the head buffer is not in memory, let alone in one region
        if h.len > case.max_data_size or not is_linux_header(h):
            return None
        if lens == [HEADER_SIZE + h.len]:
            shape = "one descriptor (Linux >= 6.2)"
        elif lens == [HEADER_SIZE, h.len]:
            shape = "two descriptors (Linux < 6.2)"
        elif (lens[0] == HEADER_SIZE and len(lens) > 2 and h.len > LINUX_LINEAR_MAX
              and all(n <= PAGE for n in lens[1:]) and sum(lens[1:]) == h.len):
            shape = f"header + {len(lens) - 1} page fragments (Linux >= 6.17)"
        else:
            return None
    else:
        # Linux sizes rx buffers for a 4 KiB payload; a device whose limit is below that (no real
        # one is) may refuse them, as rust-vmm does (DescriptorLengthTooLong).
        if case.max_data_size < LINUX_RX_BUF:
            return None
        if lens == [HEADER_SIZE + LINUX_RX_BUF]:
            shape = "one rx descriptor (Linux >= 6.2)"
        elif lens == [HEADER_SIZE, LINUX_RX_BUF]:
            shape = "two rx descriptors (Linux < 6.2)"
        else:
            return None
    # Every buffer non-empty, of the queue's direction and, as kernel memory, inside one region.
    if any(d.len == 0 or bool(d.flags & F_WRITE) == ctx.tx or len(mem.slices(d.addr, d.len) or ()) != 1
           for d in descs):
        return None
    ring = case.ring
    at = ring.desc_table + DESC_SIZE * ring.head
    addr, n, flags = DESC_STRUCT.unpack(mem.read(at, DESC_SIZE))[:3]
    # The rings (and an indirect table) are one kernel allocation each, inside one region, and a
    # VM's memory regions (KVM memory slots) start on a page: a device may rely on both.
    spans = [(ring.desc_table, DESC_SIZE * ring.size), (ring.avail, 6 + 2 * ring.size), (ring.used, 6 + 8 * ring.size),
             *((d.addr, d.len) for d in descs)] + ([(addr, n)] if flags & F_INDIRECT else [])
    starts = sorted(r.gpa for r in case.regions)
    if any(len(mem.slices(a, k) or ()) != 1 or starts[mem.region_index(a)] % PAGE for a, k in spans):
        return None
    if flags & F_INDIRECT:
        if not ctx.device.indirect:
            return None  # Linux puts a buffer in a table only when the device offered VIRTIO_F_INDIRECT_DESC
        shape += " in an indirect table"
    elif any(f & F_INDIRECT for f in _top_flags(mem, case.ring)):
        return None  # direct descriptors then a table: spec-valid, but no Linux layout
    ctx._linux = shape
    return shape


def linux_layout(case: Case, device: Device = ASSUMED) -> str | None:
    """Which Linux driver layout `case` is (e.g. "two descriptors (Linux < 6.2)"), or None: the
    layouts a Linux driver sends to `device`."""
    return linux_shape(_Context(case, Answer(False), [], "spec", None, device))


def content_probe(case: Case, device: Device = ASSUMED) -> Case | None:
    """The same header bytes and payload in another Linux layout, freshly laid out in a plain
    queue (256 entries, or the device's maximum) with the case's max_data_size: header and data
    in two direct descriptors (Linux < 6.2, the layout every device has taken longest), or, for
    a case already so, in one (Linux >= 6.2). All but the content is plain, so a refusal of
    both is about the content.

    None when `case` is no Linux tx layout with payload (an empty packet is one 44-byte
    descriptor in every Linux layout: there is no other to ask)."""
    ctx = _Context(case, Answer(False), [], "spec", None, device)
    shape = linux_shape(ctx)
    if not ctx.tx or shape is None:
        return None
    mem, chain = ctx.mem, ctx.chain
    raw = mem.gather(chain.stream(0, HEADER_SIZE))
    n = Header.unpack(raw).len
    if n == 0:
        return None
    size = max(min(PLAIN_QUEUE, device.max_queue_size), 2)
    rings = DESC_SIZE * size + 6 + 2 * size + 3 + 6 + 8 * size
    base = (rings + PAGE - 1) & ~(PAGE - 1)
    two = shape == "two descriptors (Linux < 6.2)"  # already two descriptors: ask it in one
    bufs = (Buf(HEADER_SIZE + n, addr=base),) if two else (Buf(HEADER_SIZE, addr=base), Buf(n, addr=base + PAGE))
    data = base + (HEADER_SIZE if two else PAGE)
    # The header and payload bytes as written: the device sees exactly the case's (unwritten memory is zero).
    payload = mem.gather(chain.stream(HEADER_SIZE, n))
    extra = ((base, raw),) + (((data, payload),) if payload.count(0) != len(payload) else ())  # a byte not zero
    return assemble(Layout("tx", bufs, regions=(Region(0, data + n + PAGE),), size=size,
                           max_data_size=case.max_data_size, extra=extra))


def content_rejection(case: Case, answer: Answer, ask, device: Device = ASSUMED) -> Answer | None:
    """When `answer` rejects a Linux tx layout: `ask`'s answer to `content_probe(case)` if that is
    rejected too (the device refuses the header's content, not the layout), else None.
    `ask(case) -> Answer` is the target's parse (of the case fitted to its device)."""
    if answer.ok or answer.faulted or answer.unsupported:
        return None
    probe = content_probe(case, device)
    if probe is None:
        return None
    other = ask(probe)
    return None if other.ok or other.faulted or other.unsupported else other


def _top_flags(mem, ring):
    i, seen = ring.head, 0
    while seen < ring.size:
        flags, nxt = DESC_STRUCT.unpack(mem.read(ring.desc_table + DESC_SIZE * i, DESC_SIZE))[2:]
        yield flags
        if not flags & F_NEXT or flags & F_INDIRECT:
            return
        i, seen = nxt, seen + 1


def _linux_rule(shape: str) -> str:
    if "6.17" in shape:
        return "Cloud Hypervisor #7672, libkrun #535: Linux >= 6.17 multi-fragment tx rejected"
    if ">= 6.2" in shape:
        return "rust-vmm vm-virtio #204, Cloud Hypervisor #5691: Linux >= 6.2 single-descriptor packets rejected"
    return "facts file: Linux < 6.2 sends header and data in two descriptors"


def _stream_exact(ctx: _Context) -> bool:
    """Whether the answer is the chain's first 44 bytes then the next `want` bytes, with `want`
    hdr.len (tx), or 1 up to the rest of the chain capped at max_data_size (rx: a device may
    offer less room than the buffer has, not none): cheap, from the shared walk."""
    ans, chain = ctx.answer, ctx.chain
    if _total(ans.header_slices) != HEADER_SIZE or ctx.stream_faults:
        return False
    if ctx.outside_chain:
        return False
    if ctx.tx:
        want = ctx.tx_len
    else:
        room = min(chain.total - HEADER_SIZE, ctx.case.max_data_size)
        return 0 < _total(ans.data_slices) <= room
    return _total(ans.data_slices) == want


def _expected(ctx: _Context):
    chain, case = ctx.chain, ctx.case
    if ctx.tx:
        n = Header.unpack(ctx.mem.read(chain.descs[0].addr, HEADER_SIZE)).len
    else:
        n = min(chain.total - HEADER_SIZE, case.max_data_size)
    return chain.stream(0, HEADER_SIZE), chain.stream(HEADER_SIZE, n)


@oracle("interop.linux-rejected", "error", "real guest drivers' layouts must be accepted (facts file)")
def linux_rejected(ctx: _Context) -> None:
    shape = linux_shape(ctx)
    if shape and not ctx.answer.ok:
        ctx.emit(f"a {ctx.case.queue} packet laid out as Linux does ({shape}) was rejected with "
                 f"{ctx.answer.error}: {ctx.answer.detail}", f"{ctx.case.queue} {shape}", rule=_linux_rule(shape))


@oracle("interop.linux-slices", "error", "real guest drivers' layouts must be accepted with the right slices")
def linux_slices(ctx: _Context) -> None:
    if ctx.answer.ok and _stream_exact(ctx):
        return  # header and data are the stream's bytes in order, of the right lengths: right for any layout
    shape = linux_shape(ctx)
    if not shape or not ctx.answer.ok:
        return
    mem, ans = ctx.mem, ctx.answer
    want_h, want_d = _expected(ctx)
    # Equal coalesced forms are equal normalised forms (the region cut is a function of them).
    if not same_bytes(ans.header_slices, want_h) or not same_bytes(ans.data_slices, want_d):
        got_h, got_d = normalise(mem, ans.header_slices), normalise(mem, ans.data_slices)
        ctx.emit(f"a Linux {ctx.case.queue} packet ({shape}) was accepted with header_slices "
                 f"{list(got_h)} and data_slices {list(got_d)}; the driver put the header at {want_h} and "
                 f"the data at {want_d}", f"{ctx.case.queue} {shape}", rule=_linux_rule(shape))

