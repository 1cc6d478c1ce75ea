"""Fuzzing figures: exec/s of each harness and engine, time to first finding per zoo bug.

    python benchmarks/bench_fuzz.py [SECTION ...] [--seconds S] [--limit S] [--zoo NAME ...] [--quick]

--quick (`make bench`): --seconds 2 --limit 5 --repeat 1 unless given, a few minutes in all;
the defaults (`make bench-full`) run 99 first-finding campaigns of up to 60 s each.

Sections:
  harnesses   exec/s of harnesses/fuzz_*.py under libFuzzer (instrumented, every oracle on),
              from an empty corpus and from the seed corpus (copied: the seeds stay as they are)
  per-case    the per-case path in this process without instrumentation, over the corpus a
              harness run grew, cut into its parts (decode, target, evaluate = the target (twice
              unless it is the pure reference) + model + oracles)
  campaign    `vsock-fuzz fuzz --target reference` exec/s for each engine (1 worker)
  first       median seconds to the first finding of each zoo bug's oracle over --repeat seeds,
              per engine, from an empty corpus and from the seed corpus (the hypothesis engine
              mutates choice sequences, so binary seeds do not apply to it); "-" = not found
              within --limit in most runs. VSOCK_FUZZ_UNINSTRUMENTED leaves modules out of coverage.
              --compare-core: atheris only, each column on the Python path and through the core.
Figures are printed, never asserted: compare runs on the same machine.
"""

from __future__ import annotations

import argparse
import io
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vsock_fuzz.engines.campaign import Campaign, Options  # noqa: E402
from vsock_fuzz.engines.percase import uninstrumented  # noqa: E402

HARNESSES = ("tx", "rx", "chain", "target")
SECTIONS = ("harnesses", "per-case", "campaign", "first")


def harness_rate(name: str, corpus: Path | None, seconds: float, work: Path) -> tuple[float, int, Path]:
    """(exec/s, execs, grown corpus dir) of one harness run of `seconds`."""
    grown = work / f"{name}-{'seeds' if corpus else 'empty'}"
    shutil.rmtree(grown, ignore_errors=True)
    if corpus:
        shutil.copytree(corpus, grown, ignore=shutil.ignore_patterns("*.dict"))
    else:
        grown.mkdir()
    env = {**os.environ, "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")}
    r = subprocess.run([sys.executable, str(ROOT / "harnesses" / f"fuzz_{name}.py"), f"-max_total_time={int(seconds)}",
                        "-seed=1", "-print_final_stats=1", f"-artifact_prefix={work}/", str(grown)],
                       capture_output=True, text=True, cwd=work, env=env)
    rate = re.search(r"stat::average_exec_per_sec:\s+(\d+)", r.stderr)
    runs = re.search(r"stat::number_of_executed_units:\s+(\d+)", r.stderr)
    if not rate:
        print(f"  fuzz_{name}: no final stats (exit {r.returncode}): {r.stderr.strip().splitlines()[-1:]}")
        return 0.0, 0, grown
    return float(rate[1]), int(runs[1]), grown


def section_harnesses(args, work: Path) -> dict:
    print(f"{'harness':<18} {'corpus':<8} {'exec/s':>8} {'execs':>9}")
    grown = {}
    for name in HARNESSES:
        for label, corpus in (("empty", None), ("seeds", ROOT / "corpus" / name)):
            rate, runs, d = harness_rate(name, corpus if corpus and corpus.is_dir() else None, args.seconds, work)
            grown[name] = d
            print(f"fuzz_{name:<13} {label:<8} {rate:>8,.0f} {runs:>9,}", flush=True)
    return grown


def rate(fn, inputs, seconds: float) -> float:
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for x in inputs:
            fn(x)
        n += len(inputs)
    return n / (time.perf_counter() - start)


def section_per_case(args, work: Path, grown: dict) -> None:
    from vsock_fuzz.case.binary import decode
    from vsock_fuzz.engines.percase import case_checker
    from vsock_fuzz.oracles import evaluate
    from vsock_fuzz.targets import open_target
    d = grown.get("target") or ROOT / "corpus" / "target"
    inputs = [p.read_bytes() for p in sorted(Path(d).iterdir()) if p.is_file() and not p.name.endswith(".dict")]
    if not inputs:
        print("no corpus to measure")
        return
    target = open_target("reference")
    cases = [decode(b) for b in inputs]
    s = min(args.seconds, 3.0)
    print(f"{len(inputs)} inputs (mean {sum(map(len, inputs)) / len(inputs):.0f} bytes) from {d}, no instrumentation")
    for label, fn, xs in (
        ("decode", decode, inputs),
        ("target.parse (reference)", target.parse, cases),
        # One evaluate row: the reference is pure, so evaluate never repeats it (determinism on or off).
        ("evaluate (every oracle, reference once)", lambda c: evaluate(target, c), cases),
        ("decode + evaluate: the per-case path", case_checker(target), inputs),
    ):
        r = rate(fn, xs, s)
        print(f"  {label:<42} {r:>9,.0f} /s {1e6 / r:8.1f} us", flush=True)


def run_campaign(opts: Options) -> Campaign:
    c = Campaign(opts, out=io.StringIO())
    c.run()
    return c


