"""The conformance matrix behind `vsock-fuzz check`: a fixed battery of named
layouts, each with what a correct device must do, answered by a target and
run through every oracle. Deterministic: the same rows in the same order,
built with `layout.assemble`, every run.

Each row states:
  expect  "accept": the device must accept, with the slices stated;
          "either": the spec lets the device choose (2.6.4: it MAY limit the
                    number of descriptors): accepting must give the stated
                    slices, rejecting is a conformance warning;
          "reject": a malformed chain or packet; accepting it counts in the
                    row's family (safety when the packet would touch memory
                    it must not, fidelity for a length the packet may not
                    have, conformance for mere leniency).
  family  the oracle family a wrong answer counts in.
  rule    the spec section, driver fact or real bug the row stands for.

A row fails on a problem of the safety, fidelity or interop family, or on an
oracle finding of severity error or above (determinism: the same case
answered twice differently is a state leak); other problems are warnings,
unless --strict makes every problem fail.

Expected slices come from the buffers laid out for the row (read back from
the descriptor tables `assemble` wrote), never from the model: the header is
the first 44 bytes of the chain's stream, tx data the next `hdr.len` bytes,
rx data the rest up to `max_data_size`, cut at region boundaries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ..model.answer import Answer
from ..case.value import Case, Region
from ..case.wire import DESC_SIZE, DESC_STRUCT, F_INDIRECT, F_NEXT, F_WRITE
from ..case.wire import HEADER_SIZE, MAX_PKT_BUF_SIZE, Header
from ..case.layout import LINUX_VERSIONS, PAGE, Buf, Layout, assemble, linux_rx, linux_tx
from ..model.memory import GuestMemory
from ..oracles._all import FAMILIES, SEVERITY_ORDER, coalesce, evaluate

# A problem in these families fails `check` (exit 1), as does any oracle finding of
# severity error or above; the rest are warnings unless --strict.
FAILING = ("safety", "fidelity", "interop")
EXPECTS = ("accept", "either", "reject")

W = F_WRITE
KiB = 1024
# A header a real connection sends; distinct values so a decoding slip shows.
HDR = Header(src_cid=3, dst_cid=2, src_port=49153, dst_port=1234, type=1, op=5, flags=0,
             buf_alloc=262144, fwd_cnt=4096)
EXPLICIT = 0x80000  # explicitly placed buffers live here, far from assemble's data area


@dataclass(frozen=True)
class Row:
    name: str
    group: str
    expect: str
    family: str
    rule: str
    case: Case
    header: Header | None = None        # expected tx header (accept/either)
    slices: tuple | None = None         # expected (header_slices, data_slices) (accept/either)


@dataclass
class Result:
    row: Row
    answer: Answer
    findings: list = field(default_factory=list)   # oracle findings for this row's case
    issues: list = field(default_factory=list)     # (family, message) from the row's own expectation
    verdict: str = "pass"                          # pass | warn | fail

    @property
    def got(self) -> str:
        a = self.answer
        if a.ok:
            return "accept"
        if a.faulted:
            return a.error_class
        return f"reject {a.error}"


# --- expected slices, from the laid-out buffers --------------------------------

def laid_out(lay: Layout, case: Case):
    """(addr, len, flags) of every buffer in walk order, as `assemble` wrote the tables."""
    mem = GuestMemory(case.regions, case.writes)
    out = []

    def table(bufs, at):
        for i, b in enumerate(bufs):
            addr = DESC_STRUCT.unpack(mem.read(at + DESC_SIZE * i, DESC_SIZE))[0]
            if b.flags & F_INDIRECT:
                table(b.table, addr)
            else:
                out.append((addr, b.len, b.flags))

    table(lay.bufs, case.ring.desc_table)
    return out


def expected_slices(lay: Layout, case: Case):
    """(header_slices, data_slices) a correct device reports for this layout.

    For rx the data slices are the whole rest of the writable stream: a device
    may use a prefix of it (it never writes more than max_data_size).
    """
    mem = GuestMemory(case.regions, case.writes)
    rx = lay.queue == "rx"
    pieces = [(a, n) for a, n, f in laid_out(lay, case) if n and bool(f & F_WRITE) == rx]

    def take(n):
        out = []
        while n:
            a, left = pieces[0]
            k = min(n, left)
            out.extend(mem.slices(a, k))
            pieces[0] = (a + k, left - k)
            if pieces[0][1] == 0:
                pieces.pop(0)
            n -= k
        return tuple(out)

    header = take(HEADER_SIZE)
    data = take(sum(n for _, n in pieces) if rx else lay.header.len)
    return header, data


def prefix_len(got, want) -> int | None:
    """Bytes of `want` that `got` covers when it is a prefix of it (byte-wise), else None."""
    g, w = coalesce(got), coalesce(want)
    if len(g) > len(w) or any(x != y for x, y in zip(g[:-1], w)):
        return None
    if g and (g[-1][0] != w[len(g) - 1][0] or g[-1][1] > w[len(g) - 1][1]):
        return None
    return sum(n for _, n in g)


# --- the rows -----------------------------------------------------------------

def _row(name, group, expect, family, rule, lay: Layout) -> Row:
    case = assemble(lay)
    if expect == "reject":
        return Row(name, group, expect, family, rule, case)
    return Row(name, group, expect, family, rule, case, lay.header, expected_slices(lay, case))


def _tx(bufs, length, **kw) -> Layout:
    return Layout("tx", tuple(bufs), header=HDR._replace(len=length), **kw)


def _rx(bufs, **kw) -> Layout:
    return Layout("rx", tuple(bufs), **kw)


def _size(n: int) -> str:
    return f"{n // KiB}KiB" if n and n % KiB == 0 else f"{n}B"


def build_rows() -> list[Row]:
    rows: list[Row] = []
    add = rows.append
    facts = "virtio-vsock-facts: what real guest drivers put on the queues"

    # Linux drivers (interop): every version, tx at the sizes where layouts change, rx.
    for version in LINUX_VERSIONS:
        for indirect in (False, True):
            via = "/indirect" if indirect else ""
            for payload in (0, KiB, 32 * KiB, 33 * KiB, 64 * KiB):
                lay = linux_tx(version, payload, indirect=indirect, header=HDR)
                bug = {"5.x": "", "6.2": "; vm-virtio #204, Cloud Hypervisor #5691",
                       "6.17": "; Cloud Hypervisor #7672, libkrun #535"}[version]
                add(_row(f"tx/linux-{version}/{_size(payload)}{via}", "linux-tx", "accept", "interop",
                         f"{facts} (Linux {version}{bug})", lay))
            add(_row(f"rx/linux-{version}{via}", "linux-rx", "accept", "interop", f"{facts} (Linux {version})",
                     linux_rx(version, indirect=indirect)))

    # The header split at every offset (2.6.4: no assumption about the arrangement).
    split = "2.6.4 message framing: the header may span descriptors; a device MAY limit descriptors"
    for k in range(1, HEADER_SIZE):
        add(_row(f"tx/header-split@{k}", "header-split", "either", "conformance", split,
                 _tx([Buf(k), Buf(HEADER_SIZE - k + 64)], 64)))
    for k in range(1, HEADER_SIZE):
        add(_row(f"rx/header-split@{k}", "header-split", "either", "conformance", split,
                 _rx([Buf(k, W), Buf(HEADER_SIZE - k + PAGE, W)])))

    # Small pieces.
    pieces = "2.6.4 message framing: data may come in any number of pieces"
    add(_row("tx/data-1-byte-pieces", "pieces", "either", "conformance", pieces,
             _tx([Buf(HEADER_SIZE)] + [Buf(1)] * 64, 64)))
    add(_row("tx/header-1-byte-pieces", "pieces", "either", "conformance", pieces,
             _tx([Buf(1)] * HEADER_SIZE + [Buf(64)], 64)))
    add(_row("rx/data-1-byte-pieces", "pieces", "either", "conformance", pieces,
             _rx([Buf(HEADER_SIZE, W)] + [Buf(1, W)] * 64)))
    add(_row("tx/data-shares-header-then-next", "pieces", "either", "conformance", pieces,
             _tx([Buf(HEADER_SIZE + 16), Buf(84)], 100)))
    add(_row("tx/zero-length-descriptor", "pieces", "either", "conformance",
             "2.6.4; a zero-length buffer carries no bytes", _tx([Buf(HEADER_SIZE), Buf(0), Buf(100)], 100)))
    add(_row("tx/trailing-writable-buffer", "pieces", "either", "conformance",
             "2.6.4.2: device-writable buffers follow the readable ones; the packet ends before them",
             _tx([Buf(HEADER_SIZE + 100), Buf(64, W)], 100)))

    # Region ends: a buffer may end at the last byte of memory; one byte more is outside it
    # (Firecracker CVE-2019-18960 was an off-by-one here).
    one = (Region(0, 0x10000),)
    end = 0x10000
    cve = "Firecracker CVE-2019-18960: bounds check at the end of a memory region"
    add(_row("tx/data-ends-at-region-end", "region-end", "accept", "interop", cve,
             _tx([Buf(HEADER_SIZE), Buf(100, addr=end - 100)], 100, regions=one)))
    add(_row("tx/single-ends-at-region-end", "region-end", "accept", "interop", cve,
             _tx([Buf(HEADER_SIZE + 100, addr=end - 144)], 100, regions=one)))
    add(_row("rx/ends-at-region-end", "region-end", "accept", "interop", cve,
             _rx([Buf(HEADER_SIZE + PAGE, W, addr=end - HEADER_SIZE - PAGE)], regions=one)))
    add(_row("tx/data-one-past-region-end", "region-end", "reject", "safety", cve,
             _tx([Buf(HEADER_SIZE), Buf(100, addr=end - 99)], 100, regions=one)))
    add(_row("tx/header-one-past-region-end", "region-end", "reject", "safety", cve,
             _tx([Buf(HEADER_SIZE, addr=end - 43), Buf(100)], 100, regions=one)))
    add(_row("rx/one-past-region-end", "region-end", "reject", "safety", cve,
             _rx([Buf(HEADER_SIZE + PAGE, W, addr=end - HEADER_SIZE - PAGE + 1)], regions=one)))
    add(_row("tx/data-wraps-2^64", "region-end", "reject", "safety",
             "addr + len past 2^64 is no guest memory (Firecracker #2686 class)",
             _tx([Buf(HEADER_SIZE), Buf(100, addr=(1 << 64) - 16)], 100)))

    # Buffers crossing adjacent regions: one guest-physical range, two host mappings.
    two = (Region(0, 0x10000), Region(0x10000, 0x10000))
    holey = (Region(0, 0x10000), Region(0x20000, 0x10000))
    cross = "target-protocol: adjacent regions are separate host mappings; slices are cut at the boundary"
    add(_row("tx/data-crosses-regions", "regions", "accept", "conformance", cross,
             _tx([Buf(HEADER_SIZE), Buf(100, addr=end - 40)], 100, regions=two)))
    add(_row("tx/header-crosses-regions", "regions", "accept", "conformance", cross,
             _tx([Buf(HEADER_SIZE, addr=end - 20), Buf(100)], 100, regions=two)))
    add(_row("tx/single-crosses-regions", "regions", "accept", "conformance", cross,
             _tx([Buf(HEADER_SIZE + 100, addr=end - 60)], 100, regions=two)))
    add(_row("rx/crosses-regions", "regions", "accept", "conformance", cross,
             _rx([Buf(HEADER_SIZE + PAGE, W, addr=end - 100)], regions=two)))
    add(_row("tx/data-runs-into-hole", "regions", "reject", "safety", "a buffer in a hole is not guest memory",
             _tx([Buf(HEADER_SIZE), Buf(100, addr=end - 40)], 100, regions=holey)))

    # Misaligned buffers: the spec aligns rings (2.7.2), never buffers.
    mis = "2.7.2 aligns the rings only; buffers may start at any byte"
    add(_row("tx/misaligned-buffers", "misaligned", "accept", "conformance", mis,
             _tx([Buf(HEADER_SIZE, addr=EXPLICIT + 1), Buf(100, addr=EXPLICIT + 0x103)], 100)))
    add(_row("tx/misaligned-single", "misaligned", "accept", "conformance", mis,
             _tx([Buf(HEADER_SIZE + 100, addr=EXPLICIT + 7)], 100)))
    add(_row("rx/misaligned-buffers", "misaligned", "accept", "conformance", mis,
             _rx([Buf(HEADER_SIZE, W, addr=EXPLICIT + 3), Buf(PAGE, W, addr=EXPLICIT + 0x105)])))

    # hdr.len against max_data_size (Linux VIRTIO_VSOCK_MAX_PKT_BUF_SIZE, rust-vmm InvalidHeaderLen).
    mds = "hdr.len <= max_data_size (Linux VIRTIO_VSOCK_MAX_PKT_BUF_SIZE; rust-vmm InvalidHeaderLen)"
    for limit in (MAX_PKT_BUF_SIZE, 4 * KiB):
        add(_row(f"tx/hdr.len=max_data_size({limit})", "max-data-size", "accept", "interop", mds,
                 _tx([Buf(HEADER_SIZE), Buf(limit)], limit, max_data_size=limit)))
        add(_row(f"tx/hdr.len=max_data_size+1({limit})", "max-data-size", "reject", "fidelity", mds,
                 _tx([Buf(HEADER_SIZE), Buf(limit + 1)], limit + 1, max_data_size=limit)))
    add(_row("tx/hdr.len=2^32-1", "max-data-size", "reject", "fidelity", mds,
             _tx([Buf(HEADER_SIZE), Buf(100)], 0xFFFFFFFF)))
    add(_row("rx/data=max_data_size", "max-data-size", "accept", "interop",
             "an rx buffer of max_data_size holds a full packet",
             _rx([Buf(HEADER_SIZE, W), Buf(4 * KiB, W)], max_data_size=4 * KiB)))
    add(_row("rx/data=max_data_size+1", "max-data-size", "either", "conformance",
             "a larger rx buffer is legal (the device writes at most max_data_size); rust-vmm rejects it",
             _rx([Buf(HEADER_SIZE, W), Buf(4 * KiB + 1, W)], max_data_size=4 * KiB)))

    # Direction slips in every position (2.7.4.1: the device MUST NOT write a
    # device-readable buffer and SHOULD NOT read a device-writable one).
    slip = "2.7.4.1 buffer direction: tx reads device-readable buffers, rx writes device-writable ones"
    tx_lens, rx_lens = (HEADER_SIZE, 32, 32, 36), (HEADER_SIZE, 32, 32, 32)
    for i in range(4):
        add(_row(f"tx/writable-slip@{i}", "direction", "reject", "safety", slip,
                 _tx([Buf(n, W if j == i else 0) for j, n in enumerate(tx_lens)], 100)))
        add(_row(f"rx/readable-slip@{i}", "direction", "reject", "safety", slip,
                 _rx([Buf(n, 0 if j == i else W) for j, n in enumerate(rx_lens)])))
    frags = linux_tx("6.17", 33 * KiB, header=HDR)
    for i, where in ((0, "head"), (1, "first-fragment"), (len(frags.bufs) - 1, "last-fragment")):
        bufs = tuple(Buf(b.len, W) if j == i else b for j, b in enumerate(frags.bufs))
        add(_row(f"tx/linux-6.17/33KiB/writable-slip@{where}", "direction", "reject", "safety", slip,
                 Layout("tx", bufs, header=frags.header)))
    add(_row("tx/writable-slip-in-indirect-table", "direction", "reject", "safety", slip,
             _tx([Buf(2 * DESC_SIZE, F_INDIRECT, table=(Buf(HEADER_SIZE), Buf(100, W)))], 100)))

    # Malformed chains (2.7.13.1: no loops, chain no longer than the queue; next < queue size).
    walk = "2.7.13.1: a chain has no loops and is no longer than the queue size (ttl)"
    add(_row("tx/loop-at-head", "chain", "reject", "conformance", walk,
             _tx([Buf(HEADER_SIZE, next=0), Buf(100)], 100)))
    add(_row("tx/loop-on-data", "chain", "reject", "conformance", walk,
             _tx([Buf(HEADER_SIZE), Buf(20, F_NEXT, next=1)], 100)))
    add(_row("tx/two-cycle", "chain", "reject", "conformance", walk,
             _tx([Buf(HEADER_SIZE), Buf(20, F_NEXT, next=0)], 100)))
    add(_row("tx/loop-after-complete-packet", "chain", "reject", "conformance", walk,
             _tx([Buf(HEADER_SIZE + 100, F_NEXT, next=0)], 100)))
    add(_row("rx/loop-on-data", "chain", "reject", "conformance", walk,
             _rx([Buf(HEADER_SIZE, W), Buf(PAGE, W | F_NEXT, next=1)])))
    idx = "2.7.5: next is an index into the descriptor table (< queue size)"
    add(_row("tx/next-out-of-range", "chain", "reject", "conformance", idx,
             _tx([Buf(HEADER_SIZE, next=256), Buf(100)], 100)))
    add(_row("tx/next-out-of-range-after-packet", "chain", "reject", "conformance", idx,
             _tx([Buf(HEADER_SIZE + 100, F_NEXT, next=0xFFFF)], 100)))
    add(_row("tx/chain-over-2^32-bytes", "chain", "reject", "conformance",
             "2.7.13.1: a chain holds at most 2^32 bytes (virtio-queue 0.8.0)",
             _tx([Buf(HEADER_SIZE + 100), Buf(0xFFFFFFFF, addr=EXPLICIT), Buf(0xFFFFFFFF, addr=EXPLICIT)], 100)))

    # Queue set-up (2.7: size a power of 2 in 1..32768; the head names a descriptor).
    queue = "2.7: queue size is a power of 2 in 1..32768; the head is an index < queue size"
    single = [Buf(HEADER_SIZE + 100)]
    add(_row("tx/head-out-of-range", "queue", "reject", "conformance", queue, _tx(single, 100, head=256)))
    add(_row("tx/queue-size-0", "queue", "reject", "conformance", f"{queue} (virtio-queue #173: division by zero)",
             _tx(single, 100, size=0)))
    add(_row("tx/queue-size-3", "queue", "reject", "conformance", queue, _tx(single, 100, size=3)))
    add(_row("tx/queue-size-1", "queue", "accept", "conformance", queue, _tx(single, 100, size=1)))
    add(_row("tx/queue-size-32768", "queue", "accept", "conformance", queue, _tx(single, 100, size=32768)))

    # Indirect tables (2.7.5.3).
    ind = "2.7.5.3"
    table = (Buf(HEADER_SIZE), Buf(100))
    add(_row("tx/indirect-after-direct", "indirect", "accept", "conformance",
             f"{ind}.2 indirect descriptors: the device MUST handle normal descriptors followed by one indirect one",
             _tx([Buf(HEADER_SIZE), Buf(DESC_SIZE, F_INDIRECT, table=(Buf(100),))], 100)))
    add(_row("tx/indirect-write-flag-ignored", "indirect", "accept", "conformance",
             f"{ind}.2 indirect descriptors: the device MUST ignore WRITE on the descriptor that refers to the table",
             _tx([Buf(2 * DESC_SIZE, F_INDIRECT | W, table=table)], 100)))
    add(_row("tx/indirect-misaligned-table", "indirect", "accept", "conformance",
             f"{ind} indirect descriptors: no alignment for indirect tables (virtio-queue 0.7.1 rejected valid chains)",
             _tx([Buf(2 * DESC_SIZE, F_INDIRECT, addr=EXPLICIT + 8, table=table)], 100)))
    add(_row("tx/indirect-nested", "indirect", "reject", "conformance", f"{ind}.1 indirect descriptors: one level only",
             _tx([Buf(DESC_SIZE, F_INDIRECT, table=(Buf(2 * DESC_SIZE, F_INDIRECT, table=table),))], 100)))
    add(_row("tx/indirect-len-not-multiple-of-16", "indirect", "reject", "conformance",
             f"{ind} indirect descriptors: a table holds len/16 descriptors (virtio-queue rejects other lengths)",
             _tx([Buf(2 * DESC_SIZE + 8, F_INDIRECT, table=table)], 100)))
    add(_row("tx/indirect-len-0", "indirect", "reject", "conformance", f"{ind} indirect descriptors: an empty table is no buffer",
             _tx([Buf(0, F_INDIRECT, table=table)], 100)))
    add(_row("tx/indirect-with-next", "indirect", "reject", "conformance",
             f"{ind}.1 indirect descriptors: the driver MUST NOT set INDIRECT and NEXT together",
             _tx([Buf(2 * DESC_SIZE, F_INDIRECT, table=table), Buf(16)], 100)))
    add(_row("tx/indirect-table-in-hole", "indirect", "reject", "safety",
             f"{ind} indirect descriptors: the table must be guest memory",
             _tx([Buf(2 * DESC_SIZE, F_INDIRECT, addr=0x18000, table=table)], 100, regions=holey)))
    add(_row("tx/indirect-self-loop", "indirect", "reject", "conformance",
             f"{ind} indirect descriptors: a chain inside a table is bounded by the table size",
             _tx([Buf(2 * DESC_SIZE, F_INDIRECT, table=(Buf(HEADER_SIZE, F_NEXT, next=0), Buf(100)))], 100)))
    add(_row("tx/indirect-next-out-of-range", "indirect", "reject", "conformance",
             f"{ind} indirect descriptors: next indexes the table (< len/16)",
             _tx([Buf(2 * DESC_SIZE, F_INDIRECT, table=(Buf(HEADER_SIZE, next=7), Buf(100)))], 100)))
    return rows


_ROWS: list[Row] | None = None


def rows() -> list[Row]:
    """The matrix (built once; rows are immutable)."""
    global _ROWS
    if _ROWS is None:
        _ROWS = build_rows()
    return _ROWS


def select(pattern: str | None) -> list[Row]:
    """Rows whose name matches the regular expression (all without one)."""
    if not pattern:
        return rows()
    rx = re.compile(pattern)
    return [r for r in rows() if rx.search(r.name)]


# --- judging one answer -------------------------------------------------------

def row_issues(row: Row, answer: Answer, max_data_size: int) -> list[tuple[str, str]]:
    """What this row's own expectation says about the answer: (family, message) pairs.

    Accepting a `reject` row is leniency (conformance); whether the accepted
    packet touched memory or lengths it must not is the oracles' verdict.
    """
    if answer.faulted:
        return [("safety", f"the target {'crashed' if answer.error_class == 'crash' else 'hung'}: {answer.detail}")]
    if not answer.ok:
        if row.expect == "reject":
            return []
        why = "a layout real drivers send" if row.family == "interop" else "a spec-valid layout"
        return [(row.family, f"rejected {why} ({answer.error}: {answer.detail}); {row.rule}")]
    if row.expect == "reject":
        return [("conformance", f"accepted a chain a correct device rejects; {row.rule}")]
    out = []
    # Wrong slices on a driver layout break that driver; elsewhere they misread the packet.
    family = "interop" if row.family == "interop" else "fidelity"
    if row.header is not None and answer.header != row.header:
        out.append((family, f"header decoded as {answer.header} instead of {row.header}"))
    if row.slices is None:
        return out
    want_header, want_data = row.slices
    if coalesce(answer.header_slices) != coalesce(want_header):
        out.append((family, f"header slices {_fmt(answer.header_slices)} instead of {_fmt(want_header)}"))
    if row.case.queue == "tx":
        if coalesce(answer.data_slices) != coalesce(want_data):
            out.append((family, f"data slices {_fmt(answer.data_slices)} instead of {_fmt(want_data)}"))
        return out
    # rx: the device may use a prefix of the writable stream, at least a full packet's room.
    used = prefix_len(answer.data_slices, want_data)
    room = min(sum(n for _, n in want_data), max_data_size)
    if used is None:
        out.append((family, f"data slices {_fmt(answer.data_slices)} are not the start of the rx buffers {_fmt(want_data)}"))
    elif used < room:
        out.append((row.family, f"uses {used} of the {room} bytes of payload room the rx buffers offer"))
    return out


def _fmt(slices) -> str:
    s = ", ".join(f"[{a:#x}, {n}]" for a, n in slices[:4])
    return f"[{s}{', ...' if len(slices) > 4 else ''}]"


def _flags(result: Result, strict: bool):
    """(family, failing?) for each problem the row shows: its own issues, then oracle findings.

    Failing: an issue of a FAILING family, or a finding of severity error or
    critical (determinism is an error; differential is one under --strict);
    with --strict, everything.
    """
    for fam, _ in result.issues:
        yield fam, strict or fam in FAILING
    for f in result.findings:
        yield f.family, strict or _fails(f)


def _fails(finding) -> bool:
    return finding.family in FAILING or SEVERITY_ORDER[finding.severity] >= SEVERITY_ORDER["error"]


def blamed_family(result: Result, strict: bool = False) -> str:
    """The family a row's verdict comes from: the first failing problem, else the first
    problem, else the family the row checks."""
    flags = list(_flags(result, strict))
    failing = [fam for fam, f in flags if f]
    return (failing or [fam for fam, _ in flags] or [result.row.family])[0]


def judge(result: Result, strict: bool) -> str:
    flags = list(_flags(result, strict))
    if any(failing for _, failing in flags):
        return "fail"
    return "warn" if flags else "pass"


def run(target, *, profile: str = "spec", strict: bool = False, pattern: str | None = None,
        determinism: bool = True, progress=None) -> list[Result]:
    """Every selected row through the target and every oracle."""
    results = []
    for row in select(pattern):
        answer, findings = evaluate(target, row.case, profile=profile, strict=strict, determinism=determinism)
        res = Result(row, answer, list(findings), row_issues(row, answer, row.case.max_data_size))
        res.verdict = judge(res, strict)
        results.append(res)
        if progress:
            progress(res)
    return results


def family_verdicts(results: list[Result], strict: bool = False) -> dict[str, dict]:
    """Per oracle family: verdict (pass | warn | fail), the rows it flagged, its finding count."""
    out = {fam: {"verdict": "pass", "rows": [], "findings": 0} for fam in FAMILIES}
    for r in results:
        seen = set()
        for fam, failing in _flags(r, strict):
            v = out[fam]
            if failing:
                v["verdict"] = "fail"
            elif v["verdict"] == "pass":
                v["verdict"] = "warn"
            if fam not in seen:
                v["rows"].append(r.row.name)
                seen.add(fam)
        for f in r.findings:
            out[f.family]["findings"] += 1
    return out
