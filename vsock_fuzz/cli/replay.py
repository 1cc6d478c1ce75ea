"""`vsock-fuzz replay PATH... --target SPEC`: run corpus files and directories.

Each case once: a kept finding's `X.bin`, `X.json` and `X.finding.json` are
one case, replayed from the `.bin` (else the `.json`, else the finding) and
counted once (case.corpus.one_per_stem).

One line per case file: `ok`, the findings (oracle and severity), or the reason
the file could not be read. An unreadable file (corrupt JSON, unknown case
version, permission denied, vanished before it was read) does not stop the
replay: the rest of the corpus still runs, and the exit status is 2 because
the corpus was not replayed in full, even when findings were reported too
(they are printed; the summary line counts both). Otherwise 1 when a finding
is at or above --fail-on, else 0. No case file at all under PATH... (an
empty folder, a regressions folder that was never filled) is status 2 too:
replaying nothing passes nothing. A target that cannot be used ends the
replay with status 2. An interrupt (Ctrl-C) prints the summary of what ran
and exits 130.
"""

from __future__ import annotations

import shlex
import sys
import time

from . import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS
from .options import add_accept, add_fail_on, add_target_options, add_verbosity, open_target_from_args

HELP = ("replay corpus files and directories (binary, JSON or findings) against a target; a kept finding's "
        "X.bin, X.json and X.finding.json are one case, replayed once from the .bin")


def add_arguments(p) -> None:
    add_target_options(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="case files or directories (read recursively; one case per stem: X.bin, "
                   "else X.json, else X.finding.json)")
    add_fail_on(p)
    add_accept(p)
    add_verbosity(p, quiet="print only files that are not ok, and the summary",
                  verbose="print each finding's message under its file")
    from .report import add_report_options
    add_report_options(p)  # JUnit: one test case per oracle


def run(args) -> int:
    from . import report
    from ..case.corpus import CorpusError, iter_cases
    from ..oracles import SEVERITY_ORDER, evaluate
    from ..oracles.accepted import covers
    from ..targets.command import TargetError

    rep = report.new("replay", None, spec=args.target, profile=args.profile, strict=args.strict,
                     fail_on=args.fail_on, argv=sys.argv[1:])
    t0 = time.monotonic()

    def done(code: int, error: str | None = None) -> int:
        stats = {"files": ok + with_findings + unreadable, "ok": ok, "with_findings": with_findings,
                 "unreadable": unreadable, "seconds": round(time.monotonic() - t0, 3)}
        report.write_for_args(report.finish(rep, exit_code=code, stats=stats, error=error), args)
        return code

    ok = unreadable = with_findings = failing = 0
    try:
        target = open_target_from_args(args)
    except TargetError as e:
        print(f"vsock-fuzz replay: {e}", file=sys.stderr)
        return done(EXIT_ERROR, str(e))
    rep["target"].update(name=str(target.name), version=str(target.version or ""))
    threshold = SEVERITY_ORDER[args.fail_on]
    by_severity: dict[str, int] = {}
    found = []  # (finding, file, replay command) for the root causes
    try:
        for item in iter_cases(args.paths):
            if isinstance(item, CorpusError):
                unreadable += 1
                print(f"{item.path}: error: {item.problem}", flush=True)
                continue
            _, findings = evaluate(target, item.case, profile=args.profile, strict=args.strict)
            if not findings:
                ok += 1
                if not args.quiet:
                    print(f"{item.path}: ok", flush=True)
                continue
            with_findings += 1
            findings.sort(key=lambda f: -SEVERITY_ORDER[f.severity])
            command = f"vsock-fuzz replay --target {shlex.quote(args.target)} {shlex.quote(item.path)}"
            for f in findings:
                by_severity[f.severity] = by_severity.get(f.severity, 0) + 1
                rep["findings"].append(report.finding_entry(f, path=item.path, accepted=covers(args.accept, f)))
                found.append((f, item.path, command))
            if any(SEVERITY_ORDER[f.severity] >= threshold and not covers(args.accept, f) for f in findings):
                failing += 1
            names = ", ".join(f"{f.oracle} ({f.severity})" for f in findings)
            print(f"{item.path}: finding: {names}", flush=True)
            if args.verbose:
                for f in findings:
                    print(f"    {f.oracle}: {f.message}")
    except TargetError as e:
        print(f"vsock-fuzz replay: {e}", file=sys.stderr)
        return done(EXIT_ERROR, str(e))
    except KeyboardInterrupt:
        interrupted = True
    else:
        interrupted = False
    finally:
        target.close()
    total = ok + with_findings + unreadable
    sev = ", ".join(f"{s} {by_severity[s]}" for s in ("critical", "error", "warning") if s in by_severity)
    if found:
        from ..engines.summary import root_causes
        from ..oracles.triage import of_findings
        causes = of_findings(found)
        rep["root_causes"] = report.root_cause_entries(causes, accepted=args.accept)
        print(f"{len(causes)} root cause(s):", end="")
        for line in root_causes(causes, threshold, lambda cause: False, accepted=args.accept, verbose=args.verbose):
            print(line)
        if args.write_accept:
            from .fuzz import write_accept
            write_accept(args, causes, threshold)
    print(f"replayed {total} case(s) against {target.name}: {ok} ok, {with_findings} with findings"
          f"{f' ({sev})' if sev else ''}, {unreadable} unreadable{' (interrupted)' if interrupted else ''}")
    if interrupted:
        return done(130, "interrupted")
    if unreadable:
        return done(EXIT_ERROR, f"{unreadable} file(s) could not be read")
    if not total:
        why = f"no case files in {' '.join(args.paths)} (an empty corpus replays nothing)"
        print(f"vsock-fuzz replay: error: {why}", file=sys.stderr)
        return done(EXIT_ERROR, why)
    return done(EXIT_FINDINGS if failing else EXIT_CLEAN)
