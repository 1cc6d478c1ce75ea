"""Oracles: invariants over (case, answer) that every correct device keeps.

Each oracle is a small named function with the spec rule or real bug it
stands for. `check` runs them all on one answer and returns `Finding`s;
`evaluate` runs a target (twice, for determinism, unless it is the stateless model) and
the model, then checks.

Families and severities (ARCHITECTURE.md, issue 3):
  safety (critical)     slices inside guest memory, inside one region, inside
                        the chain's buffers, with the queue's direction; no
                        crash, no hang.
  fidelity (error)      the header is the 44 bytes under header_slices, which
                        are the chain's first 44 bytes; tx data totals hdr.len,
                        follows the header in order, hdr.len <= max_data_size;
                        header and data do not overlap.
  interop (error)       the Linux layouts (< 6.2, 6.2+, 6.17+, each also in an
                        indirect table) are accepted with the right slices.
  conformance (warning) other spec-valid layouts rejected; leniency towards
                        malformed chains; bytes of the chain skipped.
  differential (warning, error when strict)  disagreement with the model.
  determinism (error)   the same case answered twice, the same answer.

Decisions where the issue is silent:
  - "The chain's buffers" are what a lenient walk reaches (`chain.walk`
    without the 2^32 bound and with INDIRECT+NEXT allowed), stopping at the
    first other chain error (loop, index out of range, nested or bad indirect
    table): a target that read past that point used memory no descriptor of
    this chain gave it, which is a safety finding. A target that accepts a
    malformed chain without using its broken part is only noted
    (conformance.malformed-accepted).
  - Linux layouts are recognised from the walked chain, not from where the
    case came from, so the recognition survives binary round trips and
    mutation: a well-formed queue, every descriptor of the queue's direction,
    non-empty, inside one region, with a sane header (tx), in one of the
    shapes of the facts file.
  - Slices are compared after normalisation: zero-length slices dropped,
    contiguous ones coalesced, then cut at region boundaries, so a target
    that merges adjacent pieces of one region is not flagged.
  - Data that follows the header in order but skips bytes of the chain (the
    rest of a head descriptor, as rust-vmm does when the head has NEXT) is a
    conformance warning (2.6.4: no assumptions on descriptor layout); data
    that goes backwards or out of order is a fidelity error.
  - A target that accepts a well-formed chain the spec model accepts too is
    not re-checked for chain malformations (the model walked it all).

What the rust-vmm profile of the model shows (its documented gaps, nothing
under safety or fidelity): interop.linux-rejected for Linux >= 6.17
multi-fragment tx; conformance.valid-rejected for spec-valid layouts it
refuses (header split over descriptors, buffers crossing adjacent regions,
rx buffers longer than the header plus max_data_size, a lone 44-byte rx
buffer, 2^32-byte chains); conformance.stream-gap when a head with payload
also has NEXT; conformance.malformed-accepted for malformed chain tails its
lazy walk never reaches. tests/test_strategies.py holds it to that.
"""

from __future__ import annotations

import hashlib
import shlex
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, replace
from itertools import accumulate
from operator import attrgetter, itemgetter

from ..model.answer import Answer
from ..case.value import Case
from ..case.wire import DESC_SIZE, DESC_STRUCT, F_INDIRECT, F_NEXT, F_WRITE
from ..model.chain import ChainError, Walked, walk, walked
from ..case.wire import FIELD_NAMES, HEADER_SIZE, OP_RW, Header
from ..model.memory import U64, GuestMemory, MemoryFault
from ..model.packet import parse
from ..targets.command import ModelTarget
from ..case.binary import encode

SEVERITY_ORDER = {"warning": 0, "error": 1, "critical": 2}
FAMILIES = ("safety", "fidelity", "interop", "conformance", "differential", "determinism")
PAGE = 4096
LINUX_RX_BUF = 4096  # VIRTIO_VSOCK_DEFAULT_RX_BUF_SIZE
LINUX_LINEAR_MAX = 8 * PAGE  # 6.17: PAGE_SIZE << PAGE_ALLOC_COSTLY_ORDER; larger tx goes in fragments


