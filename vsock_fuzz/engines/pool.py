"""A campaign's worker processes: start, read, restart and stop them, and add up their figures.

Workers talk to the parent through a pipe of JSON lines (exec counts, findings); the parent
also reads libFuzzer's own status lines on the worker's stderr for `cov` and `corp`. The
parent only ever waits in select() on those pipes, so it reacts to a signal at once whatever
a target is doing.
"""

from __future__ import annotations

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

from .findings import Findings
from .options import Options

ENGINES = ("atheris", "hypothesis")
LIBFUZZER_STATUS = re.compile(r"^#(\d+)\s+\w+\s+cov: (\d+) ft: (\d+) corp: (\d+)/")
ARTIFACT = re.compile(r"Test unit written to (\S+)")


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
    tcov: int | None = None  # the target's coverage counters seen non-zero (None: no channel)
    tcmp: int | None = None  # the target's compare pairs handed to libFuzzer (None: no compare table)
    thint: int = 0  # inputs the custom crossover wrote one of those pairs into
    tail: list = field(default_factory=list)
    artifacts: list = field(default_factory=list)
    hits: dict = field(default_factory=dict)
    unsupported: dict = field(default_factory=dict)  # kind -> [cases answered Unsupported, a detail]
    done: bool = False

    def lines(self, kind: str) -> list[bytes]:
        """The complete lines now readable on pipe `kind` ("stats" or "err"); a partial one waits."""
        fd = self.stats if kind == "stats" else self.proc.stderr.fileno()
        buf = self.stats_buf if kind == "stats" else self.err_buf
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
        return lines

    def on_libfuzzer(self, line: str) -> None:
        m = LIBFUZZER_STATUS.match(line)
        if m:
            self.execs = max(self.execs, int(m[1]))
            self.cov, self.ft, self.corp = max(self.cov, int(m[2])), int(m[3]), int(m[4])
            return
        m = ARTIFACT.search(line)
        if m:
            self.artifacts.append(m[1])
        if line.strip():
            self.tail = (self.tail + [line])[-30:]

    def why_stopped(self) -> str:
        """The worker's failure in one line, from the end of what it wrote on stderr."""
        why = next((ln for ln in reversed(self.tail) if "Error" in ln or "Exception" in ln or "ERROR" in ln),
                   self.tail[-1] if self.tail else f"exit status {self.proc.returncode}")
        arts = f"; input kept in {', '.join(self.artifacts)}" if self.artifacts else ""
        return f"worker {self.index} ({self.engine}) stopped: {why.strip()[:300]}{arts}"


def engines(o: Options) -> list[str]:
    """The engine of each worker."""
    if o.engine == "both":
        return [ENGINES[i % 2] for i in range(max(o.jobs, 2))]
    return [o.engine] * o.jobs


def libfuzzer_flags(o: Options, index: int, engine: str) -> list[str]:
    """libFuzzer's flags for worker `index`."""
    n = len(engines(o))
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


