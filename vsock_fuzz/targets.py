"""Targets: one interface, `answer = target.parse(case)`.

Specs (command line and API alike):
    reference             the model, spec profile
    reference:rust-vmm    the model, rust-vmm profile
    py:module:callable    a Python callable taking a Case, returning an Answer
                          or a protocol answer dict
    cmd:COMMAND LINE      an external program speaking protocol v1
"""

from __future__ import annotations

import importlib
import json
import os
import shlex
import signal
import subprocess
import threading
import time
from collections import deque
from selectors import EVENT_READ, DefaultSelector

from .answer import Answer
from .case import Case
from .packet import PROFILES, parse

PROTOCOL = 1
DEFAULT_TIMEOUT = 2.0      # seconds per case
START_TIMEOUT = 10.0       # seconds for a (re)start and hello
MAX_LINE = 16 << 20        # an answer line longer than this is garbage
STDERR_KEEP = 64 << 10     # bytes of stderr kept for a report


class TargetError(Exception):
    """A target that cannot be used at all (bad spec, will not start, refuses hello)."""


class ModelTarget:
    def __init__(self, profile: str = "spec"):
        if profile not in PROFILES:
            raise TargetError(f"unknown profile {profile!r} (known: {', '.join(PROFILES)})")
        self.profile = profile
        self.name = "reference" if profile == "spec" else f"reference:{profile}"
        from . import __version__
        self.version = __version__

    def parse(self, case: Case) -> Answer:
        return parse(case, self.profile)

    def close(self) -> None:
        pass


class PythonTarget:
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

    def close(self) -> None:
        pass


