"""Findings and the oracle registry: what an oracle reports and how it is named.

An oracle's name is `<family>.<what>`; the family fixes where it is listed
(FAMILIES) and its default severity is one of SEVERITY_ORDER's, from
`warning` up to `critical`.

Severities follow the spec's words (`word`, the rule's MUST / MUST NOT /
SHOULD NOT, or "-" where the rule is no sentence of the spec but a real bug
class or a driver's layout): a rule whose breach lets a guest touch host
memory or crash or hang the device is critical; any other MUST broken is an
error; a SHOULD is a warning or an error, with the reason in the oracle's
docstring. The few warnings that stand for a MUST say why beside the oracle.
"""

from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass

from ..case.binary import encode
from ..case.value import Case
from ..model.answer import Answer

SEVERITY_ORDER = {"warning": 0, "error": 1, "critical": 2}
FAMILIES = ("safety", "fidelity", "interop", "conformance", "differential", "determinism")


@dataclass(frozen=True)
class Finding:
    oracle: str
    family: str
    severity: str
    rule: str
    message: str
    case: Case
    answer: Answer
    signature: str = ""          # what distinguishes two findings of one oracle
    target: str | None = None    # the target spec, for the reproduce command
    indirect: bool = False       # the chain goes through an indirect table
    cause: tuple[str, str] = ()  # (oracle, signature) of the finding on the same case that explains this one

    def but(self, **changes) -> "Finding":
        """A copy with `changes`: dataclasses.replace without its introspection of the fields,
        which cost more than the oracles on a case the per-case path judges (every finding is
        stamped with its target, and a consequence with its cause)."""
        new = object.__new__(Finding)
        new.__dict__.update(self.__dict__, **changes)
        new.__dict__.pop("_key", None)
        return new

    def key(self) -> str:
        """De-duplication key: what tells two bugs of one oracle apart (the queue, direct or
        indirect, the signature of what broke) and, for a consequence, what it follows from:
        a bug must never share its key with another one's (one found first would hide it).
        Kept once made: a fuzz worker asks it of every finding, and judge hands out a judged
        case's findings again."""
        key = self.__dict__.get("_key")
        if key is None:
            key = self.__dict__["_key"] = finding_key(self.oracle, self.case.queue, self.signature, self.indirect,
                                                      self.cause)
        return key

    def file_stem(self) -> str:
        """`<oracle>-<sha1 of binary case>`, the name of the finding's files on disk."""
        return f"{self.oracle}-{hashlib.sha1(encode(self.case)).hexdigest()}"

    def reproduce(self, target: str | None = None, path: str | None = None) -> str:
        """The replay command; `path` is the reproducer as written (relative to the directory the
        command that wrote it ran in, or absolute), else its bare file name."""
        return replay_command(target or self.target, path or f"{self.file_stem()}.bin")

    def to_json(self, target: str | None = None, path: str | None = None) -> dict:
        return {
            "oracle": self.oracle, "family": self.family, "severity": self.severity,
            "rule": self.rule, "message": self.message, "signature": self.signature,
            "key": self.key(), "target": target or self.target, "queue": self.case.queue,
            "indirect": self.indirect, "cause": list(self.cause) or None,
            "case": self.case.to_request(), "binary": encode(self.case).hex(),
            "answer": self.answer.to_json(), "reproduce": self.reproduce(target, path),
        }


def finding_key(oracle: str, queue: str, signature: str, indirect: bool = False, cause=()) -> str:
    """`oracle:queue[/indirect][:signature][ <- cause oracle[:signature]]`."""
    key = f"{oracle}:{queue}{'/indirect' if indirect else ''}" + (f":{signature}" if signature else "")
    if cause:
        key += " <- " + ":".join(part for part in cause if part)
    return key


def replay_command(target: str | None, path: str) -> str:
    """`vsock-fuzz replay --target SPEC PATH`, quoted for a shell (SPEC unknown: TARGET)."""
    return f"vsock-fuzz replay --target {shlex.quote(target or 'TARGET')} {shlex.quote(path)}"


# --- oracle registry ------------------------------------------------------------

WORDS = ("MUST", "MUST NOT", "SHOULD NOT", "-")


@dataclass(frozen=True)
class Oracle:
    name: str
    family: str
    severity: str
    rule: str
    func: object
    word: str = "-"


ORACLES: dict[str, Oracle] = {}


def oracle(name: str, severity: str, rule: str, word: str = "-"):
    """Register an oracle: `func(ctx)` calls `ctx.emit(message, signature)` for each violation."""
    assert word in WORDS, word
    def register(func):
        ORACLES[name] = Oracle(name, name.split(".", 1)[0], severity, rule, func, word)
        func.oracle = ORACLES[name]
        return func
    return register



def worst(findings) -> str | None:
    """The highest severity among `findings`, or None."""
    return max((f.severity for f in findings), key=SEVERITY_ORDER.__getitem__, default=None)