def spawn(o: Options, index: int, engine: str) -> Worker:
    """Start worker `index` running `engine`."""
    corpus = os.path.join(o.out, ".corpus", engine)
    os.makedirs(corpus, exist_ok=True)
    seeds = o.corpus if engine == "atheris" else []  # seeds are binary cases, not choice sequences
    r, w = os.pipe()
    cfg = {"engine": engine, "target": o.target, "profile": o.profile, "strict": o.strict, "fail_on": o.fail_on,
           "timeout": o.timeout, "target_options": o.target_options, "out": o.out, "stats_fd": w,
           "flags": libfuzzer_flags(o, index, engine), "corpus": [corpus, *seeds],
           "coverage": getattr(o, "coverage", None)}
    proc = subprocess.Popen([sys.executable, "-m", "vsock_fuzz.engines.worker", json.dumps(cfg)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            pass_fds=(w,), start_new_session=True)
    os.close(w)
    os.set_blocking(r, False)
    os.set_blocking(proc.stderr.fileno(), False)
    return Worker(index, engine, proc, r)


class Figures:
    """What the status lines and the summary read off the workers (`workers`, `retired`)."""

    def total_execs(self) -> int:
        return sum(w.execs for w in self.workers) + self.retired

    def unsupported(self) -> dict[str, int]:
        """Cases answered Unsupported, by kind (worker.count_unsupported), over every worker
        (a restarted one's are lost)."""
        out: dict[str, int] = {}
        for w in self.workers:
            for kind, (n, _) in w.unsupported.items():
                out[kind] = out.get(kind, 0) + n
        return out

    def unsupported_examples(self) -> dict[str, str]:
        """A detail as the adapter wrote it, by kind."""
        out: dict[str, str] = {}
        for w in self.workers:
            for kind, (_, detail) in w.unsupported.items():
                out.setdefault(kind, detail)
        return out

    def cov(self) -> int:
        return max((w.cov for w in self.workers), default=0)

    def tcov(self) -> int | None:
        """The target's own coverage (counters of the coverage channel seen non-zero), None when no
        worker's target counts its edges for us."""
        seen = [w.tcov for w in self.workers if w.tcov is not None]
        return max(seen) if seen else None

    def tcmp(self) -> int | None:
        """The target's compare pairs (shm-8bit-v2) handed to libFuzzer, over all workers; None when
        no worker's target records its compares."""
        fed = [w.tcmp for w in self.workers if w.tcmp is not None]
        return sum(fed) if fed else None

    def thint(self) -> int:
        return sum(w.thint for w in self.workers)

    def corp(self) -> int:
        return max((w.corp for w in self.workers), default=0)


class Pool(Figures):
    """The workers of one campaign. `say` prints a line; `interrupted()` tells whether the campaign
    was interrupted (a worker that exits then has not failed)."""

    MAX_RESTARTS = 3

    def __init__(self, opts: Options, findings: Findings, say, interrupted):
        self.o = opts
        self.findings = findings
        self.say = say
        self.interrupted = interrupted
        self.start = 0.0
        self.workers: list[Worker] = []
        self.fatal: str | None = None
        self.errors: list[str] = []
        self.restarts = 0
        self.retired = 0  # execs of workers replaced by a restart

    def launch(self, start: float) -> None:
        self.start = start
        self.workers = [spawn(self.o, i, e) for i, e in enumerate(engines(self.o))]

    def all_done(self) -> bool:
        return all(w.done for w in self.workers)

    def poll(self, timeout: float) -> None:
        """Read what the workers said within `timeout` seconds; restart a worker that failed."""
        self._read_ready([w for w in self.workers if not w.done], timeout)
        for w in self.workers:
            if not w.done and w.proc.poll() is not None:
                self.read(w, "stats")
                self.read(w, "err")
                self.exited(w)

    def _read_ready(self, workers: list[Worker], timeout: float) -> None:
        """Read what `workers` say within `timeout` seconds."""
        fds = {}
        for w in workers:
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

    def read(self, w: Worker, kind: str) -> None:
        for line in w.lines(kind):
            if kind == "stats":
                self.on_stats(w, line)
            else:
                w.on_libfuzzer(line.decode(errors="replace"))

    def on_stats(self, w: Worker, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError:
            return
        if "execs" in msg:
            w.execs = max(w.execs, msg["execs"])
        if "hits" in msg:  # the keys hit since the last message, with their counts
            w.hits.update(msg["hits"])
        if "unsupported" in msg:
            w.unsupported = msg["unsupported"]
        if "tcov" in msg:
            w.tcov = max(w.tcov or 0, msg["tcov"])
        if "tcmp" in msg:
            w.tcmp = max(w.tcmp or 0, msg["tcmp"])
            w.thint = max(w.thint, msg.get("thint", 0))
        if "fatal" in msg:
            self.fatal = msg["fatal"]
        if "finding" in msg:
            d = self.findings.add(msg["finding"], time.monotonic() - self.start, w.engine)
            # The rest, and symptoms (their cause is announced), are counted in the status lines and listed at the end.
            if d and self.findings.fails(d) and not d.cause:
                self.say(f"#{self.total_execs()}\tNEW finding: {d.oracle} ({d.severity}) after {d.first:.1f}s "
                         f"[{w.engine}] -> {d.stem}.bin{'' if d.new else ' (already in the directory)'}")

    def exited(self, w: Worker) -> None:
        w.done = True
        if w.proc.returncode == 0 or self.fatal or self.interrupted():
            return
        self.errors.append(w.why_stopped())
        self.say(f"WARNING: {self.errors[-1]}")
        if self.restarts < self.MAX_RESTARTS * len(self.workers):
            self.restarts += 1
            self.retired += w.execs  # the work done before the restart still counts
            self.workers[self.workers.index(w)] = spawn(self.o, w.index, w.engine)

    def stop(self) -> None:
        live = [w for w in self.workers if w.proc.poll() is None]
        for w in live:
            try:
                os.killpg(w.proc.pid, signal.SIGTERM)  # the worker closes its target and flushes its counts
            except ProcessLookupError:
                pass
        # Read while they exit: a worker blocked writing its last words to a full pipe would
        # never exit, and be killed with its last counts.
        end = time.monotonic() + 3.0
        while time.monotonic() < end and any(w.proc.poll() is None for w in live):
            self._read_ready(live, 0.02)
        for w in live:
            if w.proc.poll() is None:
                os.killpg(w.proc.pid, signal.SIGKILL)
                w.proc.wait()
        for w in self.workers:
            self.read(w, "stats")
            self.read(w, "err")
            w.done = True
