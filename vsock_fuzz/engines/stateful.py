"""A queue over many chains: a driver and a device sharing a split virtqueue in guest
memory, and the Hypothesis state machine that drives them against a target.

The driver publishes chains through a real available ring (its index wraps
past 65535), keeps several in flight, and reuses descriptors once the used
ring returns them. The device pops from the available ring, hands each chain
to the target as a protocol v1 case (the guest memory as it is at that
moment), checks the answer with the oracles, and writes the used entry.

Invariants (issue 3): every published chain is consumed exactly once; the
device never has more than the queue size to pop (virtio-queue 0.6.1: an
available index running past the queue made a device loop over old chains),
the model's walk of each popped chain stays within it, and a target whose own
walk does not is caught by the hang oracle; the used ring matches what was
consumed; every
answer passes the oracles; the same bytes give the same answer whatever came
before (no state leaks between packets).
"""

from __future__ import annotations

import struct

from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ..case.value import Case, Region, Ring, Write, avail_ring_writes
from ..case.wire import DESC_SIZE, F_NEXT, F_WRITE, pack_descriptor
from ..model.chain import ChainError, walk
from ..case.wire import HEADER_SIZE, MAX_PKT_BUF_SIZE, Header
from ..case.layout import scatter
from ..model.memory import GuestMemory
from ..oracles import SEVERITY_ORDER, check
from ..model.packet import parse

SLOT = 512  # bytes of buffer owned by each descriptor index (reused with it)


class SplitQueue:
    """One split virtqueue (spec 2.7) in one flat memory region, seen by both sides."""

    def __init__(self, size: int, queue: str = "tx", start: int = 0):
        self.size = size
        self.queue = queue
        self.desc_table = 0
        self.avail = DESC_SIZE * size
        self.used = (self.avail + 6 + 2 * size + 3) & ~3
        self.data = (self.used + 6 + 8 * size + 4095) & ~4095
        self.region = Region(0, self.data + SLOT * size)
        self.ram = bytearray(self.region.size)
        self._u16(self.avail + 2, start)
        self._u16(self.used + 2, start)

    def _u16(self, at: int, value: int | None = None) -> int:
        if value is not None:
            struct.pack_into("<H", self.ram, at, value & 0xFFFF)
        return struct.unpack_from("<H", self.ram, at)[0]

    # driver side
    def write_desc(self, i: int, addr: int, length: int, flags: int, nxt: int) -> None:
        at = self.desc_table + DESC_SIZE * i
        self.ram[at:at + DESC_SIZE] = pack_descriptor(addr, length, flags, nxt)

    def publish(self, head: int) -> None:
        idx = self.avail_idx
        self._u16(self.avail + 4 + 2 * (idx % self.size), head)
        self._u16(self.avail + 2, idx + 1)  # 2.7.13: the index wraps at 2^16, not at the size

    @property
    def avail_idx(self) -> int:
        return self._u16(self.avail + 2)

    @property
    def used_idx(self) -> int:
        return self._u16(self.used + 2)

    def used_entry(self, idx: int) -> tuple[int, int]:
        return struct.unpack_from("<II", self.ram, self.used + 4 + 8 * (idx % self.size))

    # device side
    def push_used(self, head: int, written: int) -> None:
        idx = self.used_idx
        struct.pack_into("<II", self.ram, self.used + 4 + 8 * (idx % self.size), head, written)
        self._u16(self.used + 2, idx + 1)

    def case(self, head: int, max_data_size: int = MAX_PKT_BUF_SIZE) -> Case:
        """The chain at `head` as a parse request: guest memory as it is now, and the
        available ring as the protocol says the harness writes it."""
        ring = Ring(self.size, self.desc_table, self.avail, self.used, head)
        writes = (Write(0, bytes(self.ram)),) + tuple(avail_ring_writes((self.region,), ring))
        return Case(self.queue, max_data_size, (self.region,), writes, ring)


class Device:
    """Pops chains from the available ring and has the target parse them."""

    def __init__(self, q: SplitQueue, start: int):
        self.q = q
        self.last_avail = start
        self.popped = 0

    def pending(self) -> int:
        return (self.q.avail_idx - self.last_avail) & 0xFFFF

    def pop(self) -> int:
        # virtio-queue 0.6.1: more pending entries than the queue holds is a broken driver.
        assert self.pending() <= self.q.size, f"{self.pending()} entries pending on a queue of {self.q.size}"
        head = self.q._u16(self.q.avail + 4 + 2 * (self.last_avail % self.q.size))
        self.last_avail = (self.last_avail + 1) & 0xFFFF
        self.popped += 1
        return head


