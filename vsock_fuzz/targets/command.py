"""The `cmd:` target: an external program speaking protocol v1 (docs/protocol.md)."""

from __future__ import annotations

import json
import os
import time

from ..case.value import Case
from ..model.answer import Answer
from .base import DEFAULT_TIMEOUT, FAST_MODES, MAX_RESTARTS, PROTOCOL, START_TIMEOUT, Described, TargetError, poll_us
from .crash_title import crash_title
from .frames import MODE as FRAMES
from .process import Child, StderrTail, libc_prctl
from .standby import WarmStandby
from .transport import Channel

# Imported from here by code written when this module held every target.
from .base import ModelTarget, PythonTarget  # noqa: F401

BACKOFF_FIRST = 0.01       # seconds before a restart that follows a failed one, doubling
BACKOFF_MAX = 1.0


class RestartPolicy:
    """When a faulted target is started again, and when it is given up.

    A fault (crash or hang) is an answer, and the target is restarted at once
    for the next case. A restart that works (the new process answers hello)
    costs no back-off, however many cases in a row crashed it: a device that
    panics on a common class of input keeps its pace. Only a restart that
    follows a failed one backs off (10 ms doubling up to 1 s), so a target
    that cannot start is not hammered. After `max_restarts` consecutive
    faults and failed restarts without one case answered, the target is
    given a Linux 6.2 tx packet; if it does not answer that either, the next
    case raises TargetError (0: never give up). A target that cannot start
    the first time raises TargetError at once. Crash frames count as faults
    too, though their process goes on: as many in a row end it, and the
    restart asks the canary.

    For CommandTarget, which counts a fault in `failures` and `last_fault`,
    sets `failures` to 0 on an answer, and restarts through `_restart`.
    """

    def __init__(self, max_restarts: int):
        self.max_restarts = max_restarts
        self.restarts = 0         # restarts after the first start
        self.failures = 0         # consecutive faults and failed restarts
        self.failed_restarts = 0  # consecutive failed restarts: what the back-off grows with
        self.last_fault = ""
        self._restart_failed = False  # whether last_fault is a failed restart rather than a case's fault
        self._started = False

    def reset_backoff(self) -> None:
        """Forget the faults in a row: the next restart is at once and the max_restarts count
        starts again. For callers that expect faults (the minimizer, whose candidates crash)."""
        self.failures = 0
        self.failed_restarts = 0

    def _ensure_started(self) -> None:
        """Start the target, or restart it after a fault with the back-off and cap above."""
        while self.proc is None:
            if self.max_restarts and self.failures >= self.max_restarts:
                if not self._answers_canary():
                    raise TargetError(f"{self.name}: target restarted {self.max_restarts} times in a row without "
                                      f"answering a case; giving up: {self.last_fault}")
                continue  # the canary's process runs on
            if self.failed_restarts:
                time.sleep(min(BACKOFF_FIRST * 2 ** (self.failed_restarts - 1), BACKOFF_MAX))
            try:
                self._restart() if self._started else self.start()
            except TargetError as e:
                if not self._started:
                    raise  # never answered hello: the target cannot be used at all
                self.failures += 1
                self._restart_fault(e)
                continue
            if self._started:
                self.restarts += 1
            self._started = True

    def _restart(self) -> None:
        """Start the target again after a fault (CommandTarget: from its warm standby)."""
        self.start()
        self.failed_restarts = 0

    def _restart_fault(self, e: TargetError) -> None:
        self.last_fault = f"restart failed: {e}"
        self._restart_failed = True
        self.failed_restarts += 1

    def _answers_canary(self) -> bool:
        """Whether the target, started once more, answers a packet every device must accept
        (Linux 6.2 tx). libFuzzer mutates one input several times in a row, so a run of faults
        can be one crashing input's neighbours rather than a target that cannot work."""
        if self._restart_failed:
            return False
        from ..case.layout import plain_packet
        try:
            self._restart()
        except TargetError as e:
            self._restart_fault(e)
            return False
        self.restarts += 1
        # The target runs, so parse_many sends the packet without restarting it on the way.
        return not self.parse_many((plain_packet(),))[0].faulted  # answered: `failures` is 0 again


