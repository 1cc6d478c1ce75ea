"""A campaign's worker process: one engine under libFuzzer, findings recorded as they come.

    python -m vsock_fuzz.engines.worker CONFIG   # CONFIG: the JSON the campaign's pool writes

Each worker runs libFuzzer through atheris, the only coverage source for Python 3.11 code
fast enough to guide mutation; the model, the oracles and a `py:` target's package are
instrumented, the decoder, memory and plumbing are not (percase.UNINSTRUMENTED). Its
TestOneInput *records* a finding instead of raising: libFuzzer would stop at the first
crash, and `-fork`/`-ignore_crashes` would restart a process per finding and lose our
counts. Each new finding is written to the output directory the moment it is seen
(corpus.write_finding: three files, atomic), so nothing is lost when a worker or the
parent is killed.

Findings are de-duplicated by `Finding.key()` (per target) across workers and across
campaigns sharing one directory by claiming `DIR/.keys/<sha1 of target and key>` with an
atomic exclusive link; the claim holds the finding's file stem.

The worker reports to the parent through a pipe of JSON lines (exec counts, findings, the hit
counts of the keys hit since its last report); a worker whose parent is gone gets EPIPE on that
pipe and exits.

Engine `atheris` mutates the binary case form (`binary.decode` is total). Engine
`hypothesis` is the same worker whose TestOneInput is a Hypothesis test's
`fuzz_one_input`: libFuzzer mutates the choice sequence the strategies draw from
(structure-aware).

Only the standard library and engines.percase (itself stdlib only) at the top: anything
of ours imported before instrument_imports would not be instrumented.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import signal
import sys
import time

from .percase import DETERMINISM_EVERY, case_checker, coverage_plan, hypothesis_one_input

STALE_CLAIM = 10.0  # seconds after which a claim without its finding is one whose writer died
KEEP_BELOW = 20  # distinct findings kept on disk per oracle and worker below --fail-on
BACKTRACES_ON = {"RUST_BACKTRACE": "1"}
BACKTRACE_KEEP = 16 << 10  # characters of stderr a crash finding run again with backtraces keeps
UNSUPPORTED_KINDS = 20  # kinds of Unsupported answer counted apart per worker; the rest as one
_NUMBERS = re.compile(r"\b(?:0x[0-9a-fA-F]+|\d+(?:\^\d+)?)")  # 0x1000, 4096, 2^63


def count_unsupported(unsupported: dict, detail: str) -> None:
    """Count an Unsupported answer in `unsupported` (kind -> [cases, first detail]) under its
    kind: the detail with its numbers as N. An adapter's limit names the address or size it
    refused; grouped by the text, one limit would fill the table with its addresses."""
    kind = _NUMBERS.sub("N", detail)[:120]
    if kind not in unsupported and len(unsupported) >= UNSUPPORTED_KINDS:
        kind = "(other kinds)"
    entry = unsupported.get(kind)
    if entry is None:
        entry = unsupported[kind] = [0, detail[:120]]
    entry[0] += 1


def claim(out_dir: str, key: str, stem: str) -> str | None:
    """Claim finding `key` for `stem` in `out_dir`; None if ours, else the stem that holds it.

    An exclusive hard link of a complete temporary file: atomic across processes, and a
    claim is never seen half-written. A claim whose finding never appeared (its writer was
    killed in between) is taken over once stale, so a finding is never lost to it."""
    keys = os.path.join(out_dir, ".keys")
    os.makedirs(keys, exist_ok=True)
    path = os.path.join(keys, hashlib.sha1(key.encode()).hexdigest())
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        f.write(stem)
    try:
        os.link(tmp, path)
        return None
    except FileExistsError:
        with open(path) as f:
            held = f.read()
        if not os.path.exists(held + ".finding.json") and time.time() - os.stat(path).st_mtime > STALE_CLAIM:
            os.replace(tmp, path)
            return None
        return held
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class Recorder:
    """A worker's findings: each key written once (by whichever worker claims it), every hit counted.

    Findings below `fail_on` are kept up to KEEP_BELOW per oracle (a lenient device answers
    thousands of distinct conformance warnings); past that they are counted, not written.
    `target`, if given, runs a crash's case again before its finding is written, for the
    backtrace a campaign's target does not print (with_backtrace)."""

    def __init__(self, out_dir: str, send, fail_on: str = "warning", target=None):
        from ..oracles import SEVERITY_ORDER
        self.out_dir = out_dir
        self.send = send
        self.hits: dict[str, int] = {}
        self.changed: set[str] = set()  # keys hit since the last report (hits_since)
        self.rank = SEVERITY_ORDER
        self.bar = SEVERITY_ORDER[fail_on]
        self.kept_below: dict[str, int] = {}
        self.busy = False      # between a claim and its finding on disk
        self.on_done = None    # a stop signal that arrived meanwhile
        self.target = target

    def hits_since(self) -> dict[str, int]:
        """The counts of the keys hit since the last call. A lenient device's thousands of distinct
        warnings (rust-vmm 0.12.0: 2,000 in 30 s), sent whole four times a second, cost the
        worker a twentieth of its time."""
        out = {key: self.hits[key] for key in self.changed}
        self.changed.clear()
        return out

    def record(self, findings) -> None:
        from ..case.corpus import write_finding
        for f in findings:
            key = f.key()
            self.changed.add(key)
            if key in self.hits:
                self.hits[key] += 1
                continue
            self.hits[key] = 1
            if self.rank[f.severity] < self.bar:
                n = self.kept_below[f.oracle] = self.kept_below.get(f.oracle, 0) + 1
                if n > KEEP_BELOW:
                    self.send({"finding": {**_traits(f, key), "stem": None, "new": False}})
                    continue
            stem = os.path.join(self.out_dir, f.file_stem())
            self.busy = True
            try:
                # Claimed per target: another target's finding with the same key is not this one.
                held = claim(self.out_dir, f"{f.target}\n{key}", stem)
                if held is None:
                    if self.target is not None:
                        f = with_backtrace(self.target, f)
                    write_finding(self.out_dir, f)  # files after the claim: only one worker writes a key
                self.send({"finding": {**_traits(f, key), "stem": held or stem, "new": held is None}})
            finally:
                self.busy = False
            if self.on_done:
                self.on_done()


