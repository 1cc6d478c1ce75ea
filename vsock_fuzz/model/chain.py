"""The split-virtqueue descriptor chain walk (virtio spec 2.7).

`walk` yields the buffers of one chain in order, expanding an indirect table
in place, and raises `ChainError` at the first rule the chain breaks. It is
lazy so a profile that only needs the first descriptors (rust-vmm) sees
exactly what such a device sees; the spec profile walks to the end.

virtio-queue's `DescriptorChain::next` (chain.rs) applies the same rules in
the same places and returns `None` where this raises: `ttl == 0 ||
next_index >= queue_size` before each read, an unreadable descriptor, a
nested indirect table, a table length not a multiple of 16 or over
u16::MAX entries (a zero length gives an empty table: `None` too), and
`yielded_bytes.checked_add(len)` overflowing u32 before the descriptor is
yielded. It ignores NEXT on an indirect descriptor (walks the table, then
ends) and never checks the table's alignment (since virtio-queue 0.7.1).
"""

from __future__ import annotations

from bisect import bisect_right
from itertools import accumulate, cycle, islice
from operator import attrgetter
from typing import Iterator, NamedTuple

from ..case.wire import DESC_SIZE, DESC_STRUCT, F_INDIRECT, F_NEXT, F_WRITE
from .memory import GuestMemory, MemoryFault

_LEN = attrgetter("len")

MAX_QUEUE_SIZE = 32768
# virtio-queue caps an indirect table at u16::MAX entries.
MAX_INDIRECT_ENTRIES = 0xFFFF
# 2.7.13.1 (driver): a chain is at most 2^32 bytes in total.
SPEC_MAX_CHAIN_BYTES = 1 << 32


class Descriptor(NamedTuple):
    addr: int
    len: int
    flags: int
    next: int

    @property
    def writable(self) -> bool:
        return bool(self.flags & F_WRITE)

    @property
    def has_next(self) -> bool:
        return bool(self.flags & F_NEXT)


class ChainError(Exception):
    """A chain broke a rule; `name` is the model's error name, `kind` its class."""

    def __init__(self, name: str, kind: str, detail: str):
        super().__init__(detail)
        self.name = name
        self.kind = kind
        self.detail = detail


def check_queue(mem: GuestMemory, ring) -> None:
    """Queue configuration a device validates before it pops anything."""
    size = ring.size
    # 2.7: queue size is a power of 2, at most 32768; 0 is not a queue
    # (virtio-queue #173 divided by it).
    if size == 0 or size > MAX_QUEUE_SIZE or size & (size - 1):
        raise ChainError("InvalidQueueSize", "queue", f"queue size {size} is not a power of 2 in 1..32768")
    # 2.7.2: descriptor table 16-aligned, available ring 2-aligned, used ring 4-aligned.
    for name, addr, align, length in (
        ("descriptor table", ring.desc_table, 16, DESC_SIZE * size),
        ("available ring", ring.avail, 2, 6 + 2 * size),
        ("used ring", ring.used, 4, 6 + 8 * size),
    ):
        if addr % align:
            raise ChainError("MisalignedRing", "queue", f"{name} at {addr:#x} is not {align}-aligned")
        if mem.slices(addr, length) is None:  # length > 0: the size is
            raise ChainError("RingOutOfMemory", "queue", f"{name} [{addr:#x}, +{length:#x}) is not inside guest memory")
    # The available ring names the head; an index past the table is no chain.
    if ring.head >= size:
        raise ChainError("InvalidHead", "queue", f"head index {ring.head} >= queue size {size}")


