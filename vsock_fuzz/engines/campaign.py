"""The campaign: how `vsock-fuzz fuzz` runs atheris and still keeps going after a finding
and prints its own summary.

  - A campaign is a parent process that starts `--jobs` *worker* processes
    (`python -m vsock_fuzz.engines.worker CONFIG`, engines.pool) and owns the terminal, the
    clock, the signals, minimization and the summary. It never fuzzes itself.
  - Why processes: `atheris.Fuzz()` never returns (libFuzzer exits the process), several
    jobs need several processes anyway, and a parent that only reads pipes reacts to
    SIGINT at once whatever the target is doing.
  - Each worker *records* findings instead of raising, writing each new one to the output
    directory the moment it is seen (engines.worker says why); the parent keeps the distinct
    ones (engines.findings).
  - The working corpora of the engines live in `DIR/.corpus/<engine>` (dot names: `replay
    DIR` skips them) and carry over to the next campaign in the same directory.
  - After the deadline, `--runs`, `--stop-on` or SIGINT/SIGTERM the parent stops the workers
    (SIGTERM; a worker finishes the finding it is writing first), shrinks one reproducer per
    distinct finding with the shared `minimize.shrink` (skipped when interrupted), and prints
    the summary (engines.summary). Findings below --fail-on are kept on disk up to
    worker.KEEP_BELOW per oracle.

The per-case path the workers run, and the harnesses' entry points, are engines.percase.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field

from .findings import Findings
from .pool import ENGINES, Pool, engines
from .summary import hits, status_line, summary

CAUSES_FILE = "root-causes.json"  # in --out: every root cause seen there, for the next run's "new"


def known_causes(out: str) -> set[str] | None:
    """The root causes earlier runs recorded in `out`; None when none did (or the file is unreadable)."""
    try:
        with open(os.path.join(out, CAUSES_FILE), encoding="utf-8") as f:
            return {c["key"] for c in json.load(f)["root_causes"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_causes(out: str, causes: list, known: set[str] | None) -> None:
    """This run's root causes and the earlier ones, written atomically."""
    from ..case.corpus import atomic_write
    earlier = [{"key": k} for k in sorted((known or set()) - {c.key for c in causes})]
    body = {"root_causes": [c.to_json() for c in causes] + earlier}
    try:
        atomic_write(os.path.join(out, CAUSES_FILE), json.dumps(body, indent=1).encode())
    except OSError:
        pass  # the findings themselves are on disk already


@dataclass
class Options:
    target: str
    max_time: float | None = 60.0
    runs: int | None = None
    engine: str = "atheris"  # atheris | hypothesis | both
    jobs: int = 1
    out: str = "fuzz-out"
    seed: int = 0
    profile: str = "spec"
    strict: bool = False
    fail_on: str = "error"
    corpus: list = field(default_factory=list)
    timeout: float = 2.0
    dict: str | None = None
    minimize_time: float | None = None  # seconds for all minimization; None: a share of max_time
    stop_on: tuple = ()  # stop at the first finding of one of these oracles or families ("fail": at or above fail_on)
    # open_target's cmd: limits besides timeout (JSON-able). Not default_factory=dict:
    # the field `dict` above shadows the builtin in this class body.
    target_options: dict = field(default_factory=lambda: {})
    verbose: bool = False      # the summary lists every finding, not one entry per root cause
    fail_on_new: bool = False  # exit 1 only for root causes the output directory has not seen before


class UsageError(Exception):
    """Options or a target that cannot make a campaign; the message is one line."""