class CommandTarget:
    """The protocol v1 client: a persistent subprocess, one JSON line per case.

    The target is started lazily and again after every crash or hang; its
    stderr is drained continuously (a flooding target cannot block) and the
    tail kept for the report.
    """

    def __init__(self, argv: list[str], *, timeout: float = DEFAULT_TIMEOUT,
                 start_timeout: float = START_TIMEOUT, error_classes: dict | None = None):
        if not argv:
            raise TargetError("cmd: needs a command line")
        self.argv = argv
        self.timeout = timeout
        self.start_timeout = start_timeout
        self.error_classes = error_classes
        self.name = " ".join(argv)
        self.version = ""
        self.proc: subprocess.Popen | None = None
        self.restarts = 0
        self._next_id = 0
        self._buf = bytearray()
        self._stderr: deque[bytes] = deque()
        self._stderr_size = 0
        self._stderr_lock = threading.Lock()
        self._sel: DefaultSelector | None = None

    # -- lifecycle ----------------------------------------------------------

    def start(self) -> None:
        self._kill()
        try:
            self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         stderr=subprocess.PIPE, start_new_session=True)
        except OSError as e:
            raise TargetError(f"cannot start {self.argv[0]!r}: {e.strerror or e}") from None
        self._buf.clear()
        os.set_blocking(self.proc.stdout.fileno(), False)
        self._sel = DefaultSelector()
        self._sel.register(self.proc.stdout, EVENT_READ)
        threading.Thread(target=self._drain_stderr, args=(self.proc.stderr,), daemon=True).start()
        reply = self._call({"op": "hello", "protocol": PROTOCOL}, self.start_timeout)
        if isinstance(reply, str) or reply.get("ok") is not True or reply.get("protocol") != PROTOCOL:
            why = reply if isinstance(reply, str) else f"answered {json.dumps(reply)[:200]}"
            self._kill()
            raise TargetError(f"{self.name}: hello failed: {why}{self._stderr_note()}")
        self.version = str(reply.get("version", ""))
        name = reply.get("name")
        if isinstance(name, str) and name:
            self.name = name

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

    # -- cases --------------------------------------------------------------

    def parse(self, case: Case) -> Answer:
        if self.proc is None:
            if self.restarts or self._next_id:
                self.restarts += 1
            self._clear_stderr()
            self.start()
        self._next_id += 1
        req_id = self._next_id
        reply = self._call(case.to_request(req_id), self.timeout)
        if isinstance(reply, str):
            kind = "hang" if reply.startswith("no answer") else "crash"
            return self._fault(kind, reply)
        if reply.get("id") != req_id:
            return self._fault("crash", f"answered id {reply.get('id')!r} to request {req_id}")
        try:
            return Answer.from_json(reply, self.error_classes)
        except (ValueError, KeyError, TypeError) as e:
            return self._fault("crash", f"printed an invalid answer ({e}): {json.dumps(reply)[:200]}")

    def _fault(self, kind: str, why: str) -> Answer:
        self._kill()
        return Answer.fault(kind, why + self._stderr_note())

    def _call(self, request: dict, timeout: float):
        """Send one request; the decoded reply, or a string saying why there is none."""
        proc = self.proc
        try:
            proc.stdin.write(json.dumps(request, separators=(",", ":")).encode() + b"\n")
            proc.stdin.flush()
        except (BrokenPipeError, OSError):
            return self._exit_reason("closed its stdin")
        line = self._read_line(timeout)
        if isinstance(line, str):
            return line
        try:
            reply = json.loads(line)
        except ValueError:
            return f"printed a line that is not JSON: {line[:200]!r}"
        if not isinstance(reply, dict):
            return f"printed a line that is not a JSON object: {line[:200]!r}"
        return reply

    def _read_line(self, timeout: float):
        buf = self._buf
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while True:
            nl = buf.find(b"\n")
            if nl >= 0:
                line = bytes(buf[:nl])
                del buf[:nl + 1]
                return line
            if len(buf) > MAX_LINE:
                return f"printed a line longer than {MAX_LINE} bytes"
            left = deadline - time.monotonic()
            if left <= 0 or not self._sel.select(left):
                if self.proc.poll() is not None:
                    return self._exit_reason("stopped")
                return f"no answer within {timeout:g}s"
            try:
                chunk = os.read(fd, 1 << 16)
            except BlockingIOError:
                continue
            if not chunk:
                return self._exit_reason("closed its stdout")
            buf += chunk

    def _exit_reason(self, what: str) -> str:
        try:
            code = self.proc.wait(timeout=0.5)
        except subprocess.TimeoutExpired:
            return f"{what} but is still running"
        if code < 0:
            try:
                return f"{what}: killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"{what}: killed by signal {-code}"
        return f"{what}: exited with status {code}"

    # -- stderr -------------------------------------------------------------

    def _drain_stderr(self, pipe) -> None:
        try:
            for chunk in iter(lambda: pipe.read1(1 << 16), b""):
                with self._stderr_lock:
                    self._stderr.append(chunk)
                    self._stderr_size += len(chunk)
                    while self._stderr_size > STDERR_KEEP and len(self._stderr) > 1:
                        self._stderr_size -= len(self._stderr.popleft())
        except (OSError, ValueError):
            pass

    def _clear_stderr(self) -> None:
        with self._stderr_lock:
            self._stderr.clear()
            self._stderr_size = 0

    def stderr_tail(self) -> str:
        with self._stderr_lock:
            return b"".join(self._stderr)[-STDERR_KEEP:].decode(errors="replace")

    def _stderr_note(self) -> str:
        time.sleep(0.01)  # let the drain thread catch the last words of a dying target
        tail = self.stderr_tail().strip()
        if not tail:
            return ""
        return "; stderr: " + tail[-2000:]


def open_target(spec: str, *, timeout: float = DEFAULT_TIMEOUT, error_classes: dict | None = None):
    """A target from its spec; raises TargetError naming what is wrong."""
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
        return CommandTarget(argv, timeout=timeout, error_classes=error_classes)
    raise TargetError(f"unknown target {spec!r}: use reference[:PROFILE], py:module:callable or cmd:COMMAND")
