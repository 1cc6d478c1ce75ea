"""Fuzzing engines: the per-case path, the atheris and Hypothesis workers, the campaign.

Design (how `vsock-fuzz fuzz` runs atheris and still keeps going after a
finding and prints its own summary):

  - A campaign is a parent process that starts `--jobs` *worker* processes
    (`python -m vsock_fuzz.engines.campaign CONFIG`) and owns the terminal, the clock,
    the signals, minimization and the summary. It never fuzzes itself.
  - Each worker runs libFuzzer through atheris, the only coverage source for
    Python 3.11 code fast enough to guide mutation; the model, the oracles and
    a `py:` target's package are instrumented, the decoder, memory and plumbing
    are not (UNINSTRUMENTED). Its TestOneInput *records* a finding instead of
    raising: libFuzzer would stop at the first crash, and `-fork`/`-ignore_crashes`
    would restart a process per finding and lose our counts. Each new finding
    is written to the output directory the moment it is seen
    (corpus.write_finding: three files, atomic), so nothing is lost when a
    worker or the parent is killed.
  - Why processes: `atheris.Fuzz()` never returns (libFuzzer exits the
    process), several jobs need several processes anyway, and a parent that
    only reads pipes reacts to SIGINT at once whatever the target is doing.
  - Workers talk to the parent through a pipe of JSON lines (exec counts,
    findings); the parent also reads libFuzzer's own status lines on the
    worker's stderr for `cov` and `corp`. A worker whose parent is gone gets
    EPIPE on that pipe and exits.
  - Findings are de-duplicated by `Finding.key()` (per target) across workers
    and across campaigns sharing one directory by claiming
    `DIR/.keys/<sha1 of target and key>` with an atomic exclusive link; the
    claim holds the finding's file stem.
  - Engine `atheris` mutates the binary case form (`binary.decode` is total).
    Engine `hypothesis` is the same worker whose TestOneInput is a Hypothesis
    test's `fuzz_one_input`: libFuzzer mutates the choice sequence the
    strategies draw from (structure-aware). Their working corpora live in
    `DIR/.corpus/<engine>` (dot names: `replay DIR` skips them) and carry over
    to the next campaign in the same directory.

  - After the deadline, `--runs`, `--stop-on` or SIGINT/SIGTERM the parent
    stops the workers (SIGTERM; a worker finishes the finding it is writing
    first), shrinks one reproducer per distinct finding with the shared
    `minimize.shrink` (skipped when interrupted), and prints the summary.
    Findings below --fail-on are kept on disk up to KEEP_BELOW per oracle.

The harnesses in `harnesses/` use `one_input(...)` in raising mode: a finding
becomes an exception naming the oracle, so libFuzzer writes crash-<sha1>.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

SEVERITIES = ("critical", "error", "warning")
ENGINES = ("atheris", "hypothesis")
SUMMARY_MAX = 10  # distinct findings listed per oracle
QUEUE_BYTE_RX = 1  # binary.RX: bit 0 of byte 1 selects the rx queue


class FindingError(Exception):
    """Raised by a harness on a finding; the message starts with the oracle's name."""


# --- the per-case path ----------------------------------------------------------------

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
    """The per-case path: bytes -> (case, findings) with the target and every oracle."""
    from ..case.binary import decode
    from ..oracles import evaluate

    def check(data: bytes):
        case = decode(force_queue(data, queue))
        return case, evaluate(target, case, profile=profile, strict=strict)[1]
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
    """Packages to instrument for coverage: ours and a `py:` target's."""
    if target.startswith("py:"):
        return ["vsock_fuzz", target.split(":")[1].split(".")[0]]
    return ["vsock_fuzz"]


# Coverage comes from the code that decides about a case: the model's parse and chain walk,
# the oracles, a py: target. Left out: the decoder (instrumenting it cost a third of the
# exec/s, and atheris found most zoo bugs sooner without it), guest memory's address
# lookups, and plumbing that makes no decision about the input. Leaving memory and plumbing
# out gave 1.25x the exec/s and first findings as soon or sooner (benchmarks/bench_fuzz.py).
UNINSTRUMENTED = ("vsock_fuzz.case", "vsock_fuzz.case.value", "vsock_fuzz.case.binary", "vsock_fuzz.case.layout",
                  "vsock_fuzz.case.wire", "vsock_fuzz.model.memory", "vsock_fuzz.model.answer",
                  "vsock_fuzz.targets", "vsock_fuzz.targets.command", "vsock_fuzz.targets.frames",
                  "vsock_fuzz.engines", "vsock_fuzz.engines.campaign")


