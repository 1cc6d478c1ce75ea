"""Guest memory: regions with holes between them, sparse contents, an access log.

Each region is its own host mapping (docs/protocol.md): two regions adjacent
in guest-physical space are not one host slice. Contents are the case's writes
kept as they are, so a 2^40-byte region costs nothing.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import starmap
from operator import add, attrgetter, gt, itemgetter

U64 = 1 << 64
_NO_PIECE = (-1, -1, b"")  # the pieces' sentinel, like the regions'
_GPA = attrgetter("gpa")
_DATA = attrgetter("data")


class MemoryFault(Exception):
    """An access touched guest-physical addresses that no region maps."""

    def __init__(self, gpa: int, size: int):
        super().__init__(f"[{gpa:#x}, +{size:#x}) is not inside guest memory")
        self.gpa = gpa
        self.size = size


class GuestMemory:
    __slots__ = ("_starts", "_ends", "_writes", "_at", "_pieces", "log")

    def __init__(self, regions, writes=()):
        ordered = sorted(regions)  # Regions are (gpa, size) tuples: by gpa
        # Each list starts with an empty sentinel at -1, before every address: a lookup
        # (bisect_right(...) - 1) always lands on an entry, and a hole is `gpa >= end`.
        self._starts = [-1, *map(itemgetter(0), ordered)]
        self._ends = [-1, *map(sum, ordered)]  # gpa + size
        self._writes = writes
        self._at: list[int] = [-1]
        self._pieces: list[tuple[int, int, bytes]] | None = None
        self.log: list[tuple[str, int, int]] = []

    def _contents(self) -> list[tuple[int, int, bytes]]:
        """The writes flattened into disjoint (start, end, bytes) pieces sorted by address, so a
        read is one bisect (`_at` holds their starts); built on first use, as a case whose queue
        is refused is never read."""
        if self._pieces is None:
            # Usually no two writes overlap: then the pieces are the writes by address. The
            # loops are C builtins because this runs once per fuzz case under coverage tracing.
            writes = sorted(filter(_DATA, self._writes))
            at = list(map(_GPA, writes))
            ends = list(map(add, at, map(len, map(_DATA, writes))))
            if any(map(gt, ends, at[1:])):
                self._pieces = [_NO_PIECE]
                for w in self._writes:
                    if w.data:
                        self._put(w.gpa, w.data)
            else:
                self._at = [-1, *at]
                self._pieces = [_NO_PIECE, *zip(at, ends, map(_DATA, writes))]
        return self._pieces

    def _put(self, gpa: int, data: bytes) -> None:
        """Lay `data` over the contents: later writes win, as in the protocol ("applied in order")."""
        end = gpa + len(data)
        at, pieces = self._at, self._pieces
        i = bisect_right(at, gpa) - 1  # the piece starting at or before gpa
        if pieces[i][1] <= gpa:
            i += 1
        j = bisect_left(at, end, i)    # pieces[i:j] overlap [gpa, end)
        new = [(gpa, end, data)]
        if i < j:
            s, e, d = pieces[i]
            if s < gpa:  # keep what lies before the new bytes
                new.insert(0, (s, gpa, d[:gpa - s]))
            s, e, d = pieces[j - 1]
            if e > end:  # and what lies after them
                new.append((end, e, d[end - s:]))
        at[i:j] = [p[0] for p in new]
        pieces[i:j] = new

    def region_index(self, gpa: int) -> int:
        """Index (in gpa order) of the region holding `gpa`, or -1 in a hole."""
        i = bisect_right(self._starts, gpa) - 1
        return i - 1 if gpa < self._ends[i] else -1

    def region_end(self, gpa: int) -> int | None:
        """End of the region holding `gpa`, None in a hole."""
        end = self._ends[bisect_right(self._starts, gpa) - 1]
        return end if gpa < end else None

    def slices(self, gpa: int, size: int):
        """[gpa, gpa+size) cut at region boundaries, or None if any byte is unmapped.

        Adjacent regions make one guest-physical range but several host
        slices, so every piece returned lies in exactly one region.
        """
        end = gpa + size
        starts, ends = self._starts, self._ends
        i = bisect_right(starts, gpa) - 1
        if gpa >= ends[i]:
            return None
        if end <= ends[i]:  # the common case: inside one region
            return [(gpa, size)]
        if end > U64:
            return None
        out = [(gpa, ends[i] - gpa)]
        gpa = ends[i]
        i += 1
        while gpa < end:
            if i == len(starts) or starts[i] != gpa:
                return None  # a hole before `end`
            piece = min(end, ends[i]) - gpa
            out.append((gpa, piece))
            gpa += piece
            i += 1
        return out

    def contains(self, gpa: int, size: int) -> bool:
        return size == 0 or self.slices(gpa, size) is not None

    def read(self, gpa: int, size: int) -> bytes:
        end = gpa + size
        # Mapped if inside the region holding gpa (the usual read), else if cut at region boundaries.
        if end > self._ends[bisect_right(self._starts, gpa) - 1] and size and self.slices(gpa, size) is None:
            raise MemoryFault(gpa, size)
        self.log.append(("r", gpa, size))
        pieces = self._pieces or self._contents()
        i = bisect_right(self._at, gpa) - 1
        s, e, data = pieces[i]
        if end <= e:  # one piece holds it all: the usual read
            return data[gpa - s:end - s]
        if e <= gpa:
            i += 1
        out = bytearray(size)  # unwritten bytes read zero
        while i < len(pieces) and pieces[i][0] < end:
            s, e, data = pieces[i]
            lo, hi = max(s, gpa), min(e, end)
            out[lo - gpa:hi - gpa] = data[lo - s:hi - s]
            i += 1
        return bytes(out)

    def gather(self, slices) -> bytes:
        """The bytes under (gpa, len) slices, in order: a header split over descriptors."""
        return b"".join(starmap(self.read, slices))

    def write(self, gpa: int, data: bytes) -> None:
        if data and self.slices(gpa, len(data)) is None:
            raise MemoryFault(gpa, len(data))
        self.log.append(("w", gpa, len(data)))
        if data:
            self._contents()
            self._put(gpa, bytes(data))
