"""Determinism by sample: what asking the target a second time on one case in N costs and finds.

    python benchmarks/bench_determinism.py [--limit S] [--repeat R] [--every N ...]

For each N (1: every case, as before; 16: the campaign's default), a campaign per device and
libFuzzer seed 1..R, `cmd:` programs from the packaged seeds, stopped at the first
determinism.repeat: the zoo's credit_leak (its leak also breaks other rules, so its cases are
asked again anyway) and tests/targets/stale_state.py (every first answer right: only the
sampled second ask shows it). Prints the median seconds to that finding (found/runs) and the
campaign's exec/s against the C example (no finding, every case clean) for each N.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vsock_fuzz.engines.campaign import Campaign, Options  # noqa: E402

DEVICES = {"credit_leak": f"cmd:{sys.executable} -m vsock_fuzz.zoo.credit_leak",
           "stale_state": f"cmd:{sys.executable} {ROOT / 'tests' / 'targets' / 'stale_state.py'}"}
C_TARGET = ROOT / "examples" / "c-target" / "vsock_target"


def campaign(spec: str, every: int, out: Path, **kw) -> Campaign:
    os.environ["VSOCK_FUZZ_DETERMINISM_EVERY"] = str(every)  # the workers read it
    c = Campaign(Options(spec, out=str(out), minimize_time=0, corpus=[str(ROOT / "corpus" / "target")], **kw),
                 out=io.StringIO())
    c.run()
    return c


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--limit", type=float, default=30.0, help="seconds before a run counts as not found (default 30)")
    ap.add_argument("--repeat", type=int, default=3, help="libFuzzer seeds per figure (default 3)")
    ap.add_argument("--every", type=int, nargs="+", default=[1, 16], help="sampling periods (default 1 16)")
    ap.add_argument("--pace-seconds", type=float, default=10.0, help="seconds of the C example campaign (default 10)")
    args = ap.parse_args(argv)
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cpu(s); median seconds to determinism.repeat "
          f"(found/runs, limit {args.limit:g}s), cmd: programs from the seeds")
    print(f"{'device':<14}" + "".join(f" {'every ' + str(n):>16}" for n in args.every))
    with tempfile.TemporaryDirectory(prefix="bench-determinism-") as tmp:
        for name, spec in DEVICES.items():
            cells = []
            for every in args.every:
                times = []
                for seed in range(1, args.repeat + 1):
                    c = campaign(spec, every, Path(tmp) / f"{name}-{every}-{seed}", max_time=args.limit, seed=seed,
                                 stop_on=("determinism",))
                    first = [d.first for d in c.findings.values() if d.oracle == "determinism.repeat"]
                    times.append(min(first) if first else None)
                found = [t for t in times if t is not None]
                med = f"{statistics.median(found):.2f}" if len(found) * 2 > len(times) else "-"
                cells.append(f"{med} ({len(found)}/{len(times)})")
            print(f"{name:<14}" + "".join(f" {c:>16}" for c in cells), flush=True)
        if C_TARGET.exists():
            rates = []
            for every in args.every:
                c = campaign(f"cmd:{C_TARGET}", every, Path(tmp) / f"pace-{every}", max_time=args.pace_seconds, seed=1)
                rates.append(c.pool.total_execs() / max(c.elapsed, 1e-9))
            print(f"{'C example':<14}" + "".join(f" {r:>12,.0f} /s " for r in rates)
                  + f"  ({rates[-1] / rates[0]:.2f}x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