def with_backtrace(target, f):
    """Crash finding `f` with its case run again in a new process of `target` with Rust
    backtraces on, the backtrace kept in its message; any other finding as it is. Once per
    crash finding written: a campaign's target runs without backtraces (campaign.NO_BACKTRACES).
    `f` as it is too when the target has no process, or the case now crashes elsewhere or not
    at all (a flaky crash keeps what was seen first)."""
    if f.oracle != "safety.crash" or not hasattr(target, "restart_with"):
        return f
    from dataclasses import replace
    from ..targets.base import TargetError
    try:
        target.restart_with(BACKTRACES_ON)
        answer = target.parse(f.case)
    except TargetError:
        return f  # the next case says so, if the target cannot start any more
    if answer.error_class != "crash" or answer.title != f.signature:
        return f
    why, _, report = answer.detail.partition("; stderr: ")  # the tail there is short, but a crash frame's
    # A crash frame carries the whole report, which the target's stderr may not have delivered yet.
    tail = max(target.stderr_tail().strip(), report, key=len)[-BACKTRACE_KEEP:]
    return replace(f, message=f"the target crashed: {why}; stderr: {tail}", answer=answer)


def _traits(f, key: str) -> dict:
    """What the parent keeps of a finding, with what its root cause is told by (oracles.triage):
    the signature, the queue, and the finding that explains it on its case, if any."""
    return {"key": key, "oracle": f.oracle, "severity": f.severity, "message": f.message, "rule": f.rule,
            "signature": f.signature, "queue": f.case.queue, "cause": f.cause}


