"""A campaign's distinct findings, as its workers report them, ranked against --fail-on and --stop-on.

Workers already de-duplicate on disk (engines.worker's claims); this store is the parent's
view: one Distinct per key, whichever worker saw it first, with when and by which engine.
"""

from __future__ import annotations

from dataclasses import dataclass

SEVERITIES = ("critical", "error", "warning")


@dataclass
class Distinct:
    key: str
    oracle: str
    severity: str
    rule: str
    message: str
    stem: str | None  # None: counted, not kept (past worker.KEEP_BELOW)
    first: float  # seconds into the campaign
    engine: str
    new: bool
    hits: int = 1
    minimized: str | None = None
    sizes: tuple[int, int] | None = None
    signature: str = ""
    queue: str = ""
    cause: tuple = ()  # (oracle, signature) of the finding that explains it on its case


class Findings(dict):
    """Distinct findings by key (a dict, so a report reads it as one)."""

    def __init__(self, fail_on: str, stop_on: tuple = ()):
        super().__init__()
        from ..oracles import SEVERITY_ORDER
        self.order = SEVERITY_ORDER
        self.fail_on = fail_on
        self.stop_on = stop_on

    def add(self, f: dict, first: float, engine: str) -> Distinct | None:
        """The Distinct for a worker's finding message `f`; None if its key is known already."""
        if f["key"] in self:
            return None
        d = self[f["key"]] = Distinct(f["key"], f["oracle"], f["severity"], f["rule"], f["message"], f["stem"],
                                      first, engine, f["new"], signature=f.get("signature", ""),
                                      queue=f.get("queue", ""), cause=tuple(f.get("cause") or ()))
        return d

    def root_causes(self, hits: dict[str, int], target: str):
        """The distinct findings grouped into root causes (oracles.triage), most severe first."""
        import shlex
        from ..oracles.triage import group
        items = []
        for d in self.values():
            rep = d.minimized or d.stem
            items.append({"oracle": d.oracle, "severity": d.severity, "signature": d.signature, "queue": d.queue,
                          "cause": d.cause, "count": max(hits.get(d.key, 1), 1), "rule": d.rule, "key": d.key,
                          "reproducer": rep and rep + ".bin", "size": d.sizes[1] if d.sizes else 0,
                          "reproduce": rep and f"vsock-fuzz replay --target {shlex.quote(target)} "
                                               f"{shlex.quote(rep + '.bin')}"})
        return group(items)

    def rank(self, d: Distinct) -> int:
        return self.order[d.severity]

    def fails(self, d: Distinct) -> bool:
        """Whether `d` is at or above --fail-on."""
        return self.rank(d) >= self.order[self.fail_on]

    def stops(self, d: Distinct) -> bool:
        """Whether `d` matches --stop-on: an oracle name, a family, or "fail" (at or above --fail-on)."""
        return any(d.oracle == s or d.oracle.startswith(s + ".") or (s == "fail" and self.fails(d))
                   for s in self.stop_on)

    def worst_first(self) -> list[Distinct]:
        """Those kept on disk, most severe first, then in the order they were found."""
        return sorted((d for d in self.values() if d.stem), key=lambda d: (-self.rank(d), d.first))

    def by_severity(self) -> dict[str, int]:
        counts = dict.fromkeys(SEVERITIES, 0)
        for d in self.values():
            counts[d.severity] += 1
        return counts

    def by_oracle(self, hits: dict[str, int]) -> list[tuple[str, list[Distinct]]]:
        """(oracle, its findings) most severe first; each finding's hits set from the workers' `hits`."""
        groups: dict[str, list[Distinct]] = {}
        for d in self.values():
            d.hits = max(hits.get(d.key, 1), 1)
            groups.setdefault(d.oracle, []).append(d)
        return sorted(groups.items(), key=lambda kv: (-self.rank(kv[1][0]), kv[0]))
