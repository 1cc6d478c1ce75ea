"""The coverage channel `shm-8bit-v1` (docs/protocol-extensions.md): a shared-memory region
of 8-bit edge counters that a `cmd:` target's own instrumentation counts its edges in.

The harness (a fuzz worker) creates one Region per target and sets it as the
CommandTarget's `coverage` before the target starts. Every process started for that
target (the first, each restart, the warm standby) inherits the same memfd, named by its
number in the environment, and the hello request offers the channel; a target whose
hello answers `"coverage": "shm-8bit-v1"` counts its edges there. The worker registers
the region with libFuzzer as extra 8-bit counters (`register_with_libfuzzer`), so
libFuzzer clears it before each input and reads it after, as it does in-process counters.

Why a memfd and not a /dev/shm name: nothing is left behind when a worker is killed
(there is no name to unlink), no other process can open it by name, two workers cannot
collide on a name, and a restart passes the very same file again. The memfd is sealed
against shrinking and growing, so a target cannot truncate it and make the harness's
mapping fault (SIGBUS) on the next read: whatever a target writes into the region is
only counter values.

`shm-8bit-v2` is v1 plus a table of the device's recent comparisons after the counters
(CompareHints): the worker hands their operands to libFuzzer's tables of recent compares
after each case, as atheris hands it the harness's own, and one of libFuzzer's mutations
writes them into inputs in the case encoding's own terms.

Standard library only, importable in a worker before atheris instruments anything.
"""

from __future__ import annotations

import ctypes
import fcntl
import glob
import mmap
import os
import struct
import sys

CHANNEL = "shm-8bit-v1"
CHANNEL_CMP = "shm-8bit-v2"  # v1's counters, then the compare table
SIZE = 1 << 16          # 64 KiB of 8-bit counters
ENV_FD = "VSOCK_FUZZ_COV_FD"
ENV_SIZE = "VSOCK_FUZZ_COV_SIZE"
ENV_CMP_SLOTS = "VSOCK_FUZZ_COV_CMP_SLOTS"
CMP_SLOTS = 128         # entries the compare table keeps: a case's most recent compares
CMP_HEADER = 16         # le64 written, le32 slots, le32 zero
CMP_ENTRY = 24          # u8 size, u8 kind, 6 zero bytes, le64 arg1, le64 arg2
CMP_CONST, CMP_SWITCH = 1, 2  # entry kinds besides 0, a compare of two variables
_COUNT = struct.Struct("<Q")
FEED_SCAN = 2           # newest entries of a case looked at for libFuzzer's tables
FEED_MAX = 1            # and fed at most (a ctypes call each; crossover() does the rest)
FEED_REFRESH = 16       # with the harness's Python instrumented too: cases between forgetting the shadow
HINT_NEWEST = 16        # half of the pairs crossover() writes are among the newest entries
HINT_TRIES = 3          # pairs tried per mutation before libFuzzer's own mutation is used
PC_BASE = 0x7E00_0000_0000  # the fake PCs libFuzzer's PC table gets for the region's counters
CORE_PC_BASE = 0x7D00_0000_0000  # and for the compiled core's (vsock_fuzz.model.compiled)
PROBES = 64                # counters screen() looks at, spread evenly over the region
PROBES_GARBAGE = 16        # non-zero probes that make an input's counters garbage


class CoverageError(Exception):
    """A region that cannot be made or registered here (no memfd, no libFuzzer)."""