def worker(cfg: dict) -> None:
    """Run one engine under libFuzzer until the parent stops it or the flags end it."""
    import atheris
    stats = os.fdopen(cfg["stats_fd"], "w", buffering=1)
    state = {"execs": 0, "last": time.monotonic(), "target": None, "recorder": None, "unsupported": {},
             "region": None, "hints": None}
    coverage = cfg.get("coverage")  # target | harness | both; None: both when the target offers the channel

    def send(msg: dict) -> None:
        try:
            stats.write(json.dumps(msg) + "\n")
        except (BrokenPipeError, OSError):  # the parent is gone
            finish(0)

    def last_words() -> None:
        if state["target"] is not None:
            state["target"].close()
        try:
            rec = state["recorder"]
            stats.write(json.dumps({"execs": state["execs"], "hits": rec.hits_since() if rec else {},
                                    "unsupported": state["unsupported"],
                                    **_coverage_figures(state["region"], state["hints"])}) + "\n")
            stats.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass

    def finish(code: int, *_):
        last_words()
        os._exit(code)

    # --coverage target: the target's edges alone guide libFuzzer, our Python is not instrumented.
    # With the compiled core, its counters are the model's edges (register_core below).
    include, exclude, compiled = coverage_plan(cfg["target"], cfg["profile"], cfg["engine"], coverage)
    instrument = atheris.instrument_imports(include=include, exclude=exclude) if include else contextlib.nullcontext()
    with instrument:
        from ..targets import TargetError, open_target
        try:
            # die_with_parent: a worker killed after its grace period takes a hung target with it.
            target = state["target"] = open_target(cfg["target"], timeout=cfg["timeout"], die_with_parent=True,
                                                   **cfg["target_options"])
            region = state["region"] = _offer_coverage(target, coverage)
        except TargetError as e:
            send({"fatal": str(e)})
            os._exit(2)
        check = case_checker(target, profile=cfg["profile"], strict=cfg["strict"])
        from ..oracles import evaluate
    # Only now: anything of ours imported before the block above would not be instrumented.
    rec = Recorder(cfg["out"], send, cfg["fail_on"], target)
    state["recorder"] = rec

    def on_signal(*_):
        if rec.busy:  # finish writing the finding first: no claim without its files
            rec.on_done = lambda: finish(0)
        else:
            finish(0)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    unsupported = state["unsupported"]  # kind -> [cases the adapter answered Unsupported, a detail]

    def tick(findings, answer) -> None:
        state["execs"] += 1
        if findings:
            rec.record(findings)
        elif answer.unsupported:
            count_unsupported(unsupported, answer.detail)
        if region is not None:
            garbage = region.screen()
            if not garbage and state["execs"] & 31 == 0:
                region.sample()  # between the target's answer and libFuzzer's clearing the counters
            if hints is not None:  # before libFuzzer mutates the next input from its compare tables
                if garbage:
                    hints.drop()
                else:
                    hints.feed()
        if state["execs"] & 127 == 0:
            now = time.monotonic()
            if now - state["last"] >= 0.25:
                state["last"] = now
                send({"execs": state["execs"], "hits": rec.hits_since(), "unsupported": unsupported,
                      **_coverage_figures(region, hints)})

    def guarded(run):
        def TestOneInput(data: bytes) -> None:
            try:
                tick(*run(data))
            except TargetError as e:  # the target cannot be restarted: the campaign ends
                send({"fatal": str(e)})
                finish(2)
        return TestOneInput

    if cfg["engine"] == "hypothesis":
        run = _hypothesis_run(lambda case: evaluate(target, case, profile=cfg["profile"], strict=cfg["strict"],
                                                    determinism=DETERMINISM_EVERY))
    else:
        def run(data: bytes):
            _, findings, answer = check(data)
            return findings, answer
    hints, setup = None, {}
    if region is not None and region.compares:  # the target records its compares (shm-8bit-v2)
        from ..targets.coverage import FEED_REFRESH, CompareHints, preload_custom_crossover
        # Instrumented Python compares write libFuzzer's 8-byte table too: refresh it.
        hints = state["hints"] = CompareHints(region, refresh=0 if coverage == "target" else FEED_REFRESH)
        if cfg["engine"] == "atheris":  # its inputs are binary cases; Hypothesis's are choice sequences
            setup["custom_crossover"] = hints.crossover
            preload_custom_crossover()  # before register_with_libfuzzer loads libFuzzer
    atheris.Setup([sys.argv[0], *cfg["flags"], *cfg["corpus"]], guarded(run), **setup)
    if region is not None:
        from ..targets.coverage import register_with_libfuzzer
        register_with_libfuzzer(region)  # before Fuzz(): one more module of 8-bit counters
        if hints is not None:
            hints.bind()
    if compiled:
        from ..targets.coverage import register_core
        register_core()  # the model's decisions, as atheris instruments the Python model
    state["on_exit"] = _on_exit(last_words)
    atheris.Fuzz()