def validate(o: Options) -> None:
    """Raise UsageError for options no campaign can run with (the target is probed separately)."""
    from ..oracles import SEVERITY_ORDER
    from ..model.packet import PROFILES
    if o.engine not in ENGINES + ("both",):
        raise UsageError(f"unknown engine {o.engine!r} (atheris, hypothesis or both)")
    if o.profile not in PROFILES:
        raise UsageError(f"unknown profile {o.profile!r} (known: {', '.join(PROFILES)})")
    if o.fail_on not in SEVERITY_ORDER:
        raise UsageError(f"--fail-on must be one of critical, error, warning, not {o.fail_on!r}")
    if o.jobs < 1:
        raise UsageError(f"--jobs must be at least 1, not {o.jobs}")
    if o.max_time is not None and o.max_time <= 0:
        raise UsageError(f"--max-time must be positive, not {o.max_time:g}")
    if o.runs is not None and o.runs < 1:
        raise UsageError(f"--runs must be at least 1, not {o.runs}")
    if o.timeout <= 0:
        raise UsageError(f"--timeout must be positive, not {o.timeout:g}")
    for d in o.corpus:
        if not os.path.isdir(d):
            raise UsageError(f"corpus directory {d!r} does not exist")
    if o.dict is not None and not os.path.isfile(o.dict):
        raise UsageError(f"dictionary {o.dict!r} does not exist")