@dataclass(frozen=True)
class Finding:
    oracle: str
    family: str
    severity: str
    rule: str
    message: str
    case: Case
    answer: Answer
    signature: str = ""          # what distinguishes two findings of one oracle
    target: str | None = None    # the target spec, for the reproduce command

    def key(self) -> str:
        """De-duplication key: the oracle and a short signature of what broke."""
        return f"{self.oracle}:{self.signature}" if self.signature else self.oracle

    def file_stem(self) -> str:
        """`<oracle>-<sha1 of binary case>`, the name of the finding's files on disk."""
        return f"{self.oracle}-{hashlib.sha1(encode(self.case)).hexdigest()}"

    def reproduce(self, target: str | None = None) -> str:
        spec = target or self.target or "TARGET"
        return f"vsock-fuzz replay --target {shlex.quote(spec)} {self.file_stem()}.bin"

    def to_json(self, target: str | None = None) -> dict:
        return {
            "oracle": self.oracle, "family": self.family, "severity": self.severity,
            "rule": self.rule, "message": self.message, "signature": self.signature,
            "key": self.key(), "target": target or self.target,
            "case": self.case.to_request(), "binary": encode(self.case).hex(),
            "answer": self.answer.to_json(), "reproduce": self.reproduce(target),
        }


# --- oracle registry ------------------------------------------------------------

@dataclass(frozen=True)
class Oracle:
    name: str
    family: str
    severity: str
    rule: str
    func: object


ORACLES: dict[str, Oracle] = {}


def oracle(name: str, severity: str, rule: str):
    """Register an oracle: `func(ctx)` calls `ctx.emit(message, signature)` for each violation."""
    def register(func):
        ORACLES[name] = Oracle(name, name.split(".", 1)[0], severity, rule, func)
        func.oracle = ORACLES[name]
        return func
    return register


UNSET = object()
_BEFORE_ALL = float("-inf")  # compares below every address
_ADDR, _LEN, _END = 2, 3, 4  # of a `_Context.placed` / `outside_region` slice


class _shared:
    """A `_Context` attribute computed on first use, then a plain attribute: functools.cached_property
    without the lock Python 3.11 takes on each first use (about 0.3 us, paid several times a case)."""

    def __init__(self, func):
        self.func, self.name = func, func.__name__

    def __get__(self, ctx, owner=None):
        if ctx is None:
            return self  # looked up on the class
        value = ctx.__dict__[self.name] = self.func(ctx)
        return value


class _Context:
    """One answer under check, with what the oracles share, each computed once."""

    def __init__(self, case: Case, answer: Answer, out: list, profile: str, model: Answer | None):
        self.case = case
        self.answer = answer
        self.out = out
        self.profile = profile
        self.model = model
        self.tx = case.queue == "tx"
        self.current: Oracle | None = None
        # Computed on first use (UNSET until then; None is a result).
        self._spec = self._linux = UNSET

    def run(self, func, *args) -> None:
        """One oracle on this answer."""
        self.current = func.oracle
        func(self, *args)

    def emit(self, message: str, signature: str = "", *, severity: str | None = None,
             rule: str | None = None, answer: Answer | None = None) -> None:
        o = self.current
        self.out.append(Finding(o.name, o.family, severity or o.severity, rule or o.rule, message,
                                self.case, answer or self.answer, signature))

    # What several oracles read, computed once.

    @_shared
    def walked(self) -> Walked:
        """Memory and chain, shared with the model's parse of this case."""
        return walked(self.case)

    @_shared
    def mem(self) -> GuestMemory:
        return self.walked.mem

    @_shared
    def chain(self) -> "_Chain":
        return _Chain(self.walked)

    @_shared
    def placed(self) -> list:
        """(field, index, addr, len) per non-empty slice. The oracles filter their slices out of
        it with comprehensions: on a clean answer, no loop of theirs runs."""
        ans = self.answer
        return [(field, i, a, n)
                for field, slices in (("header_slices", ans.header_slices), ("data_slices", ans.data_slices))
                for i, (a, n) in enumerate(slices) if n]

    @_shared
    def outside_region(self) -> list:
        """The slices of `placed` that no one region holds, each with the end of the region holding
        its addr (None: no region does, or the slice wraps past 2^64). One lookup when a region
        holds everything from the lowest slice to the end of the highest, as in the usual answer."""
        placed, region_end = self.placed, self.mem.region_end
        if placed:
            hi = max([a + n for _, _, a, n in placed])
            end = region_end(min([a for _, _, a, _ in placed]))
            if end is not None and hi <= end and hi <= U64:
                return []
        ends = [region_end(a) if a + n <= U64 else None for _, _, a, n in placed]
        return [p + (end,) for p, end in zip(placed, ends) if end is None or p[_ADDR] + p[_LEN] > end]

    @_shared
    def in_stream(self) -> bool:
        """Whether header_slices are the chain's first 44 bytes and data_slices the bytes right
        after them, cut where the buffers are: a correct device's usual answer, in which the
        oracles that place slices in the chain (slice-in-chain, stream-order, stream-gap,
        slice-overlap) have nothing to find."""
        ans, chain = self.answer, self.chain
        return (list(ans.header_slices) == chain.stream(0, HEADER_SIZE)
                and list(ans.data_slices) == chain.stream(HEADER_SIZE, _total(ans.data_slices)))

    @_shared
    def outside_chain(self) -> list:
        """The slices of `placed` that no buffer of the chain holds."""
        return [] if self.in_stream else self.chain.outside(self.placed)

    @_shared
    def true_header(self) -> Header | None:
        return _true_header(self)

    @_shared
    def tx_len(self) -> int | None:
        return _tx_len(self)

    @_shared
    def stream_faults(self) -> list:
        return _stream_faults(self)

    def spec_answer(self) -> Answer:
        """The model's answer under `spec` (reusing the differential one when it is that)."""
        if self.model is not None and self.profile == "spec":
            return self.model
        if self._spec is UNSET:
            self._spec = parse(self.case, "spec")
        return self._spec