def section_campaign(args, work: Path) -> None:
    for engine in ("atheris", "hypothesis"):
        out = work / f"campaign-{engine}"
        shutil.rmtree(out, ignore_errors=True)
        c = run_campaign(Options("reference", max_time=args.seconds, engine=engine, out=str(out), seed=1, minimize_time=0))
        print(f"  {engine:<11} {c.pool.total_execs() / max(c.elapsed, 1e-9):>9,.0f} exec/s  "
              f"cov {c.pool.cov()}  corp {c.pool.corp()}", flush=True)


def first_finding(target: str, oracle: str, engine: str, seeds: list, limit: float, work: Path, seed: int,
                  compiled: str | None = None) -> float | None:
    """Seconds to the first `oracle` finding, None if not within `limit`; `compiled`: the workers'
    VSOCK_FUZZ_CORE ("0": the Python path, "1": the compiled core; None: as the environment says)."""
    out = work / "first"
    shutil.rmtree(out, ignore_errors=True)
    saved = os.environ.get("VSOCK_FUZZ_CORE")
    if compiled is not None:
        os.environ["VSOCK_FUZZ_CORE"] = compiled
    try:
        c = run_campaign(Options(target, max_time=limit, engine=engine, out=str(out), seed=seed, corpus=seeds,
                                 minimize_time=0, stop_on=(oracle,)))
    finally:
        os.environ.pop("VSOCK_FUZZ_CORE", None)
        if saved is not None:
            os.environ["VSOCK_FUZZ_CORE"] = saved
    times = [d.first for d in c.findings.values() if d.oracle == oracle]
    return min(times) if times else None


def cell(times: list) -> str:
    """Median seconds over the runs (a run that found nothing counts as infinite), and how many found it."""
    found = sorted(t for t in times if t is not None)
    ranked = found + [float("inf")] * (len(times) - len(found))
    med = ranked[len(ranked) // 2]
    return f"{'-' if med == float('inf') else f'{med:.1f}'} ({len(found)}/{len(times)})"


def section_first(args, work: Path) -> None:
    from vsock_fuzz.zoo import ORACLE, ZOO
    seeds = [str(ROOT / "corpus" / "target")]
    columns = [("atheris/empty", "atheris", [], None), ("atheris/seeds", "atheris", seeds, None),
               ("hypothesis", "hypothesis", [], None)]
    if args.compare_core:  # atheris before (the Python path) and after (the compiled core); hypothesis uses neither
        columns = [(f"{label} {name}", "atheris", corpus, flag) for label, corpus in (("empty", []), ("seeds", seeds))
                   for name, flag in (("py", "0"), ("core", "1"))]
    kind = "cmd: programs" if args.cmd else "in-process py: targets"
    print(f"median seconds to the first finding over {args.repeat} seeds (found/runs; limit {args.limit:g}s, "
          f"1 worker, {kind}, uninstrumented: {','.join(uninstrumented()) or 'none'})")
    print(f"{'zoo bug':<13} {'oracle':<26}" + "".join(f" {label:>15}" for label, *_ in columns))
    for name, module, _family in ZOO:
        if args.zoo and name not in args.zoo:
            continue
        spec = f"cmd:{sys.executable} -m {module}" if args.cmd else f"py:{module}:parse"
        oracle = ORACLE[name]
        cells = [cell([first_finding(spec, oracle, engine, corpus, args.limit, work, seed, compiled)
                       for seed in range(1, args.repeat + 1)]) for _, engine, corpus, compiled in columns]
        print(f"{name:<13} {oracle:<26}" + "".join(f" {c:>15}" for c in cells), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sections", nargs="*", metavar="SECTION", help=f"default all: {', '.join(SECTIONS)}")
    ap.add_argument("--seconds", type=float, default=None, help="seconds per exec/s figure (default 10)")
    ap.add_argument("--limit", type=float, default=None,
                    help="seconds before a first finding counts as not found (default 60)")
    ap.add_argument("--zoo", nargs="*", default=[], help="only these zoo bugs")
    ap.add_argument("--repeat", type=int, default=None, help="runs (libFuzzer seeds 1..N) per first-finding figure "
                                                              "(default 3)")
    ap.add_argument("--cmd", action="store_true", help="zoo bugs as cmd: programs rather than py: targets")
    ap.add_argument("--compare-core", action="store_true", help="first: atheris on the Python path (VSOCK_FUZZ_CORE=0) "
                                                                 "beside the compiled core, from empty and seeds")
    ap.add_argument("--quick", action="store_true", help="short budgets: --seconds 2 --limit 5 --repeat 1 unless given")
    args = ap.parse_args(argv)
    for name, (quick, full) in {"seconds": (2.0, 10.0), "limit": (5.0, 60.0), "repeat": (1, 3)}.items():
        if getattr(args, name) is None:
            setattr(args, name, quick if args.quick else full)
    bad = [s for s in args.sections if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section(s) {', '.join(bad)}; known: {', '.join(SECTIONS)}")
    todo = args.sections or SECTIONS
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s)")
    with tempfile.TemporaryDirectory(prefix="bench-fuzz-") as tmp:
        work = Path(tmp)
        grown = {}
        if "harnesses" in todo:
            print("== harnesses (libFuzzer, instrumented, every oracle on)")
            grown = section_harnesses(args, work)
        if "per-case" in todo:
            print("== per-case path")
            section_per_case(args, work, grown)
        if "campaign" in todo:
            print("== campaign on the reference")
            section_campaign(args, work)
        if "first" in todo:
            print("== time to first finding")
            section_first(args, work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
