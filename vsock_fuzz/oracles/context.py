"""What the oracles of one answer share: the case's walked chain, the answer's slices placed
against memory and chain, and the slice helpers they compare with.

Decisions where the issue is silent:
  - "The chain's buffers" are what a lenient walk reaches (`chain.walk`
    without the 2^32 bound and with INDIRECT+NEXT allowed), stopping at the
    first other chain error (loop, index out of range, nested or bad indirect
    table): a target that read past that point used memory no descriptor of
    this chain gave it, which is a safety finding. A target that accepts a
    malformed chain without using its broken part is only noted
    (conformance.malformed-accepted).
  - Slices are compared after normalisation: zero-length slices dropped,
    contiguous ones coalesced, then cut at region boundaries, so a target
    that merges adjacent pieces of one region is not flagged.
  - Data that follows the header in order but skips bytes of the chain (the
    rest of a head descriptor, as rust-vmm does when the head has NEXT) is a
    conformance warning (2.6.4: no assumptions on descriptor layout); data
    that goes backwards or out of order is a fidelity error. `_stream_faults`
    tells the two apart for both families.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import accumulate
from operator import attrgetter, itemgetter

from ..case.value import Case
from ..case.wire import F_INDIRECT, F_WRITE, HEADER_SIZE, Header
from ..model.answer import Answer
from ..model.chain import ChainError, Walked, walk, walked, walked_plain
from ..model.device import ASSUMED, Device
from ..model.memory import U64, GuestMemory, MemoryFault
from ..model.packet import Reading, parse
from .finding import Finding, Oracle

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

    def __init__(self, case: Case, answer: Answer, out: list, profile: str, model: Answer | None,
                 device: Device = ASSUMED, reading: Reading | None = None):
        self.case = case
        self.answer = answer
        self.out = out
        self.profile = profile
        self.model = model
        self.device = device
        self.tx = case.queue == "tx"
        self.current: Oracle | None = None
        # conformance.valid-rejected's layout traits, when the compiled core worked them out
        # (engines.percase); None: that oracle works them out.
        self.traits: list[str] | None = None
        # Computed on first use (UNSET until then; None is a result).
        self._spec = self._linux = UNSET
        if reading is not None:  # one of the answers the device's offer allows, and its walk
            self.walked = reading.walked
            if reading.spec is not None:
                self._spec = reading.spec

    def run(self, func, *args) -> None:
        """One oracle on this answer."""
        self.current = func.oracle
        func(self, *args)

    def emit(self, message: str, signature: str = "", *, severity: str | None = None,
             rule: str | None = None, answer: Answer | None = None, indirect: bool | None = None) -> None:
        o = self.current
        indirect = self.indirect if indirect is None else indirect
        self.out.append(Finding(o.name, o.family, severity or o.severity, rule or o.rule, message,
                                self.case, answer or self.answer, signature, indirect=indirect))

    # What several oracles read, computed once.

    @_shared
    def walked(self) -> Walked:
        """Memory and chain, shared with the model's parse of this case."""
        return walked(self.case)

    @_shared
    def indirect(self) -> bool:
        """Whether the chain sets INDIRECT anywhere (read as a device ignoring tables walks it):
        a bug of the indirect path and one of the direct path are two bugs."""
        w = self.walked
        if w.tables:
            w.chain  # noqa: B018  (walked, its INDIRECT descriptors noted)
            if not w.met_indirect:
                return False  # a walk that ignores the flag reads the very same descriptors
        return any(d.flags & F_INDIRECT for d in walked_plain(self.case, self.mem).chain[0])

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
        if self._spec is UNSET:
            if self.model is not None and self.profile == "spec":
                return self.model
            self._spec = parse(self.case, "spec", self.device)
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
                for d in walk(mem, ring.desc_table, ring.size, ring.head & 0xFFFF, max_chain_bytes=U64 << 32,
                              reject_indirect_next=False, tables=w.tables):
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
        # Disjoint buffers cover as many bytes as they hold; overlapping ones (a loop's buffer
        # taken twice among them) cover fewer. The union is slice-in-chain's, often made already.
        starts, ends = self._union(None)
        return sum(ends[1:]) - sum(starts[1:]) < self.total

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

