"""What a campaign prints: libFuzzer-like status lines while it runs, the summary at the end.

Lines are returned, not printed: the campaign owns the terminal.
"""

from __future__ import annotations

import os
import shlex
import time
from typing import Iterator, Protocol

from .findings import Findings
from .options import Options
from .pool import Pool

SUMMARY_MAX = 10  # distinct findings listed per oracle


class Ended(Protocol):
    """What the summary reads of a campaign that has ended (engines.campaign.Campaign, which
    imports this module, so it is named here by what it has)."""
    o: Options
    pool: Pool
    findings: Findings
    causes: list
    elapsed: float
    stop_reason: str | None
    interrupted: bool

    def is_new(self, cause) -> bool: ...
    def failing_causes(self) -> int: ...
    def status(self) -> int: ...


def status_line(event: str, pool: Pool, findings: Findings, start: float) -> str:
    """`#N event cov: corp: exec/s: findings: crit/err/warn rss:`, libFuzzer's shape."""
    n = pool.total_execs()
    t = max(time.monotonic() - start, 1e-9)
    c = findings.by_severity()
    unsup = sum(pool.unsupported().values())
    tcov = pool.tcov()  # libFuzzer's cov counts the target's edges and ours; tcov the target's alone
    return (f"#{n}\t{event} cov: {pool.cov()}" + ("" if tcov is None else f" tcov: {tcov}")
            + f" corp: {pool.corp()} exec/s: {int(n / t)} "
            f"findings: {c['critical']}/{c['error']}/{c['warning']}" + (f" unsup: {unsup}" if unsup else "")
            + f" rss: {rss_mb(pool)}Mb")


def summary(c: Ended) -> Iterator[str]:
    """The closing summary: figures, findings grouped by oracle with their reproducers, the verdict."""
    o, pool, findings = c.o, c.pool, c.findings
    n = pool.total_execs()
    t = c.elapsed or 1e-9
    sev = findings.by_severity()
    yield ""
    yield (f"== vsock-fuzz summary: target {o.target}, {n} cases in {t:.1f}s ({int(n / t)} exec/s; "
           + ", ".join(f"{e} {k}" for e, k in execs_by_engine(pool).items()) + f"), stopped: {c.stop_reason}")
    tcov, tcmp = pool.tcov(), pool.tcmp()
    yield (f"   coverage {pool.cov()}" + ("" if tcov is None else f" ({tcov} of them the target's own edges, "
                                          f"about {max(pool.cov() - tcov, 0)} the harness's)")
           + ("" if tcmp is None else f", {tcmp} compare pairs of the target's handed to libFuzzer "
                                      f"({pool.thint()} inputs written from them)")
           + f", corpus {pool.corp()}, findings in {o.out}/")
    yield from unsupported_note(pool.unsupported(), n, pool.unsupported_examples())
    if not findings:
        yield "   no findings"
    else:
        yield (f"   {len(findings)} distinct finding(s) in {len(c.causes)} root cause(s): {sev['critical']} critical, "
               f"{sev['error']} error, {sev['warning']} warning (--fail-on {o.fail_on})")
    if o.verbose:
        for oracle, ds in findings.by_oracle(hits(pool)):
            yield from _oracle_group(c, oracle, ds)
    yield from root_causes(c.causes, findings.order[o.fail_on], c.is_new, o.out, accepted=o.accepted,
                           verbose=o.verbose)
    for e in pool.errors:
        yield f"\nharness error: {e}"
    if pool.fatal:
        yield f"\nerror: {pool.fatal}"
    code = c.status()
    why = {0: f"nothing at or above --fail-on {o.fail_on}" + (" but what --accept lists" if o.accepted else ""),
           1: f"{c.failing_causes()} root cause(s) at or above --fail-on {o.fail_on}",
           2: "the target or the harness failed", 130: "interrupted"}[code]
    yield f"\nexit status {code}: {why}"
    if not findings and o.target.startswith("reference"):
        yield ("the model keeps every rule; see a bug caught: "
               "vsock-fuzz fuzz --target py:vsock_fuzz.zoo.region_end:parse --max-time 20")
    yield ""