def prepare_out(o: Options) -> None:
    try:
        os.makedirs(o.out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create output directory {o.out!r}: {e.strerror or e}") from None
    if not os.access(o.out, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {o.out!r} is not writable")


def open_campaign_target(o: Options, **overrides):
    """The campaign's target, opened as the workers open it (`overrides`: open_target's keywords)."""
    from ..targets.command import open_target
    return open_target(o.target, **{"timeout": o.timeout, **o.target_options, **overrides})


def probe(o: Options) -> None:
    """Open the target and have it answer one Linux packet, so a target that cannot start
    fails here with one line instead of in every worker."""
    from ..case.layout import plain_packet
    from ..targets.command import TargetError
    try:
        target = open_campaign_target(o)
        try:
            answer = target.parse(plain_packet())
        finally:
            target.close()
    except TargetError as e:
        raise UsageError(str(e)) from None
    if answer.faulted:
        raise UsageError(f"target {o.target!r} fails on a plain Linux packet: {answer.detail[:300]}")


class Campaign:
    """One `vsock-fuzz fuzz` run: the clock, the signals, the stop conditions and the phases."""

    def __init__(self, opts: Options, out=None):
        self.o = opts
        self.out = out or sys.stdout
        self.start = 0.0
        self.findings = Findings(opts.fail_on, opts.stop_on)
        self.pool = Pool(opts, self.findings, self.say, lambda: self.interrupted)
        self.stop_reason: str | None = None
        self.interrupted = False
        self.elapsed = 0.0
        self.known: set[str] | None = None  # root causes of earlier runs into the same --out (None: first run)
        self.causes: list = []              # this run's root causes, set by the summary
        self.failure: str | None = None     # why the run could not start (a usage error)

    def why_incomplete(self) -> str | None:
        """What stopped the run short, for its reports (None: it completed)."""
        return self.failure or self.pool.fatal or "; ".join(self.pool.errors) or None

    def open_target(self, **overrides):
        return open_campaign_target(self.o, **overrides)

    def run(self) -> int:
        """Validate, fuzz, minimize, print the summary; the exit status."""
        try:
            validate(self.o)
            probe(self.o)
            prepare_out(self.o)
        except UsageError as e:
            self.failure = str(e)
            print(f"vsock-fuzz fuzz: error: {e}", file=sys.stderr)
            return 2
        self.known = known_causes(self.o.out)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.fuzz()
            if not self.interrupted:
                self.minimize()
        finally:
            self.pool.stop()
            for s, h in old.items():
                signal.signal(s, h)
        self.causes = self.findings.root_causes(hits(self.pool), self.o.target)
        for line in summary(self):
            self.say(line)
        save_causes(self.o.out, self.causes, self.known)
        return self.status()

    def is_new(self, cause) -> bool:
        return self.known is not None and cause.key not in self.known

    def _on_signal(self, signum, _frame) -> None:
        self.interrupted = True
        self.stop_reason = f"interrupted by {signal.Signals(signum).name}"

    def fuzz(self) -> None:
        o, pool = self.o, self.pool
        self.start = time.monotonic()
        deadline = None if o.max_time is None else self.start + o.max_time
        self.say(f"INFO: target {o.target} (oracle profile {o.profile}{', strict' if o.strict else ''}), "
                 f"engine {o.engine}, {len(engines(o))} worker(s), findings in {o.out}/")
        pool.launch(self.start)
        every = max(1.0, min(10.0, (o.max_time or 60) / 60))
        next_status = self.start + every
        while not self.interrupted:
            pool.poll(0.1)
            now = time.monotonic()
            if pool.fatal:
                self.stop_reason = "the target cannot be used any more"
                break
            if o.stop_on and any(self.findings.stops(d) for d in self.findings.values()):
                self.stop_reason = "--stop-on " + " ".join(o.stop_on)
                break
            if deadline is not None and now >= deadline:
                self.stop_reason = f"--max-time {o.max_time:g}s reached"
                break
            if pool.all_done():
                self.stop_reason = "--runs reached" if o.runs else "every worker stopped"
                break
            if now >= next_status:
                if pool.total_execs():  # nothing to say while the workers start
                    self.say(status_line("pulse", pool, self.findings, self.start))
                next_status += every
        pool.stop()
        self.elapsed = time.monotonic() - self.start
        self.say(status_line("DONE", pool, self.findings, self.start))

    def minimize(self) -> None:
        """One minimized reproducer per distinct finding, inside a time budget."""
        if not self.findings or self.o.minimize_time == 0:
            return
        from ..targets.command import TargetError
        o = self.o
        total = o.minimize_time if o.minimize_time is not None else min(60.0, max(5.0, (o.max_time or 60) / 4))
        end = time.monotonic() + total
        try:
            # Every candidate of a crash finding crashes: fires() resets the back-off after each,
            # so only restarts that fail in a row count towards --max-restarts.
            target = self.open_target()
        except TargetError as e:
            self.say(f"WARNING: not minimizing: {e}")
            return
        try:
            todo = self.findings.worst_first()
            for i, d in enumerate(todo):
                left = end - time.monotonic()
                if left <= 0 or self.interrupted:
                    break
                minimize_one(o, target, d, left / (len(todo) - i), self.say)
        except TargetError as e:
            self.say(f"WARNING: minimization stopped: {e}")
        finally:
            target.close()

    def status(self) -> int:
        """The exit status: 2 the target cannot be used, 1 a finding at or above --fail-on,
        2 a worker failed, 130 interrupted with nothing to report, else 0 (first that applies)."""
        if self.pool.fatal:
            return 2
        if self.o.fail_on_new:
            if any(self.findings.order[c.severity] >= self.findings.order[self.o.fail_on] and
                   (self.known is None or c.key not in self.known) for c in self.causes):
                return 1
        elif any(self.findings.fails(d) for d in self.findings.values()):
            return 1
        if self.pool.errors:
            return 2
        return 130 if self.interrupted else 0

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def minimize_one(o: Options, target, d, timeout: float, say) -> None:
    """Shrink `d`'s reproducer; a smaller case that still fires is written as a finding of its own."""
    from ..case.binary import encode
    from ..case.corpus import read_case, write_finding
    from ..oracles import evaluate
    from .minimize import fires, shrink
    try:
        case = read_case(d.stem + ".bin").case
    except Exception as e:  # noqa: BLE001  (a reproducer that cannot be read is reported, not fatal)
        say(f"WARNING: cannot minimize {d.stem}.bin: {e}")
        return
    still = fires(target, d.oracle, profile=o.profile, strict=o.strict)  # no back-off between candidates
    small = shrink(case, still, timeout=timeout)
    if small == case:
        return
    _, found = evaluate(target, small, profile=o.profile, strict=o.strict,
                        determinism=d.oracle.startswith("determinism"))
    same = [f for f in found if f.oracle == d.oracle]
    if same:
        f = next((f for f in same if f.key() == d.key), same[0])
        stem, _ = write_finding(o.out, f)
        d.minimized = stem
        d.sizes = (len(encode(case)), len(encode(small)))


def campaign(opts: Options, out=None) -> int:
    return Campaign(opts, out).run()
