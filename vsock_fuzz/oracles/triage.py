"""Root causes: the few bugs behind many findings.

A finding's signature says what broke in one case (`header_slices`, `tx header +
10 page fragments (Linux >= 6.17)`, `header split over 2 descriptors, 3
descriptors`); many cases of one bug differ only in such details. A root cause
is the oracle and the *essential* traits of its cases: the queue, the part of
the answer that broke, the Linux layout kind without its fragment count, the
one layout trait a refusal is about. ClusterFuzz groups crashes by stack and
syzkaller by title; a device's answers have neither, so the traits are the
title.

Symptoms stand under their cause (`explained`): when several oracles fire on
one case and one of them explains the rest, the others are marked as its
consequences (Finding.cause) and join its root cause instead of standing as
root causes of their own. A slice outside guest memory, its region or the
chain (Firecracker CVE-2019-18960: a header read 24 bytes past its region)
means the device decoded bytes no descriptor gave it, so the header fields,
hdr.len and the payload limit it then reads differently follow from it; a
header decoded wrong explains hdr.len read wrong; `differential.model` (a
target and the model disagree) is explained by any other oracle on its case.
A consequence keeps a key of its own, so the same symptom on a case without
its cause (a bug of its own) is still a finding and a root cause.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from .finding import ORACLES, SEVERITY_ORDER

# conformance.valid-rejected names every unusual trait of a refused chain; the first of these
# it names is the one the refusal is about (a device refusing split headers refuses them with
# any number of descriptors, not the other way round).
TRAIT_ORDER = ("header split", "crossing adjacent regions", "rx buffers longer", "room for the header only",
               "2^32 bytes", "payload in the head descriptor", "running out of guest memory", "indirect table",
               "descriptors after the packet", "zero-length", "descriptors")
_NUMBER = re.compile(r"\b\d+\b")
_FRAGMENTS = re.compile(r"header \+ \d+ page fragments")
_IN_TABLE = " in an indirect table"


@dataclass
class RootCause:
    key: str
    oracle: str
    severity: str
    title: str
    rule: str
    findings: int = 0              # distinct findings grouped here
    symptoms: int = 0              # of them, its consequences (other oracles' findings on its cases)
    cases: int = 0                 # times seen (a finding counts every case it fired on)
    reproducer: str | None = None  # the first (most severe, then smallest) reproducer's path
    reproduce: str | None = None   # and the command that replays it
    members: list = field(default_factory=list)  # the findings' keys
    consequences: list = field(default_factory=list)  # oracles that fired only as its symptoms

    def to_json(self) -> dict:
        return {"key": self.key, "oracle": self.oracle, "severity": self.severity, "title": self.title,
                "rule": self.rule, "findings": self.findings, "cases": self.cases,
                "reproducer": self.reproducer, "reproduce": self.reproduce, "consequences": self.consequences}


# The oracles that explain others on the same case, the most telling first.
_SLICES = ("safety.slice-in-memory", "safety.slice-in-region", "safety.slice-in-chain", "safety.direction",
           "safety.read-writable")
_HEADER = ("fidelity.header-size", "fidelity.header-bytes")
# Which finding explains the others: a header slice gone wrong before a data slice, then a header decoded wrong.
_BY = tuple((name, field) for field in ("header", "data") for name in _SLICES) + tuple((name, "") for name in _HEADER)
_FOLLOW_HEADER = {"fidelity.data-len", "fidelity.max-data-size", "differential.model"}
_INDEPENDENT = {"determinism.repeat", "safety.crash", "safety.hang"}  # a second answer's: never a symptom


def explained(findings: list) -> list:
    """The findings of one case, each symptom marked with the finding that explains it."""
    if len(findings) < 2:
        return [f.but(cause=()) if f.cause else f for f in findings]
    by = next((f for name, field in _BY for f in findings if f.oracle == name and f.signature.startswith(field)),
              None)
    out = []
    for f in findings:
        cause = by if by is not None and _follows(f, by) else None
        if cause is None and f.oracle == "differential.model":
            # The disagreement is what another oracle on the case says, the worst of them.
            cause = max((o for o in findings if o.oracle not in _INDEPENDENT and o.oracle != f.oracle),
                        key=lambda o: SEVERITY_ORDER[o.severity], default=None)
        cause = () if cause is None else (cause.oracle, cause.signature)
        out.append(f if f.cause == cause else f.but(cause=cause))
    return out


def _follows(f, by) -> bool:
    if f is by or f.oracle in _INDEPENDENT:
        return False
    if by.oracle in _HEADER:
        return f.oracle in _FOLLOW_HEADER
    # A header read from bytes the device was not given explains all it then did (hdr.len, so
    # where and how much data it took); a data slice gone wrong explains what is read from it,
    # but not the header's slices.
    return by.signature.startswith("header") or not f.oracle.startswith("safety.") or f.signature == by.signature


def essential(oracle: str, signature: str, queue: str) -> tuple[str, str]:
    """(key, title) of the root cause a finding belongs to."""
    sig = signature or ""
    if oracle in ("interop.linux-rejected", "interop.linux-slices"):
        # The signature is "<queue> <shape>"; a 6.17 shape names its fragment count, no trait of the bug.
        shape = _FRAGMENTS.sub("header + N page fragments", sig.split(" ", 1)[1] if " " in sig else sig)
        verb = "rejects" if oracle.endswith("rejected") else "misreads"
        # Direct or in an indirect table (Linux's choice when the feature is negotiated), one layout:
        # the device's packet code refuses both. The findings stay apart, each with its reproducer.
        layout = shape.removesuffix(_IN_TABLE)
        return f"{oracle}:{queue}:{layout}", f"{verb} the Linux {_linux_kind(shape)} {queue} layout ({shape})"
    if oracle == "conformance.valid-rejected":
        trait = _primary_trait(sig)
        return f"{oracle}:{queue}:{trait}", f"rejects a spec-valid {queue} chain with {trait or 'no unusual trait'}"
    if oracle in ("safety.slice-in-memory", "safety.slice-in-region", "safety.slice-in-chain", "safety.direction",
                  "safety.read-writable"):
        part = sig.split("_")[0] or "a"  # header | data
        return f"{oracle}:{queue}:{part}", f"{queue} {part} slices: {_TITLES[oracle]}"
    if oracle == "conformance.malformed-accepted":
        return f"{oracle}:{sig}", f"accepts a malformed chain ({sig})"
    if oracle == "safety.crash":
        return f"{oracle}:{sig}", f"crashes ({sig or 'no detail'})"
    if oracle == "differential.model":
        kind = _NUMBER.sub("N", sig)
        return f"{oracle}:{queue}:{kind}", f"{queue}: disagrees with the model ({kind})"
    title = _TITLES.get(oracle, oracle)
    return f"{oracle}:{queue}", f"{queue}: {title}"


_TITLES = {
    "safety.slice-in-memory": "outside guest memory",
    "safety.slice-in-region": "run past the end of a memory region (CVE-2019-18960 class)",
    "safety.slice-in-chain": "outside the buffers the chain gives",
    "safety.direction": "write a device-readable buffer",
    "safety.read-writable": "read a device-writable buffer",
    "safety.hang": "hangs on a chain (unbounded walk)",
    "fidelity.header-size": "header slices are not 44 bytes",
    "fidelity.header-bytes": "decodes header fields other than memory holds",
    "fidelity.data-len": "data slices do not total hdr.len",
    "fidelity.max-data-size": "accepts hdr.len > max_data_size",
    "fidelity.slice-overlap": "header and data overlap",
    "fidelity.stream-order": "header or data out of the chain's order",
    "conformance.stream-gap": "data skips bytes of the chain after the header",
    "determinism.repeat": "the same case answered differently (state kept between packets)",
}


def _linux_kind(shape: str) -> str:
    version = ">= 6.17 multi-fragment" if "6.17" in shape else ">= 6.2" if ">= 6.2" in shape else "< 6.2"
    return version + (" indirect" if "indirect" in shape else "")


def _primary_trait(signature: str) -> str:
    traits = [t.strip() for t in signature.split(",") if t.strip()]
    for word in TRAIT_ORDER:
        for t in traits:
            if word in t:
                return _NUMBER.sub("N", t)
    return _NUMBER.sub("N", traits[0]) if traits else ""


def group(findings) -> list[RootCause]:
    """Root causes of `findings`, most severe first, then most cases.

    Each item of `findings` is a dict with `oracle`, `severity`,
    `signature`, `queue`, and optionally `cause` (the (oracle, signature) that explains
    it on its case: it joins that root cause as a consequence), `count`, `key`,
    `reproducer`, `reproduce`, `size` (of the reproducer, to pick the smallest)."""
    items = [_item(f) for f in findings]
    causes: dict[str, RootCause] = {}
    # Causes first, so a root cause is named by its own oracle and its reproducer shows it.
    ranked = sorted(items, key=lambda i: (bool(i["cause"]), -SEVERITY_ORDER[i["severity"]], i["size"]))
    for it in ranked:
        oracle, signature = it["cause"] or (it["oracle"], it["signature"])
        key, title = essential(oracle, signature, it["queue"])
        cause = causes.get(key)
        symptom = bool(it["cause"])
        if cause is None:
            rule = ORACLES[oracle].rule if oracle in ORACLES else ""
            cause = causes[key] = RootCause(key, oracle, it["severity"], title,
                                            rule if symptom else it.get("rule") or rule)
        if symptom and it["oracle"] not in cause.consequences:
            cause.consequences.append(it["oracle"])
        if SEVERITY_ORDER[it["severity"]] > SEVERITY_ORDER[cause.severity]:
            cause.severity = it["severity"]
        cause.findings += 1
        cause.symptoms += symptom
        if not (symptom and cause.cases):
            cause.cases += it["count"]  # a symptom's cases are its cause's, counted there
        cause.members.append(it["key"])
        if cause.reproducer is None and it["reproducer"]:
            cause.reproducer, cause.reproduce = it["reproducer"], it["reproduce"]
    return sorted(causes.values(), key=lambda c: (-SEVERITY_ORDER[c.severity], -c.cases, c.key))


def cause_key(oracle: str, signature: str, queue: str, cause=()) -> str:
    """The key of the root cause a finding belongs to: its own, or its cause's when it is a symptom."""
    return essential(*(tuple(cause) or (oracle, signature)), queue)[0]


def _item(f: dict) -> dict:
    return {"oracle": f["oracle"], "severity": f["severity"], "signature": f.get("signature") or "",
            "queue": f.get("queue") or "", "cause": tuple(f.get("cause") or ()), "count": f.get("count") or 1,
            "rule": f.get("rule"), "key": f.get("key") or f["oracle"], "reproducer": f.get("reproducer"),
            "reproduce": f.get("reproduce"), "size": f.get("size") or 0}


def of_findings(found) -> list[RootCause]:
    """`group` for (Finding, reproducer path or None, replay command or None) triples (replay,
    check): a case is told by its binary form, a finding by its key and case."""
    from ..case.binary import encode
    items: dict[tuple, dict] = {}
    for f, path, command in found:
        case_id = encode(f.case)
        item = items.get((f.key(), case_id))
        if item is None:
            items[(f.key(), case_id)] = {
                "oracle": f.oracle, "severity": f.severity, "signature": f.signature, "queue": f.case.queue,
                "cause": f.cause, "key": f.key(), "rule": f.rule, "reproducer": path, "reproduce": command,
                "size": len(case_id)}
        else:
            item["count"] = item.get("count", 1) + 1
    # Distinct findings are keys: one key on several cases is one finding seen several times.
    return group(items.values())