class QueueMachine(RuleBasedStateMachine):
    """Driver and device over one queue; subclass and set `target` (or override
    `make_target` for a fresh device per run, as a stateful target needs), and `queue`."""

    target = None           # a Target: .parse(case) -> Answer
    queue = "tx"
    profile = "spec"
    fail_on = "error"       # findings at or above this severity break the run

    def __init__(self):
        super().__init__()
        self.q = None
        self.target = self.make_target()

    def make_target(self):
        return type(self).target

    @initialize(size=st.sampled_from((1, 2, 4, 8)), start=st.sampled_from((0, 1, 65533, 65535)))
    def setup(self, size, start):
        self.q = SplitQueue(size, self.queue, start)
        self.device = Device(self.q, start)
        self.free = list(range(size))
        self.in_flight: dict[int, list[int]] = {}   # head -> its descriptors
        self.published = 0
        self.consumed = 0
        self.last_used = start
        self.seen: dict[Case, object] = {}          # case -> first answer
        self.history: list[Case] = []

    # -- driver ---------------------------------------------------------------------

    @precondition(lambda self: self.q is not None and self.free)
    @rule(data=st.data())
    def publish(self, data):
        n = data.draw(st.integers(1, len(self.free)), label="descriptors")
        rx = self.queue == "rx"
        lens = data.draw(st.lists(st.integers(1, SLOT), min_size=n, max_size=n), label="lengths")
        if sum(lens) < HEADER_SIZE:
            lens[-1] = SLOT
        loop = data.draw(st.integers(0, 9), label="loop") == 0  # now and then a chain a driver must not write
        flip = data.draw(st.integers(0, 9 * n), label="flip")  # and now and then a buffer of the wrong direction
        descs = [self.free.pop(data.draw(st.integers(0, len(self.free) - 1), label="pick")) for _ in range(n)]
        q = self.q
        for k, (i, length) in enumerate(zip(descs, lens)):
            last = k == n - 1
            nxt = descs[0] if last and loop else (0 if last else descs[k + 1])
            flags = (F_WRITE if rx != (k == flip) else 0) | (F_NEXT if not last or loop else 0)
            q.write_desc(i, q.data + SLOT * i, length, flags, nxt)
        if not rx:
            payload = data.draw(st.integers(0, sum(lens) - HEADER_SIZE), label="payload")
            for addr, chunk in scatter(Header(len=payload).pack(), [(q.data + SLOT * i, m) for i, m in zip(descs, lens)]):
                q.ram[addr:addr + len(chunk)] = chunk
        q.publish(descs[0])
        self.in_flight[descs[0]] = descs
        self.published += 1

    @precondition(lambda self: self.q is not None and self.q.used_idx != self.last_used)
    @rule()
    def reclaim(self):
        """The driver takes back what the used ring returned and frees the descriptors."""
        while self.last_used != self.q.used_idx:
            head, _ = self.q.used_entry(self.last_used)
            assert head in self.in_flight, f"used entry {head} is no chain in flight (consumed twice?)"
            self.free.extend(self.in_flight.pop(head))
            self.last_used = (self.last_used + 1) & 0xFFFF

    # -- device ---------------------------------------------------------------------

    @precondition(lambda self: self.q is not None and self.device.pending())
    @rule()
    def pop(self):
        head = self.device.pop()
        case = self.q.case(head)
        chain = []
        try:
            for d in walk(GuestMemory(case.regions, case.writes), case.ring.desc_table, case.ring.size, head):
                chain.append(d)
        except ChainError:
            pass  # a chain the driver must not write (the loop rule): the target must refuse it
        assert len(chain) <= self.q.size, "a chain walk went past the queue size"
        answer = self.target.parse(case)
        bad = [f for f in check(case, answer, model=parse(case, self.profile), profile=self.profile)
               if SEVERITY_ORDER[f.severity] >= SEVERITY_ORDER[self.fail_on]]
        assert not bad, "\n".join(f"{f.oracle}: {f.message}" for f in bad)
        self._remember(case, answer)
        written = HEADER_SIZE + sum(n for _, n in answer.data_slices) if answer.ok and self.queue == "rx" else 0
        self.q.push_used(head, written)
        self.consumed += 1

    @precondition(lambda self: self.q is not None and self.history)
    @rule(data=st.data())
    def replay(self, data):
        """An earlier chain's bytes, asked again now: the answer must not have changed."""
        case = data.draw(st.sampled_from(self.history), label="earlier case")
        self._remember(case, self.target.parse(case))

    def _remember(self, case, answer):
        first = self.seen.setdefault(case, answer)
        assert answer == first, f"the same case answered {first} before and {answer} now (state leak)"
        if len(self.history) < 64:
            self.history.append(case)

    # -- invariants -------------------------------------------------------------------

    @invariant()
    def every_chain_consumed_once(self):
        if self.q is None:
            return
        assert self.consumed == self.device.popped <= self.published
        assert self.published - self.consumed == self.device.pending()
        assert sorted(self.free + [i for d in self.in_flight.values() for i in d]) == list(range(self.q.size))

    @invariant()
    def used_ring_matches(self):
        if self.q is None:
            return
        q = self.q
        # Both indexes wrap at 2^16 and count chains: published minus consumed is what is pending.
        assert (q.avail_idx - q.used_idx) & 0xFFFF == self.device.pending() <= q.size
        unread = (q.used_idx - self.last_used) & 0xFFFF
        heads = [q.used_entry(self.last_used + k)[0] for k in range(unread)]
        assert len(set(heads)) == len(heads) and set(heads) <= set(self.in_flight)
        assert len(self.in_flight) == unread + self.device.pending()