def uninstrumented() -> list[str]:
    """Modules left out of coverage: UNINSTRUMENTED, or VSOCK_FUZZ_UNINSTRUMENTED (comma-separated,
    empty: instrument everything) to measure the trade-off."""
    env = os.environ.get("VSOCK_FUZZ_UNINSTRUMENTED")
    return list(UNINSTRUMENTED) if env is None else [m for m in env.split(",") if m]


def one_input(target: str = "reference", *, queue: str | None = None, profile: str = "spec",
              strict: bool = False, fail_on: str = "error"):
    """An OSS-Fuzz style TestOneInput: decode, run the target and every oracle, raise on a finding."""
    from ..targets.command import open_target
    check = case_checker(open_target(target), profile=profile, strict=strict, queue=queue)

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


# --- the Hypothesis engine ----------------------------------------------------------------

def hypothesis_one_input(on_case, queue: str | None = None):
    """bytes -> on_case(case) through a Hypothesis test's fuzz_one_input (structure-aware)."""
    from hypothesis import HealthCheck, given, settings
    from .strategies import cases
    test = settings(database=None, deadline=None, suppress_health_check=list(HealthCheck))(
        given(cases(queue))(on_case))
    return test.hypothesis.fuzz_one_input


# --- findings on disk, shared by workers ---------------------------------------------------

STALE_CLAIM = 10.0  # seconds after which a claim without its finding is one whose writer died


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


KEEP_BELOW = 20  # distinct findings kept on disk per oracle and worker below --fail-on


class Recorder:
    """A worker's findings: each key written once (by whichever worker claims it), every hit counted.

    Findings below `fail_on` are kept up to KEEP_BELOW per oracle (a lenient device answers
    thousands of distinct conformance warnings); past that they are counted, not written."""

    def __init__(self, out_dir: str, send, fail_on: str = "warning"):
        from ..oracles import SEVERITY_ORDER
        self.out_dir = out_dir
        self.send = send
        self.hits: dict[str, int] = {}
        self.rank = SEVERITY_ORDER
        self.bar = SEVERITY_ORDER[fail_on]
        self.kept_below: dict[str, int] = {}
        self.busy = False      # between a claim and its finding on disk
        self.on_done = None    # a stop signal that arrived meanwhile

    def record(self, findings) -> None:
        from ..case.corpus import write_finding
        for f in findings:
            key = f.key()
            if key in self.hits:
                self.hits[key] += 1
                continue
            self.hits[key] = 1
            if self.rank[f.severity] < self.bar:
                n = self.kept_below[f.oracle] = self.kept_below.get(f.oracle, 0) + 1
                if n > KEEP_BELOW:
                    self.send({"finding": {"key": key, "oracle": f.oracle, "severity": f.severity,
                                           "message": f.message, "rule": f.rule, "stem": None, "new": False}})
                    continue
            stem = os.path.join(self.out_dir, f.file_stem())
            self.busy = True
            try:
                # Claimed per target: another target's finding with the same key is not this one.
                held = claim(self.out_dir, f"{f.target}\n{key}", stem)
                if held is None:
                    write_finding(self.out_dir, f)  # files after the claim: only one worker writes a key
                self.send({"finding": {"key": key, "oracle": f.oracle, "severity": f.severity,
                                       "message": f.message, "rule": f.rule, "stem": held or stem, "new": held is None}})
            finally:
                self.busy = False
            if self.on_done:
                self.on_done()


# --- the worker process ---------------------------------------------------------------------

