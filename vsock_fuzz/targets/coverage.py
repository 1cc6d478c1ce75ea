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

Standard library only, importable in a worker before atheris instruments anything.
"""

from __future__ import annotations

import ctypes
import fcntl
import glob
import mmap
import os
import sys

CHANNEL = "shm-8bit-v1"
SIZE = 1 << 16          # 64 KiB of 8-bit counters
ENV_FD = "VSOCK_FUZZ_COV_FD"
ENV_SIZE = "VSOCK_FUZZ_COV_SIZE"
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

    offer = (CHANNEL,)

    def __init__(self, size: int = SIZE):
        if size <= 0 or size & (size - 1):
            raise CoverageError(f"coverage region size {size} is not a power of two")
        try:
            fd = os.memfd_create("vsock-fuzz-coverage", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
        except (AttributeError, OSError) as e:
            raise CoverageError(f"cannot create a memfd for target coverage: {e}") from None
        try:
            os.ftruncate(fd, size)
            fcntl.fcntl(fd, fcntl.F_ADD_SEALS, fcntl.F_SEAL_SHRINK | fcntl.F_SEAL_GROW | fcntl.F_SEAL_SEAL)
            self.map = mmap.mmap(fd, size)
        except OSError as e:
            os.close(fd)
            raise CoverageError(f"cannot set up the target coverage region: {e}") from None
        self.fd = fd
        self.size = size
        self.negotiated = False
        self.ever = False
        self.garbage = 0    # inputs whose counters screen() cleared
        self._seen = 0      # every counter ever sampled non-zero, as one big integer
        self._pcs = None    # the PC table handed to libFuzzer, kept alive

    def child(self) -> dict:
        """subprocess keywords for a target process: the memfd inherited, named in its environment."""
        return {"pass_fds": (self.fd,), "env": {**os.environ, ENV_FD: str(self.fd), ENV_SIZE: str(self.size)}}

    def settle(self, answer) -> str | None:
        """Record a hello answer's `coverage` value; an error message when it is not one offered."""
        if answer is None:
            self.negotiated = False
            return None
        if answer not in self.offer:
            self.negotiated = False
            return f"hello chose coverage {answer!r}, which was not offered ({', '.join(self.offer)})"
        self.negotiated = self.ever = True
        return None

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

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


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
