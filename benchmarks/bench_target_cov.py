"""Target coverage (the shm-8bit-v1 channel) against a bug only the target's branches lead to,
and compare hints (shm-8bit-v2) against bugs behind the device's comparisons.

    python benchmarks/bench_target_cov.py [--seconds S] [--seeds N] [--parallel N] [--factor F] [--modes M,...]
                                          [--magic-seconds S] [--heavy-seconds S] [--skip-modes]

A copy of the C example target gets a planted crash behind three tests, one after the
other, on the high nibble of the low byte of a tx header's src_cid, dst_cid and src_port
(a device fast path for one connection key, which the model does not have: no branch
of the harness's Python tells those values apart). Each test alone is a likely
mutation; all three at once are not, so without the target's own edges the search
is blind. Built with examples/c-target/vsock_cov.c and -fsanitize-coverage=trace-pc, it is
fuzzed from the packaged seeds with `--stop-on safety.crash`, once per seed and mode
(same seeds, same corpus), --parallel campaigns at a time: first the guided modes
(`--coverage target` and `both`, S seconds at most), then `--coverage harness` with F times
the `target` median as its budget. The figure is the median time to the first finding, a
run that does not find it counting as its budget; when most harness runs miss, its median is
over F times the target's, and the ratio printed is a lower bound. Then the plain and the instrumented C example
without the bug: the cost of a case, with and without target coverage (pace(): cases N to 3N of
a campaign, `--pace-runs N`).
Figures are printed, never asserted: compare runs on the same machine.

Compare hints: the C example built with edges only (-fsanitize-coverage=trace-pc) and with
edges and compares (trace-pc,trace-cmp, what `make c-target` builds), both under `--coverage
target`, once per seed: time to the crash behind four magic values in header fields
(two 32-bit, two 16-bit, compared one after the other: MAGIC_PLANT), and to the three-branch
plant above, which has no magic value (its nibble tests are 1-byte compares, not recorded):
its heavy tail is what edges alone leave. Then the cost of a case of both builds without a
plant, and of the compares build with its hints turned off.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
C_DIR = ROOT / "examples" / "c-target"
PLANT_AT = "    parse_spec();\n    if (vsock_cov_device)\n"
PLANT = """    parse_spec();
    /* planted: a fast path for one connection key, one nibble test at a time */
    static volatile int step;  /* a store per step: nothing for the compiler to fold */
    if (ans.ok && ans.has_header && !rq.rx) {
        const unsigned char *h = ans.header;
        if ((h[0] >> 4) == 0x5) {                  /* src_cid */
            step = 1;
            if ((h[8] >> 4) == 0x3) {              /* dst_cid */
                step = 2;
                if ((h[16] >> 4) == 0x6)           /* src_port */
                    abort();
            }
        }
    }
    if (vsock_cov_device)
"""
FOUND = re.compile(r"NEW finding: safety\.crash .* after ([0-9.]+)s")
FOUND_ERROR = re.compile(r"NEW finding: (\S+) \((?:error|critical)\) after ([0-9.]+)s")
LINUX_REJECTED = re.compile(r"NEW finding: interop\.linux-rejected .* after ([0-9.]+)s")
# Bugs of omission, as in the zoo (zoo/rx_readable.py, zoo/max_len.py): a check the model makes
# and the device lacks, so the device has no branch for it; (name, check, check removed, oracle).
OMISSIONS = (
    ("rx_readable", "if (!!(d->flags & F_WRITE) != rq.rx)", "if (!rq.rx && (d->flags & F_WRITE))",
     "safety.direction"),
    ("max_len", "if (len > rq.max_data_size)", "if (len > rq.max_data_size && len > 0xFFFFFFF0u)",
     "fidelity.max-data-size"),
)
RUST = ROOT / "adapters" / "rust" / "target"
RUST_PLAIN = RUST / "release" / "vsock-target-rust-vmm"
RUST_COV = next(RUST.glob("cov/*/release/vsock-target-rust-vmm"), None)  # make adapters
SUMMARY = re.compile(r"(\d+) cases in ([0-9.]+)s \((\d+) exec/s")


MAGIC_PLANT = """    parse_spec();
    /* planted: a crash behind four magic values in header fields, compared one after the other */
    static volatile int gate;  /* a store per gate: nothing for the compiler to fold */
    if (ans.ok && ans.has_header && !rq.rx) {
        uint32_t src_port, flags;
        uint16_t type, op;
        memcpy(&src_port, ans.header + 16, 4);
        memcpy(&type, ans.header + 28, 2);
        memcpy(&op, ans.header + 30, 2);
        memcpy(&flags, ans.header + 32, 4);
        if (src_port == 0x5EC0DE17u) {
            gate = 1;
            if (type == 0xB00Fu) {
                gate = 2;
                if (flags == 0xF1A6C0DEu) {
                    gate = 3;
                    if (op == 0x7A11u)
                        abort();
                }
            }
        }
    }
    if (vsock_cov_device)