class ProcessLife:
    """The running process of a CommandTarget and its hello: started lazily (see RestartPolicy)
    as a process.Child, in a new session so the whole process group (children holding our pipes
    too) is killed with it, its stderr drained continuously (a flooding target cannot block) and
    the tail kept for the report. `hello` offers the fast transports in `modes`; a target that
    does not pick one stays on v1. The running target's hello answer is `hello`.

    For CommandTarget, whose __init__ sets what it reads; `close` drops WarmStandby's spare too.
    """

    @property
    def device(self):
        """What the oracles judge by: known once the target has answered hello, so asking
        starts it."""
        if not self._started:
            self._ensure_started()
        return self._device

    @device.setter
    def device(self, value) -> None:
        self._device = value

    @property
    def mode(self) -> str:
        """The transport hello settled on."""
        return self._wire.mode

    def start(self) -> None:
        """Start a new process (killing the running one) and settle hello with it."""
        self._kill()
        self._stderr = StderrTail()
        self._begin(self._spawn(self._stderr))

    def _spawn(self, tail: StderrTail) -> Child:
        kw = self.coverage.child() if self.coverage is not None else {}
        once, self._once_env = self._once_env, {}
        extra = {**self.env, **once}
        if extra:
            kw["env"] = {**kw.get("env", os.environ), **extra}
        child = Child(self.argv, tail, rlimits=self.rlimits, prctl=self._prctl, **kw)
        if once:
            self._once_child = child
        return child

    def restart_with(self, env: dict) -> None:
        """Run the next case in a new process with `env` added to its environment, once: the
        restart after that is as usual. A crash run again with RUST_BACKTRACE=1 gets its
        backtrace without every crash paying for one. Drops the spare, started without `env`,
        and that process once its cases are answered (a target taking crash frames would
        otherwise keep it, and its backtraces, after the crash)."""
        self._kill()
        self._drop_spare()
        self._posted = None  # sent to the process just killed: asked again if it is parsed
        self._once_env = dict(env)

    def _begin(self, child: Child) -> None:
        """Make `child` the running target: attach the pipes and settle hello."""
        self._child = child
        self.proc = child.popen
        self._wire.attach(child)
        request = {"op": "hello", "protocol": PROTOCOL}
        if self.modes:
            request["modes"] = list(self.modes)
        if self.coverage is not None:
            request["coverage"] = list(self.coverage.offer)
        if self.poll_us:
            request["poll_us"] = self.poll_us
        if self.crash_frames and FRAMES in self.modes:
            request["crash_frames"] = True
        reply = self._wire.hello(request, self.start_timeout)
        if len(request) > 2 and isinstance(reply, dict) and reply.get("ok") is False:
            reply = self._wire.hello({"op": "hello", "protocol": PROTOCOL}, self.start_timeout)  # a strict v1 target
        if isinstance(reply, str) or reply.get("ok") is not True or reply.get("protocol") != PROTOCOL:
            why = reply if isinstance(reply, str) else f"answered {json.dumps(reply)[:200]}"
            self._kill()
            raise TargetError(f"{self.name}: hello failed: {why}{self._stderr.note()}")
        mode = reply.get("mode", "v1")
        if mode != "v1" and mode not in self.modes:
            self._kill()
            raise TargetError(f"{self.name}: hello chose mode {mode!r}, which was not offered ({', '.join(self.modes) or 'v1 only'})")
        self._wire.mode = mode
        self._wire.crash_frames = mode == FRAMES and "crash_frames" in request and reply.get("crash_frames") is True
        why = self.coverage.settle(reply.get("coverage")) if self.coverage is not None else None
        if why:
            self._kill()
            raise TargetError(f"{self.name}: {why}")
        self.hello = reply
        self.declare(reply.get("device"), "hello device")
        self.version = str(reply.get("version", ""))
        name = reply.get("name")
        if isinstance(name, str) and name:
            self.name = name

    def close(self) -> None:
        self._drop_spare()
        child, self._child, self.proc = self._child, None, None
        if child is not None:
            child.close()

    def _kill(self) -> None:
        child, self._child, self.proc = self._child, None, None
        if child is not None:
            child.kill()
            if child is self._once_child:
                self._once_child = None