def worker(cfg: dict) -> None:
    """Run one engine under libFuzzer until the parent stops it or the flags end it."""
    import atheris
    stats = os.fdopen(cfg["stats_fd"], "w", buffering=1)
    state = {"execs": 0, "last": time.monotonic(), "target": None, "hits": {}}

    def send(msg: dict) -> None:
        try:
            stats.write(json.dumps(msg) + "\n")
        except (BrokenPipeError, OSError):  # the parent is gone
            finish(0)

    def finish(code: int, *_):
        if state["target"] is not None:
            state["target"].close()
        try:
            stats.write(json.dumps({"execs": state["execs"], "hits": state["hits"]}) + "\n")
            stats.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass
        os._exit(code)

    with atheris.instrument_imports(include=instrumented(cfg["target"]), exclude=uninstrumented()):
        from ..targets.command import TargetError, open_target
        try:
            # die_with_parent: a worker killed after its grace period takes a hung target with it.
            target = state["target"] = open_target(cfg["target"], timeout=cfg["timeout"], die_with_parent=True,
                                                   **cfg["target_options"])
        except TargetError as e:
            send({"fatal": str(e)})
            os._exit(2)
        check = case_checker(target, profile=cfg["profile"], strict=cfg["strict"])
        from ..oracles import evaluate
    # Only now: anything of ours imported before the block above would not be instrumented.
    rec = Recorder(cfg["out"], send, cfg["fail_on"])
    state["hits"] = rec.hits

    def on_signal(*_):
        if rec.busy:  # finish writing the finding first: no claim without its files
            rec.on_done = lambda: finish(0)
        else:
            finish(0)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def evaluate_case(case):
        return evaluate(target, case, profile=cfg["profile"], strict=cfg["strict"])[1]

    def tick(findings) -> None:
        state["execs"] += 1
        if findings:
            rec.record(findings)
        if state["execs"] & 127 == 0:
            now = time.monotonic()
            if now - state["last"] >= 0.25:
                state["last"] = now
                send({"execs": state["execs"], "hits": rec.hits})

    def guarded(run):
        def TestOneInput(data: bytes) -> None:
            try:
                tick(run(data))
            except TargetError as e:  # the target cannot be restarted: the campaign ends
                send({"fatal": str(e)})
                finish(2)
        return TestOneInput

    if cfg["engine"] == "hypothesis":
        found: list = []

        def on_case(case) -> None:
            found[:] = evaluate_case(case)

        fuzz = hypothesis_one_input(on_case)

        def run(data: bytes):
            found.clear()
            fuzz(data)
            return list(found)
    else:
        def run(data: bytes):
            return check(data)[1]
    atheris.Setup([sys.argv[0], *cfg["flags"], *cfg["corpus"]], guarded(run))
    atheris.Fuzz()


# --- the campaign (parent) --------------------------------------------------------------------

LIBFUZZER_STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
ARTIFACT = re.compile(r"Test unit written to (\S+)")


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


@dataclass
class Distinct:
    key: str
    oracle: str
    severity: str
    rule: str
    message: str
    stem: str | None  # None: counted, not kept (past KEEP_BELOW)
    first: float  # seconds into the campaign
    engine: str
    new: bool
    hits: int = 1
    minimized: str | None = None
    sizes: tuple[int, int] | None = None


@dataclass
class Worker:
    index: int
    engine: str
    proc: subprocess.Popen
    stats: object
    err_buf: bytearray = field(default_factory=bytearray)
    stats_buf: bytearray = field(default_factory=bytearray)
    execs: int = 0
    cov: int = 0
    ft: int = 0
    corp: int = 0
    tail: list = field(default_factory=list)
    artifacts: list = field(default_factory=list)
    hits: dict = field(default_factory=dict)
    done: bool = False


class UsageError(Exception):
    """Options or a target that cannot make a campaign; the message is one line."""


