"""Accepted departures (`--accept FILE`): root causes a device keeps on purpose.

A device may refuse some spec-valid layouts by design (rust-vmm keeps the header
in the head descriptor, so it refuses a header split over descriptors). A CI job
should fail on what is new or serious, not on that again and again. The file
lists root-cause keys (oracles.triage), each with the reason it is accepted:

    {"accepted": [{"key": "conformance.valid-rejected:tx:header split over N descriptors",
                   "reason": "the crate keeps the header in the head descriptor",
                   "title": "rejects a spec-valid tx chain with header split over N descriptors"}]}

`--write-accept FILE` writes the root causes a run failed on, their titles as
reasons to edit. Accepted root causes stay in reports, marked, and are left out
of the verdict and the exit status.
"""

from __future__ import annotations

import json

from .triage import cause_key


class AcceptError(ValueError):
    """An --accept file that cannot be used, with what is wrong with it."""


def load(path: str) -> dict[str, str]:
    """key -> reason of an --accept file."""
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except OSError as e:
        raise AcceptError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise AcceptError(f"{path} is not JSON: {e}") from None
    entries = obj.get("accepted") if isinstance(obj, dict) else None
    if not isinstance(entries, list):
        raise AcceptError(f'{path}: expected {{"accepted": [{{"key": ..., "reason": ...}}, ...]}}')
    out = {}
    for i, e in enumerate(entries):
        if not (isinstance(e, dict) and isinstance(e.get("key"), str) and isinstance(e.get("reason"), str)
                and e["reason"].strip()):
            raise AcceptError(f"{path}: entry {i} needs a \"key\" and a non-empty \"reason\" (strings)")
        out[e["key"]] = e["reason"]
    return out


def write(path: str, causes, accepted: dict[str, str] | None = None) -> int:
    """Write `causes` (triage.RootCause) as an --accept file, keeping the reasons `accepted`
    already gives; atomically. Returns how many it lists."""
    from ..case.corpus import atomic_write
    accepted = accepted or {}
    entries = [{"key": c.key, "reason": accepted.get(c.key) or "kept on purpose (say why here)", "title": c.title,
                "severity": c.severity} for c in causes]
    atomic_write(path, (json.dumps({"accepted": entries}, indent=1) + "\n").encode())
    return len(entries)


def covers(accepted: dict[str, str], finding) -> bool:
    """Whether a Finding belongs to an accepted root cause."""
    return bool(accepted) and cause_key(finding.oracle, finding.signature, finding.case.queue,
                                        finding.cause) in accepted
