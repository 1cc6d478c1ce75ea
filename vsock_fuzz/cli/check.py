import re
import shlex
import sys
import time

from .options import add_accept, add_fail_on, add_target_options, add_verbosity, open_target_from_args, regex

HELP = "run the deterministic conformance matrix (named layouts, expected answers, every oracle) against a target"


def add_arguments(p) -> None:
    # --list runs nothing, so needs no target; run() asks for one otherwise (usage error, exit 2).
    add_target_options(p, target_required=False)
    p.set_defaults(usage_error=p.error)
    p.add_argument("--row", metavar="REGEX", type=regex, help="run only the rows whose name matches (a Python "
                   "regular expression, searched in the name)")
    p.add_argument("--list", action="store_true", help="list the rows with their expectation and rule, run nothing (no --target needed)")
    add_verbosity(p, quiet="show only failing rows (at --fail-on, else the family verdicts), the family lines "
                  "and the root causes at or above --fail-on",
                  verbose="under each row that does not pass, every finding's message (warnings too)")
    add_fail_on(p, None, "(default: the family verdicts: a failing safety, fidelity or interop row, or a "
                "finding of severity error or above; a row's unmet expectation counts as an error in "
                "those families, as a warning in the others)")
    add_accept(p)
    p.add_argument("--out", metavar="DIR", help="keep each finding's case in DIR (.bin, .json, .finding.json)")
    from .report import add_report_options
    add_report_options(p)  # JUnit: one test case per row


def run(args) -> int:
    from ..engines import check
    from . import report
    from . import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS
    from ..targets import TargetError
    from ..oracles.finding import replay_command

    if not args.list and not args.target:
        args.usage_error("the following arguments are required: --target (only --list runs without one)")
    rows = check.select(args.row)
    if args.list:
        for r in rows:
            print(f"{r.name:44} {r.expect:7} {r.family:12} {r.rule}")
        return EXIT_CLEAN
    if not rows:
        print(f"vsock-fuzz check: no row matches {args.row!r}", file=sys.stderr)
        return EXIT_ERROR
    argv = sys.argv[1:]
    target = None
    rep = report.new("check", None, spec=args.target, profile=args.profile, strict=args.strict,
                     fail_on=args.fail_on or "error", argv=argv)
    t0 = time.monotonic()
    try:
        target = open_target_from_args(args)
        results = check.run(target, profile=args.profile, strict=args.strict, pattern=args.row)
    except TargetError as e:
        print(f"vsock-fuzz check: {e}", file=sys.stderr)
        report.finish(rep, exit_code=EXIT_ERROR, error=str(e))
        report.write_for_args(rep, args)
        return EXIT_ERROR
    finally:
        if target is not None:
            target.close()
    rep["target"].update(name=str(target.name), version=str(target.version or ""), device=target.device.to_json())
    seconds = time.monotonic() - t0

    accepted = accept_rows(results, args.accept, args.strict)
    rep["rows"], rep["findings"] = [], []
    found = []  # (finding, kept file, replay command) for the root causes
    for res in results:
        rep["rows"].append(_row_entry(res))
        for f in res.findings + accepted.get(res.row.name, []):
            path = command = None
            if args.out:
                from ..case.corpus import write_finding
                stem, _ = write_finding(args.out, f)
                path = stem + ".bin"
            else:
                command = _row_command(args, res.row.name)
            rep["findings"].append(report.finding_entry(f, path=path, command=command, row=res.row.name,
                                                        accepted=f not in res.findings))
            found.append((f, path, command or replay_command(args.target, path)))
    from ..oracles.triage import of_findings
    causes = of_findings(found)
    rep["root_causes"] = report.root_cause_entries(causes, accepted=args.accept)
    families = check.family_verdicts(results, args.strict)
    rep["families"] = {fam: {"verdict": v["verdict"], "findings": v["findings"], "rows": v["rows"]}
                       for fam, v in families.items()}
    failed = any(v["verdict"] == "fail" for v in families.values()) if args.fail_on is None else \
        fails_at(results, args.fail_on)
    counts = {v: sum(1 for r in results if r.verdict == v) for v in ("pass", "warn", "fail")}

    # -q: the rows that fail the run, as the exit status judges them.
    fails = (lambda r: r.verdict == "fail") if args.fail_on is None else (lambda r: fails_at([r], args.fail_on))
    print(render_table(results, quiet=args.quiet, strict=args.strict, verbose=args.verbose, fails=fails))
    print()
    if target.device.described:
        print(describe_device(target.device))
    unsupported = sum(1 for r in results if r.answer.unsupported)
    if unsupported:
        print(f"{unsupported} row(s) answered Unsupported by the adapter (its limit, not the device's "
              f"verdict): judged by no oracle")
    print(FAMILY_HEAD)
    for fam, v in families.items():
        print(_family_line(fam, v))
    from ..oracles import SEVERITY_ORDER
    bar = SEVERITY_ORDER[args.fail_on or "error"]
    # -q leaves out the causes below --fail-on (the family lines count them); accepted ones stay listed.
    listed = [c for c in causes if not args.quiet or SEVERITY_ORDER[c.severity] >= bar or c.key in args.accept]
    if causes:
        from ..engines.summary import root_causes
        print(f"\n{len(causes)} root cause(s) behind the findings"
              + (f", {len(causes) - len(listed)} below --fail-on not listed (-q)" if len(listed) < len(causes) else "")
              + (f" (reproducers in {args.out}/):" if args.out else " (each reproduced by its row: --row NAME):"),
              end="")
        for line in root_causes(listed, bar, lambda cause: False, accepted=args.accept, verbose=args.verbose):
            print(line)
    print(f"\n{len(results)} rows in {seconds:.2f}s: {counts['pass']} pass, {counts['warn']} warn, "
          f"{counts['fail']} fail; target {target.name} {target.version}".rstrip())
    code = EXIT_FINDINGS if failed else EXIT_CLEAN
    if args.fail_on is not None:
        print(f"--fail-on {args.fail_on}: {'a finding or unmet expectation at or above it' if failed else 'nothing at or above it'}")
    report.finish(rep, exit_code=code, stats={"rows": len(results), "cases": len(results), "seconds": round(seconds, 3),
                                               "findings": len(rep["findings"]), "unsupported": unsupported,
                                               **counts})
    report.write_for_args(rep, args)
    if args.write_accept:
        from .fuzz import write_accept
        write_accept(args, causes, SEVERITY_ORDER[args.fail_on or "error"])
    return code


