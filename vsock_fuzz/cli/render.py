"""A case in readable form, for `vsock-fuzz show` and `minimize`.

Sections: the queue and ring, memory regions, writes, the chain walk as the
spec-profile device makes it (each descriptor read, with its table and
index, indirect tables indented), the header decoded from the chain's first
44 bytes, the bytes around each buffer, and the model's answer under every
profile. For a finding, its oracle, message and the target's answer first.
"""

from __future__ import annotations

from ..model.answer import Answer
from ..case.value import Case
from ..case.wire import DESC_SIZE, DESC_STRUCT, F_INDIRECT, F_NEXT, F_WRITE
from ..model.chain import ChainError, check_queue, walk
from ..case.wire import FIELD_NAMES, HEADER_SIZE, Header
from ..model.memory import GuestMemory
from ..model.packet import PROFILES, parse

MAX_WALK = 32      # descriptors (and buffers) listed before "... more"
CONTEXT = 16       # bytes shown before and after each buffer
MAX_BYTES = 64     # bytes of a buffer shown from its start


def flag_names(flags: int) -> str:
    names = [n for bit, n in ((F_NEXT, "NEXT"), (F_WRITE, "WRITE"), (F_INDIRECT, "INDIRECT")) if flags & bit]
    if flags & ~7:
        names.append(f"{flags & ~7:#x}")
    return "|".join(names) or "-"


def render(case: Case, finding: dict | None = None) -> str:
    out: list[str] = []
    if finding is not None:
        out += _finding(finding)
    r = case.ring
    out.append(f"case: {case.queue} queue, max_data_size {case.max_data_size}")
    out.append(f"ring: size {r.size}, desc_table {r.desc_table:#x}, avail {r.avail:#x}, used {r.used:#x}, head {r.head}")
    out.append(f"memory: {len(case.regions)} region(s)")
    for i, reg in enumerate(sorted(case.regions)):
        out.append(f"  region {i}: [{reg.gpa:#x}, {reg.end:#x})  {reg.size:#x} bytes")
    out.append(f"writes: {len(case.writes)}, {sum(len(w.data) for w in case.writes)} bytes")
    for w in case.writes:
        out.append(f"  [{w.gpa:#x}, +{len(w.data):#x})  {w.data[:16].hex(' ')}{' ...' if len(w.data) > 16 else ''}")
    mem = GuestMemory(case.regions, case.writes)
    try:
        check_queue(mem, r)
        out.append("queue: valid")
        refused = False
    except ChainError as e:
        out.append(f"queue: {e.name}: {e.detail}")
        refused = True
    buffers = _walk(out, mem, case, refused)
    if case.queue == "tx":
        out += _header(mem, buffers)
    else:
        out.append("header: rx, the device writes it into the chain's first 44 bytes")
    out += _bytes(mem, buffers)
    out.append("model:")
    for profile in PROFILES:
        out.append(f"  {profile}: {describe(parse(case, profile))}")
    return "\n".join(out) + "\n"


def describe(answer: Answer) -> str:
    """One line for an answer."""
    if not answer.ok:
        return f"rejected {answer.error} ({answer.error_class}): {answer.detail}"
    hdr = "" if answer.header is None else f" len={answer.header.len} op={answer.header.op}"
    return f"ok{hdr} header_slices {_spans(answer.header_slices)} data_slices {_spans(answer.data_slices)}"


def _spans(slices) -> str:
    return "[" + ", ".join(f"{a:#x}+{n:#x}" for a, n in slices) + "]"


def _finding(f: dict) -> list[str]:
    out = [f"finding: {f.get('oracle')} ({f.get('severity')}), rule {f.get('rule')}",
           f"  {f.get('message')}"]
    if f.get("target"):
        out.append(f"  target: {f['target']}")
    ans = f.get("answer")
    if isinstance(ans, dict):
        try:
            out.append(f"  target answered: {describe(Answer.from_json(ans))}")
        except (ValueError, KeyError, TypeError):
            out.append(f"  target answered: {ans}")
    if f.get("reproduce"):
        out.append(f"  reproduce: {f['reproduce']}")
    return out