class _Chain:
    """The chain as a lenient walk sees it (see the module docstring)."""

    def __init__(self, w: Walked):
        self.mem = mem = w.mem
        ring = w.case.ring
        descs, self.error = w.chain  # the first rule the chain breaks (None: none)
        if self.error is not None and self.error.name in ("ChainTooLarge", "IndirectWithNext"):
            # Not a reason to stop: the buffers are still the driver's.
            descs = []
            try:
                for d in walk(mem, ring.desc_table, ring.size, ring.head & 0xFFFF,
                              max_chain_bytes=U64 << 32, reject_indirect_next=False):
                    descs.append(d)
            except ChainError:
                pass
        self.descs = descs
        self.used = [d for d in descs if d.len]  # the byte stream: zero-length buffers carry nothing
        # Where each used buffer starts in the stream, then the bytes in the stream.
        *self.offsets, self.total = accumulate(map(attrgetter("len"), self.used), initial=0)
        directions = {d.flags & F_WRITE for d in self.used}
        # The one direction of every used buffer (None: both or none): when it is the queue's,
        # no slice inside the chain can be in a buffer of the wrong one.
        self.writable = bool(directions.pop()) if len(directions) == 1 else None
        self._unions: dict = {}
        self._walked = w

    @property
    def queue_error(self) -> ChainError | None:
        """The first rule the queue set-up breaks (size, alignment, rings in memory, head)."""
        return self._walked.queue_error

    def _union(self, writable):
        """The chain's used buffers (of one direction if given) `_merged`."""
        union = self._unions.get(writable)
        if union is None:
            want = None if writable is None else F_WRITE if writable else 0
            union = self._unions[writable] = _merged({(d.addr, d.len) for d in self.used
                                                      if want is None or d.flags & F_WRITE == want})
        return union

    def outside(self, placed: list, writable: bool | None = None) -> list:
        """The slices of `placed` (as `_Context.placed` gives them) not inside the chain's buffers
        (of one direction if given)."""
        starts, ends = self._union(writable)
        # Inside iff it ends by the end of the last piece starting at or before it.
        return [p for p in placed if p[_ADDR] + p[_LEN] > ends[bisect_right(starts, p[_ADDR]) - 1]]

    @property
    def buffers_overlap(self) -> bool:
        spans = sorted((d.addr, d.addr + d.len) for d in self.used)
        return any(e > s2 for (_, e), (s2, _) in zip(spans, spans[1:]))

    def stream(self, start: int, n: int):
        """The chain's bytes [start, start+n) as (addr, len) pieces, or None if it is shorter."""
        end = start + n
        if not n:
            return []
        if end > self.total:
            return None
        # The used buffers from the one holding `start` to the one holding the last byte,
        # the first cut to begin at `start`, the last (maybe the same) to stop at `end`.
        i, j = bisect_right(self.offsets, start) - 1, bisect_left(self.offsets, end)
        out = [(d.addr, d.len) for d in self.used[i:j]]
        a, n = out[0]
        skip = start - self.offsets[i]
        out[0] = a + skip, n - skip
        a, n = out[-1]
        out[-1] = a, n - (self.offsets[j - 1] + self.used[j - 1].len - end)
        return out