def accept_rows(results, accepted: dict, strict: bool) -> dict:
    """--accept: take each row's findings of accepted root causes out of its verdict, with its
    unmet expectations of their families (the same departure, seen by the row), and judge it
    again. Returns row name -> the findings taken out, which the report still lists."""
    from ..engines.check import judge
    from ..oracles.accepted import covers
    taken_out = {}
    for res in results:
        taken = [f for f in res.findings if covers(accepted, f)]
        if taken:
            res.findings = [f for f in res.findings if f not in taken]
            gone = {f.family for f in taken} - {f.family for f in res.findings}
            res.issues = [(fam, message) for fam, message in res.issues if fam not in gone]
            res.verdict = judge(res, strict)
            taken_out[res.row.name] = taken
    return taken_out


def fails_at(results, fail_on: str) -> bool:
    """Whether a finding of severity `fail_on` or above, or a row's unmet expectation counted as one
    (an error in a failing family: safety, fidelity, interop; a warning in the others), is in `results`."""
    from ..engines.check import FAILING
    from ..oracles import SEVERITY_ORDER
    bar = SEVERITY_ORDER[fail_on]
    return any(SEVERITY_ORDER["error" if fam in FAILING else "warning"] >= bar for r in results for fam, _ in r.issues) \
        or any(SEVERITY_ORDER[f.severity] >= bar for r in results for f in r.findings)


def _row_command(args, name: str) -> str:
    cmd = f"vsock-fuzz check --target {shlex.quote(args.target)} --row {shlex.quote('^' + re.escape(name) + '$')}"
    return cmd + (f" --profile {args.profile}" if args.profile != "spec" else "")


def _row_entry(res) -> dict:
    row = res.row
    return {"name": row.name, "group": row.group, "expected": row.expect, "family": row.family, "rule": row.rule,
            "got": res.got, "error": res.answer.error, "verdict": res.verdict,
            "issues": [{"family": f, "message": m} for f, m in res.issues],
            "findings": sorted({f.oracle for f in res.findings})}


def render_table(results, quiet: bool = False, strict: bool = False, verbose: bool = False, fails=None) -> str:
    """row, family (the one the verdict comes from), expected, got, verdict. `quiet`: only the rows
    that fail (`fails(result)`, by default a FAIL verdict)."""
    from ..engines.check import blamed_family
    fails = fails or (lambda r: r.verdict == "fail")
    shown = [r for r in results if not quiet or fails(r)]
    head = ("row", "family", "expected", "got", "verdict")
    body = [(r.row.name, blamed_family(r, strict), r.row.expect, r.got, r.verdict.upper() if r.verdict == "fail" else r.verdict)
            for r in shown]
    widths = [max(len(x[i]) for x in [head] + body) for i in range(len(head))]
    widths[3] = min(widths[3], 40)
    lines = ["  ".join(c.ljust(w) for c, w in zip(head, widths)).rstrip()]
    lines += ["  ".join(c[:w].ljust(w) for c, w in zip(line, widths)).rstrip() for line in body]
    for r in (r for r in shown if fails(r) or (verbose and r.verdict != "pass")):  # why
        for fam, msg in r.issues:
            lines.append(f"  {r.row.name}: {fam}: {msg}")
        for f in r.findings:
            if f.severity != "warning" or verbose:
                lines.append(f"  {r.row.name}: {f.oracle} ({f.severity}): {f.message}")
    if quiet and not shown:
        lines.append("(no row fails)")
    return "\n".join(lines)


FAMILY_HEAD = "by family: findings in root causes (as listed below); rows flagged by a finding or an unmet expectation"


def _family_line(fam: str, v: dict) -> str:
    """Its findings counted as the root causes count them: those of its own causes, and those that
    are consequences of another family's (listed under that one), so the two add up."""
    verdict = v["verdict"].upper() if v["verdict"] == "fail" else v["verdict"]
    n, other = v["findings"], v["consequences"]
    what = f"{n} findings"
    if n - other:
        what += f"{' (' + str(n - other) if other else ''} in {v['root_causes']} root cause(s){')' if other else ''}"
    if other:
        what += f", {other} consequences of other families' root causes"
    rows = v["rows"]
    if rows:
        what += f"; {len(rows)} rows flagged ({', '.join(rows[:3])}{', ...' if len(rows) > 3 else ''})"
    return f"{fam:13} {verdict:5} {what}"


def describe_device(device) -> str:
    """One line: the device the rows were adapted to and where its description came from."""
    d = device.to_json()
    parts = [f"features {', '.join(d['features']) or 'none'}" if "features" in d else "every feature"]
    parts += [f"{k} {d[k]}" for k in ("max_data_size", "max_queue_size", "max_region_size", "max_regions") if k in d]
    return f"device ({d['source']}): " + "; ".join(parts)
