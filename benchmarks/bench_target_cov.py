"""Target coverage (the shm-8bit-v1 channel) against a bug only the target's branches lead to.

    python benchmarks/bench_target_cov.py [--seconds S] [--seeds N] [--pace-runs N]

A copy of the C example target gets a planted crash behind three nibble tests on the
bytes of a tx header's source port (0x5A, then 0xC_; a device fast path the model does
not have: no branch of the harness's Python tells those values apart, each test is a
branch of the target's own). Built with examples/c-target/vsock_cov.c and -fsanitize-coverage=trace-pc, it is fuzzed from the packaged seeds with `--stop-on
safety.crash` once per seed and --modes (default: `--coverage target` and `--coverage harness`)
(same seeds, same corpus); the figure is the median time to the first finding, a run that
does not find it counting as S. Then the plain and the instrumented C example without the
bug, `--runs N` each: exec/s with and without target coverage. Figures are printed, never
asserted: compare runs on the same machine.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
C_DIR = ROOT / "examples" / "c-target"
PLANT_AT = "    parse_spec();\n}\n"
PLANT = """    parse_spec();
    /* planted: a fast path keyed on the source port, one nibble test at a time (0x5A, 0xC_:
       distinct values, so no run of repeated bytes that mutators insert gets there at once) */
    static volatile int one, two;  /* one block per step: nothing for the compiler to fold */
    if (ans.ok && ans.has_header && !rq.rx) {
        const unsigned char *h = ans.header;
        if ((h[16] >> 4) == 0x5) {
            one = 1;
            if ((h[16] & 0xF) == 0xA) {
                two = 1;
                if ((h[17] >> 4) == 0xC)
                    abort();
            }
        }
    }
}
"""
FOUND = re.compile(r"NEW finding: safety\.crash .* after ([0-9.]+)s")
SUMMARY = re.compile(r"(\d+) cases in ([0-9.]+)s \((\d+) exec/s")


def build(out: Path, source: str, name: str, instrumented: bool) -> str:
    cc = os.environ.get("CC", "cc")
    src = out / f"{name}.c"
    src.write_text(source)
    exe = out / name
    if instrumented:
        subprocess.run([cc, "-O2", "-c", "-o", str(out / "vsock_cov.o"), str(C_DIR / "vsock_cov.c")], check=True)
        subprocess.run([cc, "-O2", "-fsanitize-coverage=trace-pc", "-o", str(exe), str(src),
                        str(out / "vsock_cov.o")], check=True)
    else:
        subprocess.run([cc, "-O2", "-o", str(exe), str(src)], check=True)
    return str(exe)


def fuzz(target: str, *args: str) -> str:
    out = tempfile.mkdtemp(prefix="bench-tcov-")
    try:
        done = subprocess.run([sys.executable, "-m", "vsock_fuzz", "fuzz", "--target", f"cmd:{target}", "--out", out,
                               "--minimize-time", "0", *args], capture_output=True, text=True, cwd=ROOT)
        return done.stdout + done.stderr
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--pace-runs", type=int, default=20000)
    ap.add_argument("--modes", default="target,harness", help="--coverage values, comma-separated")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-tcov-build-"))
    source = (C_DIR / "vsock_target.c").read_text()
    assert source.count(PLANT_AT) == 1
    planted = build(work, source.replace(PLANT_AT, PLANT), "planted_cov", True)
    print(f"planted target: {planted}, {a.seeds} seeds, {a.seconds:g} s a run (not found counts as that)")
    times: dict[str, list[float]] = {mode: [] for mode in a.modes.split(",")}
    for seed in range(1, a.seeds + 1):
        for mode in times:
            text = fuzz(planted, "--coverage", mode, "--seed", str(seed), "--max-time", str(a.seconds),
                        "--stop-on", "safety.crash")
            m = FOUND.search(text)
            t = float(m[1]) if m else a.seconds
            times[mode].append(t)
            print(f"  seed {seed} --coverage {mode:7}: " + (f"found after {t:.1f}s" if m else "not found"), flush=True)
    med = {mode: statistics.median(ts) for mode, ts in times.items()}
    print("median time to the planted crash: " + ", ".join(
        f"--coverage {mode} {m:.1f}s" + ("+ (not found in most runs)" if m >= a.seconds else "")
        for mode, m in med.items()))
    if "harness" in med:
        for mode, m in med.items():
            if mode != "harness" and m >= a.seconds:
                print(f"  harness / {mode}: neither found it within {a.seconds:g}s (try a larger --seconds)")
            elif mode != "harness":
                print(f"  harness / {mode}: {med['harness'] / max(m, 1e-9):.1f}x"
                      + (" or more" if med["harness"] >= a.seconds else ""))
    plain = build(work, source, "plain", False)
    cov = build(work, source, "cov", True)
    pace = {}
    for label, target, mode in (("plain, harness coverage", plain, "harness"),
                                ("instrumented, --coverage both", cov, "both"),
                                ("instrumented, --coverage target", cov, "target")):
        m = SUMMARY.search(fuzz(target, "--coverage", mode, "--runs", str(a.pace_runs), "--seed", "1"))
        pace[label] = int(m[3]) if m else 0
        print(f"  C example, {label:32}: {pace[label]} exec/s", flush=True)
    base = pace["plain, harness coverage"] or 1
    print("exec/s relative to the plain target: " +
          ", ".join(f"{k} {v / base:.2f}" for k, v in pace.items()))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