def _on_exit(func):
    """Run `func` when libFuzzer ends the process with exit() (-runs reached), which runs no Python
    atexit: else the cases since the last stats message, and a fast run's coverage figures, are
    lost. Returns what must be kept alive; None where the C library has no on_exit."""
    import ctypes
    try:
        register = ctypes.CDLL(None).on_exit
    except AttributeError:
        return None
    callback = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p)(lambda status, arg: func())
    register(callback, None)
    return callback


def _offer_coverage(target, mode):
    """The coverage region `target` counts its edges in (targets.coverage), or None: harness
    coverage only. Starts the target, whose hello settles the channel. A target that does not
    take it is given no region (it runs as it always did); under --coverage target that is an
    error (TargetError), as is a target without a process."""
    from ..targets.base import TargetError
    from ..targets.coverage import CHANNEL, CMP_SLOTS, CoverageError, Region
    if mode == "harness":
        return None
    if not hasattr(target, "coverage"):
        if mode == "target":
            raise TargetError("--coverage target needs a cmd: target that offers the coverage channel")
        return None
    try:
        # VSOCK_FUZZ_COMPARE_HINTS=0 offers shm-8bit-v1 alone: the device's compares go unused, to
        # measure what they cost with one build (benchmarks/bench_target_cov.py).
        region = Region(slots=0 if os.environ.get("VSOCK_FUZZ_COMPARE_HINTS") == "0" else CMP_SLOTS)
    except CoverageError as e:
        if mode == "target":
            raise TargetError(str(e)) from None
        return None
    target.coverage = region
    target.device  # noqa: B018  (starts the target)
    if region.negotiated:
        return region
    target.coverage = None
    region.close()
    if mode == "target":
        raise TargetError(f"--coverage target: {target.name} does not offer the coverage channel {CHANNEL} in hello")
    return None


def _coverage_figures(region, hints=None) -> dict:
    """What a stats message says of the target's coverage: `tcov`, the counters seen non-zero;
    `tcmp`, the device's compare pairs fed to libFuzzer's tables, `thint`, inputs its custom
    crossover wrote one into (shm-8bit-v2)."""
    if region is None:
        return {}
    return {"tcov": region.seen(), "tcov_garbage": region.garbage,
            **({"tcmp": hints.fed, "thint": hints.hinted} if hints else {})}


def _hypothesis_run(evaluate_case):
    """bytes -> (findings, answer) through the Hypothesis engine: the test it drives cannot return a
    value. An input Hypothesis draws no case from gets the answer of none (`Answer(True)`)."""
    from ..model.answer import Answer
    found: list = []
    none = Answer(True)

    def on_case(case) -> None:
        answer, findings = evaluate_case(case)
        found[:] = (findings, answer)

    fuzz = hypothesis_one_input(on_case)

    def run(data: bytes):
        found[:] = ([], none)
        fuzz(data)
        findings, answer = found
        return list(findings), answer
    return run


if __name__ == "__main__":
    worker(json.loads(sys.argv[1]))
