"""The conformance matrix behind `vsock-fuzz check`: a fixed battery of named
layouts, each with what a correct device must do, answered by a target and
run through every oracle. Deterministic: the same rows in the same order,
built with `layout.assemble` from the table in check_rows.py, every run.

Each row states:
  expect  "accept": the device must accept, with the slices stated;
          "either": the spec lets the device choose (2.6.4: it MAY limit the
                    number of descriptors): accepting must give the stated
                    slices, rejecting is a conformance warning;
          "reject": a malformed chain or packet; accepting it counts in the
                    row's family (safety when the packet would touch memory
                    it must not, fidelity for a length the packet may not
                    have, conformance for mere leniency);
          "any":    what a described device may do as it likes (an indirect
                    table it never offered): only the oracles judge.
A device that describes itself (hello's `device`, --device...) is held to
the rows as check_rows.for_device adapts them to its offer. A Linux tx row
rejected is an interop failure unless the device also rejects the same header
and payload in another Linux layout (interop.content_rejection): then it
refuses the content, not the layout, and the row is a differential warning.
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
from ..case.layout import Layout, assemble
from ..case.value import Case
from ..case.wire import DESC_SIZE, DESC_STRUCT, F_INDIRECT, F_WRITE, HEADER_SIZE, Header
from ..model.memory import GuestMemory
from ..oracles import FAMILIES, SEVERITY_ORDER, coalesce, evaluate
from ..oracles.interop import content_rejection
from ..model.device import ASSUMED, Device
from .check_rows import HDR, SPECS, Spec, for_device  # noqa: F401  (HDR: the header the rows send)

# A problem in these families fails `check` (exit 1), as does any oracle finding of
# severity error or above; the rest are warnings unless --strict.
FAILING = ("safety", "fidelity", "interop")
EXPECTS = ("accept", "either", "reject", "any")



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
        if a.faulted or a.unsupported:
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


# --- the rows (check_rows.SPECS) --------------------------------------------

def _row(spec: Spec) -> Row:
    case = assemble(spec.layout)
    head = (spec.name, spec.group, spec.expect, spec.family, spec.rule, case)
    if spec.expect == "reject":
        return Row(*head)
    return Row(*head, spec.layout.header, expected_slices(spec.layout, case))


def build_rows(specs=SPECS) -> list[Row]:
    return [_row(spec) for spec in specs]


_ROWS: list[Row] | None = None


def rows(device: Device = ASSUMED) -> list[Row]:
    """The matrix (built once; rows are immutable), as `device` is held to it."""
    global _ROWS
    if device.described:
        return build_rows(for_device(device)[0])
    if _ROWS is None:
        _ROWS = build_rows()
    return _ROWS


def select(pattern: str | None, device: Device = ASSUMED) -> list[Row]:
    """Rows whose name matches the regular expression (all without one)."""
    if not pattern:
        return rows(device)
    rx = re.compile(pattern)
    return [r for r in rows(device) if rx.search(r.name)]


# --- judging one answer -------------------------------------------------------

def row_issues(row: Row, answer: Answer, max_data_size: int, content: Answer | None = None) -> list[tuple[str, str]]:
    """What this row's own expectation says about the answer: (family, message) pairs.

    Accepting a `reject` row is leniency (conformance); whether the accepted
    packet touched memory or lengths it must not is the oracles' verdict.
    `content`: the target's rejection of the row's header and payload in another Linux
    layout (interop.content_rejection), when it refused that too.
    """
    if answer.faulted:
        return [("safety", f"the target {'crashed' if answer.error_class == 'crash' else 'hung'}: {answer.detail}")]
    if row.expect == "any" or answer.unsupported:
        return []
    if not answer.ok:
        if row.expect == "reject":
            return []
        if content is not None:
            # The device refuses what the header says whatever the layout: no layout is at fault.
            return [("differential", f"rejected ({answer.error}: {answer.detail}) a header it also rejects in "
                                     f"another Linux layout ({content.error}): the content, not the layout")]
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
    device = getattr(target, "device", ASSUMED)
    for row in select(pattern, device):
        answer, findings = evaluate(target, row.case, profile=profile, strict=strict, determinism=determinism)
        case = device.fit(row.case)
        content = None
        if row.family == "interop" and row.expect != "reject":
            content = content_rejection(case, answer, lambda c: target.parse(device.fit(c)), device)
        res = Result(row, answer, list(findings), row_issues(row, answer, case.max_data_size, content))
        res.verdict = judge(res, strict)
        results.append(res)
        if progress:
            progress(res)
    return results


def family_verdicts(results: list[Result], strict: bool = False) -> dict[str, dict]:
    """Per oracle family: verdict (pass | warn | fail), the rows it flagged, its finding count, and
    how those findings group as the root causes do (oracles.triage): `root_causes`, the distinct
    causes of this family they make, and `consequences`, the findings that stand under another
    family's root cause (a symptom of it on the same case) instead."""
    from ..oracles.triage import cause_key
    out = {fam: {"verdict": "pass", "rows": [], "findings": 0, "root_causes": 0, "consequences": 0}
           for fam in FAMILIES}
    causes: dict[str, set] = {fam: set() for fam in FAMILIES}
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
            key = cause_key(f.oracle, f.signature, f.case.queue, f.cause)
            if key.split(".", 1)[0] == f.family:  # a key starts with its cause's oracle name
                causes[f.family].add(key)
            else:
                out[f.family]["consequences"] += 1
    for fam, keys in causes.items():
        out[fam]["root_causes"] = len(keys)
    return out