def _merged(slices) -> tuple[list, list]:
    """The union of non-empty (addr, len) slices as sorted (starts, ends) of disjoint pieces, both
    led by a piece that lies before every address, so any address has a piece at or before it."""
    spans = sorted(slices)
    reach = list(accumulate([a + n for a, n in spans], max))  # the furthest end so far
    # A piece starts at each span that begins past every byte before it (touching spans merge).
    first = [k for k in range(len(spans)) if k == 0 or spans[k][0] > reach[k - 1]]
    starts = [_BEFORE_ALL] + [spans[k][0] for k in first]
    ends = [_BEFORE_ALL] + [reach[k - 1] for k in first[1:]] + reach[-1:]
    return starts, ends


def coalesce(slices) -> list[tuple[int, int]]:
    """Zero-length slices dropped, contiguous ones merged."""
    out: list[list[int]] = []
    for a, n in slices:
        if not n:
            continue
        if out and out[-1][0] + out[-1][1] == a:
            out[-1][1] += n
        else:
            out.append([a, n])
    return [(a, n) for a, n in out]


def same_bytes(got, want) -> bool:
    """Whether two slice lists name the same bytes in the same order, however cut."""
    want = want or ()
    return list(got) == list(want) or coalesce(got) == coalesce(want)


def normalise(mem: GuestMemory, slices) -> tuple[tuple[int, int], ...]:
    """Canonical slices: coalesced, then cut at region boundaries (each piece in one region)."""
    out = []
    for a, n in coalesce(slices):
        cut = mem.slices(a, n)
        out.extend(cut if cut is not None else [(a, n)])
    return tuple(out)


def _span(a: int, n: int) -> str:
    return f"[{a:#x}, {n}]"


_LENGTH = itemgetter(1)  # of an (addr, len) slice


def _total(slices) -> int:
    return sum(map(_LENGTH, slices))


# --- safety (critical) -----------------------------------------------------------

@oracle("safety.crash", "critical", "no input may crash the device (rust-vmm fuzz target; virtio-queue #173)")
def no_crash(ctx: _Context) -> None:
    if ctx.answer.error_class == "crash":
        ctx.emit(f"the target crashed: {ctx.answer.detail}", ctx.answer.detail.split(":", 1)[0][:60])


@oracle("safety.hang", "critical", "2.7.13.1: a chain is finite; a device bounds its walk (virtio-queue 0.6.1 loop)")
def no_hang(ctx: _Context) -> None:
    if ctx.answer.error_class == "hang":
        ctx.emit(f"the target did not answer: {ctx.answer.detail}")


@oracle("safety.slice-in-memory", "critical", "Firecracker CVE-2019-18960: every slice lies in guest memory")
def slice_in_memory(ctx: _Context) -> None:
    for field, i, a, n, end in [p for p in ctx.outside_region if p[_END] is None]:
        where = "wraps past 2^64" if a + n > U64 else "starts outside every memory region"
        ctx.emit(f"{field}[{i}] = {_span(a, n)} {where}: the host would "
                 f"{'read' if ctx.tx else 'write'} memory that is not the guest's", field)


@oracle("safety.slice-in-region", "critical",
        "Firecracker CVE-2019-18960: a slice is one host mapping, inside one region")
def slice_in_region(ctx: _Context) -> None:
    for field, i, a, n, end in [p for p in ctx.outside_region if p[_END] is not None]:
        start = max(s for s in (r.gpa for r in ctx.case.regions) if s <= a)
        ctx.emit(f"{field}[{i}] = {_span(a, n)} runs {a + n - end} bytes past the end of region "
                 f"[{start:#x}, {end:#x}) — CVE-2019-18960 class: host memory past a region would be "
                 f"{'read' if ctx.tx else 'written'}", field)


