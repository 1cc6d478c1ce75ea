"""The gap between a device's own pace and a campaign's, and where the harness's time goes.

    python benchmarks/bench_gap.py [--seconds S] [--phase-seconds S] [--quick] [--only NAME ...]

--quick (`make bench`): --seconds 8 --phase-seconds 1 unless given; the defaults
(`make bench-full`) run each campaign 60 s.

For each target (the C example target, the rust-vmm adapter when it is built, and the
crash-prone zoo device ring_crash with its crash-free twin `--no-crash`):

  (b) campaign   `vsock-fuzz fuzz --target SPEC --max-time S` as a new user runs it (1 worker,
                 atheris, every oracle, from an empty corpus), exec/s
  (a) device     the same target through our client with no oracle, on the cases that campaign
                 kept (its grown corpus) and the seed corpus, one case per call as a campaign
                 asks (and pipelined, 256 a call, for reference), cases/s
  (c) b/a        the campaign's share of the device's pace

then a per-case breakdown in microseconds, measured without instrumentation with
time.perf_counter over the same cases: decode, fit (to the device), ask (encode, pipes,
the device, decode the answer; restarts after a crash included), the determinism
oracle's second ask (as a campaign asks it: one case in DETERMINISM_EVERY and every case
with a finding), the model, each oracle family (what the oracles share, such as the
chain walk, counts to the first family that reads it), the rest of check (contexts, the
device's alternative readings), their sum, the campaign's time per case (1 / exec/s) and
the difference: instrumentation and libFuzzer; then the share of answers that differ
from the model's, the only ones the oracles judge. For ring_crash: its campaign rate over the
crash-free twin's, and when its second bug (safety.direction, an rx rule) was first found.
Figures are printed, never asserted: compare runs on the same machine.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vsock_fuzz.case.binary import decode  # noqa: E402
from vsock_fuzz.engines.campaign import Campaign, Options  # noqa: E402
from vsock_fuzz.engines.percase import DETERMINISM_EVERY  # noqa: E402
from vsock_fuzz.model.packet import parse  # noqa: E402
from vsock_fuzz.oracles import run as oracle_run  # noqa: E402
from vsock_fuzz.oracles.finding import FAMILIES  # noqa: E402
from vsock_fuzz.targets import open_target  # noqa: E402

C_TARGET = ROOT / "examples" / "c-target" / "vsock_target"
RUST_VMM = ROOT / "adapters" / "rust" / "target" / "release" / "vsock-target-rust-vmm"
SEEDS = ROOT / "corpus" / "target"
RING_CRASH = f"cmd:{sys.executable} -m vsock_fuzz.zoo.ring_crash"
SECOND_BUG = "safety.direction"
BATCH = 256


def targets(only: list) -> list[tuple[str, str]]:
    out = []
    if C_TARGET.exists():
        out.append(("c-target", f"cmd:{C_TARGET}"))
    else:
        print(f"(no {C_TARGET.relative_to(ROOT)}: `make {C_TARGET.relative_to(ROOT)}` builds it)")
    if RUST_VMM.exists():
        out.append(("rust-vmm", f"cmd:{RUST_VMM}"))
    else:
        print(f"(no {RUST_VMM.relative_to(ROOT)}: `make adapters` builds it)")
    out += [("ring_crash", RING_CRASH), ("ring_crash-nocrash", f"{RING_CRASH} --no-crash")]
    return [t for t in out if not only or t[0] in only]


def campaign(spec: str, seconds: float, out: Path) -> Campaign:
    shutil.rmtree(out, ignore_errors=True)
    c = Campaign(Options(spec, max_time=seconds, out=str(out), seed=1, minimize_time=0), out=io.StringIO())
    c.run()
    return c


def inputs_of(dirs) -> list[bytes]:
    out = []
    for d in dirs:
        if Path(d).is_dir():
            out += [p.read_bytes() for p in sorted(Path(d).iterdir()) if p.is_file() and not p.name.endswith(".dict")]
    return out


def device_rate(target, cases: list, seconds: float, batch: int) -> float:
    """Cases/s through the client alone (no model, no oracle)."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        if batch > 1:
            for i in range(0, len(cases), batch):
                target.parse_many(cases[i:i + batch])
        else:
            for case in cases:
                target.parse(case)
        n += len(cases)
    return n / (time.perf_counter() - start)


