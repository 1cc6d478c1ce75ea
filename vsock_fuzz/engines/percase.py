"""The per-case path (bytes -> case -> target -> every oracle) and the harnesses' entry points.

A campaign worker and the standalone harnesses in `harnesses/` share case_checker. The
harnesses use `one_input(...)` in raising mode: a finding becomes an exception naming the
oracle, so libFuzzer writes crash-<sha1>. A campaign worker records findings instead
(engines.worker says why).

Only the standard library at the top: a harness and a worker import this module before
atheris starts instrumenting, and everything of ours imported with it would escape coverage.
"""

from __future__ import annotations

import os

QUEUE_BYTE_RX = 1  # binary.RX: bit 0 of byte 1 selects the rx queue
# The fuzz loop asks the target a second time (determinism) on one case in this many, and on
# every case with a finding: a state leak shows on any case, and a second ask costs a first's.
# VSOCK_FUZZ_DETERMINISM_EVERY sets it (1: every case) to measure the trade-off.
DETERMINISM_EVERY = int(os.environ.get("VSOCK_FUZZ_DETERMINISM_EVERY") or 16)


class FindingError(Exception):
    """Raised by a harness on a finding; the message starts with the oracle's name."""


def force_queue(data: bytes, queue: str | None) -> bytes:
    """`data` with its queue bit set to `queue` (None: as it is), so a harness about one queue
    keeps every mutation on that queue and the decoder lays the chain out for it."""
    if queue is None:
        return data
    if len(data) < 2:
        data = data + bytes(2 - len(data))
    mode = data[1] | QUEUE_BYTE_RX if queue == "rx" else data[1] & ~QUEUE_BYTE_RX
    return data[:1] + bytes((mode,)) + data[2:]


def case_checker(target, *, profile: str = "spec", strict: bool = False, queue: str | None = None):
    """The per-case path: bytes -> (case, findings, answer) with the target and every oracle.
    With the compiled core (vsock_fuzz.model.compiled) under the spec profile, an answer that agrees with
    the model's readings is settled there; `case` is then None unless a finding needs it."""
    from ..model.compiled import load
    core = load() if profile == "spec" else None
    if core is not None:
        return _core_checker(core, target, strict, queue)
    from ..case.binary import decode
    from ..oracles import evaluate

    def check(data: bytes):
        case = decode(force_queue(data, queue))
        answer, findings = evaluate(target, case, profile=profile, strict=strict, determinism=DETERMINISM_EVERY)
        return case, findings, answer
    return check


def _core_checker(core, target, strict: bool, queue: str | None):
    """case_checker through the core: the case decoded, fitted and encoded there, the answer
    compared there with the spec model's readings (oracles.run.agrees, which tests hold to
    mean that no oracle can fire). Only an answer that differs, or a second answer that
    differs from the first, goes through the Python model and oracles (oracles.run.judge)."""
    from ..case.wire import Header
    from ..model.answer import Answer
    from ..model.device import ASSUMED
    from ..model.packet import parse
    from ..oracles.run import judge, repeated, sampled, stamped
    from ..targets import CommandTarget, ModelTarget
    native = isinstance(target, CommandTarget)  # sends the core's case as it is
    reference = isinstance(target, ModelTarget) and target.profile == "spec"
    again = DETERMINISM_EVERY and not isinstance(target, ModelTarget)  # as oracles.run.judge asks again

    # The device hello described, the same object case after case: the limits a case is fitted
    # to (None: it fits any case) and the offer the core's readings take, worked out once.
    known = [None, None, ()]

    def answer_of(reading) -> Answer:
        """The Answer of one of the core's readings (ok, error, class, header, header_slices, data_slices)."""
        ok, error, kind, header, hs, ds = reading
        return Answer(ok, header and Header._make(header), tuple(hs), tuple(ds), error, kind)

    def check(data: bytes):
        device = getattr(target, "device", ASSUMED)
        if device is not known[0]:
            known[:] = (device, None if device.fits_any_case else (device.max_data_size, device.max_region_size,
                                                                    device.max_regions),
                        (device.features is not None, device.indirect, device.seqpacket, device.max_queue_size))
        _, limits, offer = known
        cc = core.decode(force_queue(data, queue))
        if limits is not None:
            cc = cc.fit(*limits)
        if reference:  # the model is the target: its answer agrees with itself (oracles.run.judge)
            return None, [], answer_of(cc.readings(*offer)[0])
        case = None if native else cc.case()
        answer = target.parse(cc if native else case)
        if answer.unsupported:
            return case, [], answer
        # A crash or hang agrees with nothing; not asked, so its input adds no coverage of the
        # comparison's own (crashing inputs stay out of the corpus: oracles.run.judge).
        if answer.faulted or not cc.agrees(answer, *offer):
            # Most answers that differ have a finding, and a case with one is asked again: a
            # program is asked at once, and answers while the oracles judge its first answer.
            posted = native and again and not answer.faulted
            if posted:
                target.post(cc)
            # The usual difference, a chain the model accepts refused, is judged from the core's facts.
            refusal = None if answer.ok or answer.faulted else cc.refusal(*offer)
            if refusal is not None:
                refusal = (answer_of(refusal[0]), *refusal[1:])
            case = case or cc.case()
            answer, findings = judge(target, case, answer, strict=strict, determinism=DETERMINISM_EVERY,
                                     sent=cc if native else case, refusal=refusal)
            if posted:
                target.drop_posted()
            return case, findings, answer
        findings = []
        if again and sampled(DETERMINISM_EVERY):
            repeat = target.parse(cc if native else case)
            if repeat != answer:
                case = case or cc.case()
                findings = stamped(repeated(case, answer, repeat, "spec", parse(case, "spec", device), device), target)
        return case, findings, answer

    return check