class Campaign:
    MAX_RESTARTS = 3

    def __init__(self, opts: Options, out=None):
        self.o = opts
        self.out = out or sys.stdout
        self.start = 0.0
        self.workers: list[Worker] = []
        self.findings: dict[str, Distinct] = {}
        self.fatal: str | None = None
        self.stop_reason: str | None = None
        self.interrupted = False
        self.restarts = 0
        self.errors: list[str] = []
        self.retired = 0
        self.elapsed = 0.0

    # -- set-up ---------------------------------------------------------------

    def validate(self) -> None:
        o = self.o
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
        self.probe()
        try:
            os.makedirs(o.out, exist_ok=True)
        except OSError as e:
            raise UsageError(f"cannot create output directory {o.out!r}: {e.strerror or e}") from None
        if not os.access(o.out, os.W_OK | os.X_OK):
            raise UsageError(f"output directory {o.out!r} is not writable")

    def probe(self) -> None:
        """Open the target and have it answer one Linux packet, so a target that cannot start
        fails here with one line instead of in every worker."""
        from ..case.layout import plain_packet
        from ..targets.command import TargetError
        try:
            target = self.open_target()
            try:
                answer = target.parse(plain_packet())
            finally:
                target.close()
        except TargetError as e:
            raise UsageError(str(e)) from None
        if answer.faulted:
            raise UsageError(f"target {self.o.target!r} fails on a plain Linux packet: {answer.detail[:300]}")

    def open_target(self, **overrides):
        """The campaign's target, opened as the workers open it (`overrides`: open_target's keywords)."""
        from ..targets.command import open_target
        return open_target(self.o.target, **{"timeout": self.o.timeout, **self.o.target_options, **overrides})

    def engines(self) -> list[str]:
        if self.o.engine == "both":
            return [ENGINES[i % 2] for i in range(max(self.o.jobs, 2))]
        return [self.o.engine] * self.o.jobs

    def flags(self, index: int, engine: str) -> list[str]:
        o = self.o
        n = len(self.engines())
        art = os.path.join(o.out, ".artifacts", engine) + os.sep
        os.makedirs(art, exist_ok=True)
        flags = [f"-artifact_prefix={art}", "-handle_int=0", "-handle_term=0", "-print_final_stats=0",
                 f"-timeout={int(max(30, 3 * o.timeout + 25))}"]
        if o.max_time is not None:
            flags.append(f"-max_total_time={int(math.ceil(o.max_time)) + 10}")  # a backstop: the parent stops them
        if o.runs is not None:
            flags.append(f"-runs={-(-o.runs // n)}")
        if o.seed:
            flags.append(f"-seed={o.seed + index}")
        if o.dict and engine == "atheris":
            flags.append(f"-dict={o.dict}")
        if engine == "hypothesis":
            # Strategies draw hundreds of bytes: short inputs only overrun, so no slow length ramp.
            flags += ["-len_control=0", "-max_len=4096"]
        return flags

    def spawn(self, index: int, engine: str) -> Worker:
        o = self.o
        corpus = os.path.join(o.out, ".corpus", engine)
        os.makedirs(corpus, exist_ok=True)
        seeds = o.corpus if engine == "atheris" else []  # seeds are binary cases, not choice sequences
        r, w = os.pipe()
        cfg = {"engine": engine, "target": o.target, "profile": o.profile, "strict": o.strict, "fail_on": o.fail_on,
               "timeout": o.timeout, "target_options": o.target_options, "out": o.out, "stats_fd": w,
               "flags": self.flags(index, engine), "corpus": [corpus, *seeds]}
        proc = subprocess.Popen([sys.executable, "-m", "vsock_fuzz.engines.campaign", json.dumps(cfg)],
                                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                pass_fds=(w,), start_new_session=True)
        os.close(w)
        os.set_blocking(r, False)
        os.set_blocking(proc.stderr.fileno(), False)
        return Worker(index, engine, proc, r)

    # -- running --------------------------------------------------------------

    def run(self) -> int:
        """Validate, fuzz, minimize, print the summary; the exit status."""
        try:
            self.validate()
        except UsageError as e:
            print(f"vsock-fuzz fuzz: error: {e}", file=sys.stderr)
            return 2
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.fuzz()
            if not self.interrupted:
                self.minimize()
        finally:
            self.stop_workers()
            for s, h in old.items():
                signal.signal(s, h)
        self.summary()
        return self.status()

    def _on_signal(self, signum, _frame) -> None:
        self.interrupted = True
        self.stop_reason = f"interrupted by {signal.Signals(signum).name}"

    def fuzz(self) -> None:
        o = self.o
        self.start = time.monotonic()
        deadline = None if o.max_time is None else self.start + o.max_time
        engines = self.engines()
        self.say(f"INFO: target {o.target} (oracle profile {o.profile}{', strict' if o.strict else ''}), "
                 f"engine {o.engine}, {len(engines)} worker(s), findings in {o.out}/")
        self.workers = [self.spawn(i, e) for i, e in enumerate(engines)]
        every = max(1.0, min(10.0, (o.max_time or 60) / 60))
        next_status = self.start + every
        while not self.interrupted:
            self.poll(0.1)
            now = time.monotonic()
            if self.fatal:
                self.stop_reason = "the target cannot be used any more"
                break
            if o.stop_on and any(self.stops(d) for d in self.findings.values()):
                self.stop_reason = "--stop-on " + " ".join(o.stop_on)
                break
            if deadline is not None and now >= deadline:
                self.stop_reason = f"--max-time {o.max_time:g}s reached"
                break
            if all(w.done for w in self.workers):
                self.stop_reason = "--runs reached" if o.runs else "every worker stopped"
                break
            if now >= next_status:
                if self.total_execs():  # nothing to say while the workers start
                    self.status_line("pulse")
                next_status += every
        self.stop_workers()
        self.elapsed = time.monotonic() - self.start
        self.status_line("DONE")

    def poll(self, timeout: float) -> None:
        fds = {}
        for w in self.workers:
            if not w.done:
                fds[w.stats] = (w, "stats")
                fds[w.proc.stderr.fileno()] = (w, "err")
        if not fds:
            time.sleep(timeout)
            return
        try:
            ready, _, _ = select.select(list(fds), [], [], timeout)
        except InterruptedError:
            return
        for fd in ready:
            w, kind = fds[fd]
            self.read(w, kind)
        for w in self.workers:
            if not w.done and w.proc.poll() is not None:
                self.read(w, "stats")
                self.read(w, "err")
                self.worker_exited(w)

    def read(self, w: Worker, kind: str) -> None:
        fd = w.stats if kind == "stats" else w.proc.stderr.fileno()
        buf = w.stats_buf if kind == "stats" else w.err_buf
        while True:
            try:
                chunk = os.read(fd, 1 << 16)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            buf += chunk
        *lines, rest = bytes(buf).split(b"\n")
        buf[:] = rest
        for line in lines:
            if kind == "stats":
                self.on_stats(w, line)
            else:
                self.on_libfuzzer(w, line.decode(errors="replace"))

    def on_stats(self, w: Worker, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            return
        if "execs" in msg:
            w.execs = max(w.execs, msg["execs"])
        if "hits" in msg:
            w.hits = msg["hits"]
        if "fatal" in msg:
            self.fatal = msg["fatal"]
        if "finding" in msg:
            f = msg["finding"]
            if f["key"] not in self.findings:
                d = self.findings[f["key"]] = Distinct(
                    f["key"], f["oracle"], f["severity"], f["rule"], f["message"], f["stem"],
                    time.monotonic() - self.start, w.engine, f["new"])
                if self.fails(d):  # the rest are counted in the status lines and listed at the end
                    self.say(f"#{self.total_execs()}\tNEW finding: {d.oracle} ({d.severity}) after {d.first:.1f}s "
                             f"[{w.engine}] -> {d.stem}.bin{'' if d.new else ' (already in the directory)'}")

    def on_libfuzzer(self, w: Worker, line: str) -> None:
        m = LIBFUZZER_STATUS.match(line)
        if m:
            w.execs = max(w.execs, int(m[1]))
            w.cov, w.ft, w.corp = max(w.cov, int(m[2])), int(m[3]), int(m[4])
            return
        m = ARTIFACT.search(line)
        if m:
            w.artifacts.append(m[1])
        if line.strip():
            w.tail = (w.tail + [line])[-30:]

    def worker_exited(self, w: Worker) -> None:
        w.done = True
        code = w.proc.returncode
        if code == 0 or self.fatal or self.interrupted:
            return
        why = next((ln for ln in reversed(w.tail) if "Error" in ln or "Exception" in ln or "ERROR" in ln),
                   w.tail[-1] if w.tail else f"exit status {code}")
        arts = f"; input kept in {', '.join(w.artifacts)}" if w.artifacts else ""
        self.errors.append(f"worker {w.index} ({w.engine}) stopped: {why.strip()[:300]}{arts}")
        self.say(f"WARNING: {self.errors[-1]}")
        if self.restarts < self.MAX_RESTARTS * len(self.workers):
            self.restarts += 1
            self.retired += w.execs  # the work done before the restart still counts
            self.workers[self.workers.index(w)] = self.spawn(w.index, w.engine)

    def stop_workers(self) -> None:
        live = [w for w in self.workers if w.proc.poll() is None]
        for w in live:
            try:
                os.killpg(w.proc.pid, signal.SIGTERM)  # the worker closes its target and flushes its counts
            except ProcessLookupError:
                pass
        end = time.monotonic() + 3.0
        for w in live:
            try:
                w.proc.wait(max(0.0, end - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(w.proc.pid, signal.SIGKILL)
                w.proc.wait()
        for w in self.workers:
            self.read(w, "stats")
            self.read(w, "err")
            w.done = True

    # -- figures --------------------------------------------------------------

    def total_execs(self) -> int:
        return sum(w.execs for w in self.workers) + self.retired

    def rss_mb(self) -> int:
        pages = 0
        for pid in [os.getpid()] + [w.proc.pid for w in self.workers if w.proc.poll() is None]:
            try:
                with open(f"/proc/{pid}/statm") as f:
                    pages += int(f.read().split()[1])
            except (OSError, ValueError, IndexError):
                pass
        return pages * os.sysconf("SC_PAGE_SIZE") >> 20

    def by_severity(self) -> dict[str, int]:
        counts = dict.fromkeys(SEVERITIES, 0)
        for d in self.findings.values():
            counts[d.severity] += 1
        return counts

    def status_line(self, event: str) -> None:
        n = self.total_execs()
        t = max(time.monotonic() - self.start, 1e-9)
        c = self.by_severity()
        self.say(f"#{n}\t{event} cov: {max((w.cov for w in self.workers), default=0)} "
                 f"corp: {max((w.corp for w in self.workers), default=0)} exec/s: {int(n / t)} "
                 f"findings: {c['critical']}/{c['error']}/{c['warning']} rss: {self.rss_mb()}Mb")

    def say(self, line: str) -> None:
        print(line, file=self.out, flush=True)

    # -- minimization and summary ------------------------------------------------

    def minimize(self) -> None:
        """One minimized reproducer per distinct finding, inside a time budget."""
        if not self.findings or self.o.minimize_time == 0:
            return
        from ..case.binary import encode
        from ..case.corpus import read_case, write_finding
        from .minimize import fires, shrink
        from ..oracles import evaluate
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
            todo = sorted((d for d in self.findings.values() if d.stem), key=lambda d: (-self.rank(d), d.first))
            for i, d in enumerate(todo):
                left = end - time.monotonic()
                if left <= 0 or self.interrupted:
                    break
                try:
                    case = read_case(d.stem + ".bin").case
                except Exception as e:  # noqa: BLE001  (a reproducer that cannot be read is reported, not fatal)
                    self.say(f"WARNING: cannot minimize {d.stem}.bin: {e}")
                    continue
                still = fires(target, d.oracle, profile=o.profile, strict=o.strict)  # no back-off between candidates
                small = shrink(case, still, timeout=left / (len(todo) - i))
                if small == case:
                    continue
                _, found = evaluate(target, small, profile=o.profile, strict=o.strict,
                                    determinism=d.oracle.startswith("determinism"))
                same = [f for f in found if f.oracle == d.oracle]
                if same:
                    f = next((f for f in same if f.key() == d.key), same[0])
                    stem, _ = write_finding(o.out, f)
                    d.minimized = stem
                    d.sizes = (len(encode(case)), len(encode(small)))
        except TargetError as e:
            self.say(f"WARNING: minimization stopped: {e}")
        finally:
            target.close()

    def summary(self) -> None:
        o = self.o
        n = self.total_execs()
        t = self.elapsed or 1e-9
        c = self.by_severity()
        per = {}
        for w in self.workers:
            per[w.engine] = per.get(w.engine, 0) + w.execs
        self.say("")
        self.say(f"== vsock-fuzz summary: target {o.target}, {n} cases in {t:.1f}s ({int(n / t)} exec/s; "
                 + ", ".join(f"{e} {k}" for e, k in per.items()) + f"), stopped: {self.stop_reason}")
        self.say(f"   coverage {max((w.cov for w in self.workers), default=0)}, "
                 f"corpus {max((w.corp for w in self.workers), default=0)}, findings in {o.out}/")
        if not self.findings:
            self.say("   no findings")
        else:
            self.say(f"   {len(self.findings)} distinct finding(s): {c['critical']} critical, {c['error']} error, "
                     f"{c['warning']} warning (--fail-on {o.fail_on})")
        hits: dict[str, int] = {}
        for w in self.workers:
            for k, v in w.hits.items():
                hits[k] = hits.get(k, 0) + v
        groups: dict[str, list[Distinct]] = {}
        for d in self.findings.values():
            d.hits = max(hits.get(d.key, 1), 1)
            groups.setdefault(d.oracle, []).append(d)
        for oracle, ds in sorted(groups.items(), key=lambda kv: (-self.rank(kv[1][0]), kv[0])):
            self.say(f"\n{oracle} ({ds[0].severity}, {ds[0].rule}): {len(ds)} distinct, {sum(d.hits for d in ds)} hit(s)")
            shown = ds if self.fails(ds[0]) else [d for d in ds if d.stem][:2]  # below --fail-on: a sample
            for d in shown[:SUMMARY_MAX]:
                rep = d.minimized or d.stem
                size = minimized_note(*d.sizes) if d.minimized else \
                    " (not minimized: interrupted)" if self.interrupted else \
                    "" if self.o.minimize_time == 0 else " (not minimized)"
                self.say(f"  - {_one_line(d.message)}")
                self.say(f"    first after {d.first:.1f}s [{d.engine}]; reproducer {rep}.bin{size}")
                self.say(f"    reproduce: vsock-fuzz replay --target {_quote(o.target)} {rep}.bin")
            if len(ds) > len(shown[:SUMMARY_MAX]):
                kept = sum(1 for d in ds if d.stem) - len(shown[:SUMMARY_MAX])
                self.say(f"  ... and {len(ds) - len(shown[:SUMMARY_MAX])} more, {kept} of them in {o.out}/{oracle}-*.finding.json")
        for e in self.errors:
            self.say(f"\nharness error: {e}")
        if self.fatal:
            self.say(f"\nerror: {self.fatal}")
        code = self.status()
        bar = sum(self.fails(d) for d in self.findings.values())
        why = {0: f"nothing at or above --fail-on {o.fail_on}", 1: f"{bar} distinct finding(s) at or above --fail-on {o.fail_on}",
               2: "the target or the harness failed", 130: "interrupted"}[code]
        self.say(f"\nexit status {code}: {why}")
        if not self.findings and o.target.startswith("reference"):
            self.say("the model keeps every rule; see a bug caught: "
                     "vsock-fuzz fuzz --target py:vsock_fuzz.zoo.region_end:parse --max-time 20")
        self.say("")

    @staticmethod
    def rank(d: Distinct) -> int:
        from ..oracles import SEVERITY_ORDER
        return SEVERITY_ORDER[d.severity]

    def fails(self, d: Distinct) -> bool:
        """Whether `d` is at or above --fail-on."""
        from ..oracles import SEVERITY_ORDER
        return self.rank(d) >= SEVERITY_ORDER[self.o.fail_on]

    def stops(self, d: Distinct) -> bool:
        """Whether `d` matches --stop-on: an oracle name, a family, or "fail" (at or above --fail-on)."""
        return any(d.oracle == s or d.oracle.startswith(s + ".") or (s == "fail" and self.fails(d))
                   for s in self.o.stop_on)

    def status(self) -> int:
        if self.fatal:
            return 2
        if any(self.fails(d) for d in self.findings.values()):
            return 1
        if self.errors:
            return 2
        return 130 if self.interrupted else 0


def minimized_note(before: int, after: int) -> str:
    """The summary's note on a minimized reproducer, from the binary form's sizes before and after.

    The shrinker makes a case simpler (fewer writes and regions, shorter descriptors,
    zeroed bytes), which does not always make its binary form shorter: say so then."""
    if after < before:
        return f" (minimized: binary form {before} -> {after} bytes)"
    return f" (minimized: a simpler case, though its binary form is {after} bytes, was {before})"


def _one_line(text: str, width: int = 300) -> str:
    """A message on one line; a long one keeps its head and its tail (where a traceback ends)."""
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width // 2] + " ... " + text[-(width // 2):]


def _quote(s: str) -> str:
    import shlex
    return shlex.quote(s)


def campaign(opts: Options, out=None) -> int:
    return Campaign(opts, out).run()


if __name__ == "__main__":
    worker(json.loads(sys.argv[1]))