PHASES = ("decode", "fit", "ask", "determinism: 2nd ask", "model",
          *(f"oracles: {f}" for f in FAMILIES), "rest of check")


class _Timed:
    """Oracle functions of oracles.run wrapped to add their time to their family's phase."""

    def __init__(self, totals: dict):
        self.totals = totals
        self.saved = {}

    def wrap(self, func):
        totals, key = self.totals, f"oracles: {func.oracle.family}"

        def timed(*args):
            t = time.perf_counter()
            try:
                return func(*args)
            finally:
                totals[key] += time.perf_counter() - t
        timed.oracle = func.oracle
        return timed

    def __enter__(self):
        names = [n for n, v in vars(oracle_run).items() if hasattr(v, "oracle") and callable(v)]
        for n in names + ["_ON_ACCEPT", "_ON_REJECT"]:
            self.saved[n] = getattr(oracle_run, n)
        for n in names:
            setattr(oracle_run, n, self.wrap(self.saved[n]))
        oracle_run._ON_ACCEPT = tuple(self.wrap(f) for f in self.saved["_ON_ACCEPT"])
        oracle_run._ON_REJECT = tuple(self.wrap(f) for f in self.saved["_ON_REJECT"])
        return self

    def __exit__(self, *_):
        for n, v in self.saved.items():
            setattr(oracle_run, n, v)