def raise_on(findings, fail_on: str = "error") -> None:
    """Raise FindingError for the worst finding at or above `fail_on` (harness mode)."""
    from ..oracles import SEVERITY_ORDER
    bar = SEVERITY_ORDER[fail_on]
    hit = [f for f in findings if SEVERITY_ORDER[f.severity] >= bar]
    if hit:
        f = max(hit, key=lambda f: SEVERITY_ORDER[f.severity])
        raise FindingError(f"{f.oracle} ({f.severity}, {f.rule}): {f.message}")


def instrumented(target: str) -> list[str]:
    """Packages to instrument for coverage: ours and a `py:` target's (with the compiled core,
    `uninstrumented` leaves out all of ours but the oracles)."""
    own = [target.split(":")[1].split(".")[0]] if target.startswith("py:") else []
    return ["vsock_fuzz", *(p for p in own if p != "vsock_fuzz")]


# Coverage comes from the code that decides about a case: the model's parse and chain walk,
# the oracles, a py: target. Left out: the decoder (instrumenting it cost a third of the
# exec/s, and atheris found most zoo bugs sooner without it), guest memory's address
# lookups, and plumbing that makes no decision about the input. Leaving memory and plumbing
# out gave 1.25x the exec/s and first findings as soon or sooner (benchmarks/bench_fuzz.py).
UNINSTRUMENTED = ("vsock_fuzz.case", "vsock_fuzz.case.value", "vsock_fuzz.case.binary", "vsock_fuzz.case.layout",
                  "vsock_fuzz.case.wire", "vsock_fuzz.model.memory", "vsock_fuzz.model.answer",
                  "vsock_fuzz.targets", "vsock_fuzz.targets.base", "vsock_fuzz.targets.command", "vsock_fuzz.targets.frames",
                  "vsock_fuzz.targets.process", "vsock_fuzz.targets.spec", "vsock_fuzz.targets.transport",
                  "vsock_fuzz.targets.standby", "vsock_fuzz.targets.coverage", "vsock_fuzz.targets.crash_title", "vsock_fuzz.model.device",
                  "vsock_fuzz.engines", "vsock_fuzz.engines.campaign", "vsock_fuzz.engines.percase",
                  "vsock_fuzz.engines.worker", "vsock_fuzz.engines.merge", "vsock_fuzz.engines.pool", "vsock_fuzz.engines.findings",
                  "vsock_fuzz.engines.summary")


def coverage_plan(target: str, profile: str = "spec", engine: str = "atheris",
                  coverage: str | None = None) -> tuple[list[str], list[str], bool]:
    """What a fuzz worker instruments, and `vsock-fuzz merge` with it (a merge must see the
    coverage the campaign saw): (include, exclude, compiled). `compiled`: the compiled core's
    counters stand for the model (targets.coverage.register_core registers them); `include`
    empty: instrument nothing. --coverage target: the target's edges alone."""
    if coverage == "target":
        return [], [], False
    from ..model.compiled import load
    compiled = engine == "atheris" and profile == "spec" and load() is not None
    return instrumented(target), uninstrumented(target, compiled), compiled


