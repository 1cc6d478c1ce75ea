"""`vsock-fuzz fuzz`: a time-boxed, coverage-guided campaign against one target (see engine.py)."""

import shlex
import sys

from .options import (add_accept, add_fail_on, add_target_options, add_verbosity, count, positive_int, seconds,
                      seconds_or_zero, target_options)

HELP = "run a time-boxed coverage-guided fuzzing campaign against a target"


def add_arguments(p) -> None:
    add_target_options(p)
    p.add_argument("--max-time", type=seconds, default=None, metavar="S",
                   help="the campaign's wall-clock budget, minimizing included: once a reproducer is kept, "
                        "fuzzing stops --minimize-time before the end (default: 60, or no limit with --runs)")
    p.add_argument("--runs", type=positive_int, default=None, metavar="N", help="stop after N cases in total")
    p.add_argument("--engine", choices=("atheris", "hypothesis", "both"), default="atheris",
                   help="atheris: mutate binary cases; hypothesis: atheris drives the Hypothesis strategies; "
                        "both: half the workers each (default: atheris)")
    p.add_argument("--jobs", type=positive_int, default=1, metavar="N", help="worker processes (default: 1)")
    p.add_argument("--out", default="fuzz-out", metavar="DIR",
                   help="where findings go: every distinct one at or above --fail-on, the first 20 distinct "
                        "per oracle and worker below it, the rest counted (default: ./fuzz-out)")
    p.add_argument("--seed", type=count, default=0, metavar="N", help="libFuzzer seed (default: 0, random)")
    add_fail_on(p)
    add_accept(p)
    p.add_argument("--corpus", nargs="+", default=None, metavar="DIR",
                   help="seed corpus directories (binary cases; default: the packaged seeds, "
                        "which `vsock-fuzz seeds DIR` writes out)")
    p.add_argument("--dict", default=None, metavar="FILE",
                   help="libFuzzer dictionary for the atheris engine (default: the packaged vsock.dict)")
    p.add_argument("--no-seeds", action="store_true",
                   help="start from an empty corpus with no dictionary: leave out the packaged seeds and "
                        "vsock.dict (a --corpus or --dict given still applies)")
    p.add_argument("--stop-on", nargs="+", default=[], metavar="ORACLE",
                   help="end the campaign at the first finding of these oracles or families "
                        "(e.g. safety.crash, safety), or 'fail': any finding at or above --fail-on")
    add_verbosity(p, quiet="leave out the pulse lines (the NEW finding lines and the summary remain)",
                  verbose="the summary lists every distinct finding by oracle, not one entry per root cause")
    p.add_argument("--fail-on-new", action="store_true",
                   help="exit 1 only for root causes at or above --fail-on that no earlier run into the same "
                        "--out recorded for the same --target (its root-causes.json); the known ones are listed, not failed")
    p.add_argument("--coverage", choices=("target", "harness", "both"), default=None,
                   help="what guides mutation: the target's own edges, through the coverage channel a cmd: "
                        "target takes in hello (docs/protocol-extensions.md), the harness's instrumented Python, "
                        "or both (default: target when the target takes the channel, else harness)")
    p.add_argument("--minimize-time", type=seconds_or_zero, default=None, metavar="S",
                   help="seconds for minimizing the reproducers, the last part of --max-time (less than it); "
                        "without --max-time, after the campaign (default: a quarter of --max-time, at most 60; "
                        "15 with --runs alone; 0: do not minimize)")
    from .report import add_report_options
    add_report_options(p)  # JUnit: one test case per oracle


def run(args) -> int:
    import sys
    from . import report
    from ..model.compiled import say_if_missing
    from ..engines.campaign import Campaign, Options
    if args.profile == "spec":
        say_if_missing()  # the workers would each say it
    max_time = args.max_time if args.max_time is not None else (None if args.runs else 60.0)
    rep = report.new("fuzz", None, spec=args.target, profile=args.profile, strict=args.strict,
                     fail_on=args.fail_on, argv=sys.argv[1:])
    camp = Campaign(Options(
        target=args.target, max_time=max_time, runs=args.runs, engine=args.engine, jobs=args.jobs,
        out=args.out, seed=args.seed, profile=args.profile, strict=args.strict, fail_on=args.fail_on,
        corpus=_seeds(args)[0], timeout=args.timeout, dict=_seeds(args)[1], minimize_time=args.minimize_time,
        coverage=args.coverage,
        stop_on=tuple(args.stop_on), target_options=_limits(args), verbose=args.verbose,
        fail_on_new=args.fail_on_new, quiet=args.quiet, accepted=args.accept))
    code = camp.run()
    if args.write_accept:
        write_accept(args, camp.causes, camp.findings.order[args.fail_on])
    if args.json or args.junit or args.markdown or getattr(args, "sarif", None):
        _report(rep, camp, code, args)
    return code


