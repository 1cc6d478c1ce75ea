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
    worker.KEEP_BELOW per oracle and worker, the rest counted.
  - --max-time is the wall budget: once a reproducer is kept, fuzzing stops minimize_budget()
    seconds before it and minimizing ends at it. A signal while minimizing stops minimizing
    only: the campaign had ended by its clock, and the reproducers not minimized yet stay.

The per-case path the workers run, and the harnesses' entry points, are engines.percase.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from .findings import Findings
from .options import Options
from .pool import ENGINES, Pool, engines
from .summary import hits, status_line, summary

CAUSES_FILE = "root-causes.json"  # in --out: every root cause seen there, for the next run's "new"
# A Rust target symbolizes a backtrace on every panic when the shell sets RUST_BACKTRACE (100-300 ms
# a crash); a campaign turns them off and a worker runs a new crash's case again with them on.
NO_BACKTRACES = {"RUST_BACKTRACE": "0"}


def _read_causes(out: str) -> dict | None:
    try:
        with open(os.path.join(out, CAUSES_FILE), encoding="utf-8") as f:
            body = json.load(f)
    except (OSError, ValueError):
        return None
    return body if isinstance(body, dict) and isinstance(body.get("root_causes"), list) else None


def known_causes(out: str, target: str) -> set[str] | None:
    """The root causes earlier runs against `target` recorded in `out`; None when none did (or the
    file is unreadable). Causes are per target: several targets may share one `out`, and a bug one
    of them has is new in another. A file from before causes named their target holds one target's
    causes: they are taken as this one's."""
    body = _read_causes(out)
    try:
        if body is None:
            return None
        if "targets" not in body:
            return {c["key"] for c in body["root_causes"]}
        if target not in body["targets"]:
            return None  # this target's first run here: nothing to call new against
        return {c["key"] for c in body["root_causes"] if c.get("target") == target}
    except (KeyError, TypeError, AttributeError):
        return None


def save_causes(out: str, causes: list, known: set[str] | None, target: str) -> None:
    """This run's root causes and the earlier ones of `target`, next to other targets' (read again
    now: another campaign may have written since), written atomically. "targets" lists every target
    that ran, so a target whose runs found nothing still has a (empty) record."""
    from ..case.corpus import atomic_write
    body = _read_causes(out) or {}
    targets = body.get("targets") if isinstance(body.get("targets"), list) else []
    # Without "targets" the old causes are this target's: they came in through `known`.
    others = [c for c in body.get("root_causes", []) if "targets" in body and isinstance(c, dict)
              and c.get("target") != target]
    earlier = [{"key": k, "target": target} for k in sorted((known or set()) - {c.key for c in causes})]
    body = {"targets": sorted({*map(str, targets), target}),
            "root_causes": [{**c.to_json(), "target": target} for c in causes] + earlier + others}
    try:
        atomic_write(os.path.join(out, CAUSES_FILE), json.dumps(body, indent=1).encode())
    except OSError:
        pass  # the findings themselves are on disk already


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
    if o.minimize_time is not None and not 0 <= o.minimize_time < float("inf"):
        raise UsageError(f"--minimize-time must be 0 or more seconds, not {o.minimize_time:g}")
    if o.max_time is not None and o.minimize_time and o.minimize_time >= o.max_time:
        raise UsageError(f"--minimize-time {o.minimize_time:g} must be less than --max-time {o.max_time:g}: "
                         f"minimizing is part of the campaign's time")
    check_stop_on(o.stop_on)
    if o.runs is not None and o.runs < 1:
        raise UsageError(f"--runs must be at least 1, not {o.runs}")
    if o.timeout <= 0:
        raise UsageError(f"--timeout must be positive, not {o.timeout:g}")
    for d in o.corpus:
        if not os.path.isdir(d):
            raise UsageError(f"corpus directory {d!r} does not exist")
    if o.dict is not None and not os.path.isfile(o.dict):
        raise UsageError(f"dictionary {o.dict!r} does not exist")


def check_stop_on(names) -> None:
    """UsageError for a --stop-on name that is no oracle, no family and not `fail`."""
    from ..oracles import FAMILIES, ORACLES
    unknown = [n for n in names if n != "fail" and n not in ORACLES and n not in FAMILIES]
    if unknown:
        raise UsageError(f"--stop-on {' '.join(unknown)}: no such oracle or family (families: {', '.join(FAMILIES)}; "
                         f"oracles: {', '.join(sorted(ORACLES))}; or fail: any finding at or above --fail-on)")


