"""`vsock-fuzz minimize CASE --target SPEC`: shrink a case while the same oracle still fires.

The oracle is --oracle, else the finding's own when CASE is a finding file,
else the most severe one that fires on CASE. The smallest case is written to
--out as `<oracle>-<sha1>.bin`, `.json` and `.finding.json` (the layout of a
findings directory) and printed readably. Exit status 0 when a case was
written, 2 when CASE cannot be read, the target cannot be used or the oracle
does not fire on CASE.
"""

from __future__ import annotations

import sys

from . import EXIT_CLEAN, EXIT_ERROR
from .options import add_target_options, add_verbosity, open_target_from_args, positive_int, seconds
from ..case.binary import encode

HELP = "shrink a failing case while the same oracle fires; write it in both encodings"


def add_arguments(p) -> None:
    add_target_options(p)
    p.add_argument("case", metavar="CASE", help="case file (binary, JSON or finding)")
    p.add_argument("--oracle", metavar="NAME", help="the oracle that must keep firing (default: see above)")
    p.add_argument("--out", default=".", metavar="DIR", help="directory for the minimized case (default: .)")
    p.add_argument("--budget", type=positive_int, default=None, metavar="N", help="at most N target evaluations")
    p.add_argument("--max-time", type=seconds, default=None, metavar="S", help="stop shrinking after S seconds")
    add_verbosity(p, quiet="print only what was written, not the minimized case",
                  verbose="print the case before minimizing too")


def _fail(msg: str) -> int:
    print(f"vsock-fuzz minimize: {msg}", file=sys.stderr)
    return EXIT_ERROR


def run(args) -> int:
    from ..case.corpus import CorpusError, read_case, write_finding
    from ..engines.minimize import DEFAULT_BUDGET, fires, shrink
    from ..oracles import SEVERITY_ORDER, evaluate
    from .render import render
    from ..targets.command import ModelTarget, TargetError

    from ..oracles import ORACLES
    if args.oracle is not None and args.oracle not in ORACLES:
        print(f"vsock-fuzz minimize: error: --oracle {args.oracle}: no such oracle (known: "
              f"{', '.join(sorted(ORACLES))})", file=sys.stderr)
        return EXIT_ERROR
    try:
        entry = read_case(args.case)
    except CorpusError as e:
        return _fail(str(e))
    try:
        target = open_target_from_args(args)
    except TargetError as e:
        return _fail(str(e))
    try:
        _, findings = evaluate(target, entry.case, profile=args.profile, strict=args.strict)
        oracle = args.oracle or (entry.finding or {}).get("oracle")
        if oracle is None:
            if not findings:
                return _fail(f"{args.case}: no oracle fires on this case against {target.name}; nothing to minimize")
            oracle = max(findings, key=lambda f: SEVERITY_ORDER[f.severity]).oracle
        if not any(f.oracle == oracle for f in findings):
            fired = ", ".join(sorted({f.oracle for f in findings})) or "none"
            why = ""
            if oracle == "determinism.repeat" and isinstance(target, ModelTarget):
                why = "; the reference model is pure and asked once per case, so determinism cannot fire on it"
            return _fail(f"{args.case}: oracle {oracle} does not fire on this case against {target.name} "
                         f"(fires: {fired}){why}")
        before = len(encode(entry.case))
        small = shrink(entry.case, fires(target, oracle, profile=args.profile, strict=args.strict),
                       budget=args.budget or DEFAULT_BUDGET, timeout=args.max_time)
        _, findings = evaluate(target, small, profile=args.profile, strict=args.strict)
        finding = next(f for f in findings if f.oracle == oracle)
    except TargetError as e:
        return _fail(str(e))
    except StopIteration:  # a flaky target: the oracle fired during shrinking, not now
        return _fail(f"oracle {oracle} no longer fires on the minimized case: is the target deterministic?")
    finally:
        target.close()
    try:
        stem, _ = write_finding(args.out, finding, args.target)
    except OSError as e:
        return _fail(f"{args.out}: cannot write: {e.strerror or e}")
    print(f"minimized {args.case}: {before} -> {len(encode(small))} bytes (binary form), oracle {oracle} still fires")
    print(f"wrote {stem}.bin, {stem}.json, {stem}.finding.json")
    if args.verbose:
        print(f"\n== before ({args.case})")
        sys.stdout.write(render(entry.case, None))
        print("\n== after")
    if not args.quiet:
        if not args.verbose:
            print()
        sys.stdout.write(render(small, finding.to_json(args.target, stem + ".bin")))
    return EXIT_CLEAN