@oracle("safety.slice-in-chain", "critical",
        "2.7.4/2.7.5: a device touches only the buffers the chain's descriptors give it")
def slice_in_chain(ctx: _Context) -> None:
    chain = ctx.chain
    for field, i, a, n in ctx.outside_chain:
        stop = f" (the walk stops there: {chain.error.detail})" if chain.error else ""
        ctx.emit(f"{field}[{i}] = {_span(a, n)} is not inside any buffer of the chain's "
                 f"{len(chain.used)} descriptors{stop}: the device would "
                 f"{'read' if ctx.tx else 'write'} guest memory the driver did not hand it", field)


@oracle("safety.direction", "critical",
        "2.7.4.1: the device MUST NOT write to a device-readable buffer; tx reads only device-readable ones")
def direction(ctx: _Context) -> None:
    chain, want = ctx.chain, not ctx.tx
    if chain.writable == want:
        return  # every buffer has the queue's direction: a slice inside the chain is inside one of them
    inside = [p for p in ctx.placed if p not in ctx.outside_chain]
    for field, i, a, n in chain.outside(inside, want):
        what = ("writes device-readable memory: a buffer the guest may still be reading from (2.7.4.1)"
                if want else "reads a device-writable buffer as packet data: the guest expects the device to fill it")
        ctx.emit(f"{field}[{i}] = {_span(a, n)} on the {ctx.case.queue} queue {what}", field)


# --- fidelity (error) ------------------------------------------------------------

@oracle("fidelity.header-size", "error", "5.10.6: the header is 44 bytes")
def header_size(ctx: _Context) -> None:
    total = _total(ctx.answer.header_slices)
    if total != HEADER_SIZE:
        ctx.emit(f"header_slices cover {total} bytes; struct virtio_vsock_hdr is {HEADER_SIZE}")


@oracle("fidelity.header-bytes", "error", "5.10.6: header fields are le64/le32/le16 at fixed offsets")
def header_bytes(ctx: _Context) -> None:
    if not ctx.tx:
        return
    hdr = ctx.answer.header
    if hdr is None:
        ctx.emit("the target accepted a tx packet but reported no header", "missing")
        return
    raw = ctx.true_header
    if raw is None or hdr == raw:
        return  # None: header-size or a safety oracle has said why
    wrong = [f"{name} {got} (memory holds {want})"
             for name, got, want in zip(FIELD_NAMES, hdr, raw) if got != want]
    if wrong:
        ctx.emit(f"the decoded header differs from the 44 bytes under header_slices: {', '.join(wrong)}",
                 ",".join(w.split()[0] for w in wrong))


def _true_header(ctx: _Context) -> Header | None:
    """The header as the bytes under header_slices hold it, when they are 44 mapped bytes."""
    hs, mem = ctx.answer.header_slices, ctx.mem
    if _total(hs) == HEADER_SIZE:
        try:
            return Header.unpack(mem.gather(hs))
        except MemoryFault:
            pass
    return None


def _tx_len(ctx: _Context) -> int | None:
    """hdr.len of a tx packet, as memory or else the answer holds it (None: rx, or no header)."""
    hdr = (ctx.true_header or ctx.answer.header) if ctx.tx else None
    return None if hdr is None else hdr.len


@oracle("fidelity.data-len", "error", "5.10.6: a tx packet carries exactly hdr.len bytes of payload")
def data_len(ctx: _Context) -> None:
    n = ctx.tx_len
    if n is not None and _total(ctx.answer.data_slices) != n:
        ctx.emit(f"data_slices total {_total(ctx.answer.data_slices)} bytes but hdr.len is {n}")


@oracle("fidelity.max-data-size", "error",
        "Linux VIRTIO_VSOCK_MAX_PKT_BUF_SIZE / rust-vmm InvalidHeaderLen: hdr.len <= max_data_size")
def max_data_size(ctx: _Context) -> None:
    n = ctx.tx_len
    if n is not None and n > ctx.case.max_data_size:
        ctx.emit(f"accepted a tx packet with hdr.len {n} > max_data_size {ctx.case.max_data_size}: "
                 f"the device would buffer more than it may")


@oracle("fidelity.slice-overlap", "error",
        "5.10.6: header and payload are distinct bytes of the packet (Firecracker #2686 class)")