def prepare_out(o: Options) -> None:
    try:
        os.makedirs(o.out, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create output directory {o.out!r}: {e.strerror or e}") from None
    if not os.access(o.out, os.W_OK | os.X_OK):
        raise UsageError(f"output directory {o.out!r} is not writable")


def without_backtraces(target_options: dict) -> dict:
    """`target_options` with NO_BACKTRACES in the target's environment (an `env` given wins)."""
    return {**target_options, "env": {**NO_BACKTRACES, **(target_options.get("env") or {})}}


def open_campaign_target(o: Options, **overrides):
    """The campaign's target, opened as the workers open it (`overrides`: open_target's keywords)."""
    from ..targets import open_target
    return open_target(o.target, **{"timeout": o.timeout, **o.target_options, **overrides})


def probe(o: Options) -> None:
    """Open the target and have it answer one Linux packet, so a target that cannot start
    fails here with one line instead of in every worker. Without --coverage, also settle what
    guides mutation: the target's own edges alone when it takes the coverage channel, else
    the harness's. With the target's edges, instrumenting our Python as well (`both`) found
    no bug sooner and took 0.7x the exec/s; a bug only the device's branches lead to took
    twice as long (benchmarks/bench_target_cov.py)."""
    from ..case.layout import plain_packet
    from ..targets.command import TargetError
    region = _offered_region(o)
    try:
        target = open_campaign_target(o)
        if region is not None and hasattr(target, "coverage"):
            target.coverage = region
        try:
            answer = target.parse(plain_packet())
        finally:
            target.close()
    except TargetError as e:
        raise UsageError(str(e)) from None
    finally:
        if region is not None:
            region.close()
    if o.coverage is None:
        o.coverage = "target" if region is not None and region.negotiated else "harness"
    if answer.faulted:
        raise UsageError(f"target {o.target!r} fails on a plain Linux packet: {answer.detail[:300]}")


def _offered_region(o: Options):
    """A coverage region to offer the probed target when --coverage was not given."""
    if o.coverage is not None or not o.target.startswith("cmd:"):
        return None
    from ..targets.coverage import CoverageError, Region
    try:
        return Region()
    except CoverageError:
        return None


class Campaign:
    """One `vsock-fuzz fuzz` run: the clock, the signals, the stop conditions and the phases."""

    def __init__(self, opts: Options, out=None):
        self.o = opts
        opts.target_options = without_backtraces(opts.target_options)  # for the probe, workers and minimizer
        from ..targets.base import poll_us
        opts.target_options.setdefault("poll", poll_us(len(engines(opts))))  # each worker drives one target
        self.out = out or sys.stdout
        self.start = 0.0
        self.findings = Findings(opts.fail_on, opts.stop_on)
        self.pool = Pool(opts, self.findings, self.say, lambda: self.interrupted)
        self.stop_reason: str | None = None
        self.interrupted = False            # a signal while fuzzing: the campaign stops there
        self.minimizing = False
        self.cut_short: str | None = None   # the signal that cut minimizing short (the campaign had ended)
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
        self.known = known_causes(self.o.out, self.o.target)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.fuzz()
            if not self.interrupted:
                minimize_all(self)
        finally:
            self.pool.stop()
            for s, h in old.items():
                signal.signal(s, h)
        self.causes = self.findings.root_causes(hits(self.pool), self.o.target)
        for line in summary(self):
            self.say(line)
        save_causes(self.o.out, self.causes, self.known, self.o.target)
        return self.status()

    def is_new(self, cause) -> bool:
        return self.known is not None and cause.key not in self.known

    def failing_causes(self) -> int:
        """Root causes at or above --fail-on that fail the run: not accepted, and new under --fail-on-new."""
        order, bar = self.findings.order, self.findings.order[self.o.fail_on]
        return sum(1 for cause in self.causes if order[cause.severity] >= bar and cause.key not in self.o.accepted
                   and (not self.o.fail_on_new or self.known is None or cause.key not in self.known))

    def _on_signal(self, signum, _frame) -> None:
        if self.minimizing:  # the campaign ended by its own clock: only minimizing stops
            self.cut_short = signal.Signals(signum).name
            return
        self.interrupted = True
        self.stop_reason = f"interrupted by {signal.Signals(signum).name}"

    def fuzz(self) -> None:
        o, pool = self.o, self.pool
        self.start = time.monotonic()
        self.say(f"INFO: target {o.target} (oracle profile {o.profile}{', strict' if o.strict else ''}), "
                 f"engine {o.engine}, {len(engines(o))} worker(s), findings in {o.out}/")
        pool.launch(self.start)
        every = max(1.0, min(10.0, (o.max_time or 60) / 60))
        next_status = self.start + every
        while not self.interrupted:
            pool.poll(0.1)
            now = time.monotonic()
            why = stop_reason(self, now)
            if why:
                self.stop_reason = why
                break
            if now >= next_status:
                if pool.total_execs() and not o.quiet:  # nothing to say while the workers start
                    self.say(status_line("pulse", pool, self.findings, self.start))
                next_status += every
        pool.stop()
        self.elapsed = time.monotonic() - self.start
        self.say(status_line("DONE", pool, self.findings, self.start))

    def status(self) -> int:
        return exit_status(self)

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)