class Region:
    """One target's counters: a sealed memfd of `size` bytes (a power of two) and the
    harness's mapping of it. `negotiated`: the running target's hello accepted the channel;
    `ever`: some process of this target did."""

    def __init__(self, size: int = SIZE, slots: int = CMP_SLOTS):
        if size <= 0 or size & (size - 1):
            raise CoverageError(f"coverage region size {size} is not a power of two")
        if not 0 <= slots <= 1 << 20:
            raise CoverageError(f"compare table of {slots} slots: 0 to 2^20")
        try:
            fd = os.memfd_create("vsock-fuzz-coverage", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except (AttributeError, OSError) as e:
            raise CoverageError(f"cannot create a memfd for target coverage: {e}") from None
        total = size + (CMP_HEADER + CMP_ENTRY * slots if slots else 0)
        try:
            os.ftruncate(fd, total)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
            self.map = mmap.mmap(fd, size)
            # The whole file, the table at `size`: an offset mapping would need `size` page-aligned.
            self.whole = mmap.mmap(fd, total) if slots else None
        except OSError as e:
            os.close(fd)
            raise CoverageError(f"cannot set up the target coverage region: {e}") from None
        if slots:
            self.whole[size + 8:size + 12] = slots.to_bytes(4, "little")  # for a reader of the file; no target trusts it
        self.fd = fd
        self.size = size
        self.slots = slots
        self.offer = (CHANNEL_CMP, CHANNEL) if slots else (CHANNEL,)
        self.channel = None     # the channel the running target's hello took
        self.negotiated = False
        self.ever = False
        self.garbage = 0    # inputs whose counters screen() cleared
        self._seen = 0      # every counter ever sampled non-zero, as one big integer
        self._pcs = None    # the PC table handed to libFuzzer, kept alive

    def child(self) -> dict:
        """subprocess keywords for a target process: the memfd inherited, named in its environment."""
        env = {**os.environ, ENV_FD: str(self.fd), ENV_SIZE: str(self.size)}
        if self.slots:
            env[ENV_CMP_SLOTS] = str(self.slots)
        else:
            env.pop(ENV_CMP_SLOTS, None)
        return {"pass_fds": (self.fd,), "env": env}

    def settle(self, answer) -> str | None:
        """Record a hello answer's `coverage` value; an error message when it is not one offered."""
        self.channel = None
        if answer is None:
            self.negotiated = False
            return None
        if answer not in self.offer:
            self.negotiated = False
            return f"hello chose coverage {answer!r}, which was not offered ({', '.join(self.offer)})"
        self.negotiated = self.ever = True
        self.channel = answer
        return None

    @property
    def compares(self) -> bool:
        """The running target records its compares in the table (it took shm-8bit-v2)."""
        return self.channel == CHANNEL_CMP

    def address(self) -> int:
        # The export this creates keeps the mapping from being closed under libFuzzer.
        return ctypes.addressof(ctypes.c_char.from_buffer(self.map))

    def sample(self) -> None:
        """Add the counters now non-zero to the ones seen (a worker calls it every few inputs,
        between libFuzzer's reading the counters and its clearing them)."""
        self._seen |= int.from_bytes(self.map, "little")

    def seen(self) -> int:
        """How many counters were non-zero in some sampled input."""
        return self.size - self._seen.to_bytes(self.size, "little").count(0)

    def screen(self) -> bool:
        """Clear counters that cannot be edges, before libFuzzer reads them; whether it did.

        An instrumented parser sets a few hundred of 64 Ki counters per input, so about none of
        PROBES evenly spread ones; a target that fills the region with garbage sets most of them.
        libFuzzer would take every such input as new coverage, and slow down to seconds per
        input under tens of thousands of new features each time. One strided read per input."""
        probes = self.map[::self.size // PROBES] if self.size >= PROBES else self.map[:]
        if len(probes) - probes.count(0) < PROBES_GARBAGE:
            return False
        self.clear()
        self.garbage += 1
        return True

    def nonzero(self) -> int:
        """How many counters are non-zero now."""
        return self.size - self.map[:].count(0)

    def clear(self) -> None:
        self.map[:] = bytes(self.size)

    def take_compares(self) -> bytes:
        """The compare table's entries, oldest first (CMP_ENTRY bytes each, at most `slots` of
        them), and the table emptied for the next case. The count is the target's to write, so
        it is clamped, never trusted: at most the table is read, whatever the target wrote."""
        if self.whole is None:
            return b""
        at = self.size
        written, = _COUNT.unpack_from(self.whole, at)
        if not written:
            return b""
        _COUNT.pack_into(self.whole, at, 0)
        base, n = at + CMP_HEADER, self.slots
        if written <= n:
            return self.whole[base:base + CMP_ENTRY * written]
        cut = base + CMP_ENTRY * (written % n)  # the oldest entry kept: the ring wrapped
        return self.whole[cut:base + CMP_ENTRY * n] + self.whole[base:cut]

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


def entries(table: bytes) -> tuple[bytes, ...]:
    """take_compares' bytes as one bytes object per entry, oldest first."""
    n = len(table) // CMP_ENTRY
    if not n:
        return ()
    split = _splitters.get(n)
    if split is None:
        split = _splitters[n] = struct.Struct(f"{CMP_ENTRY}s" * n).unpack_from
    return split(table)


_splitters: dict = {}
_tails: dict = {}
_ENTRY = struct.Struct("<BB6xQQ")
_MASKS = {2: 0xFFFF, 4: 0xFFFF_FFFF, 8: 0xFFFF_FFFF_FFFF_FFFF}
TORC_SLOTS = 32  # libFuzzer's TableOfRecentCompares: slot = (arg1 ^ arg2) mod 32, one table per width


def pair(entry: bytes) -> tuple[int, int, int] | None:
    """(size, arg1, arg2) of one entry if it is worth handing libFuzzer, else None; for a
    compare with a constant, the constant second (the value to write where the first is).

    Kept: 2-, 4- and 8-byte compares of two different values, one of them over 255. Equal
    operands give the mutator nothing to write; two byte values are in reach of plain
    mutation (libFuzzer's own switch tracing skips them for that) and are most of a parser's
    loop counters; any other size is a garbled entry (the runtimes record no 1-byte
    compares, as libFuzzer keeps none). Operands are cut to their size, whatever the target
    wrote above it."""
    return _pair(*_ENTRY.unpack(entry))


def _pair(size: int, kind: int, a: int, b: int) -> tuple[int, int, int] | None:
    mask = _MASKS.get(size)
    if mask is None:
        return None
    a, b = a & mask, b & mask
    if a == b or (a | b) <= 0xFF:
        return None
    return (size, b, a) if kind == CMP_CONST else (size, a, b)


class CompareHints:
    """The compares a target recorded (shm-8bit-v2), put to use by atheris's libFuzzer.

    Two ways, both measured (tests/test_target_coverage.py, benchmarks/bench_target_cov.py):

    - feed(), after each case: the newest pairs go into libFuzzer's tables of recent
      compares (TORC), which its CMP mutation (on by default, -use_cmp=1) draws from: it finds
      one operand's bytes in the input and writes the other's there. In-process code fills
      those tables through `__sanitizer_cov_trace_cmp4/8`, atheris's instrumented Python
      through the same functions (its `_trace_cmp`: integers as 8-byte compares); here the
      recorded operands go through them, called with ctypes. The tables are keyed by the operands, not by the caller, so one call site
      serves every pair: cmp4 for 2- and 4-byte pairs (libFuzzer's own 2-byte hook keeps
      none, but its mutator writes a 4-byte pair as 16-bit words when both fit), cmp8.
      `__sanitizer_weak_hook_memcmp` (what atheris calls for bytes) would put a pair in the
      word table too, written exactly rather than maybe byte-swapped or one off; crossover()
      writes exactly already, so feed() spares the second call.
    - crossover(), libFuzzer's custom crossover, one more of its mutations: it writes a pair
      of the case just run into the input. libFuzzer's CMP mutation alone is one mutation in about
      13, picks one of 4 tables and one of 32 slots, and finds an operand only where the
      input holds it as fixed-width bytes; a case's header fields are LEB128 varints in the
      structured form most inputs use (case/binary.py). Here an operand is looked for as
      little- and big-endian bytes of its width and as a varint (as itself and plus one: the
      structured form stores some fields as value + 1), and replaced by the other operand
      (or it plus or minus one, for bounds) in the same encoding. At 5,000 cases a second,
      TORC alone took a minute or more per 32-bit magic value; this, a few seconds.

    Only what is cheap runs per case (a ctypes call costs about a microsecond; a case of the
    C example compares 350 times, 130 distinct pairs): entries are read in place, never
    copied; the newest FEED_SCAN are looked at, at most FEED_MAX of them fed, and a shadow of
    what was fed into each slot of the 4- and 8-byte tables skips a pair still there (one
    pushed out by another is fed again when a later case has it, as in-process code would
    insert it again). With `refresh` (the harness's Python is instrumented too, and its
    comparisons write the 8-byte table behind the shadow's back) the shadow is forgotten
    every `refresh` cases."""

    def __init__(self, region: Region, refresh: int = 0):
        self.region = region
        self.refresh = refresh
        self._cmp4 = self._cmp8 = None
        # The last case that recorded compares: its `_n` entries are read where the target
        # wrote them (slot `(_start + k) % slots` for its k-th oldest): the next case's
        # target writes nothing until that case runs, after crossover() has made it.
        self._n = self._start = 0
        self._newest = False
        self._tail = b""  # the newest entries' bytes of the last case fed
        self._shadow: dict = {}  # (8-byte table?, slot) -> the pair fed there last
        self._cases = 0
        self.fed = 0        # pairs handed to libFuzzer's tables
        self.recorded = 0   # entries read from the table
        self.hinted = 0     # inputs crossover() wrote a pair into

    def bind(self, lib=None) -> None:
        """Find libFuzzer's compare hooks (feed() feeds nothing before). With crossover() as
        the custom crossover, preload_custom_crossover() must have run before libFuzzer was
        loaded."""
        lib = lib or libfuzzer()

        def hook(name, *args):
            # PYFUNCTYPE keeps the GIL: a call of well under a microsecond gains nothing from
            # releasing it, and would let the target's stderr reader run in between.
            proto = ctypes.PYFUNCTYPE(None, *args)
            return proto(ctypes.cast(getattr(lib, name), ctypes.c_void_p).value)
        self._cmp4 = hook("__sanitizer_cov_trace_cmp4", ctypes.c_uint32, ctypes.c_uint32)
        self._cmp8 = hook("__sanitizer_cov_trace_cmp8", ctypes.c_uint64, ctypes.c_uint64)

    def _pair(self, k: int) -> tuple[int, int, int] | None:
        """pair() of the k-th newest entry of the last case (0: the newest), read in place."""
        region = self.region
        slot = (self._start + self._n - 1 - k) % region.slots
        return _pair(*_ENTRY.unpack_from(region.whole, region.size + CMP_HEADER + CMP_ENTRY * slot))

    def feed(self) -> int:
        """Take the last case's compares (the table emptied for the next) and hand its newest
        pairs to libFuzzer's tables (once bound); how many. The count is the target's to
        write: at most `slots` entries are taken, whatever it says."""
        region = self.region
        written, = _COUNT.unpack_from(region.whole, region.size)
        if not written:
            return 0
        _COUNT.pack_into(region.whole, region.size, 0)
        self._n = min(written, region.slots)
        self._start = written % region.slots if written > region.slots else 0
        self._newest = False  # the newest pair worth writing, once hint() has looked
        self.recorded += self._n
        self._cases += 1
        if self.refresh and not self._cases % self.refresh:
            self._shadow.clear()
            self._tail = b""
        if self._cmp4 is None:
            return 0
        # The newest entries in one read, in place of a struct call each: the ring is
        # contiguous there unless it wraps. The same as the case before's, nothing to feed.
        k, slots = min(self._n, FEED_SCAN), region.slots
        first = (self._start + self._n - k) % slots
        base = region.size + CMP_HEADER
        whole = region.whole
        if first + k <= slots:
            tail = whole[base + CMP_ENTRY * first:base + CMP_ENTRY * (first + k)]
        else:
            tail = whole[base + CMP_ENTRY * first:base + CMP_ENTRY * slots] + \
                whole[base:base + CMP_ENTRY * (first + k - slots)]
        if tail == self._tail:
            return 0
        self._tail = tail
        unpack = _tails.get(k)
        if unpack is None:
            unpack = _tails[k] = struct.Struct("<" + "BB6xQQ" * k).unpack
        v = unpack(tail)
        fed, shadow = 0, self._shadow
        for j in range(4 * (k - 1), -1, -4):  # newest first
            p = _pair(v[j], v[j + 1], v[j + 2], v[j + 3])
            if p is None:
                continue
            size, a, b = p
            slot = (size == 8, (a ^ b) % TORC_SLOTS)
            if shadow.get(slot) == p:
                continue
            shadow[slot] = p
            (self._cmp8 if size == 8 else self._cmp4)(a, b)
            fed += 1
            if fed == FEED_MAX:
                break
        self.fed += fed
        return fed

    def drop(self) -> None:
        """Empty the table without using it (a case whose coverage was garbage)."""
        _COUNT.pack_into(self.region.whole, self.region.size, 0)
        self._n = 0

    def crossover(self, data: bytes, other: bytes, max_size: int, seed: int) -> bytes:
        """libFuzzer's custom crossover (atheris.Setup(custom_crossover=)), used as a mutation
        of `data` alone: a pair of the last case written into it, or b"" (no mutation:
        libFuzzer picks another) when there is none to write. A custom crossover is one of
        libFuzzer's mutations, picked as often as each of its own (about one in 14), where a
        custom mutator would replace them all and cost a call into Python for every one."""
        out = self.hint(data, max_size, seed) if self._n else None
        if out is None:
            return b""
        self.hinted += 1
        return out

    def hint(self, data: bytes, max_size: int, r: int) -> bytes | None:
        """`data` with an operand of a pair from the last case replaced by the other, or None
        when the pairs tried are found nowhere in it. Half the time the pair is the newest
        worth writing: the last compare of a parse that went another way is the one that
        stopped it (a magic value not matched, a bound not met); else one of the newest
        HINT_NEWEST, or any."""
        n = self._n
        header = _header_fields()(data)  # once: a few microseconds of decoding
        for attempt in range(HINT_TRIES):
            r = (r * 0x5851F42D4C957F2D + 0x14057B7EF767814F) & 0xFFFF_FFFF_FFFF_FFFF
            if attempt == 0 and r & 1 << 40:
                if self._newest is False:  # looked for once per case
                    self._newest = next(filter(None, map(self._pair, range(min(n, HINT_NEWEST)))), None)
                p = self._newest
            else:
                p = self._pair((r >> 8) % min(n, HINT_NEWEST) if r & 1 << 41 else (r >> 8) % n)
            if p is None:
                continue
            size, a, b = p
            nudge = (0, 0, 1, -1)[r >> 42 & 3]
            out = substitute(data, size, a, b + nudge, r >> 44, header)
            if out is None:
                out = substitute(data, size, b, a + nudge, r >> 44, header)
            if out is not None and len(out) <= max_size:
                return out
        return None


def substitute(data: bytes, size: int, old: int, new: int, r: int, header=False) -> bytes | None:
    """`data` with one place that holds `old` holding `new` instead, in its encoding, picked
    with `r`; None if no place holds it.

    Places: in the structured form, a header field whose value is `old` (read as
    case/binary.py's decode_layout reads it, a field left at its default included), rewritten
    as that field's varint of `new`, picked three times in four when there is one; anywhere
    else, `size` bytes of `old` little- or big-endian, or a LEB128 varint of it or of it plus
    one (starting where a varint can start), the first found from a place picked at random:
    a small value is found all over an input, and listing every place would cost more than
    the case. `header`: header_fields(data), if known."""
    mask = _MASKS[size]
    new &= mask
    fields = []
    header_of = _header_fields()  # loads _varint too
    if header is False:
        header = header_of(data)
    if header:
        missing = 0
        for i, (start, end, v) in enumerate(header):
            plus, width = _HEADER_PLUS_ONE[i], _FIELD_MASKS[i]
            value = (_HEADER_DEFAULTS[i] if plus else 0) if v == 0 else (v - plus) & width
            # A field past the end of the input is written after zeros for those before it.
            pad = b"\0" * missing
            missing += start == end
            if value == old:
                fields.append((start, end, pad + _varint((new & width) + plus)))
    if fields and r & 3:
        return _splice(data, fields[(r >> 2) % len(fields)])
    n = len(data) or 1
    for k in range(4):
        how = (r + k) % 4  # little-endian, big-endian, varint, varint of one more
        if how < 2:
            order = "little" if how == 0 else "big"
            was, now, varint = old.to_bytes(size, order), new.to_bytes(size, order), False
        else:
            was, now, varint = _varint(old + how - 2), _varint(new + how - 2), True
        at = data.find(was, (r >> 2) % n)
        if at < 0:
            at = data.find(was)
        for _ in range(4):  # a varint starts after a byte without bit 7, or at the start
            if at <= 0 or not varint or data[at - 1] < 0x80:
                break
            at = data.find(was, at + 1)
        if at >= 0 and (not varint or at == 0 or data[at - 1] < 0x80):
            return _splice(data, (at, at + len(was), now))
    return _splice(data, fields[(r >> 2) % len(fields)]) if fields else None


def _splice(data: bytes, place: tuple[int, int, bytes]) -> bytes:
    start, end, now = place
    return data[:start] + now + data[end:]


_header_fields_fn = None
_varint = None
_HEADER_PLUS_ONE: tuple = ()
_HEADER_DEFAULTS: tuple = ()
_FIELD_MASKS: tuple = ()


def _header_fields():
    """case/binary.py's header_fields (and its varint encoder), imported on first use: this module is imported before
    atheris instruments the harness (--coverage both), and the decoder must not be imported
    before that."""
    global _header_fields_fn, _varint, _HEADER_PLUS_ONE, _HEADER_DEFAULTS, _FIELD_MASKS
    if _header_fields_fn is None:
        from ..case.binary import HEADER_DEFAULTS, HEADER_PLUS_ONE, header_fields, varint
        _varint = varint
        from ..case.wire import FIELD_WIDTHS
        _HEADER_PLUS_ONE = tuple(int(p) for p in HEADER_PLUS_ONE)
        _HEADER_DEFAULTS = tuple(-1 if d is None else d for d in HEADER_DEFAULTS)  # len's: matches no value
        _FIELD_MASKS = tuple((1 << w) - 1 for w in FIELD_WIDTHS)
        _header_fields_fn = header_fields
    return _header_fields_fn


def preload_custom_crossover() -> None:
    """Load atheris's custom crossover module as atheris.Fuzz() does, its symbols global,
    before libfuzzer() loads atheris's libFuzzer: libFuzzer finds LLVMFuzzerCustomCrossOver
    through a weak reference bound when its library is loaded, so a libFuzzer loaded first
    (as register_with_libfuzzer does before Fuzz()) would never call it. Only with
    atheris.Setup(custom_crossover=): without one set, the module's crossover aborts."""
    flags = sys.getdlopenflags()
    sys.setdlopenflags(flags | os.RTLD_GLOBAL)
    try:
        import atheris.custom_crossover  # noqa: F401
    finally:
        sys.setdlopenflags(flags)


def libfuzzer():
    """The libFuzzer linked into atheris, through ctypes. Loading the library by its path
    before atheris.Fuzz() loads it gives the same handle, so counters registered here are
    the ones its libFuzzer reads."""
    import atheris
    here = os.path.dirname(atheris.__file__)
    for name in ("core_with_libfuzzer", "core_without_libfuzzer"):
        for path in glob.glob(os.path.join(here, name + "*.so")):
            try:
                lib = ctypes.CDLL(path)
                lib.__sanitizer_cov_8bit_counters_init  # noqa: B018  (both must be there)
                lib.__sanitizer_cov_pcs_init  # noqa: B018
                return lib
            except (OSError, AttributeError):
                continue
    raise CoverageError("atheris's libFuzzer (__sanitizer_cov_8bit_counters_init) not found")


def register_with_libfuzzer(region: Region, lib=None) -> None:
    """Make `region` one more module of libFuzzer's inline 8-bit counters, so the target's
    edges count as coverage (`cov:`) and features (`ft:`) as in-process ones do. Call once,
    before atheris.Fuzz()."""
    region._pcs = register_counters(region.address(), region.size, PC_BASE, lib)


def register_counters(start: int, size: int, pc_base: int, lib=None):
    """Register [start, start + size) with libFuzzer as a module of 8-bit counters, with a PC
    table of its own (one fake PC per counter from `pc_base`, none a function entry); returns
    the table, which must be kept alive."""
    lib = lib or libfuzzer()
    lib.__sanitizer_cov_8bit_counters_init(ctypes.c_void_p(start), ctypes.c_void_p(start + size))
    pcs = (ctypes.c_size_t * (2 * size))()
    pcs[0::2] = range(pc_base, pc_base + size)
    begin = ctypes.addressof(pcs)
    lib.__sanitizer_cov_pcs_init(ctypes.c_void_p(begin), ctypes.c_void_p(begin + ctypes.sizeof(pcs)))
    return pcs


_core_pcs = None  # the PC table libFuzzer was given for the compiled core's counters, kept alive


def register_core() -> None:
    """Give atheris's libFuzzer the compiled core's coverage counters (the spec model's
    decisions, as atheris instruments the Python model), once, before atheris.Fuzz(). Without
    the core, nothing to do; a core built without counters would leave a campaign blind to the
    model: said."""
    global _core_pcs
    from ..model.compiled import load
    core = load()
    if core is None or _core_pcs is not None:
        return
    where = core.counters()
    if where is None:
        print("vsock-fuzz: the compiled core was built without its coverage counters, so the model's "
              "decisions do not guide this campaign: install it from core/ (its pyproject.toml adds them)",
              file=sys.stderr)
        return
    _core_pcs = register_counters(*where, CORE_PC_BASE)