def slice_overlap(ctx: _Context) -> None:
    if ctx.in_stream:
        return  # distinct bytes of the stream: they overlap only where the buffers do
    hs, ds = coalesce(ctx.answer.header_slices), coalesce(ctx.answer.data_slices)
    # Whether any data piece overlaps the header: the last merged header piece starting before
    # the data piece's end runs past its start (sorted, not every pair: answers have 100s of slices).
    starts, ends = _merged(hs)
    if any(ends[bisect_left(starts, a + n) - 1] > a for a, n in ds) and not ctx.chain.buffers_overlap:
        (ha, hn), (da, dn) = next((h, d) for h in hs for d in ds if h[0] < d[0] + d[1] and d[0] < h[0] + h[1])
        ctx.emit(f"header bytes {_span(ha, hn)} and data bytes {_span(da, dn)} overlap although "
                 f"the chain's buffers do not: the payload would be read over the header")


@oracle("fidelity.stream-order", "error",
        "2.6.4 / 5.10.6: the header is the chain's first 44 bytes, the data follows it in order")
def stream_order(ctx: _Context) -> None:
    for gap in ctx.stream_faults:
        if gap[0] == "order":
            ctx.emit(gap[1], gap[2])


@oracle("conformance.stream-gap", "warning",
        "2.6.4: the device MUST NOT make assumptions about the arrangement of descriptors")
def stream_gap(ctx: _Context) -> None:
    for gap in ctx.stream_faults:
        if gap[0] == "gap":
            ctx.emit(gap[1], gap[2])


def _stream_faults(ctx: _Context) -> list:
    """Where header and data sit in the chain's byte stream: ("order"|"gap", message, signature) tuples."""
    out = []
    ans, chain = ctx.answer, ctx.chain
    if ctx.in_stream or ctx.outside_chain:
        return out  # in order; or safety.slice-in-chain has said it
    hs = ans.header_slices
    if _total(hs) == HEADER_SIZE and not same_bytes(hs, chain.stream(0, HEADER_SIZE)):
        out.append(("order", f"header_slices {[list(s) for s in ans.header_slices]} are not the first "
                             f"{HEADER_SIZE} bytes of the chain ({chain.stream(0, HEADER_SIZE)})", "header"))
        return out
    if same_bytes(ans.data_slices, chain.stream(HEADER_SIZE, _total(ans.data_slices))):
        return out
    ds = coalesce(ans.data_slices)
    # Map each data byte range to its position in the stream, moving forward only.
    used, starts = chain.used, chain.offsets
    cursor, gaps = HEADER_SIZE, 0
    for a, n in ds:
        while n:
            # The first buffer holding `a` at or after the cursor: buffers before the one holding
            # the cursor lie wholly before it in the stream, so the search starts there (linear).
            first = bisect_right(starts, cursor) - 1  # >= 0: starts[0] is 0 (a slice here is in the chain)
            hit = next(((starts[j] + a - used[j].addr, used[j]) for j in range(first, len(used))
                        if used[j].addr <= a < used[j].addr + used[j].len and starts[j] + a - used[j].addr >= cursor), None)
            if hit is None:
                out.append(("order", f"data bytes {_span(a, n)} do not follow the header and the data "
                                     f"before them in the chain's byte stream (read twice, out of order, "
                                     f"or from the header)", "data"))
                return out
            p, d = hit
            gaps += p - cursor
            take = min(n, d.addr + d.len - a)
            cursor, a, n = p + take, a + take, n - take
    if gaps:
        out.append(("gap", f"the data skips {gaps} bytes of the chain after the header: a driver that "
                           f"puts payload right after the header in the same descriptor (spec-valid) "
                           f"would be misread", "data"))
    return out


# --- interop (error) -------------------------------------------------------------

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
        if h.len > case.max_data_size or h.type not in (1, 2) or not 1 <= h.op <= 7 or (h.len and h.op != OP_RW):
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
    at = case.ring.desc_table + DESC_SIZE * case.ring.head
    flags = DESC_STRUCT.unpack(mem.read(at, DESC_SIZE))[2]
    if flags & F_INDIRECT:
        shape += " in an indirect table"
    elif any(f & F_INDIRECT for f in _top_flags(mem, case.ring)):
        return None  # direct descriptors then a table: spec-valid, but no Linux layout
    ctx._linux = shape
    return shape


