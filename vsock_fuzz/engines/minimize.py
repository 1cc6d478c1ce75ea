"""Shrink a failing case while it still fails: the one shrinker the CLI and the engines share.

`shrink(case, fails)` returns a case no larger than `case` for which
`fails(case)` still holds; `fails` is any predicate (usually
`fires(target, oracle)`: "the same oracle still fires"). Passes, repeated
until none makes progress or the call budget is spent:

  1. drop writes (halves, quarters, ... single writes);
  2. drop regions (the writes inside them go too);
  3. trim zero bytes off both ends of each write (memory reads zero anyway);
  4. shrink region sizes (to the smallest that still fails);
  5. shrink descriptor lengths and clear descriptor flags, for the entries
     of the descriptor table and of any indirect table it names;
  6. zero runs of bytes inside writes;
  7. delete runs of bytes of the binary form after its ring fields
     (accepted only when the decoded case encodes shorter).

max_data_size and the ring's fields are never changed: a reproducer keeps
the values its layout had, which reads better than the smallest that fails.

Every candidate is a valid case (writes stay inside memory), so a target
sees nothing a request could not hold. The budget bounds the predicate
calls: a `cmd:` target answers in milliseconds, so the default stays under
a few seconds for the reference and under a minute for a slow program.
"""

from __future__ import annotations

import time
from typing import Callable

from ..case.binary import decode, encode, varint
from ..case.value import Case, Write, avail_ring_writes, clip
from ..case.wire import DESC_SIZE, DESC_STRUCT, F_INDIRECT
from ..model.memory import GuestMemory

DEFAULT_BUDGET = 4000
MAX_TABLE = 256  # descriptor entries looked at per table
MAX_BINARY = 4096  # bytes: past this the binary-form pass costs more than it gains


class _Spent(Exception):
    pass


class _Search:
    """The state of one shrink: the best case so far, the calls left, and `test`, the one
    way a pass tries a candidate (each distinct candidate asked once)."""

    def __init__(self, case: Case, fails, budget: int, deadline: float | None):
        self.best = case
        self.size = len(encode(case))
        self.fails = fails
        self.calls = 0
        self.budget = budget
        self.deadline = deadline
        self.seen: dict[bytes, bool] = {}

    def charge(self) -> None:
        if self.calls >= self.budget or (self.deadline is not None and time.monotonic() > self.deadline):
            raise _Spent
        self.calls += 1

    def body(self) -> tuple[Write, ...]:
        return _body(self.best)

    def with_body(self, body, regions=None) -> Case:
        regions = self.best.regions if regions is None else regions
        body = _clip_all(regions, body)
        return self.best._replace(regions=regions, writes=body + tuple(avail_ring_writes(regions, self.best.ring)))

    def test(self, cand: Case) -> bool:
        """Adopt `cand` if it still fails."""
        key = encode(cand)
        if key not in self.seen:
            self.charge()
            self.seen[key] = bool(self.fails(cand))
        if self.seen[key] and cand != self.best:
            self.best = cand
            self.size = len(key)
            return True
        return False

    def _least(self, value: int, lo: int, make: Callable[[int], Case]) -> None:
        """Binary search for the least value in [lo, value] whose case still fails."""
        hi = value
        while lo < hi:
            mid = (lo + hi) // 2
            if self.test(make(mid)):
                hi = mid
            else:
                lo = mid + 1