"""
EDGES = "trace-pc"                # edges only: shm-8bit-v1's build
COMPARES = "trace-pc,trace-cmp"   # edges and compares: shm-8bit-v2's, `make c-target`'s


def build(out: Path, source: str, name: str, instrumented, flags: str = COMPARES) -> str:
    """`source` built as `name` in `out`: plain, or instrumented with -fsanitize-coverage=`flags`
    and linked with vsock_cov.c."""
    cc = os.environ.get("CC", "cc")
    src = out / f"{name}.c"
    src.write_text(source)
    exe = out / name
    if instrumented:
        subprocess.run([cc, "-O2", "-c", "-o", str(out / "vsock_cov.o"), str(C_DIR / "vsock_cov.c")], check=True)
        subprocess.run([cc, "-O2", f"-fsanitize-coverage={flags}", "-o", str(exe), str(src),
                        str(out / "vsock_cov.o")], check=True)
    else:
        subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True)
    return str(exe)


def fuzz(target: str, *args: str, env: dict | None = None) -> str:
    out = tempfile.mkdtemp(prefix="bench-tcov-")
    try:
        done = subprocess.run([sys.executable, "-m", "vsock_fuzz", "fuzz", "--target", f"cmd:{target}", "--out", out,
                               "--minimize-time", "0", *args], capture_output=True, text=True, cwd=ROOT,
                              env=None if env is None else {**os.environ, **env})
        return done.stdout + done.stderr
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=600.0, help="budget of a guided run")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--parallel", type=int, default=2, help="campaigns at a time")
    ap.add_argument("--factor", type=float, default=5.0,
                    help="--coverage harness runs get this many times the --coverage target median")
    ap.add_argument("--pace-runs", type=int, default=20000, help="N: the cost of cases N to 3N (0: skip)")
    ap.add_argument("--modes", default="target,both", help="guided --coverage modes, comma-separated")
    ap.add_argument("--rust-seconds", type=float, default=60.0, help="budget of a rust-vmm run (0: skip them)")
    ap.add_argument("--omission-seconds", type=float, default=60.0,
                    help="budget of a run against a bug of omission (0: skip them)")
    ap.add_argument("--skip-planted", action="store_true", help="not the planted target-only bug")
    ap.add_argument("--magic-seconds", type=float, default=60.0,
                    help="budget of a run against the four magic values, per build (0: skip them)")
    ap.add_argument("--heavy-seconds", type=float, default=600.0,
                    help="budget of a run against the three-branch plant, per build (0: skip them)")
    ap.add_argument("--skip-modes", action="store_true",
                    help="not the --coverage modes' comparison on the three-branch plant (only the builds')")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tcov-build-"))
    source = (C_DIR / "vsock_target.c").read_text()
    assert source.count(PLANT_AT) == 1
    if a.magic_seconds:
        builds_race(a, work, source.replace(PLANT_AT, MAGIC_PLANT), "magic", "four magic values", a.magic_seconds)
    if a.heavy_seconds:
        builds_race(a, work, source.replace(PLANT_AT, PLANT), "heavy", "three-branch plant", a.heavy_seconds)
    if not a.skip_planted and not a.skip_modes:
        planted_bug(a, build(work, source.replace(PLANT_AT, PLANT), "planted_cov", True))
    pace(a, work, source)
    if a.omission_seconds:
        omissions(a, work, source)
    if a.rust_seconds:
        rust_vmm(a)
    shutil.rmtree(work, ignore_errors=True)


def planted_bug(a, planted: str) -> None:
    modes = a.modes.split(",")
    print(f"planted target: {planted}, {a.seeds} seeds, {a.parallel} campaigns at a time", flush=True)

    def runs(mode: str, seconds: float) -> list[float]:
        """Time to the planted crash per seed; `seconds` where a run did not find it."""
        def one(seed: int) -> float:
            text = fuzz(planted, "--coverage", mode, "--seed", str(seed), "--max-time", str(seconds),
                        "--stop-on", "safety.crash")
            m = FOUND.search(text)
            print(f"  seed {seed} --coverage {mode:7}: " + (f"found after {float(m[1]):.1f}s" if m else
                                                           f"not found in {seconds:g}s"), flush=True)
            return float(m[1]) if m else seconds
        with ThreadPoolExecutor(a.parallel) as pool:
            return list(pool.map(one, range(1, a.seeds + 1)))

    med = {}
    for mode in modes:
        ts = runs(mode, a.seconds)
        med[mode] = statistics.median(ts)
        print(f"--coverage {mode}: median {med[mode]:.1f}s, found in {sum(t < a.seconds for t in ts)} "
              f"of {len(ts)} runs of {a.seconds:g}s", flush=True)
    # Harness coverage only: a budget of --factor times the first mode's median. Not found in most
    # runs means its median is over that: target coverage is at least --factor times faster.
    budget = max(a.factor * med[modes[0]], 10.0)
    ts = runs("harness", budget)
    found = sum(t < budget for t in ts)
    med["harness"] = statistics.median(ts)
    print(f"--coverage harness: found in {found} of {len(ts)} runs of {budget:.0f}s "
          f"({a.factor:g}x the --coverage {modes[0]} median)")
    for mode in modes:
        ratio = med["harness"] / max(med[mode], 1e-9)
        print(f"  time to the planted crash, harness / {mode}: {ratio:.1f}x"
              + (" or more (the harness median is censored)" if med["harness"] >= budget else ""))


def builds_race(a, work: Path, source: str, name: str, label: str, seconds: float) -> None:
    """Time to the planted crash per seed, the device built with edges only and with edges and
    compares, under --coverage target; --parallel campaigns at a time, the two builds'
    interleaved (seed 1 of each, then seed 2...) so that a busy spell of the machine is
    shared by both."""
    builds = {"edges": build(work, source, f"{name}_edges", True, EDGES),
              "edges+compares": build(work, source, f"{name}_compares", True, COMPARES)}
    print(f"{label}: {a.seeds} seeds, {seconds:g}s each, {a.parallel} campaigns at a time", flush=True)

    def one(job: tuple[str, int]) -> tuple[float, int]:
        kind, seed = job
        text = fuzz(builds[kind], "--coverage", "target", "--seed", str(seed), "--max-time", str(seconds),
                    "--stop-on", "safety.crash")
        m, rate = FOUND.search(text), SUMMARY.search(text)
        return (float(m[1]) if m else seconds), (int(rate[3]) if rate else 0)
    jobs = [(kind, seed) for seed in range(1, a.seeds + 1) for kind in builds]
    with ThreadPoolExecutor(a.parallel) as pool:
        got = dict(zip(jobs, pool.map(one, jobs)))
    for kind in builds:
        runs = [got[kind, seed] for seed in range(1, a.seeds + 1)]
        cells = "  ".join(f"{t:6.1f}" if t < seconds else "  miss" for t, _ in runs)
        print(f"  {label}, {kind:15}: seeds 1-{a.seeds}: {cells}  (s; exec/s {statistics.median(r for _, r in runs):.0f}"
              f" median)", flush=True)
    for kind in builds:
        ts = [got[kind, seed][0] for seed in range(1, a.seeds + 1)]
        found = [t for t in ts if t < seconds]
        print(f"  {label}, {kind:15}: found in {len(found)} of {len(ts)}, median {statistics.median(ts):.1f}s, "
              f"slowest {max(ts):.1f}s" + (" (a miss counts as its budget)" if len(found) < len(ts) else ""),
              flush=True)


def pace(a, work: Path, source: str) -> None:
    """The per-case cost of the C example: plain under harness coverage, instrumented (edges
    only; edges and compares) under --coverage target and both, and the compares build with
    its hints turned off (VSOCK_FUZZ_COMPARE_HINTS=0: shm-8bit-v1 taken, the same binary).
    Each is run for N and 3N cases from one seed (the first N cases are the same) and what the
    2N cases between cost is its figure: CPU time of every process (harness and target) per
    case, and cases per second of wall time; a campaign's start (a second or so) is not in
    it. Medians over --seeds seeds, the configurations interleaved per seed."""
    if not a.pace_runs:
        return
    plain = build(work, source, "plain", False)
    edges = build(work, source, "edges", True, EDGES)
    cov = build(work, source, "cov", True, COMPARES)
    runs = (("plain, --coverage harness", plain, "harness", True),
            ("edges, --coverage target", edges, "target", True),
            ("edges+compares, hints off, target", cov, "target", False),
            ("edges+compares, --coverage target", cov, "target", True),
            ("edges+compares, --coverage both", cov, "both", True))
    got: dict = {label: [] for label, *_ in runs}
    for seed in range(1, a.seeds + 1):
        for label, target, mode, hints in runs:
            got[label].append(marginal(target, mode, seed, a.pace_runs, hints))
    cpu = {k: statistics.median(c for c, _ in v) for k, v in got.items()}
    wall = {k: statistics.median(w for _, w in v) for k, v in got.items()}
    for label in got:
        print(f"  C example, {label:34}: {cpu[label]:6.1f} us of CPU per case, {wall[label]:7.0f} cases/s "
              f"(medians of {a.seeds}, cases {a.pace_runs}-{3 * a.pace_runs})", flush=True)
    base = wall["plain, --coverage harness"] or 1
    print("cases/s relative to the plain target: " + ", ".join(f"{k} {v / base:.2f}" for k, v in wall.items()))
    e, off, on = (wall[k] for k in ("edges, --coverage target", "edges+compares, hints off, target",
                                    "edges+compares, --coverage target"))
    ce, con = cpu["edges, --coverage target"], cpu["edges+compares, --coverage target"]
    print(f"compare hints' cost under --coverage target, against the edges-only build: {100 * (1 - on / e):.0f}% "
          f"in cases/s, {100 * (con / ce - 1):.0f}% in CPU per case; of it the compares build with hints off: "
          f"{100 * (1 - off / e):.0f}% in cases/s", flush=True)
    device_cost(edges, cov)


def device_cost(edges: str, cov: str, rounds: int = 3) -> None:
    """What the device's own hooks cost, apart from which cases a campaign goes on to make: the
    target's CPU per case, built with edges only and with compares, each given its region as a
    campaign gives it (the compare table read and emptied after each case), over the same
    cases (bench_targets.cases), without libFuzzer; rounds interleaved, the fastest of each."""
    from bench_targets import cases, cpu_of
    from vsock_fuzz.targets import CommandTarget
    from vsock_fuzz.targets.coverage import CMP_SLOTS, CompareHints, Region
    mix = cases(5000) * 10
    best = {}
    for _ in range(rounds):
        for label, exe, slots in (("edges", edges, 0), ("edges+compares", cov, CMP_SLOTS)):
            target = CommandTarget([exe])
            region = target.coverage = Region(slots=slots)
            target.device  # noqa: B018  (starts it)
            hints = CompareHints(region) if region.compares else None  # unbound: empties the table
            before = cpu_of(target.proc.pid)
            for case in mix:
                target.parse(case)
                if hints:
                    hints.feed()
            used = cpu_of(target.proc.pid) - before
            target.close()
            best[label] = min(best.get(label, used), used)
    e, c = (1e6 * best[k] / len(mix) for k in ("edges", "edges+compares"))
    print(f"  the C example's own CPU per case, the same {len(mix)} cases: edges {e:.1f} us, edges+compares "
          f"{c:.1f} us (its compare hooks: {c - e:+.1f} us a case)", flush=True)


def marginal(target: str, mode: str, seed: int, n: int, hints: bool = True) -> tuple[float, float]:
    """(CPU microseconds per case, cases per second) of cases n to 3n of a campaign from `seed`."""
    def one(runs: int) -> tuple[int, float, float]:
        with tempfile.TemporaryDirectory(prefix="bench-tcov-") as tmp:
            report = Path(tmp) / "r.json"
            before = resource.getrusage(resource.RUSAGE_CHILDREN)  # every process the campaign waited for
            fuzz(target, "--coverage", mode, "--runs", str(runs), "--seed", str(seed), "--json", str(report),
                 env={"VSOCK_FUZZ_COMPARE_HINTS": "1" if hints else "0"})
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            stats = json.loads(report.read_text())["stats"]
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        return stats["cases"], stats["seconds"], cpu
    n1, w1, c1 = one(n)
    n2, w2, c2 = one(3 * n)
    cases = max(n2 - n1, 1)
    return 1e6 * (c2 - c1) / cases, cases / max(w2 - w1, 1e-3)


def omissions(a, work: Path, source: str) -> None:
    """Where the device has no branch for its bug: time to the first finding of the oracle
    that stands for it, per mode (plain target under harness coverage; under target, built with
    edges only and with compares too), from the packaged seeds and from an empty corpus (where
    only guidance gets there)."""
    for name, check, removed, oracle in OMISSIONS:
        assert source.count(check) == 1, check
        plain = build(work, source.replace(check, removed), f"{name}_plain", False)
        edges = build(work, source.replace(check, removed), f"{name}_edges", True, EDGES)
        cov = build(work, source.replace(check, removed), f"{name}_cov", True)
        for start in ((), ("--no-seeds",)):
            for label, mode, target in (("harness", "harness", plain), ("both", "both", cov),
                                        ("target, edges", "target", edges), ("target", "target", cov)):
                times = []
                for seed in range(1, a.seeds + 1):
                    text = fuzz(target, "--coverage", mode, "--seed", str(seed), "--max-time",
                                str(a.omission_seconds), "--stop-on", oracle, *start)
                    m = re.search(rf"NEW finding: {re.escape(oracle)} .* after ([0-9.]+)s", text)
                    times.append(float(m[1]) if m else a.omission_seconds)
                print(f"  C example without its {name} check, {'no seeds' if start else 'seeds'}, --coverage "
                      f"{label:13}: {oracle} after {statistics.median(times):.1f}s (median of {len(times)}; found in "
                      f"{sum(t < a.omission_seconds for t in times)}; slowest {max(times):.1f}s)", flush=True)


def rust_edges_only():
    """rust-vmm 0.12.0's target built as `make adapters` builds it but without compare tracing
    (shm-8bit-v1's build), in target/cov-edges; None without cargo."""
    flags = subprocess.run(["make", "-s", "--no-print-directory", "-pn"], cwd=ROOT, capture_output=True, text=True).stdout
    line = next((ln for ln in flags.splitlines() if ln.startswith("RUST_COV_FLAGS :=")), None)
    host = subprocess.run(["rustc", "-vV"], capture_output=True, text=True).stdout if shutil.which("rustc") else ""
    host = next((ln.split(": ", 1)[1] for ln in host.splitlines() if ln.startswith("host: ")), None)
    if line is None or host is None or not shutil.which("cargo"):
        return None
    rustflags = line.split(":=", 1)[1].replace("-C llvm-args=-sanitizer-coverage-trace-compares", "").strip()
    done = subprocess.run(["cargo", "build", "--release", "--locked", "--target", host, "--target-dir", "target/cov-edges",
                           "-p", "vsock-target-rust-vmm"], cwd=ROOT / "adapters" / "rust", capture_output=True, text=True,
                          env={**os.environ, "RUSTFLAGS": rustflags})
    exe = RUST / "cov-edges" / host / "release" / "vsock-target-rust-vmm"
    return exe if done.returncode == 0 and exe.exists() else None


def rust_vmm(a) -> None:
    """Where the model sees the bug: rust-vmm virtio-vsock 0.12.0's gaps (the Linux 6.17
    multi-fragment packets it rejects, interop.linux-rejected, and others). exec/s, and the
    time to its first finding at error or above from the seeds and to its Linux gap from an
    empty corpus; plain under harness coverage, instrumented under both and target."""
    if RUST_COV is None or not RUST_PLAIN.exists():
        print("rust-vmm: not built (make adapters)")
        return
    edges = rust_edges_only()
    for label, target, mode in (("plain, --coverage harness", RUST_PLAIN, "harness"),
                                ("instrumented, --coverage both", RUST_COV, "both"),
                                *([("edges only, --coverage target", edges, "target")] if edges else []),
                                ("instrumented, --coverage target", RUST_COV, "target")):
        _, rate = marginal(str(target), mode, 1, a.pace_runs or 20000)
        seeded, empty, first = [], [], set()
        for seed in range(1, a.seeds + 1):
            f = FOUND_ERROR.search(fuzz(str(target), "--coverage", mode, "--seed", str(seed),
                                        "--max-time", str(a.rust_seconds), "--stop-on", "fail"))
            seeded.append(float(f[2]) if f else a.rust_seconds)
            first.add(f[1] if f else "none")
            # Its own line: another error finding may come first.
            f = LINUX_REJECTED.search(fuzz(str(target), "--coverage", mode, "--seed", str(seed), "--no-seeds",
                                           "--max-time", str(a.rust_seconds), "--stop-on", "interop.linux-rejected"))
            empty.append(float(f[1]) if f else a.rust_seconds)
        print(f"  rust-vmm 0.12.0, {label:32}: {rate:.0f} cases/s; first error after "
              f"{statistics.median(seeded):.1f}s ({', '.join(sorted(first))}); from no seeds, "
              f"interop.linux-rejected after {statistics.median(empty):.1f}s (found in "
              f"{sum(t < a.rust_seconds for t in empty)}); medians of {a.seeds}", flush=True)


if __name__ == "__main__":
    main()
