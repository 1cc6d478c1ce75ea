"""The case: one complete input, immutable, in the shape of a protocol v1 parse request.

JSON form: `case.to_request(id)` is the parse request of docs/protocol.md,
`Case.from_request(obj)` reads one back (raising `CaseError` on anything a
request may not hold). Binary form: see `binary.py`.
"""

from __future__ import annotations

import json
import struct
from typing import NamedTuple

U64 = 1 << 64
AVAIL_HEAD = struct.Struct("<HHH")  # le16 flags, le16 idx, le16 ring[0]
_dumps = json.JSONEncoder(separators=(",", ":")).encode  # one encoder, not one per call


class CaseError(ValueError):
    """A JSON object that is not a valid parse request; the message names the field."""


class Region(NamedTuple):
    gpa: int
    size: int

    @property
    def end(self) -> int:
        return self.gpa + self.size


class Write(NamedTuple):
    gpa: int
    data: bytes


class Ring(NamedTuple):
    size: int
    desc_table: int
    avail: int
    used: int
    head: int


class Case(NamedTuple):
    queue: str  # "tx" | "rx"
    max_data_size: int
    regions: tuple[Region, ...]
    writes: tuple[Write, ...]
    ring: Ring

    def to_request(self, id: int | None = None) -> dict:
        req = {} if id is None else {"id": id}
        req.update({
            "op": "parse",
            "queue": self.queue,
            "max_data_size": self.max_data_size,
            "memory": [{"gpa": r.gpa, "size": r.size} for r in self.regions],
            "writes": [{"gpa": w.gpa, "hex": w.data.hex()} for w in self.writes],
            "ring": {"size": self.ring.size, "desc_table": self.ring.desc_table,
                     "avail": self.ring.avail, "used": self.ring.used, "head": self.ring.head},
        })
        return req

    def line(self, id: int) -> bytes:
        """The protocol v1 parse request with `id`, as one line (the compiled core's cases too
        have `raw` and `line`, so a target sends either)."""
        return _dumps(self.to_request(id)).encode() + b"\n"

    @classmethod
    def from_request(cls, obj) -> "Case":
        if not isinstance(obj, dict):
            raise CaseError("a case is a JSON object")
        queue = obj.get("queue")
        if queue not in ("tx", "rx"):
            raise CaseError(f"queue must be \"tx\" or \"rx\", not {queue!r}")
        mds = _u64(obj, "max_data_size", "max_data_size")
        mem = obj.get("memory")
        if not isinstance(mem, list):
            raise CaseError("memory must be a list of regions")
        regions = tuple(Region(_u64(r, "gpa", f"memory[{i}].gpa"), _u64(r, "size", f"memory[{i}].size"))
                        for i, r in enumerate(mem))
        check_regions(regions)
        raw_writes = obj.get("writes", [])
        if not isinstance(raw_writes, list):
            raise CaseError("writes must be a list")
        writes = []
        for i, w in enumerate(raw_writes):
            gpa = _u64(w, "gpa", f"writes[{i}].gpa")
            hx = w.get("hex")
            try:
                data = bytes.fromhex(hx)
            except (TypeError, ValueError):
                raise CaseError(f"writes[{i}].hex is not a hex string") from None
            if not covered(regions, gpa, len(data)):
                raise CaseError(f"writes[{i}] [{gpa:#x}, +{len(data):#x}) does not lie inside memory")
            writes.append(Write(gpa, data))
        ring = obj.get("ring")
        if not isinstance(ring, dict):
            raise CaseError("ring must be an object")
        ring = Ring(*(_u64(ring, k, f"ring.{k}") for k in ("size", "desc_table", "avail", "used", "head")))
        return cls(queue, mds, regions, tuple(writes), ring)


def _u64(obj, key: str, where: str) -> int:
    if not isinstance(obj, dict):
        raise CaseError(f"{where.rsplit('.', 1)[0]} must be an object")
    v = obj.get(key)
    if type(v) is not int or not 0 <= v < U64:
        raise CaseError(f"{where} must be an integer in 0..2^64-1, not {v!r}")
    return v


def check_regions(regions) -> None:
    spans = sorted((r.gpa, r.end) for r in regions)
    for s, e in spans:
        if s == e:
            raise CaseError(f"memory region at {s:#x} has size 0")
        if e > U64:
            raise CaseError(f"memory region at {s:#x} runs past 2^64")
    for (s1, e1), (s2, _) in zip(spans, spans[1:]):
        if s2 < e1:
            raise CaseError(f"memory regions at {s1:#x} and {s2:#x} overlap")


def covered(regions, gpa: int, size: int) -> bool:
    """Whether [gpa, gpa+size) lies inside the union of `regions`."""
    return _outside(regions, gpa, gpa + size) is None


def _outside(regions, gpa: int, end: int):
    """None when [gpa, end) lies inside memory (one region, or adjacent ones); else the
    (lo, hi) part of it inside each region it meets, by address (regions never overlap)."""
    for start, size in regions:  # the usual case: inside one region
        if start <= gpa and end <= start + size:
            return None
    spans = []
    for r in sorted(regions):
        lo, hi = max(gpa, r.gpa), min(end, r.gpa + r.size)
        if lo < hi:
            spans.append((lo, hi))
    if end <= U64 and sum(hi - lo for lo, hi in spans) == end - gpa:
        return None
    return spans


def avail_ring_writes(regions, ring: Ring) -> list[Write]:
    """The available ring as the harness writes it (docs/protocol.md, parse):
    le16 flags 0, le16 idx 1, le16 ring[0] = head, clipped to memory.

    Every case the harness makes ends its writes with these, so a target that
    pops the chain from the available ring and one that walks from `head`
    see the same chain.
    """
    return clip(regions, ring.avail, AVAIL_HEAD.pack(0, 1, ring.head & 0xFFFF))


def clip(regions, gpa: int, data: bytes) -> list[Write]:
    """`data` at `gpa`, keeping only what lies inside memory (whole when it all does).

    An empty write touches no memory and is kept as it is, so a request's
    writes survive the binary form unchanged.
    """
    return clip_each(regions, ((gpa, data),))


def clip_each(regions, raw) -> list[Write]:
    """`clip` of each (gpa, data) in `raw`, in order (one call for all of a case's writes)."""
    writes = []
    for gpa, data in raw:
        spans = _outside(regions, gpa, gpa + len(data))
        if spans is None:
            writes.append(Write(gpa, data))
        else:
            writes += [Write(lo, data[lo - gpa:hi - gpa]) for lo, hi in spans]
    return writes