class _ShapePasses:
    """Passes 1-4, on the case's shape: fewer writes and regions, shorter writes, smaller regions."""

    def drop_writes(self) -> None:
        self._drop_chunks(self.body, self.with_body)

    def drop_regions(self) -> None:
        self._drop_chunks(lambda: self.best.regions, lambda regions: self.with_body(self.body(), regions))

    def _drop_chunks(self, get, put) -> None:
        chunk = max(len(get()) // 2, 1)
        while chunk >= 1 and get():
            i = 0
            while i < len(get()):
                items = get()
                if not self.test(put(items[:i] + items[i + chunk:])):
                    i += chunk
            chunk //= 2

    def trim_writes(self) -> None:
        ws = []
        for w in self.body():
            data = w.data.rstrip(b"\0")
            lead = len(data) - len(data.lstrip(b"\0"))
            if data[lead:]:
                ws.append(Write(w.gpa + lead, data[lead:]))
        self.test(self.with_body(tuple(ws)))

    def shrink_regions(self) -> None:
        for i in range(len(self.best.regions)):
            def with_size(size: int, i=i) -> Case:
                regions = self.best.regions
                return self.with_body(self.body(), regions[:i] + (regions[i]._replace(size=size),) + regions[i + 1:])
            self._least(self.best.regions[i].size, 1, with_size)


class _BytePasses:
    """Passes 5-7, on the bytes written: descriptor lengths and flags, zeroed runs, and runs
    deleted from the binary form."""

    def shrink_descriptors(self) -> None:
        for gpa in _descriptor_addresses(self.best):
            def patched(field: int, value: int) -> Case:
                vals = list(_read_desc(self.best, gpa))
                vals[field] = value
                return self.with_body(_patch(self.body(), gpa, DESC_STRUCT.pack(*vals)))
            _, length, flags, _ = _read_desc(self.best, gpa)
            if length:
                self._least(length, 0, lambda v: patched(1, v))
            for bit in (1 << b for b in range(16)):
                if flags & bit:
                    self.test(patched(2, _read_desc(self.best, gpa)[2] & ~bit))

    def zero_bytes(self) -> None:
        # Descriptor addresses are left alone: zeroed, they put buffers on top of
        # the descriptor table, which shrinks nothing and misleads the reader.
        keep = [(at, at + 8) for at in _descriptor_addresses(self.best)]
        for i in range(len(self.body())):
            chunk = max(len(self.body()[i].data) // 2, 1)
            while chunk >= 1:
                for off in range(0, len(self.body()[i].data), chunk):
                    w = self.body()[i]
                    part = w.data[off:off + chunk]
                    lo, hi = w.gpa + off, w.gpa + off + len(part)
                    if part.count(0) == len(part) or any(s < hi and lo < e for s, e in keep):
                        continue
                    data = w.data[:off] + bytes(len(part)) + w.data[off + chunk:]
                    self.test(self.with_body(_replace_at(self.body(), i, Write(w.gpa, data))))
                chunk //= 2

    def delete_binary(self) -> None:
        raw = encode(self.best)
        if len(raw) > MAX_BINARY:
            return
        # Keep the version and mode bytes, max_data_size and the ring: a reproducer
        # reads better with the layout's own values (65536, a ring at its place).
        c, r = self.best, self.best.ring
        start = 2 + sum(len(varint(v)) for v in (c.max_data_size, r.size, r.desc_table, r.avail, r.used, r.head))
        chunk = max((len(raw) - start) // 2, 1)
        while chunk >= 1:
            i = start
            while i < len(raw):
                cand = decode(raw[:i] + raw[i + chunk:])
                if len(encode(cand)) >= self.size:
                    self.charge()  # decoding is not free: count it against the budget
                    i += chunk
                elif self.test(cand):
                    raw = encode(self.best)
                else:
                    i += chunk
            chunk //= 2


class _Shrinker(_ShapePasses, _BytePasses, _Search):
    """Passes edit the case's own writes (its "body"); the available ring write
    the protocol puts last is recomputed for every candidate, never shrunk."""


def shrink(case: Case, fails: Callable[[Case], bool], *, budget: int = DEFAULT_BUDGET,
           timeout: float | None = None) -> Case:
    """The smallest case found for which `fails` holds (`case` itself if none is smaller).

    `fails(case)` is assumed true; it is called at most `budget` times and,
    with `timeout`, not after that many seconds.
    """
    s = _Shrinker(case, fails, budget, None if timeout is None else time.monotonic() + timeout)
    passes = (s.drop_writes, s.drop_regions, s.trim_writes, s.shrink_regions,
              s.shrink_descriptors, s.zero_bytes, s.delete_binary)
    try:
        for _ in range(20):
            before = s.best
            for p in passes:
                p()
            if s.best == before:
                break
    except _Spent:
        pass
    return s.best


def fires(target, oracle: str, *, profile: str = "spec", strict: bool = False,
          key: str | None = None) -> Callable[[Case], bool]:
    """A predicate: does `oracle` still fire for the target's answer to a case? With `key`, the
    finding of that key (Finding.key: the same queue, signature and cause), so that a root
    cause's reproducer does not shrink into a case where it is another bug's consequence.

    Faults are expected while shrinking a crash (every candidate may crash), so
    the target's back-off is reset after each candidate: no sleeping between
    them, and only restarts that fail in a row count towards max_restarts.
    """
    from ..oracles import evaluate
    determinism = oracle.startswith("determinism")

    def fails(case: Case) -> bool:
        try:
            _, findings = evaluate(target, case, profile=profile, strict=strict, determinism=determinism)
        finally:
            target.reset_backoff()
        return any(f.oracle == oracle and (key is None or f.key() == key) for f in findings)
    return fails


# --- helpers over the case -------------------------------------------------------

def _clip_all(regions, writes) -> tuple[Write, ...]:
    return tuple(piece for w in writes for piece in clip(regions, w.gpa, w.data))


def _replace_at(items: tuple, i: int, item) -> tuple:
    return items[:i] + (item,) + items[i + 1:]


def _read_desc(case: Case, gpa: int):
    return DESC_STRUCT.unpack(GuestMemory(case.regions, case.writes).read(gpa, DESC_SIZE))


def _body(case: Case) -> tuple[Write, ...]:
    """The case's writes without the available ring write that ends them."""
    tail = tuple(avail_ring_writes(case.regions, case.ring))
    if tail and case.writes[-len(tail):] == tail:
        return case.writes[:-len(tail)]
    return case.writes


def _patch(writes: tuple[Write, ...], gpa: int, data: bytes) -> tuple[Write, ...]:
    """`writes` with `data` at `gpa`: edited inside the write that holds it, else added last."""
    for i, w in enumerate(writes):
        off = gpa - w.gpa
        if 0 <= off and off + len(data) <= len(w.data):
            return _replace_at(writes, i, Write(w.gpa, w.data[:off] + data + w.data[off + len(data):]))
    return writes + (Write(gpa, data),)


def _written(case: Case, gpa: int, n: int) -> bool:
    return any(w.gpa < gpa + n and gpa < w.gpa + len(w.data) for w in case.writes)


def _descriptor_addresses(case: Case) -> list[int]:
    """Guest addresses of the written descriptor entries: the queue's table, then indirect tables."""
    mem = GuestMemory(case.regions, case.writes)
    out = []
    tables = [(case.ring.desc_table, min(case.ring.size, MAX_TABLE))]
    seen = set()
    while tables:
        base, count = tables.pop(0)
        for i in range(count):
            at = base + DESC_SIZE * i
            if at in seen or not _written(case, at, DESC_SIZE) or not mem.contains(at, DESC_SIZE):
                continue
            seen.add(at)
            out.append(at)
            addr, length, flags, _ = DESC_STRUCT.unpack(mem.read(at, DESC_SIZE))
            if flags & F_INDIRECT and length >= DESC_SIZE:
                tables.append((addr, min(length // DESC_SIZE, MAX_TABLE)))
    return out