class CommandTarget(ProcessLife, WarmStandby, RestartPolicy, Described):
    """The protocol v1 client: a persistent subprocess, one request per case.

    The target is started lazily and again after every crash or hang (see
    RestartPolicy), its process and hello handled by ProcessLife.

    Limits: `rlimit_as` (bytes of address space) and `rlimit_cpu` (CPU
    seconds over one target process's life; the per-case bound is `timeout`)
    are set with setrlimit in the child before it runs the target.
    `die_with_parent` (Linux) has the kernel kill the target when the process
    that started it dies: a fuzz worker killed after its grace period leaves
    no target behind, even a hung one that never sees its stdin close.

    `standby`: after the first restart, a spare process is kept started
    ahead, so a later restart costs one hello exchange (see WarmStandby).

    `env`: variables added to the target's environment (a campaign sets
    RUST_BACKTRACE=0: a symbolized backtrace costs 100-300 ms per crash,
    which a device that panics often would pay on most cases).

    `poll`: microseconds the target is asked in hello to poll its input before
    it sleeps on it (docs/protocol-extensions.md, "Polling"); None: POLL_US
    when a CPU is free for it (base.poll_us), 0: not asked. Polling spends
    that CPU time; a campaign asks it only when every worker's target has a
    CPU of its own, and no target is asked under `rlimit_cpu`.

    `crash_frames`: offered in hello with frames-v1 (docs/protocol-extensions.md, "Crash
    frames"). A target that takes them answers a case its device panicked on with a crash
    frame and goes on in a fresh process of its own making: the crash costs no restart.
    """

    def __init__(self, argv: list[str], *, timeout: float = DEFAULT_TIMEOUT,
                 start_timeout: float = START_TIMEOUT, error_classes: dict | None = None,
                 max_restarts: int = MAX_RESTARTS, rlimit_as: int | None = None,
                 rlimit_cpu: int | None = None, modes: tuple[str, ...] = FAST_MODES,
                 die_with_parent: bool = False, standby: bool = True, env: dict | None = None,
                 poll: int | None = None, crash_frames: bool = True):
        if not argv:
            raise TargetError("cmd: needs a command line")
        super().__init__(max_restarts)
        self._prctl = libc_prctl() if die_with_parent else None
        self.argv = argv
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.error_classes = error_classes
        self.rlimits = [(res, v) for res, v in (("RLIMIT_AS", rlimit_as), ("RLIMIT_CPU", rlimit_cpu)) if v]
        self.env = dict(env or {})
        self._once_env: dict = {}  # restart_with's, for the next process only
        self._once_child = None  # restart_with's process: ended once it has answered
        self.modes = tuple(modes)
        # Asked in hello when not 0; never under rlimit_cpu, whose budget the polls would spend.
        self.poll_us = 0 if rlimit_cpu else poll_us(1) if poll is None else poll
        self.crash_frames = crash_frames
        self.name = " ".join(argv)
        self.version = ""
        self.hello: dict | None = None  # kept whole: optional fields are read by the features using them
        self.coverage = None  # a targets.coverage.Region: offered in hello, its memfd inherited by every process
        self.proc = None          # the running target's subprocess.Popen
        self._child: Child | None = None
        self._wire = Channel(timeout, error_classes)
        self._stderr = StderrTail()
        self.standby = standby
        self._spare = None  # WarmStandby's spare
        self._posted = None  # the case post() sent, its answer not read yet
        self._early = None   # (case, answer): a posted case's answer, read before its parse

    def parse(self, case: Case) -> Answer:
        return self.parse_many((case,))[0]

    def post(self, case) -> None:
        """Ask `case` now; the next parse of this very object reads the answer. The target works
        on it while the caller does other work (the fuzz loop judges the first answer to a case
        meanwhile: determinism's second ask costs no wait then). A parse of another case first
        reads the posted answer and keeps it; the parse after that one drops it."""
        if self.proc is not None and self._posted is None:
            self._early = None
            self._wire.post(case)
            self._posted = case

    def drop_posted(self) -> None:
        """Read and drop the answer to a posted case no parse asked for, so the target is idle
        when the caller returns (the device's coverage counters then belong to this case)."""
        posted, self._posted = self._posted, None
        if posted is not None:
            self._exchange([posted])

    def parse_many(self, cases) -> list[Answer]:
        """Answers to `cases` in order, sent pipelined (up to transport.WINDOW in flight).

        A fault is the answer to the case in flight (the first unanswered
        one); the target is restarted and the cases after it are sent again.
        """
        cases = list(cases)
        early, self._early = self._early, None
        if early is not None and cases and cases[0] is early[0]:
            return [early[1], *self.parse_many(cases[1:])]
        posted, self._posted = self._posted, None
        if posted is not None and not (cases and cases[0] is posted):
            self._early = (posted, self._exchange([posted])[0])
        return self._exchange(cases)

    def _exchange(self, cases: list) -> list[Answer]:
        answers: list[Answer] = []
        while len(answers) < len(cases):
            self._ensure_started()
            before = len(answers)
            fault = self._wire.exchange(cases, answers)
            for a in answers[before:]:
                if a.faulted:  # a crash frame: the process goes on (docs/protocol-extensions.md)
                    self.failures += 1
                    self.last_fault = f"{a.detail.partition('; stderr: ')[0]}: {a.title}"
                    self._restart_failed = False
                else:
                    self.failures = 0
            if self.max_restarts and self.failures >= self.max_restarts and fault is None:
                # Crash frames in a row as many as the faults that make a dying target ask the
                # canary: end this process too, so the restart asks it (RestartPolicy).
                self._kill()
            if fault is not None:
                answers.append(self._fault(*fault))
        if self._once_child is not None and self._once_child is self._child:
            self._kill()
        return answers

    def _fault(self, kind: str, why: str) -> Answer:
        self._kill()
        self.failures += 1
        self.last_fault = why
        self._restart_failed = False
        note = self._stderr.note()  # waits for the last words
        # The title reads the whole tail: a sanitizer names the site at the top of a long report.
        title = crash_title(self._stderr.text(), why) if kind == "crash" else ""
        return Answer.fault(kind, why + note, title)

    def stderr_tail(self) -> str:
        return self._stderr.text()