def phases(target, inputs: list, seconds: float, profile: str = "spec") -> tuple[dict, int, float]:
    """Mean seconds per case of each phase of oracles.evaluate's path, uninstrumented, the cases
    timed, and the share of answers that differ from the model's (the ones the oracles judge)."""
    pc = time.perf_counter
    totals = dict.fromkeys(PHASES, 0.0)
    device = target.device
    n, differing, start = 0, 0, pc()
    with _Timed(totals):
        while pc() - start < seconds or not n:
            for data in inputs:
                t0 = pc()
                case = decode(data)
                t1 = pc()
                case = device.fit(case)
                t2 = pc()
                answer = target.parse(case)
                t3 = pc()
                n += 1
                totals["decode"] += t1 - t0
                totals["fit"] += t2 - t1
                totals["ask"] += t3 - t2
                if answer.unsupported:
                    continue
                model = None if answer.faulted else parse(case, profile, device)
                t4 = pc()
                before = sum(totals[f"oracles: {f}"] for f in FAMILIES)
                found = oracle_run.check(case, answer, model=model, profile=profile, device=device)
                t5 = pc()
                # As evaluate asks again: on the campaign's schedule and on every case with a finding.
                if not answer.faulted and (found or n % DETERMINISM_EVERY == 0):
                    oracle_run.repeated(case, answer, target.parse(case), profile, model, device)
                t6 = pc()
                differing += model is not None and not oracle_run.agrees(answer, model)
                totals["model"] += t4 - t3
                totals["rest of check"] += (t5 - t4) - (sum(totals[f"oracles: {f}"] for f in FAMILIES) - before)
                totals["determinism: 2nd ask"] += t6 - t5
    return {k: v / n for k, v in totals.items()}, n, differing / n


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=None, help="seconds per campaign (default 60)")
    ap.add_argument("--phase-seconds", type=float, default=None, help="seconds per rate and breakdown (default 3)")
    ap.add_argument("--only", nargs="*", default=[], help="only these targets (c-target, rust-vmm, ring_crash, "
                                                          "ring_crash-nocrash)")
    ap.add_argument("--quick", action="store_true", help="--seconds 8 --phase-seconds 1 unless given")
    args = ap.parse_args(argv)
    args.seconds = args.seconds or (8.0 if args.quick else 60.0)
    args.phase_seconds = args.phase_seconds or (1.0 if args.quick else 3.0)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s); campaigns of {args.seconds:g}s, "
          f"1 worker, atheris, every oracle, from an empty corpus")
    rows, breakdown = [], {}
    with tempfile.TemporaryDirectory(prefix="bench-gap-") as tmp:
        for label, spec in targets(args.only):
            c = campaign(spec, args.seconds, Path(tmp) / label)
            b = c.pool.total_execs() / max(c.elapsed, 1e-9)
            firsts = {d.oracle: d.first for d in c.findings.values()}
            inputs = inputs_of([Path(tmp) / label / ".corpus" / "atheris", SEEDS])
            target = open_target(spec)
            try:
                cases = [target.device.fit(decode(x)) for x in inputs]
                target.parse(cases[0])  # started and warm
                a1 = device_rate(target, cases, args.phase_seconds, 1)
                a256 = device_rate(target, cases, args.phase_seconds, BATCH)
                per, n, differ = phases(target, inputs, args.phase_seconds)
                restarts = target.restarts
            finally:
                target.close()
            rows.append((label, b, a1, a256, len(inputs), firsts, restarts))
            breakdown[label] = (per, 1 / b if b else float("nan"), differ)
            print(f"  {label}: {c.pool.total_execs():,} cases in {c.elapsed:.1f}s, corpus {c.pool.corp()}, "
                  f"{len(inputs)} cases replayed ({restarts} restarts)", flush=True)
    print()
    print(f"{'target':<20} {'(b) campaign':>13} {'(a) device':>11} {'(c) b/a':>8} {'pipelined':>10}  first findings (s)")
    for label, b, a1, a256, _n, firsts, _r in rows:
        found = ", ".join(f"{o} {t:.1f}" for o, t in sorted(firsts.items(), key=lambda kv: kv[1])[:4]) or "none"
        print(f"{label:<20} {b:>9,.0f} /s {a1:>8,.0f} /s {b / a1:>8.2f} {a256:>8,.0f}/s  {found}")
    print("(a) one case per call, as a campaign asks; pipelined: parse_many, 256 a call")
    print()
    labels = list(breakdown)
    print(f"{'us per case':<24}" + "".join(f" {lab[:18]:>18}" for lab in labels))
    for phase in PHASES:
        print(f"{phase:<24}" + "".join(f" {1e6 * breakdown[lab][0][phase]:>18.1f}" for lab in labels))
    total = {lab: sum(breakdown[lab][0].values()) for lab in labels}
    print(f"{'= uninstrumented sum':<24}" + "".join(f" {1e6 * total[lab]:>18.1f}" for lab in labels))
    print(f"{'campaign, per case':<24}" + "".join(f" {1e6 * breakdown[lab][1]:>18.1f}" for lab in labels))
    print(f"{'instrumentation+libFuzzer':<24}" + "".join(f" {1e6 * (breakdown[lab][1] - total[lab]):>18.1f}"
                                                       for lab in labels))
    print(f"{'answers differing':<24}" + "".join(f" {100 * breakdown[lab][2]:>17.0f}%" for lab in labels)
          + "  (the model's answers skip the oracles)")
    rate = {label: b for label, b, *_ in rows}
    first = {label: f for label, _b, _a, _p, _n, f, _r in rows}
    if "ring_crash" in rate and "ring_crash-nocrash" in rate:
        t = first["ring_crash"].get(SECOND_BUG)
        print(f"\nring_crash: campaign {rate['ring_crash']:,.0f} exec/s = {rate['ring_crash'] / rate['ring_crash-nocrash']:.2f}"
              f" of its crash-free twin's {rate['ring_crash-nocrash']:,.0f}; second bug ({SECOND_BUG}) "
              + (f"first found after {t:.1f}s" if t is not None else f"not found in {args.seconds:g}s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