def walk(mem: GuestMemory, desc_table: int, size: int, head: int, *,
         max_chain_bytes: int = SPEC_MAX_CHAIN_BYTES,
         reject_indirect_next: bool = True, tables: bool = True, met: list | None = None) -> Iterator[Descriptor]:
    """Yield the buffer descriptors of the chain starting at `head`.

    `tables=False` walks as a device that never offered VIRTIO_F_INDIRECT_DESC and
    ignores the flag: a descriptor with INDIRECT is a plain buffer (docs/protocol.md).
    `met`, if given, gets the index of every INDIRECT descriptor the walk follows.

    `mem` must not change while the walk runs (the model only reads): a loop is
    replayed from the descriptors it already read."""
    unpack = DESC_STRUCT.unpack
    table, table_size, index = desc_table, size, head
    # 2.7.13.1: a chain is no longer than the queue size; bounds loops. `next` is
    # a le16, so past 2^16 steps a walk of an invalid, larger queue repeats itself.
    ttl = min(size, 1 << 16)
    indirect = False
    total = 0
    steps: list[Descriptor] = []  # this table's descriptors in walk order
    where: list[int] = []         # and their addresses
    seen: dict[int, int] = {}     # address -> its place in steps
    while True:
        if index >= table_size:
            raise ChainError("DescriptorIndexOutOfRange", "chain",
                             f"next index {index} >= {'indirect table' if indirect else 'queue'} size {table_size}")
        if ttl == 0:
            raise _too_long(indirect, table_size)
        ttl -= 1
        at = table + DESC_SIZE * index
        if at in seen:
            # A loop: the same bytes lead the same way, so the rest of the walk is steps[i:] over
            # and over for the ttl's steps, unless the byte bound ends it first. Computed at once
            # (a loop is the queue size in steps, more than a fuzz case's whole parse); the
            # reads are logged as the step-by-step walk makes them, here all before the yields.
            i, n = seen[at], ttl + 1
            rest = list(islice(cycle(steps[i:]), n))
            within = bisect_right(list(accumulate(map(_LEN, rest), initial=total))[1:], max_chain_bytes)
            mem.log.extend(islice(cycle([("r", a, DESC_SIZE) for a in where[i:]]), min(within + 1, n)))
            yield from rest[:within]
            raise _too_large(max_chain_bytes) if within < n else _too_long(indirect, table_size)
        try:
            desc = Descriptor._make(unpack(mem.read(at, DESC_SIZE)))
        except MemoryFault:
            raise ChainError("DescriptorUnreadable", "memory", f"descriptor {index} at {at:#x} is not inside guest memory") from None
        if desc.flags & F_INDIRECT and tables:
            if met is not None:
                met.append(index)
            # 2.7.5.3.1: one level only.
            if indirect:
                raise ChainError("NestedIndirect", "chain", f"descriptor {index} sets INDIRECT inside an indirect table")
            # 2.7.5.3.1: the driver MUST NOT set INDIRECT and NEXT together.
            if reject_indirect_next and desc.flags & F_NEXT:
                raise ChainError("IndirectWithNext", "chain", f"descriptor {index} sets both INDIRECT and NEXT")
            # The table is len/16 descriptors; virtio-queue rejects other lengths.
            if desc.len == 0 or desc.len % DESC_SIZE or desc.len // DESC_SIZE > MAX_INDIRECT_ENTRIES:
                raise ChainError("InvalidIndirectTable", "chain",
                                 f"indirect table length {desc.len} is not a non-zero multiple of 16 up to {MAX_INDIRECT_ENTRIES} entries")
            # 2.7.5.3.2: WRITE on the table descriptor is ignored.
            table, table_size, index = desc.addr, desc.len // DESC_SIZE, 0
            ttl = table_size
            indirect = True
            steps, where, seen = [], [], {}  # indexes now count in the table
            continue
        total += desc.len
        if total > max_chain_bytes:
            raise _too_large(max_chain_bytes)
        yield desc
        if not desc.flags & F_NEXT:
            return
        seen[at] = len(steps)
        steps.append(desc)
        where.append(at)
        index = desc.next


def _too_long(indirect: bool, table_size: int) -> ChainError:
    return ChainError("ChainTooLong", "chain",
                      f"chain longer than {'its indirect table' if indirect else 'the queue size'} {table_size} (a loop?)")


def _too_large(max_chain_bytes: int) -> ChainError:
    return ChainError("ChainTooLarge", "length", f"chain holds more than {max_chain_bytes} bytes")


class Walked:
    """One case's guest memory, queue check and whole chain under the spec's rules, each
    computed once. `walked(case)` keeps the last case's: the model (under one profile or two)
    and the oracles look at the same chain, so the walk is done once."""

    __slots__ = ("case", "mem", "tables", "_queue_error", "_chain", "parsed", "met_indirect")

    def __init__(self, case, tables: bool = True, mem: GuestMemory | None = None):
        self.case = case
        self.mem = GuestMemory(case.regions, case.writes) if mem is None else mem
        self.tables = tables  # False: INDIRECT descriptors read as plain buffers (walk's `tables`)
        self._queue_error = self._chain = None
        self.parsed: dict = {}  # packet._parse's answers on this chain, by (profile, device)
        self.met_indirect = False  # the walk met an INDIRECT descriptor (walk's `met`)

    @property
    def queue_error(self) -> ChainError | None:
        """The first rule the queue set-up breaks (size, alignment, rings in memory, head)."""
        if self._queue_error is None:
            try:
                check_queue(self.mem, self.case.ring)
                self._queue_error = False
            except ChainError as e:
                self._queue_error = e
        return self._queue_error or None

    @property
    def chain(self) -> tuple[tuple[Descriptor, ...], ChainError | None]:
        """The buffers up to the first rule the chain breaks, and that rule (None: the whole
        chain is well-formed). The available ring holds the head as a le16
        (docs/protocol.md), so the walk starts at head mod 2^16, as a device that pops it."""
        if self._chain is None:
            ring = self.case.ring
            descs: list[Descriptor] = []
            try:
                # extend keeps what the walk yielded before it raised (CPython's list.extend
                # adds each item as it comes), and takes a loop's replay at C speed.
                met: list = []
                descs.extend(walk(self.mem, ring.desc_table, ring.size, ring.head & 0xFFFF, tables=self.tables,
                                  met=met))
                self._chain = tuple(descs), None
            except ChainError as e:
                self._chain = tuple(descs), e
            self.met_indirect = bool(met)
        return self._chain


_last: Walked | None = None
_last_plain: Walked | None = None


def walked(case) -> Walked:
    """The `Walked` of `case`, shared while the same case object is asked for again."""
    global _last
    if _last is None or _last.case is not case:
        _last = Walked(case)
    return _last


def walked_plain(case, mem: GuestMemory | None = None) -> Walked:
    """`walked` for a device that ignores INDIRECT (a reading only some cases need); `mem`
    may be the followed walk's memory (the model only reads it)."""
    global _last_plain
    if _last_plain is None or _last_plain.case is not case:
        _last_plain = Walked(case, tables=False, mem=mem)
    return _last_plain
