"""Targets: one interface, `answer = target.parse(case)`.

Specs (command line and API alike):
    reference             the model, spec profile
    reference:rust-vmm    the model, rust-vmm profile
    py:module:callable    a Python callable taking a Case, returning an Answer
                          or a protocol answer dict
    cmd:COMMAND LINE      an external program speaking protocol v1

Every target has `parse(case)` and `parse_many(cases)` (a list of answers in
order); for a `cmd:` target parse_many pipelines the cases, which is several
times faster than one round trip per case.
`reset_backoff()` forgets the faults in a row of a `cmd:` target (see
CommandTarget's restart policy); a no-op for the others.
"""

from __future__ import annotations

import ctypes
import importlib
import json
import os
import resource
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from selectors import EVENT_READ, EVENT_WRITE, DefaultSelector

from ..model.answer import Answer
from ..case.value import Case
from ..case.binary import encode
from .frames import MAX_FRAME, MODE as FRAMES, FrameError, decode_answer, encode_request
from ..model.packet import PROFILES, parse

PROTOCOL = 1
DEFAULT_TIMEOUT = 2.0      # seconds per case
START_TIMEOUT = 10.0       # seconds for a (re)start and hello
MAX_LINE = 16 << 20        # an answer line longer than this is garbage
STDERR_KEEP = 64 << 10     # bytes of stderr kept for a report
READ_SIZE = 1 << 16
WINDOW = 64                # cases in flight at once in parse_many
FAST_MODES = (FRAMES,)     # transports offered in hello (docs/protocol-extensions.md)
MAX_RESTARTS = 10          # consecutive faults before a campaign gives up on a target
BACKOFF_FIRST = 0.01       # seconds before the second restart in a row, doubling
BACKOFF_MAX = 1.0
SPIN = 50e-6               # seconds of polling for an answer before sleeping on it
_dumps = json.JSONEncoder(separators=(",", ":")).encode  # one encoder, not one per call


class TargetError(Exception):
    """A target that cannot be used at all (bad spec, will not start, refuses hello)."""


class _InProcess:
    """A target in this process: nothing to restart, nothing to close."""

    def parse_many(self, cases) -> list[Answer]:
        return [self.parse(case) for case in cases]

    def reset_backoff(self) -> None:
        pass

    def close(self) -> None:
        pass


class ModelTarget(_InProcess):
    def __init__(self, profile: str = "spec"):
        if profile not in PROFILES:
            raise TargetError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
        self.profile = profile
        self.name = "reference" if profile == "spec" else f"reference:{profile}"
        from .. import __version__
        self.version = __version__

    def parse(self, case: Case) -> Answer:
        return parse(case, self.profile)


class PythonTarget(_InProcess):
    """A callable in this process; an exception it raises is a crash on that case."""

    def __init__(self, func, name: str):
        self.func = func
        self.name = name
        self.version = getattr(func, "version", "")

    def parse(self, case: Case) -> Answer:
        try:
            out = self.func(case)
        except Exception as e:  # the target under test is buggy by definition
            return Answer.fault("crash", f"raised {type(e).__name__}: {e}")
        if isinstance(out, Answer):
            return out
        try:
            return Answer.from_json(out)
        except (ValueError, KeyError, TypeError) as e:
            return Answer.fault("crash", f"returned an invalid answer ({e}): {out!r:.200}")


PR_SET_PDEATHSIG = 1  # linux/prctl.h