def uninstrumented(target: str = "", compiled: bool = False) -> list[str]:
    """Modules left out of coverage: UNINSTRUMENTED, or VSOCK_FUZZ_UNINSTRUMENTED (comma-separated,
    empty: instrument everything) to measure the trade-off. `compiled`: every module of ours but
    the oracles' own (ORACLE_PLUMBING left out) and those of a `py:` target in this package (the
    zoo's devices). The core's counters stand for the model; the oracles, which then run only on
    answers that differ, are what tells one disagreement from another, and so keeps the inputs
    on the way to a bug that shows only once the device takes what the model refuses: a device
    following an indirect table past its end (zoo indirect_unoffered) was found by 60 s
    campaigns from an empty corpus in 8 of 10 seeds with the oracles instrumented, 2 of 10
    without (8 of 10 on the Python path)."""
    env = os.environ.get("VSOCK_FUZZ_UNINSTRUMENTED")
    if compiled:
        module = target.split(":")[1] if target.startswith("py:") else ""
        keep = ("vsock_fuzz.oracles.", module.rsplit(".", 1)[0] + "." if module.startswith("vsock_fuzz.") else "-")
        return [m for m in _our_modules() if not m.startswith(keep) or m in ORACLE_PLUMBING]
    return list(UNINSTRUMENTED) if env is None else [m for m in env.split(",") if m]


# What the oracles share and how they are run, not what they decide: the walked chain and the
# answer's slices placed in it (context), findings and their keys (finding), root causes
# (triage), the dispatch (run), --accept files (accepted). Left out of coverage with the core,
# they cost a rust-vmm 0.12.0 campaign a sixth of its pace (16.1-17.5k exec/s instrumented,
# 19.4-20.9k not, 15 s, seeds 1-3), and zoo indirect_unoffered was found as often without
# them: 60 s campaigns from an empty corpus found it with seeds 1-20 in 12 of 20 either way
# (both side by side, in two runs of 10).
ORACLE_PLUMBING = frozenset({"vsock_fuzz.oracles", "vsock_fuzz.oracles.context", "vsock_fuzz.oracles.finding",
                             "vsock_fuzz.oracles.triage", "vsock_fuzz.oracles.run", "vsock_fuzz.oracles.accepted"})


def _our_modules() -> list[str]:
    """Every module of this package, found on disk (importing them would escape instrumentation)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = []
    for folder, _, files in os.walk(root):
        package = "vsock_fuzz" + folder[len(root):].replace(os.sep, ".")
        out += [package if f == "__init__.py" else f"{package}.{f[:-3]}" for f in files if f.endswith(".py")]
    return out


def one_input(target: str = "reference", *, queue: str | None = None, profile: str = "spec",
              strict: bool = False, fail_on: str = "error"):
    """An OSS-Fuzz style TestOneInput: decode, run the target and every oracle, raise on a finding."""
    from ..model.compiled import say_if_missing
    from ..targets.coverage import register_core
    from ..targets import open_target
    check = case_checker(open_target(target), profile=profile, strict=strict, queue=queue)
    say_if_missing()
    register_core()

    def TestOneInput(data: bytes) -> None:
        raise_on(check(data)[1], fail_on)
    return TestOneInput


def chain_one_input():
    """TestOneInput for the chain walk alone: it ends, only with a ChainError, after bounded work."""
    from ..case.binary import decode
    from ..model.chain import MAX_INDIRECT_ENTRIES, SPEC_MAX_CHAIN_BYTES, ChainError, check_queue, walk
    from ..model.memory import GuestMemory

    def TestOneInput(data: bytes) -> None:
        case = decode(data)
        mem = GuestMemory(case.regions, case.writes)
        ring = case.ring
        try:
            check_queue(mem, ring)
            descs = list(walk(mem, ring.desc_table, ring.size, ring.head))
        except ChainError:
            return
        # 2.7.13.1 / virtio-queue 0.6.1: a walk is bounded by the queue size
        # (plus one indirect table); a longer one means the loop bound failed.
        if len(descs) > ring.size + MAX_INDIRECT_ENTRIES:
            raise FindingError(f"chain.bounded-walk: {len(descs)} descriptors from a queue of {ring.size}")
        # 2.7.13.1: a chain holds at most 2^32 bytes.
        if sum(d.len for d in descs) > SPEC_MAX_CHAIN_BYTES:
            raise FindingError("chain.max-bytes: the walk accepted a chain over 2^32 bytes")
    return TestOneInput


def hypothesis_one_input(on_case, queue: str | None = None):
    """bytes -> on_case(case) through a Hypothesis test's fuzz_one_input (structure-aware)."""
    from hypothesis import HealthCheck, given, settings
    from .strategies import cases
    test = settings(database=None, deadline=None, suppress_health_check=list(HealthCheck))(
        given(cases(queue))(on_case))
    return test.hypothesis.fuzz_one_input
