"""The gap between a device's own pace and a campaign's, and where the harness's time goes.

    python benchmarks/bench_gap.py [--seconds S] [--phase-seconds S] [--quick] [--only NAME ...] [--repeat N]

--quick (`make bench`): --seconds 8 --phase-seconds 1 unless given; the defaults
(`make bench-full`) run each campaign 60 s. --repeat N: N campaigns through the core per
target, each followed by (a), their medians in the table and each pair's b/a below it (on a
virtual machine whose pace moves by a sixth from one minute to the next, one pair says little).

For each target (the C example target, both rust-vmm adapters when they are built, and three
crash-prone devices with their crash-free twins: the C example built to abort on every
unmapped available ring, as libkrun panicked, the Rust kit's example device built to panic
there (its campaigns with RUST_BACKTRACE=1 in their environment, as a developer's shell often
has it), and the zoo's ring_crash, a Python program):

  (b) campaign   `vsock-fuzz fuzz --target SPEC --max-time S` as a new user runs it (1 worker,
                 atheris, every oracle, from an empty corpus), exec/s, twice: on the Python
                 path (VSOCK_FUZZ_CORE=0: before the compiled core) and through the core
  (a) device     the same target through our client with no oracle, on the cases the core's
                 campaign kept (its grown corpus) and the seed corpus, one case per call as a
                 campaign asks (and pipelined, 256 a call, for reference), cases/s; the target
                 asked to poll its input as a one-worker campaign asks it (a Rust kit adapter
                 does), and for reference never asked (unpolled: a wake-up per case)
  (c) b/a        each campaign's share of the device's pace

then a per-case breakdown in microseconds of each path, measured without instrumentation
with time.perf_counter over the same cases. The Python path: decode, fit (to the device),
ask (encode, pipes, the device, decode the answer; restarts after a crash included), the
determinism oracle's second ask (as a campaign asks it: one case in DETERMINISM_EVERY and
every case with a finding), the model, each oracle family (what the oracles share, such as
the chain walk, counts to the first family that reads it), the rest of check. The core's
path (engines.percase._core_checker): decode and fit in the core, ask, the core's
comparison with the model's readings, judge (an answer that differs: the Python case, model
and oracles), the sampled second ask. Each with its sum, the campaign's time per case
(1 / exec/s) and the difference: instrumentation and libFuzzer; then the share of answers
that differ from the model's, the only ones the oracles judge. For the crash-prone devices:
their campaign rate over their crash-free twin's on each path, and when the zoo's second bug
(safety.direction, an rx rule) was first found. Figures are printed, never asserted:
compare runs on the same machine.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import subprocess
import sys
import tempfile
import time
from statistics import median
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vsock_fuzz.case.binary import decode  # noqa: E402
from vsock_fuzz.engines.campaign import NO_BACKTRACES, Campaign, Options  # noqa: E402
from vsock_fuzz.engines.percase import DETERMINISM_EVERY  # noqa: E402
from vsock_fuzz.engines.summary import hits  # noqa: E402
from vsock_fuzz.model.packet import parse  # noqa: E402
from vsock_fuzz.model.compiled import load as load_core  # noqa: E402
from vsock_fuzz.oracles import run as oracle_run  # noqa: E402
from vsock_fuzz.oracles.run import judge  # noqa: E402
from vsock_fuzz.oracles.finding import FAMILIES  # noqa: E402
from vsock_fuzz.targets import CommandTarget, open_target  # noqa: E402

C_TARGET = ROOT / "examples" / "c-target" / "vsock_target"
RUST_VMM = ROOT / "adapters" / "rust" / "target" / "release" / "vsock-target-rust-vmm"
RUST_VMM_02 = ROOT / "adapters" / "rust" / "target" / "release" / "vsock-target-rust-vmm-0-2"
RUST_EXAMPLE = ROOT / "adapters" / "rust" / "target" / "release" / "vsock-target-example"
PANIC_TWIN_DIR = ROOT / "adapters" / "rust" / "target" / "avail-panic"
# The environment a target's campaign runs in beyond ours: the panicking twin's with Rust's
# backtraces on, as a developer's shell often has them (a campaign turns them off for its targets).
ENVIRONMENT = {"rust-avail-panic": {"RUST_BACKTRACE": "1"}}
SEEDS = ROOT / "corpus" / "target"
RING_CRASH = f"cmd:{sys.executable} -m vsock_fuzz.zoo.ring_crash"
SECOND_BUG = "safety.direction"
BATCH = 256


def targets(only: list, tmp: Path) -> list[tuple[str, str]]:
    out = []
    if C_TARGET.exists():
        out.append(("c-target", f"cmd:{C_TARGET}"))
        crashing = tmp / "vsock_target_avail_crash"
        built = subprocess.run([os.environ.get("CC", "cc"), "-O2", "-DCRASH_ON_UNMAPPED_AVAIL", "-o", str(crashing),
                                str(C_TARGET) + ".c"], capture_output=True, text=True)
        if built.returncode == 0:
            out.append(("c-avail-crash", f"cmd:{crashing}"))
        else:
            print(f"(the C example's crash-prone twin did not build: {built.stderr.strip()[:200]})")
    else:
        print(f"(no {C_TARGET.relative_to(ROOT)}: `make {C_TARGET.relative_to(ROOT)}` builds it)")
    for label, path in (("rust-vmm", RUST_VMM), ("rust-vmm-0.2", RUST_VMM_02), ("rust-example", RUST_EXAMPLE)):
        if path.exists():
            out.append((label, f"cmd:{path}"))
        else:
            print(f"(no {path.relative_to(ROOT)}: `make adapters` builds it)")
    if RUST_EXAMPLE.exists() and (not only or "rust-avail-panic" in only):
        # Its own target directory: the same package with another feature would overwrite the example.
        built = subprocess.run(["cargo", "build", "--release", "--locked", "-q", "-p", "vsock-target-example",
                                "--features", "panic-on-unmapped-avail", "--target-dir", str(PANIC_TWIN_DIR)],
                               cwd=ROOT / "adapters" / "rust", capture_output=True, text=True)
        if built.returncode == 0:
            out.append(("rust-avail-panic", f"cmd:{PANIC_TWIN_DIR / 'release' / 'vsock-target-example'}"))
        else:
            print(f"(the Rust example's panicking twin did not build: {built.stderr.strip()[:200]})")
    out += [("ring_crash", RING_CRASH), ("ring_crash-nocrash", f"{RING_CRASH} --no-crash")]
    return [t for t in out if not only or t[0] in only]


def campaign(spec: str, seconds: float, out: Path, compiled: bool, env: dict | None = None, seed: int = 1) -> Campaign:
    """A campaign's workers take the core unless VSOCK_FUZZ_CORE=0 (model.compiled); `env`: more
    of the environment it runs in."""
    shutil.rmtree(out, ignore_errors=True)
    with environment({**(env or {}), "VSOCK_FUZZ_CORE": "1" if compiled else "0"}):
        c = Campaign(Options(spec, max_time=seconds, out=str(out), seed=seed, minimize_time=0), out=io.StringIO())
        c.run()
    return c


@contextlib.contextmanager
def environment(values: dict):
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k)
            else:
                os.environ[k] = v


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
        tables = ["_ON_ACCEPT", "_ON_WALK", "_ON_REJECT"]
        for n in names + tables:
            self.saved[n] = getattr(oracle_run, n)
        for n in names:
            setattr(oracle_run, n, self.wrap(self.saved[n]))
        for n in tables:
            setattr(oracle_run, n, tuple(self.wrap(f) for f in self.saved[n]))
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


CORE_PHASES = ("decode+fit (core)", "ask", "compare (core)", "judge: answer differs", "determinism: 2nd ask")


def core_phases(target, inputs: list, seconds: float) -> tuple[dict, int, float]:
    """Mean seconds per case of each phase of the per-case path through the compiled core
    (engines.percase._core_checker), uninstrumented; the cases timed and the share of answers
    that differ (those judge takes: the Python case, model and oracles, their second ask too)."""
    core = load_core()
    pc = time.perf_counter
    totals = dict.fromkeys(CORE_PHASES, 0.0)
    device = target.device
    offer = (device.features is not None, device.indirect, device.seqpacket, device.max_queue_size)
    native = isinstance(target, CommandTarget)
    n, differing, start = 0, 0, pc()
    while pc() - start < seconds or not n:
        oracle_run.forget()  # judged afresh each round, as a campaign meets each case (oracles.run keeps findings)
        for data in inputs:
            t0 = pc()
            cc = core.decode(data)
            if not device.fits_any_case:
                cc = cc.fit(device.max_data_size, device.max_region_size, device.max_regions)
            case = None if native else cc.case()
            t1 = pc()
            answer = target.parse(cc if native else case)
            t2 = pc()
            n += 1
            totals["decode+fit (core)"] += t1 - t0
            totals["ask"] += t2 - t1
            if answer.unsupported:
                continue
            agree = not answer.faulted and cc.agrees(answer, *offer)
            t3 = pc()
            totals["compare (core)"] += t3 - t2
            if not agree:
                differing += 1
                if native and not answer.faulted:
                    target.post(cc)  # the second ask, answered while judge runs (as percase does)
                judge(target, case or cc.case(), answer, determinism=DETERMINISM_EVERY, sent=cc if native else None)
                if native:
                    target.drop_posted()
                totals["judge: answer differs"] += pc() - t3
            elif n % DETERMINISM_EVERY == 0:
                target.parse(cc if native else case)
                totals["determinism: 2nd ask"] += pc() - t3
    return {k: v / n for k, v in totals.items()}, n, differing / n


def print_breakdown(title: str, phases_: tuple, breakdown: dict) -> None:
    labels = list(breakdown)
    print(f"{title:<26}" + "".join(f" {lab[:14]:>14}" for lab in labels))
    for phase in phases_:
        print(f"{phase:<26}" + "".join(f" {1e6 * breakdown[lab][0][phase]:>14.1f}" for lab in labels))
    total = {lab: sum(breakdown[lab][0].values()) for lab in labels}
    print(f"{'= uninstrumented sum':<26}" + "".join(f" {1e6 * total[lab]:>14.1f}" for lab in labels))
    print(f"{'campaign, per case':<26}" + "".join(f" {1e6 * breakdown[lab][1]:>14.1f}" for lab in labels))
    print(f"{'instrumentation+libFuzzer':<26}" + "".join(f" {1e6 * (breakdown[lab][1] - total[lab]):>14.1f}"
                                                         for lab in labels))
    print(f"{'answers differing':<26}" + "".join(f" {100 * breakdown[lab][2]:>13.0f}%" for lab in labels)
          + "  (only they pay for the oracles)")


def crash_share(c: Campaign) -> float:
    """The share of a campaign's cases that crashed its target (safety.crash hits)."""
    crashes = sum(n for key, n in hits(c.pool).items() if key.startswith("safety.crash:"))
    return crashes / max(c.pool.total_execs(), 1)