def _walk(out: list[str], mem: GuestMemory, case: Case, refused: bool):
    """The spec walk, one line per descriptor read (from the memory log); returns the buffers."""
    r = case.ring
    if not r.size:
        out.append("walk: none, a queue of size 0 has no descriptors")
        return []
    buffers, error = [], None
    try:
        for d in walk(mem, r.desc_table, r.size, r.head):
            buffers.append(d)  # kept up to the error, to show what the walk reached
    except ChainError as e:
        error = e
    reads = [gpa for op, gpa, n in mem.log if op == "r" and n == DESC_SIZE]
    note = ", shown although the device refuses the queue" if refused else ""
    out.append(f"walk from head {r.head} (spec profile{note}):")
    table, indent, seen = r.desc_table, "  ", set()
    for k, at in enumerate(reads):
        index = (at - table) // DESC_SIZE
        if at in seen:
            out.append(f"{indent}[{index}] @{at:#x} again: a loop; {len(reads) - k} more reads not listed")
            break
        if k == MAX_WALK:
            out.append(f"{indent}... {len(reads) - k} more")
            break
        seen.add(at)
        addr, length, flags, nxt = DESC_STRUCT.unpack(mem.read(at, DESC_SIZE))
        out.append(f"{indent}[{index}] @{at:#x}: addr {addr:#x} len {length:#x} flags {flag_names(flags)} next {nxt}")
        if flags & F_INDIRECT and indent == "  ":
            table, indent = addr, "      "
            out.append(f"    -> indirect table @{addr:#x}, {length // DESC_SIZE} entries")
    if error is not None:
        out.append(f"  stops: {error.name}: {error.detail}")
    else:
        out.append(f"  ends: {len(buffers)} buffer(s), {sum(d.len for d in buffers)} bytes")
    # Each distinct buffer once (a loop or a minimized case repeats them), at most MAX_WALK.
    return list({(d.addr, d.len, d.writable): d for d in reversed(buffers)}.values())[::-1][:MAX_WALK]


def _header(mem: GuestMemory, buffers) -> list[str]:
    raw = bytearray()
    for d in buffers:
        n = min(HEADER_SIZE - len(raw), d.len)
        if not mem.contains(d.addr, n):
            break
        raw += mem.read(d.addr, n)
        if len(raw) == HEADER_SIZE:
            break
    if not buffers:
        return ["header: the chain has no buffer to hold it"]
    if len(raw) < HEADER_SIZE:
        return [f"header: the chain holds only {len(raw)} readable bytes before a gap or its end"]
    h = Header.unpack(bytes(raw))
    return ["header (the chain's first 44 bytes):",
            "  " + ", ".join(f"{name} {getattr(h, name)}" for name in FIELD_NAMES)]


def _bytes(mem: GuestMemory, buffers) -> list[str]:
    out = []
    for i, d in enumerate(buffers):
        kind = "device-writable" if d.flags & F_WRITE else "device-readable"
        where = mem.region_index(d.addr)
        place = f"region {where}" if where >= 0 else "unmapped start"
        end_note = "" if mem.contains(d.addr, d.len) else ", NOT all inside guest memory"
        out.append(f"buffer {i}: [{d.addr:#x}, +{d.len:#x}) {kind}, {place}{end_note}")
        out += hexdump(mem, d.addr, d.len)
    return out


def hexdump(mem: GuestMemory, addr: int, length: int) -> list[str]:
    """16-byte lines from CONTEXT before `addr` to CONTEXT after the first MAX_BYTES of the buffer.

    '>' marks lines holding buffer bytes; '..' is unmapped memory.
    """
    shown_end = addr + min(length, MAX_BYTES)
    start = max(addr - CONTEXT, 0) & ~15
    stop = min(shown_end + CONTEXT, 1 << 64)
    out = []
    for line in range(start, stop, 16):
        cells = []
        for a in range(line, min(line + 16, 1 << 64)):
            cells.append(mem.read(a, 1).hex() if mem.contains(a, 1) else "..")
        inside = line < shown_end and line + 16 > addr
        out.append(f"  {'>' if inside else ' '} {line:#014x}: {' '.join(cells)}")
    if length > MAX_BYTES:
        out.append(f"    ... {length - MAX_BYTES:#x} more bytes")
    return out