def _prctl():
    """libc's prctl, for the child to ask for SIGKILL when its parent dies; looked up in the
    parent, as the child should do no more than call it. None where there is no prctl."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


class CommandTarget:
    """The protocol v1 client: a persistent subprocess, one request per case.

    The target is started lazily and again after every crash or hang, in a
    new session so the whole process group (children holding our pipes too)
    is killed with it. Its stderr is drained continuously (a flooding target
    cannot block) and the tail kept for the report. `hello` offers the fast
    transports in `modes`; a target that does not pick one stays on v1.

    Restart policy: a fault (crash or hang) is an answer, and the target is
    restarted at once for the next case; further consecutive faults or failed
    restarts back off (10 ms doubling up to 1 s). After `max_restarts`
    consecutive faults without one case answered, the target is given a Linux
    6.2 tx packet; if it does not answer that either, the next case raises
    TargetError (0: never give up). A target that cannot start the first
    time raises TargetError at once.

    Limits: `rlimit_as` (bytes of address space) and `rlimit_cpu` (CPU
    seconds over one target process's life; the per-case bound is `timeout`)
    are set with setrlimit in the child before it runs the target.
    `die_with_parent` (Linux) has the kernel kill the target when the process
    that started it dies: a fuzz worker killed after its grace period leaves
    no target behind, even a hung one that never sees its stdin close.
    """

    def __init__(self, argv: list[str], *, timeout: float = DEFAULT_TIMEOUT,
                 start_timeout: float = START_TIMEOUT, error_classes: dict | None = None,
                 max_restarts: int = MAX_RESTARTS, rlimit_as: int | None = None,
                 rlimit_cpu: int | None = None, modes: tuple[str, ...] = FAST_MODES,
                 die_with_parent: bool = False):
        if not argv:
            raise TargetError("cmd: needs a command line")
        self._prctl = _prctl() if die_with_parent else None
        self.argv = argv
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.error_classes = error_classes
        self.max_restarts = max_restarts
        self.rlimits = [(res, v) for res, v in (("RLIMIT_AS", rlimit_as), ("RLIMIT_CPU", rlimit_cpu)) if v]
        self.modes = tuple(modes)
        self.mode = "v1"          # the transport hello settled on
        self.name = " ".join(argv)
        self.version = ""
        self.proc: subprocess.Popen | None = None
        self.restarts = 0         # restarts after the first start
        self.failures = 0         # consecutive faults and failed restarts
        self.last_fault = ""
        self._started = False
        self._next_id = 0
        self._buf = bytearray()
        self._scan = 0            # bytes of _buf already searched for a newline
        self._stderr: deque[bytes] = deque()
        self._stderr_size = 0
        self._stderr_lock = threading.Lock()
        self._sel: DefaultSelector | None = None
        self._pidfd = -1
        self._stderr_done = threading.Event()

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        self._kill()
        self._clear_stderr()
        self._parent = os.getpid()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, start_new_session=True,
                                         preexec_fn=self._in_child if self.rlimits or self._prctl else None)
        except OSError as e:
            raise TargetError(f"cannot start {self.argv[0]!r}: {e.strerror or e}") from None
        self._buf.clear()
        self._scan = 0
        self.mode = "v1"
        os.set_blocking(self.proc.stdout.fileno(), False)
        os.set_blocking(self.proc.stdin.fileno(), False)
        self._sel = DefaultSelector()
        self._sel.register(self.proc.stdout, EVENT_READ)
        try:  # readable when the target exits, even if a child keeps stdout open
            self._pidfd = os.pidfd_open(self.proc.pid)
            self._sel.register(self._pidfd, EVENT_READ)
        except (AttributeError, OSError):
            self._pidfd = -1
        self._stderr_done = threading.Event()
        threading.Thread(target=self._drain_stderr, args=(self.proc.stderr, self._stderr_done), daemon=True).start()
        hello = {"op": "hello", "protocol": PROTOCOL}
        if self.modes:
            hello["modes"] = list(self.modes)
        reply = self._hello(hello)
        if self.modes and isinstance(reply, dict) and reply.get("ok") is False:
            reply = self._hello({"op": "hello", "protocol": PROTOCOL})  # a strict v1 target
        if isinstance(reply, str) or reply.get("ok") is not True or reply.get("protocol") != PROTOCOL:
            why = reply if isinstance(reply, str) else f"answered {json.dumps(reply)[:200]}"
            self._kill()
            raise TargetError(f"{self.name}: hello failed: {why}{self._stderr_note()}")
        mode = reply.get("mode", "v1")
        if mode != "v1" and mode not in self.modes:
            self._kill()
            raise TargetError(f"{self.name}: hello chose mode {mode!r}, which was not offered ({', '.join(self.modes) or 'v1 only'})")
        self.mode = mode
        self.version = str(reply.get("version", ""))
        name = reply.get("name")
        if isinstance(name, str) and name:
            self.name = name

    def _hello(self, request: dict):
        deadline = time.monotonic() + self.start_timeout
        why = self._send(json.dumps(request).encode() + b"\n", deadline)
        while not why:
            got = self._take_line()
            if got is not None:
                break
            why = self._wait(deadline)
        else:
            if why.startswith("no answer"):
                why = f"no answer to hello within the start timeout ({self.start_timeout:g}s)"
            return why
        if isinstance(got, str):
            return got
        try:
            reply = json.loads(got)
        except ValueError:
            return f"printed a line that is not JSON: {got[:200]!r}"
        return reply if isinstance(reply, dict) else f"printed a line that is not a JSON object: {got[:200]!r}"

    def _in_child(self) -> None:
        """Runs in the child before exec: the parent-death signal, then the limits."""
        if self._prctl is not None:
            self._prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            if os.getppid() != self._parent:  # the parent died before the request: no signal comes
                os._exit(1)
        for res, v in self.rlimits:
            num = getattr(resource, res)
            # CPU: the soft limit sends SIGXCPU, the hard one a second later SIGKILL.
            resource.setrlimit(num, (v, v + 1 if res == "RLIMIT_CPU" else v))

    def reset_backoff(self) -> None:
        """Forget the faults in a row: the next restart is at once and the max_restarts count
        starts again. For callers that expect faults (the minimizer, whose candidates crash)."""
        self.failures = 0

    def close(self) -> None:
        proc = self.proc
        if proc is None:
            return
        try:
            proc.stdin.close()  # the target exits when its stdin closes
            proc.wait(timeout=1.0)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self._kill()

    def _kill(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the whole group: children holding pipes too
        except (ProcessLookupError, PermissionError):
            pass
        proc.wait()
        for f in (proc.stdin, proc.stdout):
            try:
                f.close()
            except OSError:
                pass
        if self._sel is not None:
            self._sel.close()
            self._sel = None
        if self._pidfd >= 0:
            os.close(self._pidfd)
            self._pidfd = -1

    def _ensure_started(self) -> None:
        """Start the target, or restart it after a fault with the back-off and cap above."""
        while self.proc is None:
            if self.max_restarts and self.failures >= self.max_restarts and not self._answers_canary():
                raise TargetError(f"{self.name}: target restarted {self.max_restarts} times in a row without "
                                  f"answering a case; giving up: {self.last_fault}")
            if self.failures > 1:
                time.sleep(min(BACKOFF_FIRST * 2 ** (self.failures - 2), BACKOFF_MAX))
            try:
                self.start()
            except TargetError as e:
                if not self._started:
                    raise  # never answered hello: the target cannot be used at all
                self.failures += 1
                self.last_fault = f"restart failed: {e}"
                continue
            if self._started:
                self.restarts += 1
            self._started = True

    def _answers_canary(self) -> bool:
        """Whether the target, started once more, answers a packet every device must accept
        (Linux 6.2 tx). libFuzzer mutates one input several times in a row, so a run of faults
        can be one crashing input's neighbours rather than a target that cannot work."""
        if self.last_fault.startswith("restart failed"):
            return False
        from ..case.layout import plain_packet
        try:
            self.start()
        except TargetError as e:
            self.last_fault = f"restart failed: {e}"
            return False
        self.restarts += 1
        answers: list[Answer] = []
        self._exchange([plain_packet()], answers)
        return not answers[0].faulted  # answered: `failures` is 0 again

    # -- cases --------------------------------------------------------------

    def parse(self, case: Case) -> Answer:
        return self.parse_many((case,))[0]

    def parse_many(self, cases) -> list[Answer]:
        """Answers to `cases` in order, sent pipelined (up to WINDOW in flight).

        A fault is the answer to the case in flight (the first unanswered
        one); the target is restarted and the cases after it are sent again.
        """
        cases = list(cases)
        answers: list[Answer] = []
        while len(answers) < len(cases):
            self._ensure_started()
            self._exchange(cases, answers)
        return answers

    def _exchange(self, cases: list, answers: list) -> None:
        """Send cases[len(answers):] and collect answers until done or a fault."""
        frames = self.mode == FRAMES
        sent = len(answers)
        ids: deque[int] = deque()
        deadline = time.monotonic() + self.timeout
        broken = False
        while len(answers) < len(cases):
            if not broken and sent < len(cases) and sent - len(answers) < WINDOW // 2 + 1:
                chunk = []
                for case in cases[sent:len(answers) + WINDOW]:
                    self._next_id = req_id = (self._next_id + 1) & 0xFFFFFFFF
                    ids.append(req_id)
                    if frames:
                        chunk.append(encode_request(req_id, encode(case)))
                    else:
                        chunk.append(_dumps(case.to_request(req_id)).encode() + b"\n")
                    sent += 1
                # On a broken pipe the answers to earlier cases may still be
                # waiting unread: read them; the first case without one faulted.
                broken = self._send(b"".join(chunk), deadline) is not None
            got = self._take_frame() if frames else self._take_line()
            if got is None:
                why = self._wait(deadline)
                if why:
                    answers.append(self._fault("hang" if why.startswith("no answer") else "crash", why))
                    return
                continue
            if isinstance(got, str):
                answers.append(self._fault("crash", got))
                return
            answers.append(self._decode(got, ids.popleft()))
            if self.proc is None:  # the answer was garbage: a fault, and the target is gone
                return
            self.failures = 0
            deadline = time.monotonic() + self.timeout

    def _decode(self, got: bytes, req_id: int) -> Answer:
        if self.mode == FRAMES:
            try:
                rid, answer = decode_answer(got, self.error_classes)
            except FrameError as e:
                return self._fault("crash", f"printed an invalid frame: {e}")
        else:
            try:
                reply = json.loads(got)
            except ValueError:
                return self._fault("crash", f"printed a line that is not JSON: {got[:200]!r}")
            if not isinstance(reply, dict):
                return self._fault("crash", f"printed a line that is not a JSON object: {got[:200]!r}")
            rid = reply.get("id")
            try:
                answer = Answer.from_json(reply, self.error_classes)
            except (ValueError, KeyError, TypeError) as e:
                return self._fault("crash", f"printed an invalid answer ({e}): {got[:200]!r}")
        if rid != req_id:
            return self._fault("crash", f"answered id {rid!r} to request {req_id}")
        return answer

    def _fault(self, kind: str, why: str) -> Answer:
        self._kill()
        self.failures += 1
        self.last_fault = why
        return Answer.fault(kind, why + self._stderr_note())

    # -- pipes ----------------------------------------------------------------

    def _send(self, data: bytes, deadline: float):
        """Write all of `data`, reading answers meanwhile so neither side blocks.

        None when written, else a string saying why not (broken pipe, or the
        target stopped reading until `deadline`).
        """
        fd = self.proc.stdin.fileno()
        view = memoryview(data)
        registered = False
        try:
            while True:
                try:
                    view = view[os.write(fd, view):]
                except BlockingIOError:
                    pass
                except OSError:
                    return self._exit_reason("closed its stdin")
                if not view:
                    return None
                # Pipe full: the target may be waiting for us to read its answers.
                if not registered:
                    self._sel.register(fd, EVENT_WRITE)
                    registered = True
                why = self._wait(deadline)
                if why:
                    return why
        finally:
            if registered and self._sel is not None:
                self._sel.unregister(fd)

    def _take_line(self):
        """A complete line from the buffer, a string saying why it is garbage, or None (need more)."""
        buf = self._buf
        nl = buf.find(b"\n", self._scan)
        if nl < 0:
            self._scan = len(buf)
            if len(buf) > MAX_LINE:
                return f"printed a line longer than {MAX_LINE} bytes"
            return None
        line = bytes(buf[:nl])
        del buf[:nl + 1]
        self._scan = 0
        return line

    def _take_frame(self):
        buf = self._buf
        if len(buf) < 4:
            return None
        n = int.from_bytes(buf[:4], "little")
        if n > MAX_FRAME:
            return f"announced a frame of {n} bytes (garbage on stdout?)"
        if len(buf) < 4 + n:
            return None
        frame = bytes(buf[4:4 + n])
        del buf[:4 + n]
        return frame

    def _read_some(self, timeout: float):
        """Wait up to `timeout` for output and append it; a string if the target is gone."""
        fd = self.proc.stdout.fileno()
        # A native target answers in microseconds: polling for SPIN seconds
        # first saves the sleep and wake-up (about twice the cases/s one at a time).
        spin_end = time.perf_counter() + SPIN
        while True:
            try:
                chunk = os.read(fd, READ_SIZE)
                break
            except BlockingIOError:
                if time.perf_counter() >= spin_end:
                    chunk = None
                    break
        if chunk:
            self._buf += chunk
            return None
        if chunk is not None:
            return self._exit_reason("closed its stdout")
        ready = self._sel.select(timeout)
        try:
            chunk = os.read(fd, READ_SIZE)
        except BlockingIOError:
            if any(key.fd == self._pidfd for key, _ in ready):
                return self._exit_reason("stopped")
            return None
        if not chunk:
            return self._exit_reason("closed its stdout")
        self._buf += chunk
        return None

    def _wait(self, deadline: float):
        """Read more output before `deadline`; a string saying why none will come, else None."""
        left = deadline - time.monotonic()
        if left <= 0:
            if self.proc.poll() is not None:
                return self._exit_reason("stopped")
            return f"no answer within {self.timeout:g}s"
        return self._read_some(left)

    def _exit_reason(self, what: str) -> str:
        """How the target ended: its exit status or signal, or `what` if it still runs."""
        try:
            code = self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return f"{what} but is still running"
        if code < 0:
            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        return f"exited with status {code}"

    # -- stderr -------------------------------------------------------------

    def _drain_stderr(self, pipe, done: threading.Event) -> None:
        try:
            for chunk in iter(lambda: pipe.read1(1 << 16), b""):
                with self._stderr_lock:
                    self._stderr.append(chunk)
                    self._stderr_size += len(chunk)
                    while self._stderr_size > STDERR_KEEP and len(self._stderr) > 1:
                        self._stderr_size -= len(self._stderr.popleft())
        except (OSError, ValueError):
            pass
        finally:
            pipe.close()
            done.set()

    def _clear_stderr(self) -> None:
        with self._stderr_lock:
            self._stderr.clear()
            self._stderr_size = 0

    def stderr_tail(self) -> str:
        with self._stderr_lock:
            return b"".join(self._stderr)[-STDERR_KEEP:].decode(errors="replace")

    def _stderr_note(self) -> str:
        # Let the drain thread catch the last words of the target, which is
        # dead by now (unless something outside its group holds stderr).
        self._stderr_done.wait(0.1)
        tail = self.stderr_tail().strip()
        if not tail:
            return ""
        return "; stderr: " + tail[-2000:]


def open_target(spec: str, *, timeout: float = DEFAULT_TIMEOUT, error_classes: dict | None = None,
                start_timeout: float = START_TIMEOUT, max_restarts: int = MAX_RESTARTS,
                rlimit_as: int | None = None, rlimit_cpu: int | None = None,
                modes: tuple[str, ...] = FAST_MODES, die_with_parent: bool = False):
    """A target from its spec; raises TargetError naming what is wrong.

    The keyword arguments after `error_classes` apply to `cmd:` targets only
    (see CommandTarget); `modes=()` keeps a target on plain protocol v1.
    """
    kind, _, rest = spec.partition(":")
    if kind == "reference":
        return ModelTarget(rest or "spec")
    if kind == "py":
        module, _, attr = rest.partition(":")
        if not module or not attr:
            raise TargetError(f"py: target {spec!r} is not py:module:callable")
        try:
            func = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as e:
            raise TargetError(f"cannot load {spec!r}: {e}") from None
        return PythonTarget(func, spec)
    if kind == "cmd":
        try:
            argv = shlex.split(rest)
        except ValueError as e:
            raise TargetError(f"cannot split {rest!r}: {e}") from None
        return CommandTarget(argv, timeout=timeout, start_timeout=start_timeout, error_classes=error_classes,
                             max_restarts=max_restarts, rlimit_as=rlimit_as, rlimit_cpu=rlimit_cpu, modes=modes,
                             die_with_parent=die_with_parent)
    raise TargetError(f"unknown target {spec!r}: use reference[:PROFILE], py:module:callable or cmd:COMMAND")