def repeated_pair(spec: str, args, out: Path, env: dict | None, cases: list, seed: int) -> tuple[float, float]:
    """(b) through the core with libFuzzer seed `seed`, then (a) on `cases`, for --repeat."""
    c = campaign(spec, args.seconds, out, compiled=True, env=env, seed=seed)
    target = open_target(spec, env=NO_BACKTRACES)
    try:
        target.parse(cases[0])
        return c.pool.total_execs() / max(c.elapsed, 1e-9), device_rate(target, cases, args.phase_seconds, 1)
    finally:
        target.close()


def firsts_of(c: Campaign) -> dict:
    return {d.oracle: d.first for d in c.findings.values()}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=None, help="seconds per campaign (default 60)")
    ap.add_argument("--phase-seconds", type=float, default=None, help="seconds per rate and breakdown (default 3)")
    ap.add_argument("--only", nargs="*", default=[], help="only these targets (c-target, c-avail-crash, rust-vmm, "
                                                          "rust-vmm-0.2, rust-example, rust-avail-panic, ring_crash, "
                                                          "ring_crash-nocrash)")
    ap.add_argument("--quick", action="store_true", help="--seconds 8 --phase-seconds 1 unless given")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="campaigns through the core, each followed by (a), per target (default 1): medians and "
                         "each pair's b/a, for a machine whose pace varies from one minute to the next")
    args = ap.parse_args(argv)
    args.seconds = args.seconds or (8.0 if args.quick else 60.0)
    args.phase_seconds = args.phase_seconds or (1.0 if args.quick else 3.0)
    if load_core() is None:
        print("the compiled core is not installed (`make core` builds it): nothing to compare the Python path with")
        return 0
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s); campaigns of {args.seconds:g}s, "
          f"1 worker, atheris, every oracle, from an empty corpus; RUST_BACKTRACE={os.environ.get('RUST_BACKTRACE', '')!r}"
          " here (campaigns run targets with 0)")
    rows, py_breakdown, core_breakdown, crashed, spread = [], {}, {}, {}, {}
    with tempfile.TemporaryDirectory(prefix="bench-gap-") as tmp:
        for label, spec in targets(args.only, Path(tmp)):
            env = ENVIRONMENT.get(label)
            before = campaign(spec, args.seconds, Path(tmp) / f"{label}-py", compiled=False, env=env)
            after = campaign(spec, args.seconds, Path(tmp) / label, compiled=True, env=env)
            b_py = before.pool.total_execs() / max(before.elapsed, 1e-9)
            b_core = after.pool.total_execs() / max(after.elapsed, 1e-9)
            inputs = inputs_of([Path(tmp) / label / ".corpus" / "atheris", SEEDS])
            target = open_target(spec, env=NO_BACKTRACES)  # as a campaign runs it
            try:
                cases = [target.device.fit(decode(x)) for x in inputs]
                target.parse(cases[0])  # started and warm
                a1 = device_rate(target, cases, args.phase_seconds, 1)
                a256 = device_rate(target, cases, args.phase_seconds, BATCH)
                per, _, differ = phases(target, inputs, args.phase_seconds)
                cper, _, cdiffer = core_phases(target, inputs, args.phase_seconds)
                restarts = target.restarts
            finally:
                target.close()
            unpolled = open_target(spec, poll=0, env=NO_BACKTRACES)  # the target sleeps on its input (targets.base.POLL_US)
            try:
                unpolled.parse(cases[0])
                a0 = device_rate(unpolled, cases, args.phase_seconds, 1)
            finally:
                unpolled.close()
            pairs = [(b_core, a1)] + [repeated_pair(spec, args, Path(tmp) / f"{label}-{r}", env, cases, 1 + r)
                                      for r in range(1, args.repeat)]
            spread[label] = sorted(b / a for b, a in pairs)
            b_core, a1 = median(b for b, _ in pairs), median(a for _, a in pairs)
            rows.append((label, b_py, b_core, a1, a0, a256, firsts_of(before), firsts_of(after)))
            crashed[label] = (crash_share(before), crash_share(after))
            py_breakdown[label] = (per, 1 / b_py if b_py else float("nan"), differ)
            core_breakdown[label] = (cper, 1 / b_core if b_core else float("nan"), cdiffer)
            print(f"  {label}: Python path {before.pool.total_execs():,} cases in {before.elapsed:.1f}s "
                  f"(corpus {before.pool.corp()}), core {after.pool.total_execs():,} in {after.elapsed:.1f}s "
                  f"(corpus {after.pool.corp()}); {len(inputs)} cases replayed ({restarts} restarts)", flush=True)
    print()
    print(f"{'target':<19} {'(b) Python':>11} {'(b) core':>10} {'(a) device':>11} {'b/a Python':>11} {'b/a core':>9}"
          f" {'unpolled':>10} {'pipelined':>10}")
    for label, b_py, b_core, a1, a0, a256, _f, _g in rows:
        print(f"{label:<19} {b_py:>9,.0f}/s {b_core:>8,.0f}/s {a1:>9,.0f}/s {b_py / a1:>11.2f} {b_core / a1:>9.2f}"
              f" {a0:>8,.0f}/s {a256:>8,.0f}/s")
    print("(b) campaign exec/s, on the Python path (VSOCK_FUZZ_CORE=0) and through the compiled core; "
          "(a) one case per call, as a campaign asks (polling when its target may: docs/protocol-extensions.md); "
          "unpolled: (a) with a target never asked to poll; pipelined: parse_many, 256 a call")
    if args.repeat > 1:
        print(f"(b) core and (a): medians of {args.repeat} campaigns (libFuzzer seeds 1-{args.repeat}), each followed "
              "by its (a); b/a core of each pair, lowest to highest:")
        for label, ratios in spread.items():
            print(f"  {label:<19} " + " ".join(f"{r:.2f}" for r in ratios))
    print("\nfirst findings (s), Python path | core:")
    for label, *_, f_py, f_core in rows:
        show = lambda f: ", ".join(f"{o} {t:.1f}" for o, t in sorted(f.items(), key=lambda kv: kv[1])[:4]) or "none"
        print(f"  {label:<19} {show(f_py)} | {show(f_core)}")
    print()
    print_breakdown("us per case, Python path", PHASES, py_breakdown)
    print()
    print_breakdown("us per case, core", CORE_PHASES, core_breakdown)
    rate = {label: (b_py, b_core) for label, b_py, b_core, *_ in rows}
    first = {label: (f_py, f_core) for label, *_, f_py, f_core in rows}
    print()
    for crashing, twin in (("c-avail-crash", "c-target"), ("rust-avail-panic", "rust-example"),
                           ("ring_crash", "ring_crash-nocrash")):
        if crashing in rate and twin in rate:
            (p, c), (tp, tc) = rate[crashing], rate[twin]
            env = "".join(f" ({k}={v} in its environment)" for k, v in ENVIRONMENT.get(crashing, {}).items())
            share = crashed[crashing]
            print(f"{crashing}{env}: {p:,.0f} exec/s on the Python path = {p / tp:.2f} of {twin}'s, "
                  f"{c:,.0f} through the core = {c / tc:.2f} of {twin}'s; "
                  f"its cases that crashed: {share[0]:.0%} and {share[1]:.0%}")
    if "ring_crash" in first:
        for path, f in zip(("Python path", "core"), first["ring_crash"]):
            t = f.get(SECOND_BUG)
            print(f"ring_crash, {path}: second bug ({SECOND_BUG}) "
                  + (f"first found after {t:.1f}s" if t is not None else f"not found in {args.seconds:g}s"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