def linux_layout(case: Case) -> str | None:
    """Which Linux driver layout `case` is (e.g. "two descriptors (Linux < 6.2)"), or None."""
    return linux_shape(_Context(case, Answer(False), [], "spec", None))


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


# --- conformance (warning) -------------------------------------------------------

@oracle("conformance.valid-rejected", "warning",
        "2.6.4: the device MUST NOT make assumptions about the particular arrangement of descriptors")
def valid_rejected(ctx: _Context) -> None:
    ans = ctx.answer
    if ans.ok or linux_shape(ctx):
        return
    traits = _layout_traits(ctx)
    ctx.emit(f"a spec-valid {ctx.case.queue} chain ({', '.join(traits) or 'no unusual trait'}) was rejected "
             f"with {ans.error}: {ans.detail}", ", ".join(traits))


def _layout_traits(ctx: _Context) -> list[str]:
    """What is unusual about a spec-valid chain, to say which arrangement a target refuses."""
    chain, mem, case = ctx.chain, ctx.mem, ctx.case
    used = chain.used
    out = []
    if used and used[0].len < HEADER_SIZE:
        n, k = 0, 0
        while n < HEADER_SIZE and k < len(used):
            n += used[k].len
            k += 1
        out.append(f"header split over {k} descriptors")
    if len(chain.descs) != len(used):
        out.append("zero-length descriptors")
    if len(used) > 2:
        out.append(f"{len(used)} descriptors")
    if any(len(mem.slices(d.addr, d.len) or ()) > 1 for d in used):
        out.append("a buffer crossing adjacent regions")
    if chain.total >= 1 << 32:
        out.append("a chain of 2^32 bytes (the spec's limit, one past u32::MAX)")
    if not ctx.tx and chain.total == HEADER_SIZE:
        out.append("an rx buffer with room for the header only")
    if not ctx.tx and chain.total - HEADER_SIZE > case.max_data_size:
        out.append("rx buffers longer than the header plus max_data_size")
    if any(mem.slices(d.addr, d.len) is None for d in used):
        out.append("a buffer running out of guest memory past the bytes the packet uses")
    if ctx.tx and len(used) > 1 and used[0].len > HEADER_SIZE:
        out.append("payload in the head descriptor and more descriptors after it")
    if any(d.writable == ctx.tx for d in used):
        out.append(f"{'writable' if ctx.tx else 'readable'} descriptors after the packet")
    at = case.ring.desc_table + DESC_SIZE * case.ring.head
    if DESC_STRUCT.unpack(mem.read(at, DESC_SIZE))[2] & F_INDIRECT:
        out.append("indirect table")
    return out


@oracle("conformance.malformed-accepted", "warning",
        "2.7.13.1 / 2.7.5.3.1: loops, bad indexes and bad indirect tables are driver errors; noted, not unsafe")
def malformed_accepted(ctx: _Context) -> None:
    if not ctx.answer.ok or (ctx.model is not None and ctx.profile == "spec" and ctx.model.ok):
        return  # the spec model walks the whole chain: had it been malformed, it would have refused
    e = ctx.chain.queue_error or ctx.chain.error
    if e is not None:
        ctx.emit(f"the target accepted a chain the spec forbids ({e.name}: {e.detail}); a device that "
                 f"stops reading early never sees the fault, but the driver broke a MUST", e.name)


# --- differential, determinism --------------------------------------------------------

@oracle("differential.model", "warning", "agreement with the reference model under the chosen profile")
def differential(ctx: _Context, strict: bool = False) -> None:
    ans, model = ctx.answer, ctx.model
    if ans.ok == model.ok and (not ans.ok or ans == model):
        return  # both reject (under whatever names), or the same answer
    sev = "error" if strict else None
    who = f"the model ({ctx.profile})"
    if ans.ok and not model.ok:
        ctx.emit(f"the target accepts a chain {who} rejects with {model.error}: {model.detail}",
                 f"accepts-rejected {model.error}", severity=sev)
    elif not ans.ok and model.ok:
        ctx.emit(f"the target rejects with {ans.error} ({ans.detail}) a chain {who} accepts",
                 f"rejects-accepted {ans.error}", severity=sev)
    elif ans.ok:
        if ctx.tx and ans.header != model.header:
            ctx.emit(f"the target decoded header {ans.header} but {who} decoded {model.header}",
                     "different-header", severity=sev)
        if ans.header_slices == model.header_slices and ans.data_slices == model.data_slices:
            return
        if not same_bytes(ans.header_slices, model.header_slices) or not same_bytes(ans.data_slices, model.data_slices):
            mem = ctx.mem
            got = (normalise(mem, ans.header_slices), normalise(mem, ans.data_slices))
            want = (normalise(mem, model.header_slices), normalise(mem, model.data_slices))
            ctx.emit(f"the target reports header_slices {list(got[0])}, data_slices {list(got[1])}; "
                     f"{who} reports {list(want[0])}, {list(want[1])}", "different-slices", severity=sev)