def minimize_budget(o: Options) -> float:
    """Seconds for minimizing: --minimize-time, else a quarter of --max-time up to 60 (15 without it)."""
    if o.minimize_time is not None:
        return o.minimize_time
    return min(60.0, (o.max_time or 60.0) / 4)


def stop_reason(c: Campaign, now: float) -> str | None:
    """Why fuzzing stops now, or None. Under --max-time, fuzzing leaves the last
    minimize_budget() seconds of it to minimizing once a reproducer is kept."""
    o, pool = c.o, c.pool
    if pool.fatal:
        return "the target cannot be used any more"
    if o.stop_on and any(c.findings.stops(d) for d in c.findings.values()):
        return "--stop-on " + " ".join(o.stop_on)
    if o.max_time is not None:
        reserve = minimize_budget(o) if any(d.stem for d in c.findings.values()) else 0.0
        if now >= c.start + o.max_time - reserve:
            return f"--max-time {o.max_time:g}s reached" + (
                f" (fuzzing {o.max_time - reserve:g}s, then minimizing up to {reserve:g}s)" if reserve else "")
    if pool.all_done():
        return "--runs reached" if o.runs else "every worker stopped"
    return None


class CutShort(Exception):
    """A signal arrived while minimizing: the reproducers not yet minimized are kept as they are."""


def minimize_all(c: Campaign) -> None:
    """One minimized reproducer per distinct finding, inside minimize_budget() and --max-time."""
    o, budget = c.o, minimize_budget(c.o)
    if not c.findings.worst_first() or budget == 0:
        return
    from ..targets.command import TargetError
    end = time.monotonic() + budget
    if o.max_time is not None:
        end = min(end, c.start + o.max_time)
    c.minimizing = True
    try:
        # Every candidate of a crash finding crashes: fires() resets the back-off after each,
        # so only restarts that fail in a row count towards --max-restarts.
        target = c.open_target()
    except TargetError as e:
        c.minimizing = False
        c.say(f"WARNING: not minimizing: {e}")
        return
    try:
        todo = c.findings.worst_first()
        for i, d in enumerate(todo):
            left = end - time.monotonic()
            if left <= 0 or c.cut_short:
                break
            minimize_one(o, target, d, left / (len(todo) - i), c.say, lambda: c.cut_short is not None)
    except CutShort:
        pass
    except TargetError as e:
        if not c.cut_short:  # a signal reaches the target's process too
            c.say(f"WARNING: minimization stopped: {e}")
    finally:
        c.minimizing = False
        target.close()
    if c.cut_short:
        c.stop_reason = (f"{c.stop_reason}; minimizing cut short by {c.cut_short} "
                         f"(the reproducers not minimized yet are kept as found)")


def exit_status(c: Campaign) -> int:
    """2 the target cannot be used, 1 a root cause at or above --fail-on (not accepted; new under
    --fail-on-new), 2 a worker failed,
    130 interrupted with nothing to report, else 0 (the first that applies)."""
    if c.pool.fatal:
        return 2
    if c.failing_causes():
        return 1
    if c.pool.errors:
        return 2
    return 130 if c.interrupted else 0


def minimize_one(o: Options, target, d, timeout: float, say, cut=lambda: False) -> None:
    """Shrink `d`'s reproducer; a smaller case that still fires is written as a finding of its own.
    Raises CutShort once `cut()` holds."""
    from ..case.binary import encode
    from ..case.corpus import read_case, write_finding
    from ..oracles import evaluate
    from .minimize import fires, shrink
    from .worker import with_backtrace
    try:
        case = read_case(d.stem + ".bin").case
    except Exception as e:  # noqa: BLE001  (a reproducer that cannot be read is reported, not fatal)
        say(f"WARNING: cannot minimize {d.stem}.bin: {e}")
        return
    # The same key: the reproducer of a root cause must not become another bug's consequence.
    fire = fires(target, d.oracle, profile=o.profile, strict=o.strict, key=d.key)  # no back-off between candidates

    def still(candidate) -> bool:
        if cut():
            raise CutShort
        return fire(candidate)
    small = shrink(case, still, timeout=timeout)
    if cut():
        raise CutShort
    if small == case:
        return
    _, found = evaluate(target, small, profile=o.profile, strict=o.strict,
                        determinism=d.oracle.startswith("determinism"))
    same = [f for f in found if f.key() == d.key]  # none: a flaky target, the original stays
    if same:
        f = same[0]
        stem, _ = write_finding(o.out, with_backtrace(target, f))  # the report shows the minimized one
        d.minimized = stem
        d.sizes = (len(encode(case)), len(encode(small)))


def campaign(opts: Options, out=None) -> int:
    return Campaign(opts, out).run()
