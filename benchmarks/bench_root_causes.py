"""Root causes a fuzz campaign reports per device: every zoo bug, every correct zoo device, both rust-vmm adapters.

    python benchmarks/bench_root_causes.py [--seconds S] [--only NAME ...] [--jobs N] [--rust-bin DIR] [--detail FILE]

One `vsock-fuzz fuzz --jobs 1` campaign of --seconds per device (zoo devices as the py: targets
bench_fuzz.py uses, the adapters as cmd: targets), read back from its --json report. One row per
device: root causes in all, how many at error or above, whether a zoo bug's oracle (zoo.ORACLE) is
among them (it should be), and the error+ keys (a correct zoo device should have none). The CLI runs
as `sys.executable -m vsock_fuzz`, so a PYTHONPATH checkout is what is measured. Figures are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from vsock_fuzz.zoo import CORRECT, ORACLE, ZOO

ROOT = Path(__file__).resolve().parent.parent
ADAPTERS = ("vsock-target-rust-vmm", "vsock-target-rust-vmm-0-2")
ERROR_UP = ("error", "critical")


def devices(rust_bin: Path) -> list[tuple[str, str, str]]:
    """(name, kind, target spec) of every device measured."""
    return ([(name, "bug", f"py:{module}:parse") for name, module, _ in ZOO]
            + [(name, "correct", f"py:{module}:parse") for name, module in CORRECT]
            + [(name, "rust", f"cmd:{rust_bin / name}") for name in ADAPTERS])


def campaign(spec: str, seconds: float, work: Path) -> dict:
    """The JSON report of one campaign, or {"error": ...} when it wrote none."""
    work.mkdir(parents=True)
    report = work / "report.json"
    run = subprocess.run([sys.executable, "-m", "vsock_fuzz", "fuzz", "--target", spec, "--max-time", str(seconds),
                          "--jobs", "1", "--out", str(work / "out"), "--json", str(report), "-q"],
                         capture_output=True, text=True)
    if not report.exists():
        tail = (run.stderr.strip() or run.stdout.strip()).splitlines()[-1:]
        return {"error": f"no report (exit {run.returncode}): {' '.join(tail)}"}
    return json.loads(report.read_text())


def short(key: str) -> str:
    """A root-cause key with the Linux layout names cut down ("(Linux >= 6.17)" -> "6.17")."""
    key = re.sub(r" \(Linux >= ([\d.]+)\)", r" \1", key).replace(" in an indirect table", " indirect")
    return key.replace("header + N page fragments", "N fragments")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=60.0, help="--max-time of each campaign (default 60)")
    ap.add_argument("--only", nargs="+", default=[], metavar="NAME", help="only these devices")
    ap.add_argument("--jobs", type=int, default=1, help="campaigns run at once (default 1)")
    ap.add_argument("--rust-bin", type=Path, default=ROOT / "adapters" / "rust" / "target" / "release",
                    help="directory of the built rust-vmm adapters (default: this repository's target/release)")
    ap.add_argument("--detail", type=Path, default=None, metavar="FILE",
                    help="also write every root cause (key, severity, title) of each device to FILE")
    args = ap.parse_args(argv)
    todo = [d for d in devices(args.rust_bin.resolve()) if not args.only or d[0] in args.only]
    unknown = set(args.only) - {d[0] for d in todo}
    if unknown:
        ap.error(f"unknown device(s): {', '.join(sorted(unknown))}")
    import vsock_fuzz
    print(f"python {sys.version.split()[0]}, vsock_fuzz from {Path(vsock_fuzz.__file__).parent.parent}, "
          f"{args.seconds:g} s campaigns, {args.jobs} at once")
    print(f"{'device':<26} {'kind':<8} {'all':>4} {'err+':>5} {'oracle':>6}  error+ root causes (oracle: the zoo "
          f"bug's oracle among them, at any severity)")
    detail = []
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-root-causes-") as tmp, ThreadPoolExecutor(args.jobs) as pool:
        reports = pool.map(lambda d: campaign(d[2], args.seconds, Path(tmp) / d[0]), todo)
        for (name, kind, spec), rep in zip(todo, reports):
            causes = rep.get("root_causes", [])
            bad = [c["key"] for c in causes if c["severity"] in ERROR_UP]
            hit = "-" if kind != "bug" else "yes" if any(c["oracle"] == ORACLE[name] for c in causes) else "NO"
            note = f"  [{rep['error']}]" if rep.get("error") else ""
            print(f"{name:<26} {kind:<8} {len(causes):>4} {len(bad):>5} {hit:>6}  {', '.join(map(short, bad)) or '-'}"
                  f"{note}", flush=True)
            detail.append(f"== {name} ({kind}, {spec}): {len(causes)} root causes, "
                          f"{rep.get('stats', {}).get('cases', '?')} cases{note}")
            detail += [f"  {c['severity']:<8} {c['key']}  |  {c['title']}" for c in causes]
    print(f"wall time {time.monotonic() - start:.0f} s")
    if args.detail:
        args.detail.write_text("\n".join(detail) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
