"""Root causes: the few bugs behind many findings.

A finding's signature says what broke in one case (`header_slices`, `tx header +
10 page fragments (Linux >= 6.17)`, `header split over 2 descriptors, 3
descriptors`); many cases of one bug differ only in such details. A root cause
is the oracle and the *essential* traits of its cases: the queue, the part of
the answer that broke, the Linux layout kind without its fragment count, the
one layout trait a refusal is about. ClusterFuzz groups crashes by stack and
syzkaller by title; a device's answers have neither, so the traits are the
title.

`differential.model` says a target and the model disagree; on a case where
another oracle also fired, that oracle says why, and the differential
finding joins its root cause instead of standing alone.
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


@dataclass
class RootCause:
    key: str
    oracle: str
    severity: str
    title: str
    rule: str
    findings: int = 0              # distinct findings grouped here
    cases: int = 0                 # times seen (a finding counts every case it fired on)
    reproducer: str | None = None  # the first (most severe, then smallest) reproducer's path
    reproduce: str | None = None   # and the command that replays it
    members: list = field(default_factory=list)  # the findings' keys

    def to_json(self) -> dict:
        return {"key": self.key, "oracle": self.oracle, "severity": self.severity, "title": self.title,
                "rule": self.rule, "findings": self.findings, "cases": self.cases,
                "reproducer": self.reproducer, "reproduce": self.reproduce}


def essential(oracle: str, signature: str, queue: str) -> tuple[str, str]:
    """(key, title) of the root cause a finding belongs to."""
    sig = signature or ""
    if oracle in ("interop.linux-rejected", "interop.linux-slices"):
        # The signature is "<queue> <shape>"; a 6.17 shape names its fragment count, no trait of the bug.
        shape = _FRAGMENTS.sub("header + N page fragments", sig.split(" ", 1)[1] if " " in sig else sig)
        verb = "rejects" if oracle.endswith("rejected") else "misreads"
        return f"{oracle}:{queue}:{shape}", f"{verb} the Linux {_linux_kind(shape)} {queue} layout ({shape})"
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
    `signature`, `queue`, `case_id` (the case it fired on: differential findings
    join another oracle's root cause on the same case), and optionally `count`,
    `key`, `reproducer`, `reproduce`, `size` (of the reproducer, to pick the smallest)."""
    items = [_item(f) for f in findings]
    own: dict[str, str] = {}  # case -> the root cause of its first non-differential finding
    for it in sorted(items, key=lambda i: -SEVERITY_ORDER[i["severity"]]):
        if it["oracle"] != "differential.model" and it["case_id"]:
            own.setdefault(it["case_id"], essential(it["oracle"], it["signature"], it["queue"])[0])
    causes: dict[str, RootCause] = {}
    ranked = sorted(items, key=lambda i: (-SEVERITY_ORDER[i["severity"]], i["size"]))
    for it in ranked:
        key, title = essential(it["oracle"], it["signature"], it["queue"])
        if it["oracle"] == "differential.model" and own.get(it["case_id"]):
            key = own[it["case_id"]]
        cause = causes.get(key)
        if cause is None:
            rule = ORACLES[it["oracle"]].rule if it["oracle"] in ORACLES else ""
            cause = causes[key] = RootCause(key, it["oracle"], it["severity"], title, it.get("rule") or rule)
        if SEVERITY_ORDER[it["severity"]] > SEVERITY_ORDER[cause.severity]:
            cause.severity = it["severity"]
        cause.findings += 1
        cause.cases += it["count"]
        cause.members.append(it["key"])
        if cause.reproducer is None and it["reproducer"]:
            cause.reproducer, cause.reproduce = it["reproducer"], it["reproduce"]
    return sorted(causes.values(), key=lambda c: (-SEVERITY_ORDER[c.severity], -c.cases, c.key))


def _item(f: dict) -> dict:
    return {"oracle": f["oracle"], "severity": f["severity"], "signature": f.get("signature") or "",
            "queue": f.get("queue") or "", "case_id": f.get("case_id"), "count": f.get("count") or 1,
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
                "case_id": case_id, "key": f.key(), "rule": f.rule, "reproducer": path, "reproduce": command,
                "size": len(case_id)}
        else:
            item["count"] = item.get("count", 1) + 1
    # Distinct findings are keys: one key on several cases is one finding seen several times.
    return group(items.values())
