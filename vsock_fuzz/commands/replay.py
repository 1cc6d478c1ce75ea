"""`vsock-fuzz replay PATH... --target SPEC`: run corpus files and directories.

One line per file: `ok`, the findings (oracle and severity), or the reason
the file could not be read. An unreadable file (corrupt JSON, unknown case
version, permission denied, vanished before it was read) does not stop the
replay: the rest of the corpus still runs, and the exit status is 2 because
the corpus was not replayed in full, even when findings were reported too
(they are printed; the summary line counts both). Otherwise 1 when a finding
is at or above --fail-on, else 0. A target that cannot be used ends the
replay with status 2.
"""

from __future__ import annotations

import sys

from ..cli import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS
from . import add_target_options

HELP = "replay corpus files and directories (binary, JSON or findings) against a target"


def add_arguments(p) -> None:
    add_target_options(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="case files or directories (read recursively)")
    p.add_argument("--fail-on", choices=("critical", "error", "warning"), default="error",
                   help="lowest severity that makes the exit status 1 (default: error)")
    p.add_argument("-q", "--quiet", action="store_true", help="print only files that are not ok, and the summary")
    p.add_argument("-v", "--verbose", action="store_true", help="print each finding's message under its file")


def run(args) -> int:
    from ..corpus import CorpusError, iter_cases
    from ..oracles import SEVERITY_ORDER, evaluate
    from ..targets import TargetError, open_target

    try:
        target = open_target(args.target, timeout=args.timeout)
    except TargetError as e:
        print(f"vsock-fuzz replay: {e}", file=sys.stderr)
        return EXIT_ERROR
    threshold = SEVERITY_ORDER[args.fail_on]
    ok = unreadable = with_findings = failing = 0
    by_severity: dict[str, int] = {}
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
            for f in findings:
                by_severity[f.severity] = by_severity.get(f.severity, 0) + 1
            if any(SEVERITY_ORDER[f.severity] >= threshold for f in findings):
                failing += 1
            names = ", ".join(f"{f.oracle} ({f.severity})" for f in findings)
            print(f"{item.path}: finding: {names}", flush=True)
            if args.verbose:
                for f in findings:
                    print(f"    {f.oracle}: {f.message}")
    except TargetError as e:
        print(f"vsock-fuzz replay: {e}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        target.close()
    total = ok + with_findings + unreadable
    sev = ", ".join(f"{s} {by_severity[s]}" for s in ("critical", "error", "warning") if s in by_severity)
    print(f"replayed {total} file(s) against {target.name}: {ok} ok, {with_findings} with findings"
          f"{f' ({sev})' if sev else ''}, {unreadable} unreadable")
    if unreadable:
        return EXIT_ERROR
    return EXIT_FINDINGS if failing else EXIT_CLEAN
