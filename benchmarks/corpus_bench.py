"""Figures for corpus files, replay and minimize.

    python benchmarks/corpus_bench.py

Prints: reading the seed corpus (files/s), replaying it against the reference
with every oracle (files/s), and for each zoo bug the time, target calls and
size change of shrinking its regression's source seed. Printed, never asserted.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vsock_fuzz.case.corpus import iter_cases  # noqa: E402
from vsock_fuzz.engines.minimize import fires, shrink  # noqa: E402
from vsock_fuzz.oracles import evaluate  # noqa: E402
from vsock_fuzz.engines.seeds import generate  # noqa: E402
from vsock_fuzz.targets import open_target  # noqa: E402
from vsock_fuzz.zoo import ORACLE, ZOO  # noqa: E402
from vsock_fuzz.case.binary import encode


def main() -> None:
    seeds_dir = str(ROOT / "corpus" / "target")
    t = time.perf_counter()
    entries = list(iter_cases([seeds_dir]))
    dt = time.perf_counter() - t
    print(f"read corpus/target: {len(entries)} files in {dt * 1e3:.1f} ms ({len(entries) / dt:,.0f} files/s)")

    ref = open_target("reference")
    t = time.perf_counter()
    for e in entries:
        evaluate(ref, e.case)
    dt = time.perf_counter() - t
    print(f"replay corpus/target on reference (every oracle; the pure reference is asked once): {len(entries) / dt:,.0f} files/s")

    import tempfile
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        generate(d)
        print(f"generate seeds and dictionary: {(time.perf_counter() - t) * 1e3:.0f} ms")

    print("shrink the smallest seed that catches each zoo bug (py: target):")
    for name, mod, _ in ZOO:
        if name == "credit_leak":
            continue  # stateful: shrinking against one long-lived target is not meaningful
        target = open_target(f"py:{mod}:parse")
        pred = fires(target, ORACLE[name])
        hits = sorted((len(encode(e.case)), i) for i, e in enumerate(entries) if pred(e.case))
        if not hits:  # the seeds lead a campaign to it, no seed is it (limit_mismatch)
            print(f"  {name:12} {ORACLE[name]:26} no file of corpus/target catches it: nothing to shrink")
            continue
        case = entries[hits[0][1]].case
        calls = [0]

        def counted(c, pred=pred):
            calls[0] += 1
            return pred(c)
        t = time.perf_counter()
        small = shrink(case, counted)
        dt = time.perf_counter() - t
        print(f"  {name:12} {ORACLE[name]:26} {len(encode(case)):4} -> {len(encode(small)):4} bytes, "
              f"{calls[0]:5} calls, {dt * 1e3:7.1f} ms")


if __name__ == "__main__":
    main()