def root_causes(causes: list, bar: int, is_new, where: str = "", *, accepted: dict | None = None,
                verbose: bool = False) -> Iterator[str]:
    """One entry per root cause, most severe first: those at or above --fail-on in full, with their
    rule, reproducer and replay command; the rest one count line per family (`verbose`: one line
    each); those `accepted` (key -> reason, --accept) apart, with their reasons. `is_new(cause)`:
    not seen in `where` before."""
    from ..oracles import SEVERITY_ORDER
    accepted = accepted or {}
    taken = [c for c in causes if c.key in accepted]
    causes = [c for c in causes if c.key not in accepted]
    loud = [c for c in causes if SEVERITY_ORDER[c.severity] >= bar]
    quiet = [c for c in causes if SEVERITY_ORDER[c.severity] < bar]
    for i, cause in enumerate(loud, 1):
        tag = "  NEW" if is_new(cause) else ""
        yield f"\n{i}. [{cause.severity}] {cause.oracle}: {cause.title}{tag}"
        # Its consequences are findings of their own oracles' families too: said, so family counts add up.
        of_them = f" ({cause.symptoms} of them its consequences)" if cause.symptoms else ""
        yield f"   {cause.findings} distinct finding(s){of_them}, {cause.cases} case(s); rule: {cause.rule}"
        telling = [o for o in cause.consequences if o != "differential.model"]  # that one goes without saying
        if telling:
            yield f"   its consequences, not causes of their own: {', '.join(telling)}"
        if cause.reproducer:
            yield f"   reproducer {cause.reproducer}"
            yield f"   reproduce: {cause.reproduce}"
    if quiet and verbose:
        yield f"\n{len(quiet)} root cause(s) below --fail-on:"
        for cause in quiet:
            tag = " NEW" if is_new(cause) else ""
            where_ = f" -> {cause.reproducer}" if cause.reproducer else ""
            yield (f"  - [{cause.severity}]{tag} {cause.oracle}: {cause.title} "
                   f"({cause.findings} finding(s), {cause.cases} case(s)){where_}")
    elif quiet:
        yield f"\n{len(quiet)} root cause(s) below --fail-on, by family (-v lists each):"
        families: dict[str, list] = {}
        for cause in quiet:
            families.setdefault(cause.oracle.split(".", 1)[0], []).append(cause)
        for family, group in families.items():
            new = sum(1 for c in group if is_new(c))
            yield (f"  - {family}: {len(group)} ({', '.join(sorted({c.severity for c in group}))})"
                   + (f", {new} NEW" if new else ""))
    if taken:
        yield f"\n{len(taken)} accepted root cause(s) (--accept), listed, not failed:"
        for cause in taken:
            yield f"  - [{cause.severity}] {cause.oracle}: {cause.title} -- {accepted[cause.key]}"


def _oracle_group(c: Ended, oracle: str, ds: list) -> Iterator[str]:
    """One oracle's findings: all of them at or above --fail-on (up to SUMMARY_MAX), else a sample."""
    o = c.o
    yield f"\n{oracle} ({ds[0].severity}, {ds[0].rule}): {len(ds)} distinct, {sum(d.hits for d in ds)} hit(s)"
    shown = (ds if c.findings.fails(ds[0]) else [d for d in ds if d.stem][:2])[:SUMMARY_MAX]
    for d in shown:
        rep = d.minimized or d.stem
        size = minimized_note(*d.sizes) if d.minimized else \
            " (not minimized: interrupted)" if c.interrupted else \
            "" if o.minimize_time == 0 else " (not minimized)"
        yield f"  - {_one_line(d.message)}"
        yield f"    first after {d.first:.1f}s [{d.engine}]; reproducer {rep}.bin{size}"
        yield f"    reproduce: vsock-fuzz replay --target {shlex.quote(o.target)} {rep}.bin"
    if len(ds) > len(shown):
        kept = sum(1 for d in ds if d.stem) - len(shown)
        yield f"  ... and {len(ds) - len(shown)} more, {kept} of them in {o.out}/{oracle}-*.finding.json"


UNSUPPORTED_NOTE = 0.02  # the share of Unsupported answers the summary speaks of


def unsupported_note(unsupported: dict[str, int], cases: int, examples: dict[str, str]) -> Iterator[str]:
    """A line when the adapter answered Unsupported to more than a few percent of the cases:
    its commonest kind (the detail with numbers as N) and a detail of that kind as written."""
    total = sum(unsupported.values())
    if total and total >= UNSUPPORTED_NOTE * max(cases, 1):
        kind, n = max(unsupported.items(), key=lambda kv: kv[1])
        example = examples.get(kind, kind)
        yield (f"   {total} case(s) ({100 * total / max(cases, 1):.0f}%) answered Unsupported by the adapter, "
               f"judged by no oracle; commonest kind ({n}): {kind}" + ("" if example == kind else f", e.g. {example}"))


def rss_mb(pool: Pool) -> int:
    """The parent's and live workers' resident memory, in MiB."""
    pages = 0
    for pid in [os.getpid()] + [w.proc.pid for w in pool.workers if w.proc.poll() is None]:
        try:
            with open(f"/proc/{pid}/statm") as f:
                pages += int(f.read().split()[1])
        except (OSError, ValueError, IndexError):
            pass
    return pages * os.sysconf("SC_PAGE_SIZE") >> 20


def execs_by_engine(pool: Pool) -> dict[str, int]:
    per: dict[str, int] = {}
    for w in pool.workers:
        per[w.engine] = per.get(w.engine, 0) + w.execs
    return per


def hits(pool: Pool) -> dict[str, int]:
    """Hits per finding key over every worker."""
    hits: dict[str, int] = {}
    for w in pool.workers:
        for k, v in w.hits.items():
            hits[k] = hits.get(k, 0) + v
    return hits


def minimized_note(before: int, after: int) -> str:
    """The summary's note on a minimized reproducer, from the binary form's sizes before and after.

    The shrinker makes a case simpler (fewer writes and regions, shorter descriptors,
    zeroed bytes), which does not always make its binary form shorter: say so then."""
    if after < before:
        return f" (minimized: binary form {before} -> {after} bytes)"
    return f" (minimized: a simpler case, though its binary form is {after} bytes, was {before})"


def _one_line(text: str, width: int = 300) -> str:
    """A message on one line; a long one keeps its head and its tail (where a traceback ends)."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width // 2] + " ... " + text[-(width // 2):]