@oracle("determinism.repeat", "error", "the same bytes give the same answer (no state leaks between packets)")
def determinism(ctx: _Context, repeat: Answer) -> None:
    a, b = ctx.answer, repeat
    if (a.ok, a.error, a.header, a.header_slices, a.data_slices) != (b.ok, b.error, b.header, b.header_slices, b.data_slices):
        first = "accepted" if a.ok else f"rejected with {a.error}"
        second = "accepted" if b.ok else f"rejected with {b.error}"
        what = f"first {first}, then {second}" if (a.ok, a.error) != (b.ok, b.error) else "different slices or header"
        ctx.emit(f"the same case answered twice gave two answers: {what}", f"{a.ok}/{b.ok}", answer=b)


# Oracles that read an accepted answer; those that read a rejected one.
_ON_ACCEPT = (slice_in_memory, slice_in_region, slice_in_chain, direction, header_size, header_bytes,
              data_len, max_data_size, slice_overlap, stream_order, stream_gap, linux_slices, malformed_accepted)
_ON_REJECT = (linux_rejected, valid_rejected)


def check(case: Case, answer: Answer, *, model: Answer | None = None, repeat: Answer | None = None,
          profile: str = "spec", strict: bool = False) -> list[Finding]:
    """Every oracle on one answer. `model`: the model's answer (differential);
    `repeat`: a second answer to the same case (determinism)."""
    out: list[Finding] = []
    ctx = _Context(case, answer, out, profile, model)
    if answer.faulted:
        ctx.run(no_crash)
        ctx.run(no_hang)
    else:
        if answer.ok:
            for func in _ON_ACCEPT:
                ctx.current = func.oracle
                func(ctx)
        elif ctx.spec_answer().ok:
            # A chain the spec model rejects is neither a Linux layout nor spec-valid.
            for func in _ON_REJECT:
                ctx.run(func)
        if model is not None and not model.faulted:
            ctx.run(differential, strict)
    if repeat is not None:
        if repeat.faulted and not answer.faulted:
            rctx = _Context(case, repeat, out, profile, model)
            rctx.run(no_crash)
            rctx.run(no_hang)
        ctx.run(determinism, repeat)
    return out


def target_spec(target) -> str:
    """The spec that opens `target` again (for reproduce commands)."""
    argv = getattr(target, "argv", None)
    return "cmd:" + shlex.join(argv) if argv else getattr(target, "name", "TARGET")


def evaluate(target, case: Case, *, profile: str = "spec", strict: bool = False,
             determinism: bool = True) -> tuple[Answer, list[Finding]]:
    """Run the target (twice when `determinism`, but for the reference) and the model on `case`, then `check`."""
    answer = target.parse(case)
    # The reference model keeps no state between cases (packet.parse is a pure function of the
    # case; tests hold it to that): asking it twice cannot differ. Any other target is asked twice.
    model_target = isinstance(target, ModelTarget)
    repeat = target.parse(case) if determinism and not model_target and not answer.faulted else None
    # The reference target under the same profile is the model: its answer is the model's
    # (parse is pure), which saves a third of the fuzz loop's parsing.
    model = answer if model_target and target.profile == profile else parse(case, profile)
    findings = check(case, answer, model=model, repeat=repeat, profile=profile, strict=strict)
    if findings:
        spec = target_spec(target)
        findings = [replace(f, target=spec) for f in findings]
    return answer, findings


def worst(findings) -> str | None:
    """The highest severity among `findings`, or None."""
    return max((f.severity for f in findings), key=SEVERITY_ORDER.__getitem__, default=None)