def write_accept(args, causes, bar: int) -> None:
    """--write-accept: the root causes at or above --fail-on, and those --accept already lists."""
    from ..oracles import SEVERITY_ORDER
    from ..oracles.accepted import write
    listed = [c for c in causes if SEVERITY_ORDER[c.severity] >= bar or c.key in args.accept]
    try:
        n = write(args.write_accept, listed, args.accept)
    except OSError as e:
        print(f"vsock-fuzz: cannot write {args.write_accept}: {e.strerror}", file=sys.stderr)
        return
    print(f"{n} root cause(s) written to {args.write_accept}: give each its reason, then pass --accept "
          f"{shlex.quote(args.write_accept)}")


def _seeds(args) -> tuple[list, str | None]:
    """The seed corpus directories and dictionary: the packaged ones unless given or --no-seeds."""
    import os
    from ..engines.seeds import packaged
    corpus, dictionary = args.corpus, args.dict
    if not args.no_seeds:
        if corpus is None:
            corpus = [os.path.join(packaged(), "target")]
        if dictionary is None:
            dictionary = os.path.join(packaged(), "vsock.dict")
    return list(corpus or []), dictionary


def _limits(args) -> dict:
    """The target options the campaign passes to open_target besides --timeout (its own field)."""
    opts = target_options(args)
    del opts["timeout"]
    return opts


def _report(rep: dict, camp, code: int, args) -> None:
    """The campaign's distinct findings (their .finding.json files) as a report."""
    import json
    from . import report
    from ..oracles.triage import cause_key
    report.describe_target(rep, args.target, **target_options(args))
    for d in sorted(camp.findings.values(), key=lambda d: (-camp.findings.rank(d), d.first)):
        stem = d.minimized or d.stem
        try:
            with open(stem + ".finding.json") as f:
                obj = json.load(f)
        except (OSError, ValueError, TypeError):  # TypeError: counted, not kept (stem None)
            obj = {"oracle": d.oracle, "family": d.oracle.split(".", 1)[0], "severity": d.severity,
                   "rule": d.rule, "message": d.message, "key": d.key}
        rep["findings"].append(report.entry_from_json(
            obj, path=stem and stem + ".bin", count=max(d.hits, 1),
            command=f"vsock-fuzz replay --target {shlex.quote(args.target)} {shlex.quote(stem + '.bin')}" if stem
            else "not kept: more findings of this oracle below --fail-on than the campaign keeps",
            accepted=cause_key(d.oracle, d.signature, d.queue, d.cause) in args.accept))
    rep["root_causes"] = report.root_cause_entries(camp.causes, camp.is_new, args.accept)
    n, t = camp.pool.total_execs(), camp.elapsed
    stats = {"cases": n, "seconds": round(t, 3), "exec_per_sec": int(n / t) if t else 0,
             "coverage": camp.pool.cov(), "corpus": camp.pool.corp(), "distinct_findings": len(camp.findings),
             "unsupported": sum(camp.pool.unsupported().values())}
    if camp.o.coverage is not None:  # settled by the probe; None when the run could not start
        rep["target"]["guided_by"] = camp.o.coverage
    if camp.pool.tcov() is not None:  # the target took the coverage channel
        stats["target_coverage"] = camp.pool.tcov()
    if camp.pool.tcmp() is not None:  # and recorded its compares (shm-8bit-v2)
        stats["target_compares_fed"] = camp.pool.tcmp()
        stats["target_compares_written"] = camp.pool.thint()
    report.write_for_args(report.finish(rep, exit_code=code, stats=stats, error=camp.why_incomplete()), args)
