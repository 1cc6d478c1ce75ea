"""Throughput figures for the fuzz loop's per-case path.

    python benchmarks/bench.py [SECTION ...] [--seconds S] [--quick]

--quick: 0.2 CPU s per figure (`make bench`), for a first look in seconds.

Each section is a function in SECTIONS printing one line per figure; add a
section by decorating a function with @section("name"). Figures are printed,
never asserted: compare runs on the same machine.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vsock_fuzz.case.binary import decode, encode_layout  # noqa: E402
from vsock_fuzz.case.layout import LINUX_VERSIONS, linux_rx, linux_tx  # noqa: E402
from vsock_fuzz.model.packet import PROFILES, parse  # noqa: E402

SECTIONS = {}
SECONDS = 1.0
QUICK_SECONDS = 0.2


def section(name):
    def register(fn):
        SECTIONS[name] = fn
        return fn
    return register


def rate(fn, inputs, seconds=None) -> float:
    """Calls of fn per CPU second over `inputs`, cycled for about `seconds` of CPU time.

    CPU time, not wall time: the figure is what one core does, and stays
    comparable on a machine busy with other work (tests, campaigns).
    """
    seconds = SECONDS if seconds is None else seconds
    n = 0
    start = time.process_time()
    deadline = start + seconds
    while True:
        for x in inputs:
            fn(x)
        n += len(inputs)
        now = time.process_time()
        if now >= deadline:
            return n / (now - start)


def report(name: str, per_second: float) -> None:
    print(f"{name:<44} {per_second:>12,.0f} cases/s  {1e6 / per_second:7.2f} us/case", flush=True)


def random_inputs(n: int = 2000, seed: int = 1) -> list[bytes]:
    """Byte strings as a mutator makes them: short, half in each form (byte 1 bit 1 picks raw)."""
    rng = random.Random(seed)
    return [rng.randbytes(rng.randrange(2, 64)) for _ in range(n)]


def linux_inputs() -> list[bytes]:
    out = []
    for version in LINUX_VERSIONS:
        for indirect in (False, True):
            for payload in (0, 5, 4096, 40000):
                out.append(encode_layout(linux_tx(version, payload, indirect=indirect)))
            out.append(encode_layout(linux_rx(version, indirect=indirect)))
    return out


def _decode_parse(inputs, label):
    report(f"{label}: decode", rate(decode, inputs))
    cases = [decode(b) for b in inputs]
    for profile in PROFILES:
        report(f"{label}: parse {profile}", rate(lambda c: parse(c, profile), cases))
        report(f"{label}: decode+parse {profile}", rate(lambda b: parse(decode(b), profile), inputs))


@section("decode+parse random")
def bench_random():
    _decode_parse(random_inputs(), "random")


@section("decode+parse linux")
def bench_linux():
    _decode_parse(linux_inputs(), "linux")


@section("oracles")
def bench_oracles():
    """check() alone, decode + model + every oracle, and decode + evaluate on the reference: the
    harness's per-case path (the reference once, as it is pure; other targets twice for determinism;
    then every oracle; goal 50,000/s)."""
    from vsock_fuzz.oracles import check, evaluate
    from vsock_fuzz.targets import open_target
    reference = open_target("reference")
    for label, inputs in (("random", random_inputs()), ("linux", linux_inputs())):
        cases = [decode(b) for b in inputs]
        answers = [parse(c) for c in cases]
        pairs = list(zip(cases, answers))
        report(f"{label}: check (answer, model, repeat)", rate(lambda p: check(p[0], p[1], model=p[1], repeat=p[1]), pairs))

        def loop(b):
            case = decode(b)
            answer = parse(case)
            check(case, answer, model=answer, repeat=answer)
        report(f"{label}: decode+parse+check spec", rate(loop, inputs))
        report(f"{label}: decode+evaluate reference", rate(lambda b: evaluate(reference, decode(b)), inputs))


def main(argv=None) -> int:
    global SECONDS
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("sections", nargs="*", metavar="SECTION", help=f"sections to run (default all): {', '.join(SECTIONS)}")
    ap.add_argument("--seconds", type=float, default=None, help=f"time per figure (default {SECONDS:g})")
    ap.add_argument("--quick", action="store_true", help=f"{QUICK_SECONDS:g} s per figure unless --seconds is given")
    args = ap.parse_args(argv)
    unknown = [s for s in args.sections if s not in SECTIONS]
    if unknown:
        ap.error(f"unknown section(s) {', '.join(map(repr, unknown))}; known: {', '.join(SECTIONS)}")
    SECONDS = args.seconds if args.seconds is not None else QUICK_SECONDS if args.quick else SECONDS
    print(f"python {sys.version.split()[0]}, {SECONDS:g} CPU s per figure, cases per CPU second")
    for name in args.sections or SECTIONS:
        print(f"== {name}")
        SECTIONS[name]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
